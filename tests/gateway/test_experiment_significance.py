"""The experiment's significance: every variant against control at α / N, anytime-valid.

The simulation drives the same e-value as `RateRatioTest` (checked number for number first) through
thousands of A/A experiments read after every slice — the way a person refreshing GetExperiment reads
them — and counts how often *any* variant is ever declared better. Fixed seeds; pure numpy, seconds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from searchgw.gateway.experiments.significance import (
    Comparison,
    ExperimentEvidence,
    SliceCounts,
    VariantStatus,
    batch_ratio_log_e,
    comparison_alpha,
)
from searchgw.gateway.rollout.sequential import RateRatioTest

ALPHA = 0.05


def _binomial_upper(rate: float, runs: int, z: float = 3.0) -> float:
    """rate + z binomial standard errors: the Monte-Carlo allowance of a measured rate over `runs`."""
    return rate + z * math.sqrt(rate * (1 - rate) / runs)


def test_the_batched_e_value_is_the_rate_ratio_tests_number_for_number():
    rng = np.random.default_rng(7)
    runs, slices = 20, 40
    calls_v = rng.poisson(50, (runs, slices))
    calls_c = rng.poisson(100, (runs, slices))
    events_v = rng.binomial(calls_v, 0.08)
    events_c = rng.binomial(calls_c, 0.05)
    batched = batch_ratio_log_e(events_v, calls_v, events_c, calls_c)
    for run in range(runs):
        test = RateRatioTest(0.01)
        for s in range(slices):
            test.add(int(events_v[run, s]), int(calls_v[run, s]), int(events_c[run, s]), int(calls_c[run, s]))
        assert batched[run] == pytest.approx(test.max_log_e, rel=1e-9, abs=1e-9)


def test_in_aa_runs_the_false_winner_rate_stays_within_alpha_however_often_it_is_read():
    """3 variants, all as good as control (5 % conversions): 4,000 experiments, each read after every one
    of 60 slices; a false winner is any variant whose goal_better test ever reached N/α."""
    rng = np.random.default_rng(20261203)
    runs, slices, variants, rate = 4000, 60, 3, 0.05
    threshold = math.log(1.0 / comparison_alpha(ALPHA, variants))
    control_calls = rng.poisson(100, (runs, slices))
    control_events = rng.binomial(control_calls, rate)
    false_winner = np.zeros(runs, dtype=bool)
    for _ in range(variants):
        calls = rng.poisson(100, (runs, slices))
        events = rng.binomial(calls, rate)
        false_winner |= batch_ratio_log_e(events, calls, control_events, control_calls) >= threshold
    measured = false_winner.mean()
    bound = _binomial_upper(ALPHA, runs)
    print(f"A/A false-winner rate {measured:.4f} over {runs} runs × {slices} looks; α = {ALPHA}, "
          f"allowed up to {bound:.4f} (α + 3 binomial s.e.)")
    assert measured <= bound


def test_without_the_correction_the_same_runs_would_name_false_winners_more_often():
    """The Bonferroni split matters: at α per variant (uncorrected) the family rate is higher than at α / N."""
    rng = np.random.default_rng(11)
    runs, slices, variants = 3000, 40, 3
    control_calls = rng.poisson(100, (runs, slices))
    control_events = rng.binomial(control_calls, 0.05)
    best = np.full(runs, -np.inf)
    for _ in range(variants):
        calls = rng.poisson(100, (runs, slices))
        best = np.maximum(best, batch_ratio_log_e(rng.binomial(calls, 0.05), calls, control_events, control_calls))
    corrected = (best >= math.log(variants / ALPHA)).mean()
    uncorrected = (best >= math.log(1 / ALPHA)).mean()
    print(f"family false-winner rate: corrected {corrected:.4f}, uncorrected {uncorrected:.4f}")
    assert corrected < uncorrected


def test_a_variant_better_by_a_known_margin_is_named_and_the_others_are_not():
    rng = np.random.default_rng(3)
    evidence = ExperimentEvidence(ALPHA, ["a", "b", "c"])
    rates = {"control": 0.05, "a": 0.05, "b": 0.10, "c": 0.05}
    totals = {arm: SliceCounts() for arm in rates}
    for _ in range(60):
        for arm, rate in rates.items():
            searches = int(rng.poisson(100))
            before = totals[arm]
            totals[arm] = SliceCounts(before.searches + searches, before.errors, before.slow,
                                      before.goal + int(rng.binomial(searches, rate)))
        evidence.fold(totals["control"], {k: v for k, v in totals.items() if k != "control"})
    verdict = evidence.verdict("conversion", totals["control"], totals)
    assert verdict.winner == "b", verdict.summary
    assert verdict.summary.startswith("winner b: conversion per search")
    statuses = {v.variant: v.status for v in verdict.variants}
    assert statuses["b"] is VariantStatus.BETTER
    assert statuses["a"] is not VariantStatus.BETTER and statuses["c"] is not VariantStatus.BETTER
    better = next(v for v in verdict.variants if v.variant == "b").get(Comparison.GOAL_BETTER)
    assert better.alpha == pytest.approx(ALPHA / 3)
    assert better.result.lower > 1.0  # the confidence sequence for the ratio excludes "no better"


def test_no_winner_yet_until_the_evidence_is_there_and_the_answer_carries_the_numbers():
    evidence = ExperimentEvidence(ALPHA, ["v1"])
    control, variant = SliceCounts(100, 0, 0, 5), SliceCounts(100, 0, 0, 9)
    evidence.fold(control, {"v1": variant})
    verdict = evidence.verdict("conversion", control, {"v1": variant})
    assert verdict.winner == ""
    assert verdict.summary.startswith("no winner yet (α/N = 0.05/1 = 0.05): v1 undecided: conversion per search 0.09 "
                                      "vs 0.05")


def test_a_variant_that_converts_better_but_fails_more_is_not_the_winner():
    evidence = ExperimentEvidence(ALPHA, ["v1"])
    control, variant = SliceCounts(), SliceCounts()
    for _ in range(30):
        control = SliceCounts(control.searches + 200, control.errors + 1, control.slow, control.goal + 10)
        variant = SliceCounts(variant.searches + 200, variant.errors + 30, variant.slow, variant.goal + 40)
        evidence.fold(control, {"v1": variant})
    verdict = evidence.verdict("conversion", control, {"v1": variant})
    assert verdict.variants[0].status is VariantStatus.BETTER_BUT_HARMFUL
    assert verdict.winner == ""


def test_the_evidence_survives_a_round_trip_through_json():
    evidence = ExperimentEvidence(ALPHA, ["v1", "v2"])
    evidence.fold(SliceCounts(100, 1, 2, 5), {"v1": SliceCounts(90, 0, 1, 12), "v2": SliceCounts(95, 3, 3, 4)})
    again = ExperimentEvidence.from_json(ALPHA, ["v1", "v2"], evidence.to_json())
    before = evidence.verdict("g", SliceCounts(100, 1, 2, 5), {})
    after = again.verdict("g", SliceCounts(100, 1, 2, 5), {})
    assert before == after
    again.fold(SliceCounts(100, 1, 2, 5), {"v1": SliceCounts(90, 0, 1, 12), "v2": SliceCounts(95, 3, 3, 4)})
    assert again.verdict("g", SliceCounts(100, 1, 2, 5), {}) == before  # nothing new: folding adds nothing


def test_a_quality_veto_keeps_a_better_converting_variant_from_winning_and_says_why():
    evidence = ExperimentEvidence(ALPHA, ["v1"])
    control, variant = SliceCounts(2000, 0, 0, 100), SliceCounts(2000, 0, 0, 300)
    evidence.fold(control, {"v1": variant})
    assert evidence.verdict("conversion", control, {"v1": variant}).winner == "v1"
    vetoed = evidence.verdict("conversion", control, {"v1": variant},
                              {"v1": "median overlap@10 0.31 < 0.6 over 200 shadow queries"})
    assert vetoed.winner == "" and vetoed.variants[0].status is VariantStatus.BETTER_BUT_HARMFUL
    assert vetoed.summary.endswith("v1 vetoed: median overlap@10 0.31 < 0.6 over 200 shadow queries")
