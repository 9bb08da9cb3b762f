"""Result quality of a canary: shadow comparisons with primary, and the guard that judges them. Pure.

A sampled share of live searches also runs on the other arm, off the request path (`gateway.shadow`);
each such *shadow comparison* sets the two arms' top k side by side: overlap@k and rank-biased overlap
(the pre-flight's implementations, `preflight.overlap_at_k` and `preflight.rank_biased_overlap`), and
the ids found on one arm only.

Counting (mergeable across replicas)
    A comparison is counted in the canary's `ArmSlice` of the second it ended in: its overlap@k and its
    RBO each in one of 101 fixed bins (bin i holds values in [i/100, (i+1)/100); 1.0 has bin 100), so
    the per-second counts of several replicas sum exactly and travel through the same counts exchange as
    the calls (`cluster.CountsExchange`, Redis hash fields `c:o:{bin}` and `c:r:{bin}`). For k ≤ 100 every
    overlap@k (a multiple of 1/k) lands in its own bin's lower edge, so the median is exact. The ids
    that differ are not exchanged: each replica keeps a bounded top-N of the ids it saw differ
    (`DifferingIds`, Space-Saving), and the leader's decision names its own.

The guard (`QualityEvidence`)
    "The canary's results differ from primary's" is read as: more than `max_below_share` (0.5: the
    median) of the compared searches have an overlap@k below `min_overlap` (0.6). Each comparison is a
    Bernoulli event "below the threshold"; H0: its probability is at most `max_below_share` at every
    moment, given everything before. `sequential.RateLimitTest` (a mixture of Bernoulli likelihood
    ratios, an e-process) tests it, so the guard may be read at every check for as long as the stage
    lasts and rolls a canary back under H0 with probability at most `alpha`. With max_below_share 0.5
    this is an anytime-valid sign test on the median overlap. It never acts on fewer than `min_samples`
    comparisons (dropping rejections keeps the bound), and a stage cannot pass before it has them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from searchgw.errors import InvalidArgument
from searchgw.gateway.rollout.preflight import overlap_at_k, rank_biased_overlap
from searchgw.gateway.rollout.sequential import RateLimitTest, finite_or_none

#: Bins of an overlap or RBO value: 0 … 100 (bin i: [i/100, (i+1)/100); 1.0 in bin 100).
QUALITY_BINS = 100
#: The ids named per decision, and how many a counter keeps (more than it names: Space-Saving's margin).
TOP_DIFFERING_IDS = 10
DIFFERING_IDS_CAPACITY = 64
MAX_SHADOW_SAMPLE_RATE = 0.5
MAX_QUALITY_K = 100


def quality_bin(value: float) -> int:
    """The bin of an overlap or RBO value in [0, 1] (outside values are clamped)."""
    if not value > 0:
        return 0
    return min(QUALITY_BINS, int(math.floor(value * QUALITY_BINS + 1e-9)))


def bin_value(index: int) -> float:
    """The value a bin reports: its lower edge (exact for overlap@k with k ≤ 100)."""
    return index / QUALITY_BINS


@dataclass(frozen=True, slots=True)
class ShadowComparison:
    """One search's top results on both arms, compared."""

    #: The depth compared: min(k, the longer list's length); 0 when both arms found nothing.
    depth: int
    #: overlap@depth (1.0 when both are empty).
    overlap: float
    #: Extrapolated rank-biased overlap of the two lists.
    rbo: float
    #: The ids in one arm's top `depth` but not the other's (the first list's first).
    differing: tuple[str, ...]


def compare_rankings(first: Sequence[Hashable], second: Sequence[Hashable], k: int,
                     rbo_p: float) -> ShadowComparison:
    """Compare two rankings' top k. When both arms return fewer than k hits (a filter, a small
    collection) the depth is the longer list's length, so identical short lists agree fully."""
    a, b = list(first[:k]), list(second[:k])
    depth = min(k, max(len(a), len(b)))
    overlap = 1.0 if depth == 0 else overlap_at_k(a, b, depth)
    rbo = rank_biased_overlap(a, b, rbo_p)
    in_a, in_b = set(a), set(b)
    differing = tuple(str(i) for i in a if i not in in_b) + tuple(str(i) for i in b if i not in in_a)
    return ShadowComparison(depth, overlap, rbo, differing)


class DifferingIds:
    """The ids seen differing most often, in bounded memory (Space-Saving, Metwally et al. 2005): at
    most `capacity` counters; a new id takes the smallest one's place with its count + 1, so every count
    overestimates by at most the evicted minimum, and any id seen more than n/capacity times is kept."""

    __slots__ = ("capacity", "counts")

    def __init__(self, capacity: int = DIFFERING_IDS_CAPACITY) -> None:
        self.capacity = capacity
        self.counts: dict[str, int] = {}

    def add(self, ids: Sequence[str]) -> None:
        counts = self.counts
        for item in ids:
            if item in counts:
                counts[item] += 1
            elif len(counts) < self.capacity:
                counts[item] = 1
            else:
                smallest = min(counts, key=counts.__getitem__)
                counts[item] = counts.pop(smallest) + 1

    def top(self, n: int = TOP_DIFFERING_IDS) -> tuple[tuple[str, int], ...]:
        return tuple(sorted(self.counts.items(), key=lambda item: (-item[1], item[0]))[:n])


@dataclass(frozen=True, slots=True)
class QualityPolicy:
    """Shadow comparisons and the quality guard (`AnalysisPolicy.quality`). Zero fields take the
    defaults, except `shadow_sample_rate`: 0 (the default) runs no shadow searches and no guard."""

    #: The share of a rollout's routed searches that also run on the other arm (e.g. 0.01–0.05).
    shadow_sample_rate: float = 0.0
    #: The depth compared (overlap@k, RBO of the top k).
    k: int = 10
    #: A comparison is "below" when its overlap@k is under this (a multiple of 0.01).
    min_overlap: float = 0.6
    #: The guard fails the canary when more than this share of comparisons is below (0.5: the median).
    max_below_share: float = 0.5
    #: No verdict on fewer comparisons in a stage: the stage waits (and cannot pass) until it has them.
    min_samples: int = 30
    #: The guard's false-rollback bound per stage.
    alpha: float = 0.01
    #: RBO's persistence p (reported; the guard judges overlap@k).
    rbo_p: float = 0.9

    @property
    def enabled(self) -> bool:
        return self.shadow_sample_rate > 0

    def with_defaults(self) -> QualityPolicy:
        defaults = QualityPolicy()
        changes = {f.name: getattr(defaults, f.name) for f in dataclasses.fields(self)
                   if f.name != "shadow_sample_rate" and not getattr(self, f.name)}
        return dataclasses.replace(self, **changes) if changes else self

    def validate(self, path: str) -> None:
        """Raise InvalidArgument naming `path.<field>` for the first unusable value."""

        def fail(name: str, message: str) -> None:
            raise InvalidArgument(f"{path}.{name}", message)

        if not _finite(self.shadow_sample_rate) or not 0 <= self.shadow_sample_rate <= MAX_SHADOW_SAMPLE_RATE:
            fail("shadow_sample_rate", f"{self.shadow_sample_rate}; must lie in [0, {MAX_SHADOW_SAMPLE_RATE}] "
                                       "(0: no shadow searches, e.g. 0.05)")
        if not _whole(self.k) or not 1 <= self.k <= MAX_QUALITY_K:
            fail("k", f"{self.k}; must be a whole number in [1, {MAX_QUALITY_K}]")
        if not _finite(self.min_overlap) or not 0 < self.min_overlap <= 1:
            fail("min_overlap", f"{self.min_overlap}; must lie in (0, 1]")
        if abs(self.min_overlap * QUALITY_BINS - round(self.min_overlap * QUALITY_BINS)) > 1e-6:
            fail("min_overlap", f"{self.min_overlap}; must be a multiple of 0.01 (the bins the replicas sum)")
        if not _finite(self.max_below_share) or not 0 < self.max_below_share < 1:
            fail("max_below_share", f"{self.max_below_share}; must lie in (0, 1), e.g. 0.5 (the median)")
        if not _whole(self.min_samples) or self.min_samples < 1:
            fail("min_samples", f"{self.min_samples}; must be a positive whole number")
        if not _finite(self.alpha) or not 0 < self.alpha <= 0.5:
            fail("alpha", f"{self.alpha}; must lie in (0, 0.5], e.g. 0.01")
        if not _finite(self.rbo_p) or not 0 < self.rbo_p < 1:
            fail("rbo_p", f"{self.rbo_p}; must lie in (0, 1), e.g. 0.9")

    @property
    def threshold_bin(self) -> int:
        """Comparisons in bins below this one are below `min_overlap`."""
        return round(self.min_overlap * QUALITY_BINS)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> QualityPolicy:
        """A policy stored before quality existed has none (off)."""
        return cls() if not data else cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})


@dataclass(frozen=True, slots=True)
class QualitySummary:
    """A stage's shadow comparisons so far (`Rollout.quality` on the wire), with the guard's numbers."""

    samples: int
    #: Comparisons with overlap@k below `min_overlap`.
    below: int
    k: int
    min_overlap: float
    max_below_share: float
    min_samples: int
    median_overlap: float | None
    mean_overlap: float | None
    mean_rbo: float | None
    #: The guard: its e-value now, the always-valid p-value, and whether it rejected (and may act).
    e_value: float
    p_value: float
    rejected: bool
    #: (id, times seen in one arm's top k only), most often first; from this replica's comparisons.
    differing_ids: tuple[tuple[str, int], ...]
    summary: str


def _median(bins: Mapping[int, int], total: int) -> float | None:
    if not total:
        return None
    rank = max(1, math.ceil(0.5 * total))
    seen = 0
    for index in sorted(bins):
        seen += bins[index]
        if seen >= rank:
            return bin_value(index)
    return None  # unreachable: the bins hold `total` counts


def _mean(bins: Mapping[int, int], total: int) -> float | None:
    return sum(bin_value(i) * n for i, n in bins.items()) / total if total else None


class QualityEvidence:
    """A stage's shadow comparisons (binned) and the guard on them. Event loop only."""

    def __init__(self, policy: QualityPolicy) -> None:
        self.policy = policy
        self.overlaps: dict[int, int] = {}
        self.rbos: dict[int, int] = {}
        self.guard = RateLimitTest(policy.alpha, policy.max_below_share)
        self.differing = DifferingIds()

    @property
    def samples(self) -> int:
        return sum(self.overlaps.values())

    @property
    def below(self) -> int:
        cut = self.policy.threshold_bin
        return sum(n for i, n in self.overlaps.items() if i < cut)

    def add(self, overlaps: Mapping[int, int], rbos: Mapping[int, int]) -> None:
        """Fold one second's binned comparisons (any replica's, summed)."""
        for index, count in overlaps.items():
            self.overlaps[index] = self.overlaps.get(index, 0) + count
        for index, count in rbos.items():
            self.rbos[index] = self.rbos.get(index, 0) + count
        if overlaps:
            self.guard.update(self.below, self.samples)

    @property
    def rejected(self) -> bool:
        """The guard rejected H0 and has its minimum of comparisons: the canary's results differ."""
        if self.samples < self.policy.min_samples:
            return False
        # guard.result().rejected without its confidence bounds: the e-value grows only when a comparison
        # below the threshold arrives, and `update` keeps its largest value then
        return self.guard.max_log_e >= math.log(1.0 / self.guard.alpha)

    def summary(self, arm: str = "canary", baseline: str = "primary") -> QualitySummary:
        """The numbers and the guard's reading; `arm` and `baseline` name the two sides in the sentence
        (a rollout's canary and primary; an experiment's variant and control)."""
        policy = self.policy
        samples, below = self.samples, self.below
        result = self.guard.result()
        median = _median(self.overlaps, samples)
        mean = _mean(self.overlaps, samples)
        mean_rbo = _mean(self.rbos, sum(self.rbos.values()))
        top = self.differing.top()
        rejected = self.rejected
        numbers = (f"overlap@{policy.k} median {_fmt(median)} mean {_fmt(mean)}, RBO(p={policy.rbo_p:g}) mean "
                   f"{_fmt(mean_rbo)} over {samples} shadow comparisons; {below} below {policy.min_overlap:g}")
        if samples:
            numbers += f" ({below / samples * 100:.0f}%, limit {policy.max_below_share * 100:g}%)"
        ids = ", ".join(f"{item} ({count}x)" for item, count in top[:5])
        if rejected:
            verdict = (f"e {_num(result.e_value)}, max ≥ {_num(1 / policy.alpha)}: the {arm}'s results differ "
                       f"from {baseline}'s" + (f"; ids differing most often: {ids}" if ids else ""))
        elif samples < policy.min_samples:
            verdict = f"waiting for {policy.min_samples} comparisons (no verdict on fewer)"
        else:
            verdict = f"p {_num(result.p_value)}: no evidence the results differ"
        return QualitySummary(
            samples=samples, below=below, k=policy.k, min_overlap=policy.min_overlap,
            max_below_share=policy.max_below_share, min_samples=policy.min_samples, median_overlap=median,
            mean_overlap=mean, mean_rbo=mean_rbo, e_value=result.e_value if samples else 0.0,
            p_value=result.p_value, rejected=rejected, differing_ids=top,
            summary=f"quality: {numbers}; {verdict}")

    def to_json(self) -> dict[str, Any]:
        return {"o": {str(k): v for k, v in self.overlaps.items()}, "r": {str(k): v for k, v in self.rbos.items()},
                "max": finite_or_none(self.guard.max_log_e), "ids": dict(self.differing.counts)}

    @classmethod
    def from_json(cls, policy: QualityPolicy, data: Mapping[str, Any]) -> QualityEvidence:
        evidence = cls(policy)
        evidence.add({int(k): int(v) for k, v in data.get("o", {}).items()},
                      {int(k): int(v) for k, v in data.get("r", {}).items()})
        best = data.get("max")
        if best is not None:
            evidence.guard.max_log_e = max(evidence.guard.max_log_e, float(best))
        evidence.differing.counts = {str(k): int(v) for k, v in data.get("ids", {}).items()}
        return evidence


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _num(value: float) -> str:
    if value >= 1e4 or (0 < value < 1e-3):
        return f"{value:.1e}"
    return f"{value:.3g}"


def _finite(value: float) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _whole(value: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
