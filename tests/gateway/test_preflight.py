"""The pre-flight's pure part: overlap@k, rank-biased overlap (Webber et al. 2010, extrapolated) and the verdict."""

from __future__ import annotations

import pytest

from searchgw.errors import InvalidArgument
from searchgw.gateway.rollout.preflight import QueryComparison, judge_preflight, overlap_at_k, rank_biased_overlap
from searchgw.gateway.rollout.preparation import PreflightPolicy


@pytest.mark.parametrize("p", [0.5, 0.9, 0.98])
@pytest.mark.parametrize("depth", [1, 3, 10])
def test_identical_rankings_score_one_and_disjoint_ones_zero(p, depth):
    ranking = list(range(depth))
    assert rank_biased_overlap(ranking, ranking, p) == pytest.approx(1.0)
    assert rank_biased_overlap(ranking, [100 + i for i in ranking], p) == 0.0


def test_a_hand_computed_swap():
    # S = a b c, L = a c b, p = 0.5: X_1 = 1, X_2 = 1, X_3 = 3.
    # Σ (X_d/d) p^d = 1·0.5 + (1/2)·0.25 + 1·0.125 = 0.75; (1 − p)/p = 1; tail (X_3/3)·p^3 = 0.125.
    assert rank_biased_overlap("abc", "acb", 0.5) == pytest.approx(0.875)


def test_a_hand_computed_case_of_uneven_lengths():
    # S = a (s = 1), L = b a (l = 2), p = 0.5. X_1 = 0, X_2 = 1 (all of S seen in L[:2]); X_s = X_1 = 0.
    # Σ_{d≤2} (X_d/d) p^d = 0 + (1/2)·0.25 = 0.125; Σ_{d=2} X_s(d−s)/(s d) p^d = 0;
    # tail ((X_2 − X_1)/2 + X_1/1)·p^2 = 0.5·0.25 = 0.125; RBO = 1·0.125 + 0.125 = 0.25.
    assert rank_biased_overlap(["a"], ["b", "a"], 0.5) == pytest.approx(0.25)
    assert rank_biased_overlap(["b", "a"], ["a"], 0.5) == pytest.approx(0.25)  # symmetric


def test_agreement_at_the_top_weighs_more_than_at_the_bottom():
    top_swapped = rank_biased_overlap([1, 2, 3, 4, 5], [2, 1, 3, 4, 5], 0.9)
    bottom_swapped = rank_biased_overlap([1, 2, 3, 4, 5], [1, 2, 3, 5, 4], 0.9)
    assert 0 < top_swapped < bottom_swapped < 1


def test_empty_rankings():
    assert rank_biased_overlap([], [], 0.9) == 1.0
    assert rank_biased_overlap([], [1], 0.9) == 0.0
    with pytest.raises(ValueError):
        rank_biased_overlap([1], [1], 1.0)


def test_overlap_at_k_counts_shared_ids_of_the_top_k():
    assert overlap_at_k([1, 2, 3, 4], [4, 3, 9, 1], 4) == 0.75
    assert overlap_at_k([1, 2, 3, 4], [4, 3, 9, 1], 2) == 0.0
    assert overlap_at_k([1], [1], 10) == 0.1  # fewer than k results count against the arm


POLICY = PreflightPolicy(k=3, min_overlap_at_k=0.6, min_rbo=0.6, rbo_p=0.9, count_tolerance=1)


def test_a_canary_that_answers_like_primary_passes_with_its_numbers():
    result = judge_preflight(POLICY, 100, 101, [QueryComparison("q", (1, 2, 3), (1, 2, 3)),
                                                QueryComparison("r", (4, 5, 6), (4, 6, 5))], time=7.0)
    assert result.passed and result.errors == 0 and result.queries == 2
    assert result.mean_overlap_at_k == 1.0 and result.mean_rbo > 0.9
    assert result.summary.startswith("pre-flight passed: counts primary 100 / canary 101")


@pytest.mark.parametrize(("counts", "comparisons", "problem"), [
    ((100, 90), [QueryComparison("q", (1, 2, 3), (1, 2, 3))], "point counts differ by 10"),
    ((5, 5), [QueryComparison("q", (1, 2, 3), None, "canary: engine down")], "1 of 1 queries failed (first: canary"),
    ((5, 5), [QueryComparison("q", (1, 2, 3), (7, 8, 3))], "mean overlap@3 0.333 < 0.6"),
    ((5, 5), [], "no query to compare"),
])
def test_each_problem_fails_the_pre_flight_and_is_named(counts, comparisons, problem):
    result = judge_preflight(POLICY, *counts, comparisons, time=1.0)
    assert not result.passed
    assert problem in result.summary


@pytest.mark.parametrize(("field", "value"), [("k", 0), ("k", 101), ("sample_size", 1001), ("min_rbo", 1.5),
                                              ("min_overlap_at_k", -0.1), ("rbo_p", 1.0), ("count_tolerance", -1)])
def test_an_unusable_policy_is_invalid_argument_naming_its_field(field, value):
    import dataclasses

    with pytest.raises(InvalidArgument) as caught:
        dataclasses.replace(PreflightPolicy(), **{field: value}).validate("policy")
    assert caught.value.field == f"policy.{field}"
