"""Evidence for the rollout decision: simulated stages through the real analysis, beside the old rule.

The traffic, the driver of the real `StageEvidence` + `judge`, and the old threshold rule live in
`bench/_rollout_sim.py` (shared with bench/bench_detection.py). Everything here runs on simulated
time with fixed seeds; the figures are printed (`pytest -s` shows them) and docs/analysis.md quotes
them.

  * the e-values against closed forms and numeric integration (fast);
  * 2,000 A/A stages under the default policy: false rollbacks ≤ α + 3 Monte-Carlo standard errors,
    the old rule on the same data far above that; split mismatches ≤ the split test's α;
  * detection times for the issue's three faults, new rule and old;
  * the real RolloutController (fake clock, SQLite store, `record()` per call, `tick()` per
    interval) on A/A and broken canaries, and on the same calls as the direct analysis.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

import numpy as np
import pytest

from bench._rollout_sim import (
    Scenario,
    Traffic,
    aa_stages,
    latency_buckets,
    old_rule,
    old_rule_on,
    quantiles,
    rate_with_error,
    run_new_rule,
)
from searchgw.gateway.rollout import controller as controller_module
from searchgw.gateway.rollout import PromotionPolicy, Rollout, RolloutController, RolloutState, SqliteRolloutStore
from searchgw.gateway.rollout.analysis import (
    ArmSlice,
    CheckOutcome,
    RecentLatency,
    StageEvidence,
    judge,
    latency_bucket,
    latency_threshold,
)
from searchgw.gateway.rollout.model import DEFAULT_STAGES, AnalysisPolicy
from searchgw.gateway.rollout.sequential import (
    _LIMIT_GRID,
    _LIMIT_WEIGHTS,
    _LOG_RATIO_GRID,
    _ONE_SIDED,
    RATIO_GRID,
    SAMPLE_RATIO_CONCENTRATION,
    RateLimitTest,
    RateRatioTest,
    SampleRatioTest,
)
from searchgw.gateway.routing import Arm, Router
from searchgw.testing import ManualClock

POLICY = AnalysisPolicy()
#: The α of the tests that roll back, per stage (errors + latency + guard).
ROLLBACK_ALPHA = POLICY.error_alpha + POLICY.latency_alpha + POLICY.guard_alpha


def log_choose(n: int, k: np.ndarray) -> np.ndarray:
    return np.array([math.lgamma(n + 1) - math.lgamma(x + 1) - math.lgamma(n - x + 1) for x in k])


def log_binomial_pmf(n: int, p: float) -> np.ndarray:
    k = np.arange(n + 1)
    return log_choose(n, k) + k * math.log(p) + (n - k) * math.log1p(-p)


def log_expectation(log_pmf: np.ndarray, log_values: np.ndarray) -> float:
    """log Σ exp(log_pmf + log_values), without overflow."""
    terms = log_pmf + log_values
    top = float(terms[np.isfinite(terms)].max())
    return top + math.log(float(np.exp(terms - top).sum()))


# -- the e-values against closed forms ----------------------------------------------------------------


def test_vectorised_latency_buckets_match_the_gateway():
    rng = np.random.default_rng(1)
    latencies = np.concatenate([np.exp(rng.uniform(math.log(1e-6), math.log(1e4), 20_000)),
                                [0.0, -1.0, 1e-5, 1e-5 * 1.04, 1e9, math.nan]])
    assert latency_buckets(latencies).tolist() == [latency_bucket(float(x)) for x in latencies]


@pytest.mark.parametrize(("weight", "canary", "units"), [(0.05, 3, 40), (0.05, 0, 200), (0.25, 40, 100),
                                                          (0.5, 71, 120), (0.05, 25, 300)])
def test_sample_ratio_e_value_is_the_beta_binomial_bayes_factor(weight, canary, units):
    """The closed form (lgamma) against a numeric integral of the Beta(c·w, c·(1−w)) mixture."""
    test = SampleRatioTest(0.001, weight)
    test.update(canary, units)
    a, b = SAMPLE_RATIO_CONCENTRATION * weight, SAMPLE_RATIO_CONCENTRATION * (1 - weight)
    # Integrate in the logit: p = 1/(1+e^−x), dp = p(1−p) dx; smooth, so the trapezoid rule converges fast.
    x = np.linspace(-30, 30, 300_001)
    p = 1 / (1 + np.exp(-x))
    log_prior = (a * np.log(p) + b * np.log1p(-p)) - (math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b))
    log_likelihood_ratio = (canary * (np.log(p) - math.log(weight))
                            + (units - canary) * (np.log1p(-p) - math.log1p(-weight)))
    integrand = np.exp(log_prior + log_likelihood_ratio - log_likelihood_ratio.max())
    numeric = math.log(np.trapezoid(integrand, x)) + float(log_likelihood_ratio.max())
    assert test.log_e() == pytest.approx(numeric, abs=1e-6)


@pytest.mark.parametrize("weight", [0.05, 0.25, 0.5])
@pytest.mark.parametrize("units", [1, 10, 200])
def test_sample_ratio_e_value_has_expectation_one_under_the_null(weight, units):
    log_values = []
    for canary in range(units + 1):
        test = SampleRatioTest(0.001, weight)
        test.update(canary, units)
        log_values.append(test.log_e())
    assert log_expectation(log_binomial_pmf(units, weight), np.array(log_values)) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize(("limit", "calls"), [(0.05, 1), (0.05, 40), (0.01, 300), (0.2, 60)])
def test_rate_limit_e_value_is_a_supermartingale_at_and_below_the_limit(limit, calls):
    """E[e_n] = 1 exactly at p = limit, and < 1 below it (computed over the binomial law)."""
    log_values = []
    for events in range(calls + 1):
        test = RateLimitTest(0.01, limit)
        test.update(events, calls)
        log_values.append(test.log_e())
    log_values = np.array(log_values)
    assert log_expectation(log_binomial_pmf(calls, limit), log_values) == pytest.approx(0.0, abs=1e-9)
    assert log_expectation(log_binomial_pmf(calls, limit * 0.5), log_values) < 0.0


def test_rate_limit_e_value_is_the_mixture_of_bernoulli_likelihood_ratios():
    """Against the product of per-call likelihood ratios, call by call, over the documented grid."""
    limit = 0.05
    test = RateLimitTest(0.01, limit)
    alternatives = 1 / (1 + (1 - limit) / limit * np.exp(-_LIMIT_GRID))
    product = np.ones_like(alternatives)
    rng = np.random.default_rng(3)
    events = 0
    for call in range(1, 201):
        failed = rng.random() < 0.08
        events += failed
        product *= alternatives / limit if failed else (1 - alternatives) / (1 - limit)
        test.update(events, call)
        assert test.log_e() == pytest.approx(math.log(float(_LIMIT_WEIGHTS @ product)), rel=1e-9, abs=1e-9)
    # The docstring's claim: a canary failing every call against 5 % is rejected at α = 0.01 after 3 calls.
    dead = RateLimitTest(0.01, 0.05)
    dead.update(2, 2)
    assert not dead.result().rejected
    dead.update(3, 3)
    assert dead.result().rejected


@pytest.mark.parametrize(("share", "events", "primary_calls", "canary_calls"),
                         [(0.05, 5, 95, 5), (0.25, 12, 30, 10), (0.5, 30, 40, 40)])
def test_rate_ratio_e_value_is_a_supermartingale_under_equal_rates(share, events, primary_calls, canary_calls):
    """One second: given e events among the calls, the canary's share of them is binomial(e, θ) under
    the working model and hypergeometric for per-call Bernoulli events; E[e-value] is 1 under the
    former and at most 1 under the latter (Hoeffding's convex order)."""
    del share
    calls = primary_calls + canary_calls
    theta = canary_calls / calls
    log_values = []
    for canary_events in range(events + 1):
        test = RateRatioTest(0.02)
        test.add(canary_events, canary_calls, events - canary_events, primary_calls)
        log_values.append(test.log_e())
    log_values = np.array(log_values)
    assert log_expectation(log_binomial_pmf(events, theta), log_values) == pytest.approx(0.0, abs=1e-9)
    k = np.arange(events + 1)
    valid = (k <= canary_calls) & (events - k <= primary_calls)
    log_hyper = np.full(events + 1, -np.inf)
    log_hyper[valid] = (log_choose(canary_calls, k[valid]) + log_choose(primary_calls, events - k[valid])
                        - log_choose(calls, np.array([events]))[0])
    assert log_expectation(log_hyper, log_values) <= 1e-12
    # And the e-value is the documented one-sided mixture of the conditional likelihood ratios.
    test = RateRatioTest(0.02)
    test.add(3, canary_calls, events - 3, primary_calls)
    direct = _ONE_SIDED @ (RATIO_GRID ** 3 / (RATIO_GRID * theta + 1 - theta) ** events)
    assert test.log_e() == pytest.approx(math.log(float(direct)), rel=1e-9)
    assert _LOG_RATIO_GRID[_ONE_SIDED > 0].min() > 0  # the null ρ ≤ 1 gets no weight


def _flat(seconds: int, per_arm: int, width: int = 60) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    calls = np.full((seconds, 2), per_arm, dtype=np.int64)
    hist = np.zeros((seconds, 2, width), dtype=np.int64)
    hist[:, :, 1] = per_arm
    return calls, np.zeros_like(calls), hist


def test_old_rule_counts_failed_checks_like_the_old_controller():
    """3 failed checks in a row, or 5 in all, roll back; passes reset the run; inconclusive ones do not."""
    calls, errors, hist = _flat(200, 20)
    errors[15, 1] = 20  # one second of canary failures sits in the windows of the checks at 20…70 s
    run = old_rule(calls, errors, hist, weight=0.05, bucket_offset=150)
    assert run.checks == ["passed", "failed", "failed", "failed"]  # 5 %, 3.3 %, 2.5 % > primary 0 % + 1 pp
    assert run.rolled_back_at == 40.0
    # Fewer than 50 calls on an arm in the window: inconclusive (4 calls/s: 40 calls at 10 s).
    calls, errors, hist = _flat(30, 4)
    assert old_rule(calls, errors, hist, weight=0.05).checks == ["inconclusive", "passed", "passed"]
    # p95 × 1.5 + 5 ms: the canary's calls 4 times slower (bucket 1 → ~36 buckets up) fail every check.
    calls, errors, hist = _flat(60, 20)
    hist[:, 1, 1], hist[:, 1, 59] = 0, 20
    run = old_rule(calls, errors, hist, weight=0.25, bucket_offset=150)
    assert run.checks == ["failed", "failed", "failed"] and run.rolled_back_at == 30.0
    # At 100 % weight only the absolute limit counts: slow calls and 3 % errors pass, 6 % fail.
    calls[:, 0] = 0
    errors[:, 1] = np.tile([1, 0, 0], 20)[:60]  # 20 of 1180 calls in a window: ~1.7-3 %
    assert old_rule(calls, errors, hist, weight=1.0).checks == ["passed"] * 6
    errors[:, 1] = np.tile([2, 1, 1, 1, 1], 12)  # ~6 %
    assert old_rule(calls, errors, hist, weight=1.0).rolled_back_at == 30.0


# -- A/A ------------------------------------------------------------------------------------------------


AA_STAGES = 2_000
AA_SEED = 20_240_901


@pytest.mark.slow
def test_aa_stages_false_rollbacks_new_rule_vs_old():
    """2,000 A/A stages (bench._rollout_sim.aa_scenario): both arms alike, so every rollback is false.

    Each stage is judged once, at its end (a rejection is final, so that verdict is FAILED exactly
    when some check's was); the first 40 are also judged at every check, and must agree.
    """
    started, wall = time.process_time(), time.perf_counter()
    results = aa_stages(AA_SEED, AA_STAGES, POLICY, workers=2, judge_every_check_below=40)
    assert [r.index for r in results] == list(range(AA_STAGES))
    for r in results[:40]:
        assert r.every_check_failed == r.new_failed
    new_failed = sum(r.new_failed for r in results)
    old_failed = sum(r.old_rolled_back for r in results)
    split = sum(r.split_rejected for r in results)
    by_test: dict[str, int] = {}
    by_weight: dict[float, list[int]] = {}
    for r in results:
        for kind in r.rejected:
            by_test[kind] = by_test.get(kind, 0) + 1
        tally = by_weight.setdefault(r.scenario.weight_percent, [0, 0, 0])
        tally[0] += 1
        tally[1] += r.new_failed
        tally[2] += r.old_rolled_back
    new_rate, new_se = rate_with_error(new_failed, AA_STAGES)
    old_rate, old_se = rate_with_error(old_failed, AA_STAGES)
    split_rate, split_se = rate_with_error(split, AA_STAGES)
    print(f"\nA/A, {AA_STAGES} stages of 300 s (5-500 calls/s, 0.1-5 % errors, weights 5/25/50/100 %):")
    print(f"  false rollbacks  new rule {new_failed} = {new_rate:.2%} ± {new_se:.2%} (α = {ROLLBACK_ALPHA:.2f})"
          f"   old rule {old_failed} = {old_rate:.2%} ± {old_se:.2%}")
    print(f"  rejected tests (new): {dict(sorted(by_test.items()))}")
    print(f"  split mismatches (new) {split} = {split_rate:.2%} ± {split_se:.2%} (α = {POLICY.sample_ratio_alpha})")
    for weight, (runs, new, old) in sorted(by_weight.items()):
        print(f"  weight {weight:>5g}%: {runs} stages, new {new / runs:.2%}, old {old / runs:.2%}")
    print(f"  (this process's CPU {time.process_time() - started:.1f} s; wall {time.perf_counter() - wall:.1f} s "
          f"over 2 worker processes)")
    sd = math.sqrt(ROLLBACK_ALPHA * (1 - ROLLBACK_ALPHA) / AA_STAGES)
    assert new_rate <= ROLLBACK_ALPHA + 3 * sd
    assert old_rate > new_rate + 3 * math.hypot(new_se, old_se)  # the comparison is real
    split_sd = math.sqrt(POLICY.sample_ratio_alpha * (1 - POLICY.sample_ratio_alpha) / AA_STAGES)
    assert split_rate <= POLICY.sample_ratio_alpha + 3 * split_sd


# -- detection ---------------------------------------------------------------------------------------

#: The issue's three faults at 5 % weight and 100 calls/s (primary 0.5 % errors, p50 8 ms), from the
#: stage's start; the target median detection time of each (seconds).
FAULTS = {
    "errors 0.5% -> 5%": (Scenario(rate=100.0, weight_percent=5.0, primary_error=0.005, canary_error=0.05), 60.0),
    "latency x1.5": (Scenario(rate=100.0, weight_percent=5.0, primary_error=0.005, canary_latency_factor=1.5), 60.0),
    "deadline missed": (Scenario(rate=100.0, weight_percent=5.0, primary_error=0.005, canary_deadline_s=0.1),
                        2 * POLICY.interval_s),
}
DETECTION_RUNS = 200


@pytest.mark.slow
@pytest.mark.parametrize("fault", list(FAULTS))
def test_detection_time_new_rule_vs_old(fault):
    scenario, target = FAULTS[fault]
    traffic = Traffic(seed=20_240_903 + list(FAULTS).index(fault))
    new_times: list[float | None] = []
    old_times: list[float | None] = []
    for _ in range(DETECTION_RUNS):
        counts = traffic.stage(scenario)
        new_times.append(run_new_rule(counts, POLICY).failed_at)
        old_times.append(old_rule_on(counts).rolled_back_at)
    new_median, new_p90 = quantiles(new_times)
    old_median, old_p90 = quantiles(old_times)
    missed_new = sum(t is None for t in new_times)
    missed_old = sum(t is None for t in old_times)
    print(f"\n{fault}: {DETECTION_RUNS} stages of 300 s at 5 % weight, 100 calls/s; detection (s) "
          f"new median {new_median:g} p90 {new_p90:g} (not within 300 s: {missed_new}) | "
          f"old median {old_median:g} p90 {old_p90:g} (not within 300 s: {missed_old}) | target median ≤ {target:g}")
    assert new_median <= target


# -- the real controller ---------------------------------------------------------------------------------


async def _no_sleep(_: float) -> None:
    return None


@dataclass
class ControllerRun:
    state: RolloutState
    #: Seconds from the stage's start (the fault's) to ROLLED_BACK, in the stage that rolled back.
    rolled_back_after: float | None
    stage: int
    #: The direct analysis (StageEvidence + judge on the same calls): its first FAILED check, stage 0 only.
    direct_failed_at: float | None
    last_reason: str = ""


async def run_through_controller(path: str, scenario: Scenario, seed: int, *, stages=DEFAULT_STAGES,
                                 direct: bool = False) -> ControllerRun:
    """One rollout through the real RolloutController: calls routed by the real Router by key, `record()`
    per call at its (fake) time, `tick()` every second. The canary behaves as `scenario` says in every
    stage. With `direct`, the same calls also feed a StageEvidence of stage 0, folded and judged as
    the controller does, to compare decisions."""
    clock = ManualClock()
    physical = {"docs-v1", "docs-v2"}
    aliases = {"docs": "docs-v1"}

    async def resolve(name: str) -> str:
        return aliases.get(name, name if name in physical else "")

    async def switch(logical: str, target: str) -> None:
        aliases[logical] = target

    router, store = Router(), SqliteRolloutStore(path)
    controller = RolloutController(store, router, switch_alias=switch, resolve_alias=resolve, clock=clock,
                                   wall_clock=clock.wall, sleep=_no_sleep)
    await controller.start(run_loop=False)
    rng = np.random.default_rng(seed)
    name = "sim"
    try:
        await controller.create(Rollout(name=name, collection="docs", canary_collection="docs-v2", stages=stages,
                                        analysis=POLICY, auto_promote=True,
                                        promotion=PromotionPolicy(bake_duration_s=0.0)))  # the stages' tests only
        evidence = StageEvidence(POLICY, stages[0], stages[0].weight_bps) if direct else None
        recent = RecentLatency(POLICY.window_s)
        seen: set[str] = set()
        direct_failed_at = None
        stage_started, stage = clock.now, 0
        key_serial = 0
        canary_error = scenario.canary_error_rate
        for second in range(sum(int(s.min_duration_s) for s in stages) + 900):
            count = int(rng.poisson(scenario.rate))
            times = (1_000.0 + second + np.sort(rng.random(count)) * 0.999).tolist()
            normals = np.exp(scenario.latency_sigma * rng.standard_normal(count)).tolist()
            uniforms = rng.random(count).tolist()
            if scenario.keys == "new":
                keys = [f"k{key_serial + i}" for i in range(count)]
                key_serial += count
            else:
                keys = [f"k{k}" for k in (rng.zipf(1.2, count) % scenario.key_population).tolist()]
            pair = [ArmSlice(), ArmSlice()]
            for at, key, normal, uniform in zip(times, keys, normals, uniforms, strict=True):
                decision = router.route("docs", key)
                if not decision.in_analysis:
                    continue
                canary = decision.arm is Arm.CANARY
                latency = scenario.latency_median_s * normal
                code = "OK"
                if canary and scenario.canary_deadline_s is not None:
                    code, latency = "DEADLINE_EXCEEDED", scenario.canary_deadline_s
                elif uniform < (canary_error if canary else scenario.primary_error):
                    code = "UNAVAILABLE"
                if canary:
                    latency *= scenario.canary_latency_factor
                clock.now = at
                controller.record(name, decision.arm, code, latency, key)
                if evidence is not None:
                    new_key = key not in seen
                    seen.add(key)
                    pair[1 if canary else 0].record(code, latency, new_key)
            clock.now = 1_000.0 + second + 1
            if evidence is not None and stage == 0:
                evidence.add_second(pair[0], pair[1])
                recent.add(pair[0])
                if evidence.threshold is None and (threshold := latency_threshold(POLICY, recent.merged())):
                    evidence.fix_threshold(threshold)
                if (second + 1) % POLICY.interval_s == 0 and direct_failed_at is None \
                        and judge(evidence).outcome is CheckOutcome.FAILED:
                    direct_failed_at = clock.now - stage_started
            await controller.tick()
            if (second + 1) % POLICY.interval_s:
                continue
            rollout = await controller.get(name)
            if rollout.current_stage != stage:
                stage, stage_started = rollout.current_stage, clock.now
            if not rollout.state.is_active:
                break
        rollout = await controller.get(name)
        rolled_back = rollout.state is RolloutState.ROLLED_BACK
        return ControllerRun(rollout.state, clock.now - stage_started if rolled_back else None, stage,
                             direct_failed_at, rollout.decisions[-1].reason if rollout.decisions else "")
    finally:
        await controller.stop()
        await store.close()


AA_ROLLOUTS = 12
BROKEN_ROLLOUTS = 8


@pytest.fixture
def fixed_salts(monkeypatch):
    """The controller draws each rollout's routing salt with `secrets.token_hex`; fix them (seeded)."""
    draw = np.random.default_rng(20_240_904)
    monkeypatch.setattr(controller_module.secrets, "token_hex", lambda n: draw.bytes(n).hex())


@pytest.mark.slow
@pytest.mark.usefixtures("fixed_salts")
async def test_controller_aa_rollouts_and_broken_canaries(tmp_path):
    """A/A rollouts through all four default stages (5 → 25 → 50 → 100 %, 300 s each) at 10 calls/s,
    and broken canaries at 100 calls/s, through the real controller: the same picture as the direct
    analysis, decision for decision."""
    scenario = Scenario(rate=10.0, primary_error=0.01, keys="zipf", key_population=5_000)
    aa = [await run_through_controller(str(tmp_path / f"aa{i}.sqlite3"), scenario, 7_000 + i)
          for i in range(AA_ROLLOUTS)]
    promoted = sum(r.state is RolloutState.PROMOTED for r in aa)
    rolled_back = [r for r in aa if r.state is RolloutState.ROLLED_BACK]
    print(f"\ncontroller A/A: {AA_ROLLOUTS} rollouts through 4 stages: {promoted} promoted, {len(rolled_back)} "
          f"rolled back (stages {[r.stage for r in rolled_back]}); the bound is 4 × 0.05 = 0.2 per rollout")
    for r in aa:
        if r.state not in (RolloutState.PROMOTED, RolloutState.ROLLED_BACK):
            print("  still active:", r.state.name, r.stage, r.last_reason)
    assert promoted + len(rolled_back) == AA_ROLLOUTS  # none stuck: every stage gathered its minimum
    # 0.2 per rollout is the bound (Bonferroni over 4 stages); the simulation above puts a stage near 1 %.
    assert len(rolled_back) <= AA_ROLLOUTS * 0.2 + 3 * math.sqrt(AA_ROLLOUTS * 0.2 * 0.8)

    for fault in ("errors 0.5% -> 5%", "deadline missed"):
        broken, _ = FAULTS[fault]
        runs = [await run_through_controller(str(tmp_path / f"{fault[:5]}{i}.sqlite3"), replace(broken, keys="new"),
                                             8_000 + i, direct=True)
                for i in range(BROKEN_ROLLOUTS)]
        times = [r.rolled_back_after for r in runs]
        print(f"controller, {fault}: rolled back after {times} s (median {quantiles(times)[0]:g} s); "
              f"the direct analysis of the same calls failed at {[r.direct_failed_at for r in runs]} s")
        for run in runs:
            assert run.state is RolloutState.ROLLED_BACK and run.stage == 0
            assert run.rolled_back_after == run.direct_failed_at
