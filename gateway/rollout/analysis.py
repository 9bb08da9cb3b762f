"""The evidence a stage gathers, second by second, and the verdict it supports.

Counts
    Every analysed call is counted in the slice of the second it ended in (`ArmSlice`): calls by
    gRPC code name, the latencies of successful calls in fixed log-spaced buckets, and the routing
    keys seen for the first time this stage. Slices only add, with fixed bucket edges, so slices from
    several gateway processes sum exactly (the reason Prometheus histograms have fixed `le` edges).

Evidence
    `StageEvidence` folds complete seconds into the stage's sequential tests (see `sequential`):
      errors     canary errors vs primary errors, conditioned on each second's split of calls;
      latency    calls slower than the stage's threshold, or failed, the same way. The threshold is
                 fixed once per stage, before any call it judges: primary's `latency_quantile` over
                 its last `window` seconds of traffic × `max_latency_ratio` + `latency_slack`, or the
                 policy's SLO. A failed call always counts as slow, so failing fast never looks fast;
      guard      the canary's error rate against the stage's absolute limit; it needs no comparison
                 and no minimum, so a canary failing every call is rolled back after a few calls;
      split      new routing keys per arm against the weight (sample-ratio mismatch);
      quality    with the policy's `quality` sampling: the share of shadow comparisons whose overlap@k
                 with primary is below the minimum, against its limit (`quality.QualityEvidence`); it
                 fails like the error guard, and a stage waits until it has its minimum of comparisons;
      baseline   at 100 % weight primary serves no analysed calls, so the canary's error and slow
                 rates are tested against the upper confidence bounds of primary's rates over the
                 earlier stages (each side at half the test's α, so the pair keeps it). The slow
                 share's limit is at least 1 − `latency_quantile`: the canary fails when its own
                 quantile is above the threshold beyond doubt. A baseline is not concurrent — load,
                 time of day and (on the embedded engine) per-collection batching change between
                 stages — so this comparison is deliberately more tolerant than the one beside
                 primary at lower weights.
    The evidence restarts with each stage; it is saved with every decision and survives restarts.

Verdict
    `judge(evidence)` is a pure function of the evidence: any rejected test that can roll back →
    FAILED; else a rejected split → SPLIT_MISMATCH (the controller pauses: the numbers cannot be
    trusted); else too few calls on a compared arm, or no latency threshold yet → INCONCLUSIVE (no
    data never fails, and never passes); else PASSED. The reasons name every test with its numbers.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from searchgw.gateway.rollout.model import (
    AnalysisPolicy,
    ArmStats,
    Stage,
    TestKind,
    TestOutcome,
    TestReport,
)
from searchgw.gateway.rollout.quality import QualityEvidence, quality_bin
from searchgw.gateway.rollout.sequential import (
    RateLimitTest,
    RateRatioTest,
    SampleRatioTest,
    TestResult,
    finite_or_none,
    rate_bounds,
)

#: The lower edge of latency bucket 1; bucket 0 holds everything faster.
LATENCY_FLOOR_S = 1e-5
#: The ratio between neighbouring latency bucket edges.
LATENCY_GROWTH = 1.04
#: The number of latency buckets (the last one is open-ended: ≥ ~5 000 s).
LATENCY_BUCKETS = 512
#: The most routing keys remembered per stage for the split test; later keys are not counted.
MAX_TRACKED_KEYS = 100_000

_INV_LOG_GROWTH = 1.0 / math.log(LATENCY_GROWTH)
_OK = "OK"


def latency_bucket(latency_s: float) -> int:
    """The histogram bucket of a latency (NaN and negatives land in bucket 0)."""
    if not latency_s >= LATENCY_FLOOR_S:
        return 0
    index = int(math.log(latency_s / LATENCY_FLOOR_S) * _INV_LOG_GROWTH) + 1
    return index if index < LATENCY_BUCKETS else LATENCY_BUCKETS - 1


def bucket_latency(index: int) -> float:
    """The latency a bucket reports: its geometric midpoint (the floor for bucket 0)."""
    if index == 0:
        return LATENCY_FLOOR_S
    return float(LATENCY_FLOOR_S * LATENCY_GROWTH ** (index - 0.5))


def bucket_upper_edge(index: int) -> float:
    """The upper edge of a bucket: every latency in it is below this."""
    return LATENCY_FLOOR_S * LATENCY_GROWTH ** index


class ArmSlice:
    """One arm's analysed calls in one second. Adding is O(1); slices sum exactly.

    The canary's slice also holds the shadow comparisons that ended in that second (overlap@k and RBO,
    binned; see `quality`): they are not calls, and count in no call's numbers."""

    __slots__ = ("codes", "latencies", "new_keys", "overlaps", "rbos")

    def __init__(self) -> None:
        #: Calls by gRPC code name.
        self.codes: dict[str, int] = {}
        #: Successful calls by latency bucket.
        self.latencies: dict[int, int] = {}
        #: Routing keys first seen this stage.
        self.new_keys = 0
        #: Shadow comparisons by overlap@k bin and by RBO bin (`quality.quality_bin`).
        self.overlaps: dict[int, int] = {}
        self.rbos: dict[int, int] = {}

    def record(self, code_name: str, latency_s: float, new_key: bool) -> None:
        codes = self.codes
        codes[code_name] = codes.get(code_name, 0) + 1
        if code_name == _OK:
            index = latency_bucket(latency_s)
            self.latencies[index] = self.latencies.get(index, 0) + 1
        if new_key:
            self.new_keys += 1

    def record_comparison(self, overlap: float, rbo: float) -> None:
        """Count one shadow comparison (not a call)."""
        index = quality_bin(overlap)
        self.overlaps[index] = self.overlaps.get(index, 0) + 1
        index = quality_bin(rbo)
        self.rbos[index] = self.rbos.get(index, 0) + 1

    def add(self, other: ArmSlice) -> None:
        """Add another slice's counts (the same second from another process)."""
        for code, count in other.codes.items():
            self.codes[code] = self.codes.get(code, 0) + count
        for index, count in other.latencies.items():
            self.latencies[index] = self.latencies.get(index, 0) + count
        self.new_keys += other.new_keys
        for index, count in other.overlaps.items():
            self.overlaps[index] = self.overlaps.get(index, 0) + count
        for index, count in other.rbos.items():
            self.rbos[index] = self.rbos.get(index, 0) + count

    @property
    def calls(self) -> int:
        return sum(self.codes.values())

    def events(self, codes: Collection[str]) -> int:
        """Calls that ended in one of `codes`."""
        return sum(count for code, count in self.codes.items() if code in codes)

    def slow(self, threshold_bucket: int) -> int:
        """Calls that failed, or succeeded in a bucket above `threshold_bucket`."""
        failed = sum(count for code, count in self.codes.items() if code != _OK)
        return failed + sum(count for index, count in self.latencies.items() if index > threshold_bucket)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"codes": dict(self.codes),
                                "latencies": {str(k): v for k, v in self.latencies.items()},
                                "new_keys": self.new_keys}
        if self.overlaps:
            data["overlaps"] = {str(k): v for k, v in self.overlaps.items()}
            data["rbos"] = {str(k): v for k, v in self.rbos.items()}
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ArmSlice:
        arm = cls()
        arm.codes = {str(k): int(v) for k, v in data["codes"].items()}
        arm.latencies = {int(k): int(v) for k, v in data["latencies"].items()}
        arm.new_keys = int(data.get("new_keys", 0))
        arm.overlaps = {int(k): int(v) for k, v in data.get("overlaps", {}).items()}
        arm.rbos = {int(k): int(v) for k, v in data.get("rbos", {}).items()}
        return arm

    def quantile(self, quantile: float) -> float | None:
        """Nearest-rank quantile, failed calls ranked slowest (∞); None without calls."""
        total = self.calls
        if not total:
            return None
        rank = max(1, math.ceil(quantile * total))
        seen = 0
        for index in sorted(self.latencies):
            seen += self.latencies[index]
            if seen >= rank:
                return bucket_latency(index)
        return math.inf

    def stats(self, error_codes: Collection[str], quantile: float) -> ArmStats:
        calls = self.calls
        errors = self.events(error_codes)
        return ArmStats(requests=calls, errors=errors, error_rate=errors / calls if calls else 0.0,
                        latency_s=self.quantile(quantile))


class RecentLatency:
    """Primary's successful-call latencies over its last `window_s` seconds that had traffic."""

    __slots__ = ("_seconds", "_max_seconds")

    def __init__(self, window_s: float) -> None:
        self._max_seconds = max(1, math.ceil(window_s))
        self._seconds: deque[ArmSlice] = deque()

    def add(self, arm: ArmSlice) -> None:
        if arm.calls:
            self._seconds.append(arm)
            if len(self._seconds) > self._max_seconds:
                self._seconds.popleft()

    def merged(self) -> ArmSlice:
        total = ArmSlice()
        for arm in self._seconds:
            total.add(arm)
        return total


@dataclass(frozen=True, slots=True)
class LatencyThreshold:
    """A stage's latency threshold, fixed before the calls it judges."""

    seconds: float
    #: How it was set, for people ("primary p95 8.1 ms x 1.2 over 60 s, 4 210 calls").
    source: str

    @property
    def bucket(self) -> int:
        """Calls in buckets above this one are slow (the threshold rounded up to a bucket edge)."""
        return latency_bucket(self.seconds)


class CheckOutcome(enum.Enum):
    PASSED = "passed"
    FAILED = "failed"
    INCONCLUSIVE = "inconclusive"
    #: The split of keys does not match the weight: the numbers cannot be trusted.
    SPLIT_MISMATCH = "split_mismatch"


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of one check, a sentence per test (with its numbers), and the numbers."""

    outcome: CheckOutcome
    reasons: tuple[str, ...]
    primary: ArmStats
    canary: ArmStats
    tests: tuple[TestReport, ...]

    @property
    def summary(self) -> str:
        return "; ".join(self.reasons)


class StageEvidence:
    """Everything one stage has seen, and its sequential tests. Not thread-safe (event loop only)."""

    def __init__(self, policy: AnalysisPolicy, stage: Stage, weight_bps: int, *,
                 baseline: ArmSlice | None = None) -> None:
        self.policy = policy
        self.stage = stage
        self.weight = weight_bps / 10_000
        self.primary = ArmSlice()
        self.canary = ArmSlice()
        self.errors = RateRatioTest(policy.error_alpha)
        self.latency = RateRatioTest(policy.latency_alpha)
        limit = policy.error_limit(stage)
        self.guard = RateLimitTest(policy.guard_alpha, limit) if limit < 1.0 else None
        self.split = SampleRatioTest(policy.sample_ratio_alpha, self.weight)
        self.threshold: LatencyThreshold | None = None
        #: Primary over the earlier stages (compared with at 100 % weight), and the tests against it.
        self.baseline = baseline
        self.error_baseline: RateLimitTest | None = None
        self.latency_baseline: RateLimitTest | None = None
        self._seen_keys: set[str] = set()
        #: Shadow comparisons with primary and the quality guard (None: the policy samples none).
        self.quality = QualityEvidence(policy.quality) if policy.quality.enabled else None
        if policy.latency_threshold_s:  # an SLO: fixed before any call
            slo = latency_threshold(policy, _EMPTY)
            assert slo is not None
            self.fix_threshold(slo)
        if self.compares_with_baseline and baseline is not None and baseline.calls >= policy.min_requests_per_arm:
            upper = rate_bounds(baseline.events(policy.error_codes), baseline.calls, policy.error_alpha / 2)[1]
            if upper < 1.0:
                self.error_baseline = RateLimitTest(policy.error_alpha / 2, upper)

    @property
    def compares_with_primary(self) -> bool:
        """Below 100 % weight primary serves analysed calls beside the canary."""
        return self.weight < 1.0

    @property
    def compares_with_baseline(self) -> bool:
        return not self.compares_with_primary

    # -- feeding -----------------------------------------------------------------------------------

    def first_sight(self, key: str) -> bool:
        """True the first time `key` is seen this stage (up to MAX_TRACKED_KEYS keys)."""
        seen = self._seen_keys
        if key in seen or len(seen) >= MAX_TRACKED_KEYS:
            return False
        seen.add(key)
        return True

    def carry_keys(self, other: StageEvidence) -> None:
        """Remember the keys `other` (the same stage, as this replica saw it before) has seen."""
        self._seen_keys = other._seen_keys

    def restart_split(self) -> None:
        """Start the split test over (after a person has looked into a mismatch)."""
        self.split = SampleRatioTest(self.policy.sample_ratio_alpha, self.weight)
        self._seen_keys = set()

    def fix_threshold(self, threshold: LatencyThreshold) -> None:
        """Fix the latency threshold; the latency tests count from the next second on."""
        if self.threshold is not None:
            return
        self.threshold = threshold
        baseline = self.baseline
        if (self.compares_with_baseline and baseline is not None
                and baseline.calls >= self.policy.min_requests_per_arm):
            alpha = self.policy.latency_alpha / 2
            upper = rate_bounds(baseline.slow(threshold.bucket), baseline.calls, alpha)[1]
            # Primary's share above the threshold was measured under another split of the load, so
            # the canary fails only when its share is also above 1 − quantile: its own quantile is
            # then above the threshold beyond doubt, whatever the load did to both.
            limit = max(upper, 1.0 - self.policy.latency_quantile)
            if limit < 1.0:
                self.latency_baseline = RateLimitTest(alpha, limit)

    def add_second(self, primary: ArmSlice | None, canary: ArmSlice | None) -> None:
        """Fold one complete second of both arms into the stage's counts and tests."""
        empty = _EMPTY
        primary = primary or empty
        canary = canary or empty
        self.primary.add(primary)
        self.canary.add(canary)
        codes = self.policy.error_codes
        canary_calls, primary_calls = canary.calls, primary.calls
        self.errors.add(canary.events(codes), canary_calls, primary.events(codes), primary_calls)
        if self.guard is not None:
            self.guard.update(self.canary.events(codes), self.canary.calls)
        if self.error_baseline is not None:
            self.error_baseline.update(self.canary.events(codes), self.canary.calls)
        if self.threshold is not None:
            bucket = self.threshold.bucket
            self.latency.add(canary.slow(bucket), canary_calls, primary.slow(bucket), primary_calls)
            if self.latency_baseline is not None:
                slow = self.latency_baseline.events + canary.slow(bucket)
                self.latency_baseline.update(slow, self.latency_baseline.calls + canary_calls)
        if canary.new_keys or primary.new_keys:
            self.split.update(self.split.canary_units + canary.new_keys,
                              self.split.units + canary.new_keys + primary.new_keys)
        if self.quality is not None and canary.overlaps:
            self.quality.add(canary.overlaps, canary.rbos)

    # -- persistence -------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "primary": self.primary.to_json(), "canary": self.canary.to_json(),
            "errors": self.errors.to_json(), "latency": self.latency.to_json(),
            "guard_max": finite_or_none(self.guard.max_log_e) if self.guard else None,
            "split": [self.split.canary_units, self.split.units, finite_or_none(self.split.max_log_e)],
            "threshold": [self.threshold.seconds, self.threshold.source] if self.threshold else None,
        }
        for name in ("error_baseline", "latency_baseline"):
            test: RateLimitTest | None = getattr(self, name)
            if test is not None:
                data[name] = [test.limit, test.events, test.calls, finite_or_none(test.max_log_e)]
        if self.quality is not None:
            data["quality"] = self.quality.to_json()
        return data

    @classmethod
    def from_json(cls, policy: AnalysisPolicy, stage: Stage, weight_bps: int, data: dict[str, Any], *,
                  baseline: ArmSlice | None = None) -> StageEvidence:
        """Continue a stage's evidence after a restart (the split test starts over: the keys seen
        before the restart are not remembered, and counting them again would bias it)."""
        evidence = cls(policy, stage, weight_bps, baseline=baseline)
        evidence.primary = ArmSlice.from_json(data["primary"])
        evidence.canary = ArmSlice.from_json(data["canary"])
        evidence.errors = RateRatioTest.from_json(policy.error_alpha, data["errors"])
        evidence.latency = RateRatioTest.from_json(policy.latency_alpha, data["latency"])
        if evidence.guard is not None:
            evidence.guard.update(evidence.canary.events(policy.error_codes), evidence.canary.calls)
            evidence.guard.max_log_e = max(evidence.guard.max_log_e, _log_or_inf(data.get("guard_max")))
        if data.get("threshold"):
            seconds, source = data["threshold"]
            evidence.threshold = LatencyThreshold(float(seconds), str(source))
        for name in ("error_baseline", "latency_baseline"):
            if data.get(name):
                limit, events, calls, best = data[name]
                test = RateLimitTest(policy.error_alpha / 2 if name == "error_baseline" else policy.latency_alpha / 2,
                                     float(limit))
                test.update(int(events), int(calls))
                test.max_log_e = max(test.max_log_e, _log_or_inf(best))
                setattr(evidence, name, test)
        if policy.quality.enabled and data.get("quality"):
            evidence.quality = QualityEvidence.from_json(policy.quality, data["quality"])
        return evidence


_EMPTY = ArmSlice()


def _log_or_inf(value: float | None) -> float:
    return -math.inf if value is None else float(value)


def latency_threshold(policy: AnalysisPolicy, recent_primary: ArmSlice) -> LatencyThreshold | None:
    """The threshold a stage fixes now: the policy's SLO, or from primary's recent successful calls
    (None while primary has fewer than `min_requests_per_arm` of them)."""
    if policy.latency_threshold_s:
        return LatencyThreshold(policy.latency_threshold_s, f"the policy's latency threshold "
                                                            f"{_ms(policy.latency_threshold_s)}")
    successes = recent_primary.codes.get(_OK, 0)
    if successes < policy.min_requests_per_arm:
        return None
    ok_only = ArmSlice()
    ok_only.codes = {_OK: successes}
    ok_only.latencies = recent_primary.latencies
    quantile = ok_only.quantile(policy.latency_quantile)
    assert quantile is not None and math.isfinite(quantile)
    seconds = quantile * policy.max_latency_ratio + policy.latency_slack_s
    label = f"p{policy.latency_quantile * 100:g}"
    slack = f" + {_ms(policy.latency_slack_s)}" if policy.latency_slack_s else ""
    return LatencyThreshold(seconds, f"primary {label} {_ms(quantile)} x {policy.max_latency_ratio:g}{slack} "
                                     f"over its last {successes} successful calls")


# -- the verdict --------------------------------------------------------------------------------------


def judge(evidence: StageEvidence) -> Verdict:
    """What the stage's evidence says now. Pure: reads the evidence, changes nothing."""
    policy = evidence.policy
    codes = policy.error_codes
    primary = evidence.primary.stats(codes, policy.latency_quantile)
    canary = evidence.canary.stats(codes, policy.latency_quantile)
    tests: list[TestReport] = []
    comparing = evidence.compares_with_primary

    # errors vs primary (or vs the baseline at 100 %)
    if comparing:
        tests.append(_ratio_report(TestKind.ERROR_RATIO, "errors", evidence.errors, None))
    else:
        tests.append(_baseline_report(TestKind.ERROR_BASELINE, "errors", evidence.error_baseline, evidence, None))
    # latency
    threshold = evidence.threshold
    if threshold is None:
        kind = TestKind.LATENCY_RATIO if comparing else TestKind.LATENCY_BASELINE
        tests.append(_waiting(kind, policy.latency_alpha,
                              f"latency: no threshold yet (primary needs {policy.min_requests_per_arm} successful "
                              f"calls in its last {policy.window_s:g} s of traffic to set its "
                              f"p{policy.latency_quantile * 100:g})"))
    elif comparing:
        tests.append(_ratio_report(TestKind.LATENCY_RATIO, "slow or failed calls", evidence.latency, threshold))
    else:
        tests.append(_baseline_report(TestKind.LATENCY_BASELINE, "slow or failed calls", evidence.latency_baseline,
                                      evidence, threshold))
    # the absolute guard
    if evidence.guard is None:
        tests.append(_test_report(TestKind.ERROR_LIMIT, TestOutcome.NOT_APPLICABLE, policy.guard_alpha, 0, 0, 0, 0,
                                math.nan, math.nan, math.nan, 1.0, 0.0, 1.0, 0.0, "error limit: none (100%)"))
    else:
        tests.append(_limit_report(evidence.guard))
    # the split
    tests.append(_split_report(evidence.split))
    # result quality (shadow comparisons)
    if evidence.quality is not None:
        tests.append(_quality_report(evidence.quality))

    rejected = [t for t in tests if t.outcome is TestOutcome.REJECTED]
    failures = [t for t in rejected if t.kind is not TestKind.SAMPLE_RATIO]
    summaries = tuple(t.summary for t in tests)
    if failures:
        return Verdict(CheckOutcome.FAILED, tuple(t.summary for t in failures), primary, canary, tuple(tests))
    if rejected:
        return Verdict(CheckOutcome.SPLIT_MISMATCH, tuple(t.summary for t in rejected), primary, canary,
                       tuple(tests))
    minimum = policy.min_requests_per_arm
    short = [f"{name} {stats.requests}" for name, stats in (("primary", primary), ("canary", canary))
             if stats.requests < minimum and (name == "canary" or comparing)]
    if short:
        reason = (f"too few calls to pass: {' and '.join(short)} this stage, fewer than the {minimum} needed on "
                  f"each compared arm (a clear failure would still have been acted on)")
        return Verdict(CheckOutcome.INCONCLUSIVE, (reason, *summaries), primary, canary, tuple(tests))
    waiting = [t for t in tests if t.outcome is TestOutcome.WAITING]
    if waiting:
        return Verdict(CheckOutcome.INCONCLUSIVE, tuple(t.summary for t in waiting) + summaries, primary, canary,
                       tuple(tests))
    return Verdict(CheckOutcome.PASSED, summaries, primary, canary, tuple(tests))


def _ratio_report(kind: TestKind, what: str, test: RateRatioTest, threshold: LatencyThreshold | None) -> TestReport:
    result = test.result()
    above = f" above {_ms(threshold.seconds)} ({threshold.source})" if threshold else ""
    counts = (f"canary {_share(test.canary_events, test.canary_calls)} vs primary "
              f"{_share(test.primary_events, test.primary_calls)}")
    if not test.canary_calls or not test.primary_calls:
        return _test_report(kind, TestOutcome.WAITING, test.alpha, test.canary_events, test.canary_calls,
                          test.primary_events, test.primary_calls, math.nan, math.nan, math.nan, 1.0,
                          result.e_value, result.p_value, threshold.seconds if threshold else 0.0,
                          f"{what}{above}: {counts}; waiting for calls on both arms")
    verdict = "canary worse" if result.rejected else "no evidence the canary is worse"
    summary = (f"{what}{above}: {counts}, ratio {_ratio(result.estimate)} "
               f"(CS {_ratio(result.lower)}–{_ratio(result.upper)}), max e {_num(1 / result.p_value)} "
               f"{'≥' if result.rejected else '<'} {_num(1 / test.alpha)}, p {_num(result.p_value)}: {verdict}")
    return _report(kind, test.alpha, result, test.canary_events, test.canary_calls, test.primary_events,
                   test.primary_calls, 1.0, threshold, summary)


def _limit_report(test: RateLimitTest) -> TestReport:
    result = test.result()
    verdict = "above the limit" if result.rejected else "not shown above the limit"
    summary = (f"error limit {_pct(test.limit)}: canary {_share(test.events, test.calls)} "
               f"(CS {_pct(result.lower)}–{_pct(result.upper)}), max e {_num(1 / result.p_value)} "
               f"{'≥' if result.rejected else '<'} {_num(1 / test.alpha)}: {verdict}")
    return _report(TestKind.ERROR_LIMIT, test.alpha, result, test.events, test.calls, 0, 0, test.limit, None,
                   summary)


def _baseline_report(kind: TestKind, what: str, test: RateLimitTest | None, evidence: StageEvidence,
                     threshold: LatencyThreshold | None) -> TestReport:
    policy = evidence.policy
    alpha = policy.error_alpha if kind is TestKind.ERROR_BASELINE else policy.latency_alpha
    baseline = evidence.baseline
    above = f" above {_ms(threshold.seconds)} ({threshold.source})" if threshold else ""
    if test is None:
        calls = baseline.calls if baseline is not None else 0
        return _test_report(kind, TestOutcome.NOT_APPLICABLE, alpha, 0, 0, 0, calls, math.nan, math.nan, math.nan,
                          math.nan, 0.0, 1.0, threshold.seconds if threshold else 0.0,
                          f"{what}{above}: no baseline to compare with at 100% (primary served {calls} analysed "
                          f"calls before, fewer than {policy.min_requests_per_arm}); only the error limit applies")
    assert baseline is not None
    base_events = (baseline.events(policy.error_codes) if kind is TestKind.ERROR_BASELINE
                   else baseline.slow(threshold.bucket if threshold else 0))
    result = test.result()
    verdict = "canary worse than the baseline" if result.rejected else "no evidence the canary is worse"
    summary = (f"{what}{above} at 100%: canary {_share(test.events, test.calls)} vs primary's baseline "
               f"{_share(base_events, baseline.calls)} (upper bound {_pct(test.limit)}), max e {_num(1 / result.p_value)} "
               f"{'≥' if result.rejected else '<'} {_num(1 / test.alpha)}: {verdict}")
    return _report(kind, alpha, result, test.events, test.calls, base_events, baseline.calls, test.limit,
                   threshold, summary)


def _split_report(test: SampleRatioTest) -> TestReport:
    if not test.applicable:
        return _test_report(TestKind.SAMPLE_RATIO, TestOutcome.NOT_APPLICABLE, test.alpha, test.canary_units,
                          test.units, test.units - test.canary_units, test.units, math.nan, math.nan, math.nan,
                          test.weight, 0.0, 1.0, 0.0, "split: one arm takes all keys at this weight")
    result = test.result()
    verdict = ("the split does not match the weight" if result.rejected else "consistent with the weight")
    summary = (f"split: {test.canary_units} of {test.units} new routing keys on the canary "
               f"({_pct(result.estimate) if test.units else '-'}, weight {_pct(test.weight)}), "
               f"e {_num(result.e_value)}: {verdict}")
    return _test_report(TestKind.SAMPLE_RATIO, TestOutcome.REJECTED if result.rejected else TestOutcome.NOT_REJECTED,
                      test.alpha, test.canary_units, test.units, test.units - test.canary_units, test.units,
                      result.estimate, result.lower, result.upper, test.weight, result.e_value, result.p_value,
                      0.0, summary)


def _quality_report(quality: QualityEvidence) -> TestReport:
    """The quality guard as a test: events are comparisons below the minimum overlap, calls are comparisons."""
    policy = quality.policy
    summary = quality.summary()
    result = quality.guard.result()
    if summary.samples < policy.min_samples:
        outcome = TestOutcome.WAITING
    else:
        outcome = TestOutcome.REJECTED if summary.rejected else TestOutcome.NOT_REJECTED
    return _test_report(TestKind.QUALITY_OVERLAP, outcome, policy.alpha, summary.below, summary.samples, 0, 0,
                        result.estimate, result.lower, result.upper, policy.max_below_share,
                        summary.e_value, summary.p_value, 0.0, summary.summary)


def _report(kind: TestKind, alpha: float, result: TestResult, canary_events: int, canary_calls: int,
            primary_events: int, primary_calls: int, null_value: float, threshold: LatencyThreshold | None,
            summary: str) -> TestReport:
    return _test_report(kind, TestOutcome.REJECTED if result.rejected else TestOutcome.NOT_REJECTED, alpha,
                      canary_events, canary_calls, primary_events, primary_calls, result.estimate, result.lower,
                      result.upper, null_value, result.e_value, result.p_value,
                      threshold.seconds if threshold else 0.0, summary)


def _waiting(kind: TestKind, alpha: float, summary: str) -> TestReport:
    return _test_report(kind, TestOutcome.WAITING, alpha, 0, 0, 0, 0, math.nan, math.nan, math.nan, 1.0, 0.0, 1.0,
                      0.0, summary)


def _test_report(kind: TestKind, outcome: TestOutcome, alpha: float, canary_events: int, canary_calls: int,
                 primary_events: int, primary_calls: int, estimate: float, lower: float, upper: float,
                 null_value: float, e_value: float, p_value: float, threshold_s: float, summary: str) -> TestReport:
    """A TestReport with NaN ("nothing to say") as None, so reports compare and serialise cleanly."""
    return TestReport(kind, outcome, alpha, canary_events, canary_calls, primary_events, primary_calls,
                      _known(estimate), _known(lower), _known(upper), _known(null_value), e_value, p_value,
                      threshold_s, summary)


def _known(value: float) -> float | None:
    return None if math.isnan(value) else value


def _share(events: int, calls: int) -> str:
    return f"{events}/{calls}" + (f" ({_pct(events / calls)})" if calls else "")


def _pct(rate: float) -> str:
    if math.isnan(rate):
        return "-"
    return f"{rate * 100:.2f}%" if rate < 0.1 else f"{rate * 100:.1f}%"


def _ratio(value: float) -> str:
    if math.isnan(value):
        return "-"
    if math.isinf(value):
        return "∞"
    return f"{value:.2f}x"


def _num(value: float) -> str:
    if value >= 1e4 or (0 < value < 1e-3):
        return f"{value:.1e}"
    return f"{value:.3g}"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"
