"""Simulated canary stages for the rollout analysis: traffic, the real sequential analysis, and the old rule.

Used by tests/gateway/test_rollout_simulation.py (the false-rollback and detection evidence) and by
bench/bench_detection.py (the old rule applied to a live run's counts).

Traffic (`Scenario`, `simulate`)
    One stage, second by second. Each second's calls are Poisson(rate); each call has a routing key,
    either new per call or drawn from a Zipf population of keys, and goes to the canary when its key
    does (a key's arm is Bernoulli(weight) once per stage, as a salted hash makes it). Each call fails
    with its arm's error rate; latencies are lognormal, the canary's multiplied by a factor; a
    "deadline" canary fails every call with DEADLINE_EXCEEDED at the caller's deadline. The result is
    per-second, per-arm arrays: calls, errors, new keys, and latency histograms in the gateway's own
    buckets (`latency_bucket`, vectorised here and checked against it in the tests).

New rule (`run_new_rule`)
    The real `StageEvidence` fed one `ArmSlice` per arm per second, the latency threshold fixed the way
    the controller's `_Active.fold` fixes it (`latency_threshold` over primary's recent seconds), and
    the real `judge`. Once the threshold is fixed, a second's successful calls are given to the slice
    as two buckets — the threshold's bucket (everything at or below it) and the next (everything
    above) — which is all `StageEvidence` reads of them (`ArmSlice.slow`); the full histograms feed the
    threshold and the old rule.

Old rule (`old_rule`)
    The rule the sequential tests replaced (git 16af46f, gateway/rollout/analysis.py and controller.py),
    re-implemented on the same arrays: every 10 s, a sliding 60 s window (the current, just-begun second
    included, so 59 complete seconds); inconclusive with fewer than 50 calls on either arm; otherwise
    the check fails when the canary's error rate exceeds 5 %, or primary's + 1 pp, or the canary's p95
    (all calls, nearest rank, bucket midpoint) exceeds primary's × 1.5 + 5 ms; rolled back at 3 failed
    checks in a row or 5 in all (a passed check resets the run; an inconclusive one does not). At 100 %
    weight only the absolute limit is checked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from searchgw.gateway.rollout.analysis import (
    LATENCY_BUCKETS,
    LATENCY_FLOOR_S,
    LATENCY_GROWTH,
    ArmSlice,
    CheckOutcome,
    RecentLatency,
    StageEvidence,
    Verdict,
    judge,
    latency_threshold,
)
from searchgw.gateway.rollout.model import AnalysisPolicy, Stage, TestKind, TestOutcome

B = LATENCY_BUCKETS
PRIMARY, CANARY = 0, 1
_INV_LOG_GROWTH = 1.0 / math.log(LATENCY_GROWTH)


def latency_buckets(latencies: np.ndarray) -> np.ndarray:
    """`latency_bucket` for an array of latencies."""
    with np.errstate(divide="ignore", invalid="ignore"):
        index = np.floor(np.log(latencies / LATENCY_FLOOR_S) * _INV_LOG_GROWTH).astype(np.int64) + 1
    index = np.where(latencies >= LATENCY_FLOOR_S, index, 0)
    return np.minimum(index, B - 1)


def bucket_midpoints(index: np.ndarray) -> np.ndarray:
    """`bucket_latency` for an array of bucket indices."""
    return np.where(index == 0, LATENCY_FLOOR_S, LATENCY_FLOOR_S * LATENCY_GROWTH ** (index - 0.5))


@dataclass(frozen=True)
class Scenario:
    """One stage's traffic. Rates are per second over both arms; error rates are per call."""

    rate: float
    weight_percent: float = 5.0
    primary_error: float = 0.005
    canary_error: float | None = None  # None: the same as primary's
    latency_median_s: float = 0.008
    latency_sigma: float = 0.5
    canary_latency_factor: float = 1.0
    #: When set, every canary call fails with DEADLINE_EXCEEDED after this many seconds.
    canary_deadline_s: float | None = None
    #: "new": every call has a key never seen before; "zipf": keys from a Zipf population.
    keys: str = "new"
    key_population: int = 20_000
    zipf_exponent: float = 1.1
    seconds: int = 300
    #: The second the canary's fault (error rate, latency factor, deadline) begins; before it the
    #: canary behaves like primary.
    fault_at_s: int = 0

    @property
    def weight(self) -> float:
        return self.weight_percent / 100.0

    @property
    def canary_error_rate(self) -> float:
        return self.primary_error if self.canary_error is None else self.canary_error

    @property
    def canary_code(self) -> str:
        return "DEADLINE_EXCEEDED" if self.canary_deadline_s is not None else "UNAVAILABLE"


@dataclass
class StageCounts:
    """Per-second, per-arm counts of one simulated stage ([second, arm] arrays, arm 0 = primary)."""

    scenario: Scenario
    calls: np.ndarray
    errors: np.ndarray
    new_keys: np.ndarray
    #: Successful calls by latency bucket: [second, arm, bucket].
    ok_hist: np.ndarray
    #: Every call by latency bucket (the old rule ranks all calls): [second, arm, bucket].
    all_hist: np.ndarray
    #: The histograms hold buckets `bucket_offset` … `bucket_offset` + width − 1 (the stage's range).
    bucket_offset: int = 0
    #: Primary's analysed calls over the earlier stages (the baseline at 100 % weight).
    baseline: ArmSlice | None = None
    #: Primary's last 60 s of traffic before the stage (the threshold at 100 % weight).
    recent_primary: ArmSlice | None = None
    error_codes: tuple[str, str] = ("UNAVAILABLE", "UNAVAILABLE")


class Traffic:
    """Draws stages. One generator per Traffic; every draw advances it (fixed seed → fixed stages)."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def _keys(self, scenario: Scenario, count: int) -> tuple[np.ndarray, np.ndarray]:
        """(arm per call, first sight per call) for `count` calls in time order."""
        rng = self.rng
        if scenario.keys == "new":
            return rng.random(count) < scenario.weight, np.ones(count, dtype=bool)
        population, exponent = scenario.key_population, scenario.zipf_exponent
        # Inverse CDF of the continuous power law on [1, population + 1), floored: a Zipf population
        # (key k drawn ∝ k^−s, up to the discretisation) without a search per call.
        u = rng.random(count)
        if abs(exponent - 1.0) < 1e-9:
            x = np.exp(u * math.log(population + 1))
        else:
            top = (population + 1) ** (1 - exponent)
            x = (1 + u * (top - 1)) ** (1 / (1 - exponent))
        key = np.minimum(x.astype(np.int64) - 1, population - 1)
        arm_of_key = rng.random(population) < scenario.weight
        first = np.zeros(count, dtype=bool)
        first[np.unique(key, return_index=True)[1]] = True
        return arm_of_key[key], first

    def _latencies(self, scenario: Scenario, count: int) -> np.ndarray:
        return scenario.latency_median_s * np.exp(scenario.latency_sigma * self.rng.standard_normal(count))

    def primary_slice(self, scenario: Scenario, calls_per_s: float, seconds: float) -> ArmSlice:
        """Primary's traffic over `seconds` at `calls_per_s`, merged into one slice (full histogram)."""
        count = int(self.rng.poisson(calls_per_s * seconds))
        errors = int(self.rng.binomial(count, scenario.primary_error))
        buckets = latency_buckets(self._latencies(scenario, count - errors))
        arm = ArmSlice()
        arm.codes = {code: n for code, n in (("OK", count - errors), ("UNAVAILABLE", errors)) if n}
        values, counts = np.unique(buckets, return_counts=True)
        arm.latencies = {int(v): int(c) for v, c in zip(values, counts, strict=True)}
        return arm

    def stage(self, scenario: Scenario) -> StageCounts:
        rng = self.rng
        seconds = scenario.seconds
        per_second = rng.poisson(scenario.rate, seconds)
        count = int(per_second.sum())
        second = np.repeat(np.arange(seconds), per_second)
        canary, first = self._keys(scenario, count)
        faulty = canary & (second >= scenario.fault_at_s)
        error_rate = np.where(faulty, scenario.canary_error_rate, scenario.primary_error)
        failed = rng.random(count) < error_rate
        latency = self._latencies(scenario, count)
        latency = np.where(faulty, latency * scenario.canary_latency_factor, latency)
        if scenario.canary_deadline_s is not None:
            failed = failed | faulty
            latency = np.where(faulty, scenario.canary_deadline_s, latency)
        cell = second * 2 + canary
        size = seconds * 2
        calls = np.bincount(cell, minlength=size).reshape(seconds, 2)
        errors = np.bincount(cell[failed], minlength=size).reshape(seconds, 2)
        new_keys = np.bincount(cell[first], minlength=size).reshape(seconds, 2)
        buckets = latency_buckets(latency)
        offset = int(buckets.min()) if count else 0
        width = int(buckets.max()) - offset + 1 if count else 1
        flat = cell * width + (buckets - offset)
        all_hist = np.bincount(flat, minlength=size * width).reshape(seconds, 2, width)
        ok_hist = all_hist - np.bincount(flat[failed], minlength=size * width).reshape(seconds, 2, width)
        counts = StageCounts(scenario, calls, errors, new_keys, ok_hist, all_hist, offset,
                             error_codes=("UNAVAILABLE", scenario.canary_code))
        if scenario.weight >= 1.0:
            # Primary's calls of the earlier default stages (95 %, 75 %, 50 % of 300 s each) and its
            # last 60 s at 50 %, as the controller carries them into the 100 % stage.
            counts.baseline = self.primary_slice(scenario, scenario.rate, (0.95 + 0.75 + 0.5) * 300.0)
            counts.recent_primary = self.primary_slice(scenario, scenario.rate * 0.5, 60.0)
        return counts


# -- the new rule: the real analysis ----------------------------------------------------------------


def _full_slice(counts: StageCounts, second: int, arm: int) -> ArmSlice:
    """One arm's second with its full latency histogram."""
    result = ArmSlice()
    calls, errors = int(counts.calls[second, arm]), int(counts.errors[second, arm])
    if calls - errors:
        result.codes["OK"] = calls - errors
    if errors:
        result.codes[counts.error_codes[arm]] = errors
    hist = counts.ok_hist[second, arm]
    for index in np.flatnonzero(hist):
        result.latencies[int(index) + counts.bucket_offset] = int(hist[index])
    result.new_keys = int(counts.new_keys[second, arm])
    return result


@dataclass
class NewRuleRun:
    """What the sequential analysis decided on one simulated stage."""

    #: The first check (seconds into the stage) whose verdict was FAILED; None if none was.
    failed_at: float | None
    #: The first check whose SAMPLE_RATIO test was rejected; None if none was.
    split_rejected_at: float | None
    #: The last verdict judged.
    verdict: Verdict
    #: The kinds of the rejected tests in the first FAILED verdict (or the last verdict).
    rejected: tuple[TestKind, ...] = field(default=())
    evidence: StageEvidence | None = None


def run_new_rule(counts: StageCounts, policy: AnalysisPolicy, *, judge_every_check: bool = True,
                 stop_at_failure: bool = True) -> NewRuleRun:
    """Fold the stage second by second into `StageEvidence` and judge it every `policy.interval_s`.

    With `judge_every_check` False the stage is judged once, at its end: a rejection is final (each
    test's rejection reads the largest e-value seen so far), so the end's verdict is FAILED exactly
    when some check's would have been; only the time of the first failure is then unknown.
    """
    scenario = counts.scenario
    stage = Stage(scenario.weight_percent, min_duration_s=300.0, min_requests=100)
    evidence = StageEvidence(policy, stage, round(scenario.weight_percent * 100), baseline=counts.baseline)
    recent = RecentLatency(policy.window_s)
    if counts.recent_primary is not None:
        recent.add(counts.recent_primary)
        threshold = latency_threshold(policy, recent.merged())
        if threshold is not None:
            evidence.fix_threshold(threshold)
    interval = int(policy.interval_s)
    calls, errors, ok_hist, new_keys = counts.calls, counts.errors, counts.ok_hist, counts.new_keys
    codes = counts.error_codes
    failed_at = split_at = None
    verdict: Verdict | None = None
    # Slow successful calls per second and arm, above the threshold's bucket (set once it is fixed).
    slow_ok: np.ndarray | None = None
    lists: list[list[tuple[int, int, int]]] = []
    new: list[list[int]] = []
    bucket = -1
    for second in range(scenario.seconds):
        if evidence.threshold is None:
            primary, canary = _full_slice(counts, second, PRIMARY), _full_slice(counts, second, CANARY)
        else:
            if slow_ok is None:
                bucket = evidence.threshold.bucket
                slow_ok = ok_hist[:, :, max(0, bucket + 1 - counts.bucket_offset):].sum(axis=2)
                lists = [list(zip(calls[:, arm].tolist(), errors[:, arm].tolist(), slow_ok[:, arm].tolist(),
                                  strict=True)) for arm in (PRIMARY, CANARY)]
                new = [new_keys[:, arm].tolist() for arm in (PRIMARY, CANARY)]
            primary, canary = ArmSlice(), ArmSlice()
            for arm, target in ((PRIMARY, primary), (CANARY, canary)):
                n, e, slow = lists[arm][second]
                if n - e:
                    target.codes["OK"] = n - e
                    if n - e - slow:
                        target.latencies[bucket] = n - e - slow
                    if slow:
                        target.latencies[bucket + 1] = slow
                if e:
                    target.codes[codes[arm]] = e
                target.new_keys = new[arm][second]
        evidence.add_second(primary, canary)
        if evidence.threshold is None:
            recent.add(primary)
            threshold = latency_threshold(policy, recent.merged())
            if threshold is not None:
                evidence.fix_threshold(threshold)
        end = second + 1
        if (judge_every_check and end % interval == 0) or end == scenario.seconds:
            verdict = judge(evidence)
            if split_at is None and any(t.kind is TestKind.SAMPLE_RATIO and t.outcome is TestOutcome.REJECTED
                                        for t in verdict.tests):
                split_at = float(end)
            if verdict.outcome is CheckOutcome.FAILED:
                failed_at = float(end) if judge_every_check else None
                if stop_at_failure:
                    break
    assert verdict is not None
    rejected = tuple(t.kind for t in verdict.tests if t.outcome is TestOutcome.REJECTED)
    if verdict.outcome is CheckOutcome.FAILED and failed_at is None:
        failed_at = math.nan  # failed, time not located (judged at the end only)
    return NewRuleRun(failed_at, split_at, verdict, rejected, evidence)


# -- the old rule ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OldPolicy:
    interval_s: int = 10
    window_s: int = 60
    max_error_rate: float = 0.05
    max_error_rate_delta: float = 0.01
    max_latency_ratio: float = 1.5
    latency_slack_s: float = 0.005
    min_requests_per_arm: int = 50
    max_consecutive_failures: int = 3
    max_total_failures: int = 5
    latency_quantile: float = 0.95


OLD_POLICY = OldPolicy()


@dataclass
class OldRuleRun:
    #: Seconds into the stage of the check that rolled back; None if none did.
    rolled_back_at: float | None
    failed_checks: int
    #: Per check: "passed", "failed" or "inconclusive".
    checks: list[str]


def _p_quantile(hist: np.ndarray, total: np.ndarray, quantile: float, offset: int = 0) -> np.ndarray:
    """Nearest-rank quantile of each row of `hist` (bucket midpoints); NaN for empty rows."""
    rank = np.maximum(1, np.ceil(quantile * total))
    cumulative = np.cumsum(hist, axis=-1)
    index = np.argmax(cumulative >= rank[..., None], axis=-1) + offset
    return np.where(total > 0, bucket_midpoints(index), np.nan)


def old_rule(calls: np.ndarray, errors: np.ndarray, all_hist: np.ndarray, *, weight: float,
             policy: OldPolicy = OLD_POLICY, seconds: int | None = None, bucket_offset: int = 0) -> OldRuleRun:
    """The threshold rule on per-second arrays ([second, arm], [second, arm, bucket − bucket_offset])."""
    seconds = calls.shape[0] if seconds is None else seconds
    checks_at = np.arange(policy.interval_s, seconds + 1, policy.interval_s)
    zero = np.zeros((1, 2))
    c_calls = np.concatenate([zero, np.cumsum(calls, axis=0)])
    c_errors = np.concatenate([zero, np.cumsum(errors, axis=0)])
    c_hist = np.concatenate([np.zeros((1, 2, all_hist.shape[2])), np.cumsum(all_hist, axis=0)])
    start = np.maximum(0, checks_at - (policy.window_s - 1))  # [t − 59, t): the current second is empty
    n = c_calls[checks_at] - c_calls[start]
    e = c_errors[checks_at] - c_errors[start]
    hist = c_hist[checks_at] - c_hist[start]
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(n > 0, e / np.maximum(n, 1), 0.0)
    p95 = _p_quantile(hist, n, policy.latency_quantile, bucket_offset)
    comparing = weight < 1.0
    short = (n[:, 1] < policy.min_requests_per_arm) | (comparing & (n[:, 0] < policy.min_requests_per_arm))
    fail = rate[:, 1] > policy.max_error_rate
    if comparing:
        fail |= rate[:, 1] > rate[:, 0] + policy.max_error_rate_delta
        fail |= p95[:, 1] > p95[:, 0] * policy.max_latency_ratio + policy.latency_slack_s
    outcomes: list[str] = []
    in_a_row = in_all = 0
    for index, t in enumerate(checks_at):
        if short[index]:
            outcomes.append("inconclusive")
            continue
        if fail[index]:
            outcomes.append("failed")
            in_a_row += 1
            in_all += 1
            if in_a_row >= policy.max_consecutive_failures or in_all >= policy.max_total_failures:
                return OldRuleRun(float(t), in_all, outcomes)
        else:
            outcomes.append("passed")
            in_a_row = 0
    return OldRuleRun(None, in_all, outcomes)


def old_rule_on(counts: StageCounts, policy: OldPolicy = OLD_POLICY) -> OldRuleRun:
    return old_rule(counts.calls, counts.errors, counts.all_hist, weight=counts.scenario.weight, policy=policy,
                    bucket_offset=counts.bucket_offset)


# -- summaries --------------------------------------------------------------------------------------------


def rate_with_error(hits: int, runs: int) -> tuple[float, float]:
    """(rate, its Monte-Carlo standard error)."""
    rate = hits / runs
    return rate, math.sqrt(max(rate * (1 - rate), 1e-12) / runs)


def quantiles(times: list[float | None], qs: tuple[float, ...] = (0.5, 0.9)) -> list[float]:
    """Quantiles of detection times, undetected runs counted as ∞ (so a quantile can be ∞)."""
    values = np.sort(np.array([math.inf if t is None else t for t in times], dtype=float))
    out = []
    for q in qs:
        index = max(0, math.ceil(q * len(values)) - 1)  # nearest rank
        out.append(float(values[index]))
    return out


def with_fault(scenario: Scenario, **changes) -> Scenario:
    return replace(scenario, **changes)


# -- A/A stages, in parallel ----------------------------------------------------------------------------


def aa_scenario(rng: np.random.Generator) -> Scenario:
    """An A/A stage: rate log-uniform 5-500 calls/s, errors log-uniform 0.1-5 % on both arms, weight
    5 % (0.4) or 25, 50, 100 % (0.2 each), lognormal latencies, keys new per call or Zipf (half each)."""
    keyed = rng.random() < 0.5
    return Scenario(
        rate=float(math.exp(rng.uniform(math.log(5), math.log(500)))),
        weight_percent=float(rng.choice([5.0, 25.0, 50.0, 100.0], p=[0.4, 0.2, 0.2, 0.2])),
        primary_error=float(math.exp(rng.uniform(math.log(0.001), math.log(0.05)))),
        latency_median_s=float(math.exp(rng.uniform(math.log(0.002), math.log(0.02)))),
        latency_sigma=float(rng.uniform(0.3, 0.8)),
        keys="zipf" if keyed else "new",
        key_population=int(math.exp(rng.uniform(math.log(1_000), math.log(100_000)))),
        zipf_exponent=float(rng.uniform(0.9, 1.3)),
    )


@dataclass(frozen=True)
class AAResult:
    index: int
    scenario: Scenario
    new_failed: bool
    rejected: tuple[str, ...]
    split_rejected: bool
    old_rolled_back: bool
    #: For the stages judged at every check too: whether that found a failure (None otherwise).
    every_check_failed: bool | None


def aa_stage(seed: int, index: int, policy: AnalysisPolicy, judge_every_check: bool = False) -> AAResult:
    """Stage `index` of the A/A set `seed` (each stage has its own generator: any split into workers
    gives the same stages)."""
    scenario = aa_scenario(np.random.default_rng([seed, index, 0]))
    counts = Traffic([seed, index, 1]).stage(scenario)  # type: ignore[arg-type]
    run = run_new_rule(counts, policy, judge_every_check=False)
    every = None
    if judge_every_check:
        every = run_new_rule(counts, policy, judge_every_check=True).failed_at is not None
    return AAResult(index, scenario, run.verdict.outcome is CheckOutcome.FAILED, tuple(k.name for k in run.rejected),
                    run.split_rejected_at is not None, old_rule_on(counts).rolled_back_at is not None, every)


def _aa_chunk(args: tuple[int, list[int], AnalysisPolicy, int]) -> list[AAResult]:
    seed, indices, policy, every_below = args
    return [aa_stage(seed, i, policy, i < every_below) for i in indices]


def aa_stages(seed: int, count: int, policy: AnalysisPolicy, *, workers: int = 2,
              judge_every_check_below: int = 0) -> list[AAResult]:
    """`count` A/A stages, over `workers` forked processes (1: in this process)."""
    if workers <= 1:
        return _aa_chunk((seed, list(range(count)), policy, judge_every_check_below))
    import multiprocessing  # noqa: PLC0415

    chunks = [(seed, list(range(w, count, workers)), policy, judge_every_check_below) for w in range(workers)]
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        parts = pool.map(_aa_chunk, chunks)
    return sorted((r for part in parts for r in part), key=lambda r: r.index)
