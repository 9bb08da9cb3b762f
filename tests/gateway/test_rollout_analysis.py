"""Per-second counts, the stage's evidence, the sequential tests and the verdict, as pure functions.

The false-alarm rates and detection times are shown by simulation in test_rollout_simulation.py;
here each piece is pinned to behaviour a user relies on.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from searchgw.gateway.rollout import AnalysisPolicy, ArmSlice, CheckOutcome, Stage, StageEvidence, TestKind, TestOutcome, judge
from searchgw.gateway.rollout.analysis import LATENCY_GROWTH, RecentLatency, latency_bucket, latency_threshold
from searchgw.gateway.rollout.sequential import RateLimitTest, RateRatioTest, SampleRatioTest, rate_bounds

POLICY = AnalysisPolicy(min_requests_per_arm=20, latency_threshold_s=0.050)
STAGE = Stage(10.0)


def arm(ok: int = 0, errors: int = 0, latency_s: float = 0.010, code: str = "UNAVAILABLE", keys: int = 0) -> ArmSlice:
    counts = ArmSlice()
    for _ in range(ok):
        counts.record("OK", latency_s, False)
    for _ in range(errors):
        counts.record(code, latency_s, False)
    counts.new_keys = keys
    return counts


def test_slices_from_several_processes_sum_exactly():
    first, second = arm(ok=3, errors=1), arm(ok=2, errors=2, latency_s=0.020)
    total = ArmSlice()
    total.add(first)
    total.add(second)
    assert total.codes == {"OK": 5, "UNAVAILABLE": 3}
    assert sum(total.latencies.values()) == 5 and total.calls == 8
    assert ArmSlice.from_json(total.to_json()).codes == total.codes


@pytest.mark.parametrize("quantile", [0.5, 0.95, 0.99])
def test_latency_quantile_is_within_two_percent_of_the_exact_one(quantile):
    rng = random.Random(7)
    samples = [rng.lognormvariate(math.log(0.004), 0.8) for _ in range(5_000)]
    counts = ArmSlice()
    for latency in samples:
        counts.record("OK", latency, False)
    exact = sorted(samples)[math.ceil(quantile * len(samples)) - 1]
    assert abs(counts.quantile(quantile) / exact - 1) <= math.sqrt(LATENCY_GROWTH) - 1 + 1e-9


def test_failed_calls_rank_slower_than_any_success():
    counts = arm(ok=90, errors=10, latency_s=0.001)
    assert counts.quantile(0.5) == pytest.approx(0.001, rel=0.02)
    assert counts.quantile(0.95) == math.inf  # a fast-failing arm never looks fast
    assert counts.slow(latency_bucket(0.050)) == 10


def test_only_the_policys_codes_count_as_errors():
    counts = arm(ok=1)
    for code in ("NOT_FOUND", "INVALID_ARGUMENT", "UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED"):
        counts.record(code, 0.01, False)
    assert counts.events(POLICY.error_codes) == 2
    assert counts.events((*POLICY.error_codes, "CANCELLED")) == 3


def test_the_threshold_comes_from_primarys_recent_successes_once_there_are_enough():
    policy = AnalysisPolicy(min_requests_per_arm=20)
    recent = RecentLatency(60.0)
    recent.add(arm(ok=10, latency_s=0.010))
    assert latency_threshold(policy, recent.merged()) is None
    recent.add(arm(ok=10, errors=50, latency_s=0.010))  # failures do not set the threshold
    threshold = latency_threshold(policy, recent.merged())
    assert threshold is not None and threshold.seconds == pytest.approx(0.012, rel=0.03)


def test_the_recent_window_keeps_only_the_last_seconds_with_traffic():
    recent = RecentLatency(3.0)
    for latency in (0.001, 0.002, 0.003, 0.004):
        recent.add(arm(ok=1, latency_s=latency))
    recent.add(ArmSlice())  # a second without primary traffic (100 % weight) forgets nothing
    assert recent.merged().calls == 3


def test_no_data_is_inconclusive_and_names_the_missing_calls():
    verdict = judge(StageEvidence(POLICY, STAGE, 1_000))
    assert verdict.outcome is CheckOutcome.INCONCLUSIVE
    assert verdict.reasons[0].startswith("too few calls to pass: primary 0 and canary 0 this stage")


def test_a_clean_canary_passes_once_both_arms_have_their_minimum():
    evidence = StageEvidence(POLICY, STAGE, 1_000)
    evidence.add_second(arm(ok=19), arm(ok=19))
    assert judge(evidence).outcome is CheckOutcome.INCONCLUSIVE
    evidence.add_second(arm(ok=1), arm(ok=1))
    verdict = judge(evidence)
    assert verdict.outcome is CheckOutcome.PASSED
    assert [t.outcome for t in verdict.tests] == [TestOutcome.NOT_REJECTED] * 4


def test_rejections_need_no_minimum_sample():
    evidence = StageEvidence(POLICY, STAGE, 1_000)
    evidence.add_second(arm(ok=5), arm(errors=3))
    verdict = judge(evidence)
    assert verdict.outcome is CheckOutcome.FAILED
    assert {t.kind for t in verdict.tests if t.outcome is TestOutcome.REJECTED} == {TestKind.ERROR_LIMIT}


def test_at_full_weight_the_canary_is_compared_with_primarys_baseline():
    baseline = arm(ok=1_000, errors=5)  # 0.5 % errors before primary's share reached zero
    evidence = StageEvidence(POLICY, Stage(100.0), 10_000, baseline=baseline)
    for _ in range(10):
        evidence.add_second(None, arm(ok=96, errors=4))  # 4 %: under the 5 % limit, 8x the baseline
    verdict = judge(evidence)
    assert verdict.outcome is CheckOutcome.FAILED
    errors = next(t for t in verdict.tests if t.kind is TestKind.ERROR_BASELINE)
    assert errors.outcome is TestOutcome.REJECTED and errors.primary_calls == 1_005
    assert 0.005 < errors.null_value < 0.025  # the baseline's upper confidence bound (anytime-valid: wide)
    assert "vs primary's baseline 5/1005" in errors.summary


def test_at_full_weight_without_a_baseline_only_the_limit_applies_and_it_says_so():
    evidence = StageEvidence(POLICY, Stage(100.0), 10_000, baseline=arm(ok=3))
    evidence.add_second(None, arm(ok=100))
    verdict = judge(evidence)
    assert verdict.outcome is CheckOutcome.PASSED
    errors = next(t for t in verdict.tests if t.kind is TestKind.ERROR_BASELINE)
    assert errors.outcome is TestOutcome.NOT_APPLICABLE
    assert "no baseline to compare with at 100% (primary served 3 analysed calls before" in errors.summary


def test_a_split_that_does_not_match_the_weight_is_reported_not_failed():
    evidence = StageEvidence(POLICY, STAGE, 1_000)
    for _ in range(10):
        evidence.add_second(arm(ok=50, keys=50), arm(ok=50, keys=50))  # 50 % of new keys at a 10 % weight
    verdict = judge(evidence)
    assert verdict.outcome is CheckOutcome.SPLIT_MISMATCH
    split = next(t for t in verdict.tests if t.kind is TestKind.SAMPLE_RATIO)
    assert (split.canary_events, split.canary_calls, split.null_value) == (500, 1_000, 0.1)
    evidence.restart_split()
    assert judge(evidence).outcome is CheckOutcome.PASSED


def test_a_key_counts_once_per_stage():
    evidence = StageEvidence(POLICY, STAGE, 1_000)
    assert evidence.first_sight("user-1") and not evidence.first_sight("user-1")


def test_evidence_survives_a_round_trip_through_the_store():
    evidence = StageEvidence(POLICY, STAGE, 1_000)
    for _ in range(5):
        evidence.add_second(arm(ok=50, errors=1), arm(ok=5, errors=2))
    restored = StageEvidence.from_json(POLICY, STAGE, 1_000, evidence.to_json())
    before, after = judge(evidence), judge(restored)
    assert before.tests[:3] == after.tests[:3]  # the split test starts over after a restart


# -- the sequential tests -------------------------------------------------------------------------------


def test_the_ratio_test_is_exactly_zero_evidence_without_events():
    test = RateRatioTest(0.02)
    test.add(0, 100, 0, 100)
    result = test.result()
    assert result.e_value == pytest.approx(1.0) and not result.rejected and result.p_value == 1.0


def test_the_ratio_test_conditions_on_each_seconds_split():
    """Primary at 10x the canary's traffic with 10x its errors is no evidence against the canary."""
    test = RateRatioTest(0.02)
    for _ in range(200):
        test.add(1, 100, 10, 1_000)
    result = test.result()
    assert not result.rejected and result.estimate == pytest.approx(1.0)
    assert result.lower < 1.0 < result.upper


def test_the_limit_test_matches_a_direct_integration_of_its_mixture():
    test = RateLimitTest(0.01, 0.05)
    test.update(7, 40)
    log_odds = np.linspace(0.05, 10.0, 80)
    weights = np.exp(-0.5 * (log_odds / 3.0) ** 2)
    weights /= weights.sum()
    base = math.log(0.05 / 0.95)
    rates = 1 / (1 + np.exp(-(base + log_odds)))
    direct = float(np.sum(weights * (rates / 0.05) ** 7 * ((1 - rates) / 0.95) ** 33))
    assert test.result().e_value == pytest.approx(direct, rel=1e-9)


def test_the_split_test_matches_the_beta_binomial_bayes_factor():
    test = SampleRatioTest(0.001, 0.1)
    test.update(18, 100)
    a, b = 10.0, 90.0
    grid = np.linspace(1e-6, 1 - 1e-6, 200_001)
    prior = grid ** (a - 1) * (1 - grid) ** (b - 1)
    prior /= np.trapezoid(prior, grid)
    marginal = np.trapezoid(prior * grid ** 18 * (1 - grid) ** 82, grid)
    assert test.result().e_value == pytest.approx(marginal / (0.1 ** 18 * 0.9 ** 82), rel=1e-4)


def test_rate_bounds_cover_the_rate_and_tighten_with_data():
    low_n = rate_bounds(5, 100, 0.05)
    high_n = rate_bounds(50, 1_000, 0.05)
    assert low_n[0] < 0.05 < low_n[1] and high_n[0] < 0.05 < high_n[1]
    assert high_n[1] - high_n[0] < low_n[1] - low_n[0]
    assert rate_bounds(0, 0, 0.05) == (0.0, 1.0)
