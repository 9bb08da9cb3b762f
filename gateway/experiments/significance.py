"""Every variant against control, anytime-valid and corrected for the number of variants (pure math).

Each variant is compared with control by four one-sided `RateRatioTest`s (gateway/rollout/sequential.py,
the mixture sequential probability ratio test of Lindon & Malek on per-slice counts; see docs/analysis.md):

    goal_better   H0: the variant's goal outcomes per search ≤ control's   (rejected: the variant is better)
    goal_worse    H0: control's goal outcomes per search ≤ the variant's   (rejected: the variant is worse)
    errors        H0: the variant's errors per search ≤ control's          (rejected: it fails more often)
    latency       H0: the variant's searches slower than the experiment's threshold, per search, ≤ control's

Each test runs at α / N for N variants (Bonferroni). Under the global null (every variant as good as
control) each `goal_better` e-process crosses N / α with probability at most α / N at any moment
whatever the stopping rule (Ville), so by the union bound the chance that *any* variant is ever
declared a winner is at most α — however often people look. The same holds for each of the other
families (a variant falsely called worse, or falsely flagged for errors or latency).

A slice is whatever was counted between two folds (the manager folds every `interval_s`): the tests
condition on each slice's split of searches between the variant and control, so an uneven split,
or traffic that varies over the day, cannot bias them. Outcomes are reported after their search, so
a slice's outcomes belong to searches of that slice or a little earlier; with a fixed split the
share of searches barely moves between neighbouring slices, which keeps that lag harmless.

The verdict: a variant wins when its goal_better test rejected and neither its errors nor its
latency test did; among several such, the one with the largest estimated ratio is named (each beats
control; they are not tested against each other). Until then the answer is "no winner yet", with
every comparison's numbers.

`batch_ratio_log_e` is the same e-value computed for many independent runs at once (a leading axis),
used by the A/A simulation in tests/gateway/test_experiment_significance.py, which checks it against
`RateRatioTest` number for number.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from searchgw.gateway.rollout.quality import QualitySummary
from searchgw.gateway.rollout.sequential import RATIO_GRID, RATIO_PRIOR_SCALE, RateRatioTest, TestResult

_LOG_GRID = np.log(RATIO_GRID)
_PRIOR = np.exp(-0.5 * (_LOG_GRID / RATIO_PRIOR_SCALE) ** 2)
_PRIOR /= _PRIOR.sum()
_ONE_SIDED = np.where(_LOG_GRID > 1e-12, _PRIOR, 0.0)
_ONE_SIDED /= _ONE_SIDED.sum()
_LOG_ONE_SIDED = np.log(np.where(_ONE_SIDED > 0, _ONE_SIDED, 1e-300))


class Comparison(enum.Enum):
    """Which test of a variant against control."""

    GOAL_BETTER = "goal_better"
    GOAL_WORSE = "goal_worse"
    ERRORS = "errors"
    LATENCY = "latency"


class VariantStatus(enum.Enum):
    """What the tests say of one variant so far."""

    UNDECIDED = 0
    BETTER = 1
    WORSE = 2
    #: More errors or slower searches than control (whatever its goal rate).
    HARMFUL = 3
    #: Better on the goal, but rejected on errors or latency: not a winner.
    BETTER_BUT_HARMFUL = 4


def comparison_alpha(alpha: float, variants: int) -> float:
    """The level of each variant's test: α / N (Bonferroni)."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1); got {alpha}")
    if variants < 1:
        raise ValueError("an experiment has at least one variant")
    return alpha / variants


@dataclass(frozen=True, slots=True)
class SliceCounts:
    """One arm's counts (cumulative, or one slice's increase): searches in the analysis, their errors,
    searches slower than the threshold, and goal outcomes."""

    searches: int = 0
    errors: int = 0
    slow: int = 0
    goal: int = 0

    def minus(self, earlier: SliceCounts) -> SliceCounts:
        return SliceCounts(self.searches - earlier.searches, self.errors - earlier.errors,
                           self.slow - earlier.slow, self.goal - earlier.goal)

    def to_json(self) -> list[int]:
        return [self.searches, self.errors, self.slow, self.goal]

    @classmethod
    def from_json(cls, data: Sequence[int]) -> SliceCounts:
        return cls(*(int(value) for value in data))


@dataclass(frozen=True, slots=True)
class ComparisonResult:
    """One test's numbers now."""

    comparison: Comparison
    result: TestResult
    #: The level it runs at (α / N).
    alpha: float


@dataclass(frozen=True, slots=True)
class VariantVerdict:
    variant: str
    status: VariantStatus
    comparisons: tuple[ComparisonResult, ...]

    def get(self, comparison: Comparison) -> ComparisonResult:
        return next(c for c in self.comparisons if c.comparison is comparison)


@dataclass(frozen=True, slots=True)
class ExperimentVerdict:
    """The answer: the winner's name ("" for none yet), a sentence with the numbers, each variant's tests."""

    winner: str
    summary: str
    variants: tuple[VariantVerdict, ...]
    #: Variant → why the quality guard keeps it from winning (with the numbers).
    vetoes: Mapping[str, str] = field(default_factory=dict)
    #: Variant → its shadow comparisons with control (empty when the policy samples none; the manager's).
    quality: Mapping[str, QualitySummary] = field(default_factory=dict)


class VariantEvidence:
    """The four tests of one variant against control, fed slice by slice."""

    __slots__ = ("alpha", "tests")

    def __init__(self, alpha: float) -> None:
        self.alpha = alpha
        self.tests = {comparison: RateRatioTest(alpha) for comparison in Comparison}

    def add(self, variant: SliceCounts, control: SliceCounts) -> None:
        """Add one slice's increases of the variant's and control's counts."""
        self.tests[Comparison.GOAL_BETTER].add(variant.goal, variant.searches, control.goal, control.searches)
        self.tests[Comparison.GOAL_WORSE].add(control.goal, control.searches, variant.goal, variant.searches)
        self.tests[Comparison.ERRORS].add(variant.errors, variant.searches, control.errors, control.searches)
        self.tests[Comparison.LATENCY].add(variant.slow, variant.searches, control.slow, control.searches)

    def verdict(self, name: str) -> VariantVerdict:
        results = tuple(ComparisonResult(c, test.result(), self.alpha) for c, test in self.tests.items())
        rejected = {r.comparison for r in results if r.result.rejected}
        harmful = bool(rejected & {Comparison.ERRORS, Comparison.LATENCY})
        if Comparison.GOAL_BETTER in rejected:
            status = VariantStatus.BETTER_BUT_HARMFUL if harmful else VariantStatus.BETTER
        elif harmful:
            status = VariantStatus.HARMFUL
        elif Comparison.GOAL_WORSE in rejected:
            status = VariantStatus.WORSE
        else:
            status = VariantStatus.UNDECIDED
        return VariantVerdict(name, status, results)

    def to_json(self) -> dict[str, Any]:
        return {comparison.value: test.to_json() for comparison, test in self.tests.items()}

    @classmethod
    def from_json(cls, alpha: float, data: Mapping[str, Any]) -> VariantEvidence:
        evidence = cls(alpha)
        for comparison in Comparison:
            if comparison.value in data:
                evidence.tests[comparison] = RateRatioTest.from_json(alpha, data[comparison.value])
        return evidence


class ExperimentEvidence:
    """Every variant's tests, and the cumulative counts folded so far (so the next fold adds the rest)."""

    def __init__(self, alpha: float, variants: Sequence[str]) -> None:
        self.alpha = alpha
        self.variant_alpha = comparison_alpha(alpha, len(variants))
        self.variants = {name: VariantEvidence(self.variant_alpha) for name in variants}
        #: Cumulative counts per arm ("control" and each variant) at the last fold.
        self.folded: dict[str, SliceCounts] = {}

    def fold(self, control: SliceCounts, variants: Mapping[str, SliceCounts]) -> bool:
        """Add everything counted since the last fold as one slice; False when nothing was new."""
        before = self.folded.get("", SliceCounts())
        control_slice = control.minus(before)
        changed = control_slice != SliceCounts()
        for name, evidence in self.variants.items():
            now = variants.get(name, SliceCounts())
            variant_slice = now.minus(self.folded.get(name, SliceCounts()))
            if variant_slice != SliceCounts():
                changed = True
            evidence.add(variant_slice, control_slice)
            self.folded[name] = now
        self.folded[""] = control
        return changed

    def verdict(self, goal: str, control_counts: SliceCounts, counts: Mapping[str, SliceCounts],
                vetoes: Mapping[str, str] | None = None) -> ExperimentVerdict:
        """`vetoes`: variant → reason, from a quality guard (e.g. shadow overlap with control too low): a
        vetoed variant is HARMFUL (BETTER_BUT_HARMFUL when it converts better) and cannot win."""
        vetoes = vetoes or {}
        verdicts = tuple(_vetoed(evidence.verdict(name), vetoes.get(name)) for name, evidence in self.variants.items())
        winners = [v for v in verdicts if v.status is VariantStatus.BETTER]
        threshold = f"α/N = {self.alpha:g}/{len(verdicts)} = {self.variant_alpha:.4g}"
        control_rate = _rate(control_counts.goal, control_counts.searches)
        vetoed = "".join(f"; {name} vetoed: {reason}" for name, reason in vetoes.items() if name in self.variants)
        if winners:
            best = max(winners, key=lambda v: _finite(v.get(Comparison.GOAL_BETTER).result.estimate))
            test = best.get(Comparison.GOAL_BETTER).result
            mine = counts.get(best.variant, SliceCounts())
            summary = (f"winner {best.variant}: {goal} per search {_rate(mine.goal, mine.searches):.4g} vs control "
                       f"{control_rate:.4g} (ratio {_Rate(test.estimate):.3g}, confidence sequence "
                       f"[{test.lower:.3g}, {test.upper:.3g}], p {test.p_value:.3g} < {threshold})")
            others = [v.variant for v in winners if v is not best]
            if others:
                summary += f"; also better than control: {', '.join(others)}"
            return ExperimentVerdict(best.variant, summary + vetoed, verdicts, vetoes)
        parts = []
        for v in verdicts:
            test = v.get(Comparison.GOAL_BETTER).result
            mine = counts.get(v.variant, SliceCounts())
            parts.append(f"{v.variant} {v.status.name.lower()}: {goal} per search "
                         f"{_rate(mine.goal, mine.searches):.4g} vs {control_rate:.4g}, ratio {_Rate(test.estimate):.3g} "
                         f"[{test.lower:.3g}, {test.upper:.3g}], p {test.p_value:.3g}")
        return ExperimentVerdict("", f"no winner yet ({threshold}): " + "; ".join(parts) + vetoed, verdicts, vetoes)

    def to_json(self) -> dict[str, Any]:
        return {"variants": {name: evidence.to_json() for name, evidence in self.variants.items()},
                "folded": {name: counts.to_json() for name, counts in self.folded.items()}}

    @classmethod
    def from_json(cls, alpha: float, variants: Sequence[str], data: Mapping[str, Any] | None) -> ExperimentEvidence:
        evidence = cls(alpha, variants)
        if not data:
            return evidence
        for name, stored in data.get("variants", {}).items():
            if name in evidence.variants:
                evidence.variants[name] = VariantEvidence.from_json(evidence.variant_alpha, stored)
        evidence.folded = {name: SliceCounts.from_json(counts) for name, counts in data.get("folded", {}).items()}
        return evidence


class _Rate(float):
    """A rate that prints as "-" when there is none (NaN), so sentences never say "nan"."""

    def __format__(self, spec: str) -> str:
        return "-" if math.isnan(self) else format(float(self), spec)


def _vetoed(verdict: VariantVerdict, reason: str | None) -> VariantVerdict:
    if reason is None:
        return verdict
    better = verdict.status in (VariantStatus.BETTER, VariantStatus.BETTER_BUT_HARMFUL)
    return VariantVerdict(verdict.variant, VariantStatus.BETTER_BUT_HARMFUL if better else VariantStatus.HARMFUL,
                          verdict.comparisons)


def _rate(events: int, searches: int) -> float:
    return _Rate(events / searches if searches else math.nan)


def _finite(value: float) -> float:
    return value if math.isfinite(value) else (math.inf if value > 0 else -math.inf)


def batch_ratio_log_e(variant_events: np.ndarray, variant_calls: np.ndarray, control_events: np.ndarray,
                      control_calls: np.ndarray) -> np.ndarray:
    """RateRatioTest's running log e-value, for many runs at once, and its running maximum.

    Each argument is (runs, slices) of one slice's counts. Returns (runs,): the largest log e-value each
    run reached after any slice — what `RateRatioTest` compares with log(1/α) (its `max_log_e`).
    """
    runs, slices = variant_events.shape
    log_likelihood = np.zeros((runs, RATIO_GRID.size))
    best = np.full(runs, -np.inf)
    for s in range(slices):
        e_v, n_v = variant_events[:, s].astype(float), variant_calls[:, s].astype(float)
        e_c, n_c = control_events[:, s].astype(float), control_calls[:, s].astype(float)
        events = e_v + e_c
        live = (events > 0) & (n_v > 0) & (n_c > 0)
        share = np.where(live, n_v / np.maximum(n_v + n_c, 1.0), 0.0)[:, None]
        step = e_v[:, None] * _LOG_GRID - events[:, None] * np.log(RATIO_GRID * share + (1.0 - share))
        log_likelihood += np.where(live[:, None], step, 0.0)
        weighted = _LOG_ONE_SIDED + log_likelihood
        top = weighted.max(axis=1)
        log_e = top + np.log(np.exp(weighted - top[:, None]).sum(axis=1))
        best = np.where(live & (e_v > 0), np.maximum(best, log_e), best)
    return best
