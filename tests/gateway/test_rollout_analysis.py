"""Analysis windows (bounded, sliding, same span for both arms) and the canary-versus-primary check."""

from __future__ import annotations

import math
import random

import pytest

from gateway.rollout import AnalysisPolicy, ArmStats, ArmWindow, CheckOutcome, check
from gateway.rollout.analysis import LATENCY_GROWTH

POLICY = AnalysisPolicy()
ERRORS = POLICY.error_codes


def stats(requests: int, errors: int = 0, latency_s: float | None = 0.010) -> ArmStats:
    return ArmStats(requests=requests, errors=errors, error_rate=errors / requests if requests else 0.0,
                    latency_s=latency_s if requests else None)


@pytest.mark.parametrize("quantile", [0.5, 0.95, 0.99])
def test_latency_quantile_is_within_two_percent_of_the_exact_one(quantile):
    rng = random.Random(7)
    samples = [rng.lognormvariate(math.log(0.004), 0.8) for _ in range(5_000)]
    window = ArmWindow(60.0)
    for index, latency in enumerate(samples):
        window.record(100.0 + index / 100, "OK", latency)
    exact = sorted(samples)[math.ceil(quantile * len(samples)) - 1]
    measured = window.snapshot(149.0, ERRORS, quantile).latency_s
    assert abs(measured / exact - 1) <= math.sqrt(LATENCY_GROWTH) - 1 + 1e-9


def test_the_window_forgets_requests_older_than_the_window():
    window = ArmWindow(60.0)
    for _ in range(10):
        window.record(100.5, "OK", 0.01)
    assert window.snapshot(159.9, ERRORS, 0.95).requests == 10
    assert window.snapshot(160.5, ERRORS, 0.95) == ArmStats(0, 0, 0.0, None)


def test_slices_are_reused_so_only_the_last_window_counts():
    window = ArmWindow(60.0)
    for second in range(1_000):
        window.record(float(second), "OK", 0.01)
        window.record(float(second), "UNAVAILABLE", 0.01)
    snapshot = window.snapshot(999.5, ERRORS, 0.95)
    assert (snapshot.requests, snapshot.errors, snapshot.error_rate) == (120, 60, 0.5)


def test_long_windows_use_wider_slices():
    window = ArmWindow(600.0)
    assert window.slice_s == 5.0
    window.record(0.0, "OK", 0.01)
    assert window.snapshot(599.0, ERRORS, 0.95).requests == 1


def test_only_the_policys_codes_count_as_errors():
    window = ArmWindow(60.0)
    for code in ("OK", "NOT_FOUND", "INVALID_ARGUMENT", "UNAVAILABLE", "DEADLINE_EXCEEDED"):
        window.record(10.0, code, 0.01)
    assert window.snapshot(10.0, ERRORS, 0.95).errors == 2
    assert window.snapshot(10.0, ("NOT_FOUND",), 0.95).errors == 1


def test_odd_latencies_do_not_break_the_hot_path():
    window = ArmWindow(60.0)
    for latency in (0.0, -1.0, float("nan"), 1e-9, 1e9):
        window.record(10.0, "OK", latency)
    assert window.snapshot(10.0, ERRORS, 0.5).requests == 5


def test_canary_errors_over_primary_plus_delta_fail_with_the_numbers():
    result = check(POLICY, stats(412), stats(50, errors=6))
    assert result.outcome is CheckOutcome.FAILED
    assert result.reasons == (
        "canary error rate 12.0% (6/50) exceeds the limit 5.0%",
        "canary error rate 12.0% (6/50) exceeds primary 0.0% (0/412) + 1.0 pp",
    )
    assert (result.primary.requests, result.canary.errors) == (412, 6)


def test_a_canary_as_bad_as_primary_passes_the_delta_but_not_the_limit():
    result = check(POLICY, stats(100, errors=10), stats(100, errors=10))
    assert result.outcome is CheckOutcome.FAILED
    assert result.reasons == ("canary error rate 10.0% (10/100) exceeds the limit 5.0%",)


def test_latency_is_compared_with_primary_times_ratio_plus_slack():
    at_ceiling = check(POLICY, stats(100, latency_s=0.010), stats(100, latency_s=0.020))
    assert at_ceiling.outcome is CheckOutcome.PASSED  # 10 ms x 1.5 + 5 ms = 20 ms: not above
    slow = check(POLICY, stats(100, latency_s=0.010), stats(100, latency_s=0.021))
    assert slow.outcome is CheckOutcome.FAILED
    assert slow.reasons == ("canary p95 21.0 ms exceeds primary p95 10.0 ms x 1.5 + 5.0 ms = 20.0 ms",)


def test_a_healthy_canary_passes_and_says_why():
    result = check(POLICY, stats(200, errors=1), stats(100, errors=1))
    assert result.outcome is CheckOutcome.PASSED
    assert result.summary == ("canary error rate 1.0% (1/100) is within the limit 5.0%; "
                              "canary error rate 1.0% (1/100) is within primary 0.5% (1/200) + 1.0 pp; "
                              "canary p95 10.0 ms is within primary p95 10.0 ms x 1.5 + 5.0 ms = 20.0 ms")


@pytest.mark.parametrize(("primary", "canary", "reason"), [
    (stats(412), stats(12, errors=12), "too few requests to judge: canary 12 in the window"),
    (stats(0), stats(400), "too few requests to judge: primary 0 in the window"),
    (stats(3), stats(0), "too few requests to judge: primary 3 and canary 0 in the window"),
])
def test_too_little_data_is_inconclusive_never_a_failure(primary, canary, reason):
    result = check(POLICY, primary, canary)
    assert result.outcome is CheckOutcome.INCONCLUSIVE
    assert result.summary.startswith(reason) and result.summary.endswith("fewer than the 50 needed on each arm")


def test_at_full_weight_only_the_canarys_own_numbers_count():
    passed = check(POLICY, stats(0), stats(100, errors=2), compare_with_primary=False)
    assert passed.outcome is CheckOutcome.PASSED
    assert "no baseline" in passed.summary
    failed = check(POLICY, stats(0), stats(100, errors=10), compare_with_primary=False)
    assert failed.reasons == ("canary error rate 10.0% (10/100) exceeds the limit 5.0%",)
    short = check(POLICY, stats(0), stats(10), compare_with_primary=False)
    assert short.outcome is CheckOutcome.INCONCLUSIVE and "primary" not in short.summary
