"""Shadow comparisons and the quality guard, pure parts (issue 15, part 4): the comparison, the bounded
id counter, the policy's rules, the binned counts that replicas sum, the guard's verdicts, the sampler's
bounds — and a simulation of the guard's false-rollback rate and detection time (fixed seeds; figures
printed). The gateway end to end is in test_shadow_quality_e2e.py.
"""

from __future__ import annotations

import asyncio
import math
import random

import numpy as np
import pytest

from searchgw.errors import InvalidArgument
from searchgw.gateway.rollout.analysis import ArmSlice, StageEvidence, judge, CheckOutcome
from searchgw.gateway.rollout.model import DEFAULT_STAGES, AnalysisPolicy, TestKind, TestOutcome
from searchgw.gateway.rollout.preflight import overlap_at_k, rank_biased_overlap
from searchgw.gateway.rollout.quality import (
    DifferingIds,
    QualityEvidence,
    QualityPolicy,
    compare_rankings,
    quality_bin,
)
from searchgw.gateway.rollout.redis_store import _fields, _pair
from searchgw.gateway.shadow import COMPARED, DROPPED_BUSY, FAILED, ShadowSampler, shadow_comparison


# -- the comparison -------------------------------------------------------------------------------------

def test_the_comparison_uses_the_preflights_overlap_and_rbo_and_names_the_ids_on_one_side_only():
    primary, canary = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [1, 3, 2, 11, 5, 12, 7, 8, 9, 13]
    c = compare_rankings(primary, canary, 10, 0.9)
    assert c.depth == 10
    assert c.overlap == overlap_at_k(primary, canary, 10) == 0.7
    assert c.rbo == rank_biased_overlap(primary, canary, 0.9)
    assert c.differing == ("4", "6", "10", "11", "12", "13")
    same, disjoint = compare_rankings(primary, primary, 10, 0.9), compare_rankings(primary, [21, 22, 23], 10, 0.9)
    assert (same.overlap, same.rbo, disjoint.overlap, disjoint.rbo) == (1.0, 1.0, 0.0, 0.0)


def test_short_identical_answers_agree_fully_and_two_empty_ones_too():
    """A filter or a small collection returns fewer than k hits on both arms: that is not disagreement."""
    assert compare_rankings([4, 2, 9], [4, 2, 9], 10, 0.9).overlap == 1.0
    assert compare_rankings([4, 2, 9], [4, 2], 10, 0.9).overlap == pytest.approx(2 / 3)
    empty = compare_rankings([], [], 10, 0.9)
    assert (empty.depth, empty.overlap, empty.rbo) == (0, 1.0, 1.0)


def test_differing_ids_keeps_the_heavy_hitters_in_bounded_memory():
    counter = DifferingIds(capacity=8)
    rng = random.Random(3)
    for _ in range(2000):
        counter.add(["hot-1"] * 3 + ["hot-2"] * 2 + [f"cold-{rng.randrange(10_000)}"])
    assert len(counter.counts) <= 8
    assert [item for item, _ in counter.top(2)] == ["hot-1", "hot-2"]
    assert counter.top(1)[0][1] >= 6000  # Space-Saving never undercounts


# -- the policy -----------------------------------------------------------------------------------------

def test_a_policy_fills_its_defaults_but_keeps_sampling_off_unless_asked():
    assert not QualityPolicy().enabled
    filled = AnalysisPolicy(quality=QualityPolicy(shadow_sample_rate=0.05)).with_defaults().quality
    assert filled == QualityPolicy(shadow_sample_rate=0.05, k=10, min_overlap=0.6, max_below_share=0.5,
                                   min_samples=30, alpha=0.01, rbo_p=0.9)
    assert AnalysisPolicy().with_defaults().quality.shadow_sample_rate == 0.0


@pytest.mark.parametrize(("field", "value"), [
    ("shadow_sample_rate", -0.1), ("shadow_sample_rate", 0.6), ("shadow_sample_rate", math.nan), ("k", 101),
    ("min_overlap", 1.5), ("min_overlap", 0.605), ("max_below_share", 1.0), ("min_samples", -1),
    ("alpha", 0.7), ("rbo_p", 1.0),
])
def test_an_unusable_policy_value_is_invalid_argument_naming_it(field, value):
    policy = QualityPolicy(**{"shadow_sample_rate": 0.05, field: value})
    with pytest.raises(InvalidArgument) as caught:
        AnalysisPolicy(quality=policy).with_defaults().validate("rollout.analysis")
    assert caught.value.field == f"rollout.analysis.quality.{field}"


# -- counts that sum across replicas ---------------------------------------------------------------------

def test_binned_comparisons_sum_exactly_across_replicas_through_the_redis_fields():
    assert [quality_bin(v) for v in (0.0, 0.1, 0.3, 0.6, 0.7, 1 / 3, 0.999, 1.0)] == [0, 10, 30, 60, 70, 33, 99, 100]
    one, other = [ArmSlice(), ArmSlice()], [ArmSlice(), ArmSlice()]
    for overlap in (0.1, 0.7, 1.0):
        one[1].record_comparison(overlap, overlap)
    other[1].record_comparison(0.7, 0.65)
    one[1].record("OK", 0.002, False)

    stored: dict[str, int] = {}
    for pair in (one, other):  # each replica's HINCRBYs into the second's hash
        for field, count in _fields(pair):
            stored[field] = stored.get(field, 0) + count
    _, canary = _pair({k: str(v) for k, v in stored.items()})
    assert canary.overlaps == {10: 1, 70: 2, 100: 1} and canary.rbos == {10: 1, 65: 1, 70: 1, 100: 1}
    assert canary.calls == 1  # comparisons are not calls
    assert ArmSlice.from_json(canary.to_json()).overlaps == canary.overlaps


# -- the guard -------------------------------------------------------------------------------------------

def policy(**overrides) -> QualityPolicy:
    return QualityPolicy(**{"shadow_sample_rate": 0.05, **overrides}).with_defaults()


def test_the_guard_never_acts_below_its_minimum_and_rejects_a_canary_that_answers_differently():
    evidence = QualityEvidence(policy(min_samples=30))
    evidence.add({0: 29}, {0: 29})
    assert evidence.guard.result().rejected and not evidence.rejected  # the evidence is there, the minimum is not
    assert "waiting for 30 comparisons" in evidence.summary().summary
    evidence.add({10: 1}, {5: 1})
    assert evidence.rejected
    summary = evidence.summary()
    assert (summary.samples, summary.below, summary.median_overlap) == (30, 30, 0.0)
    assert "differ from primary's" in summary.summary
    # saved with the decision, continued after a restart
    again = QualityEvidence.from_json(evidence.policy, evidence.to_json())
    assert again.rejected and again.summary().samples == 30


def test_the_guard_judges_the_median_not_the_mean():
    evidence = QualityEvidence(policy(min_samples=10))
    evidence.add({100: 60, 0: 40}, {100: 60, 0: 40})  # 40 % of searches disagree completely: median 1.0
    assert not evidence.rejected and evidence.summary().median_overlap == 1.0
    assert evidence.summary().mean_overlap == pytest.approx(0.6)


def test_a_stage_with_quality_sampling_waits_for_comparisons_and_fails_on_the_guard():
    analysis = AnalysisPolicy(min_requests_per_arm=1, latency_threshold_s=1.0,
                              quality=QualityPolicy(shadow_sample_rate=0.05, min_samples=20)).with_defaults()
    evidence = StageEvidence(analysis, DEFAULT_STAGES[0], 500)
    primary, canary = ArmSlice(), ArmSlice()
    for _ in range(50):
        primary.record("OK", 0.01, False)
        canary.record("OK", 0.01, False)
    evidence.add_second(primary, canary)
    verdict = judge(evidence)
    assert verdict.outcome is CheckOutcome.INCONCLUSIVE  # no comparisons: no pass, no fail
    assert verdict.tests[-1].kind is TestKind.QUALITY_OVERLAP and verdict.tests[-1].outcome is TestOutcome.WAITING
    wrong = ArmSlice()
    for _ in range(20):
        wrong.record_comparison(0.1, 0.05)
    evidence.add_second(None, wrong)
    verdict = judge(evidence)
    assert verdict.outcome is CheckOutcome.FAILED
    assert verdict.reasons[0].startswith("quality: overlap@10 median 0.10")
    restored = StageEvidence.from_json(analysis, DEFAULT_STAGES[0], 500, evidence.to_json())
    assert judge(restored).outcome is CheckOutcome.FAILED


# -- the sampler -----------------------------------------------------------------------------------------

async def test_the_sampler_runs_at_most_its_bound_drops_the_rest_and_counts_failures():
    seen: list[tuple[str, str]] = []
    sampler = ShadowSampler(2, observe=lambda label, outcome: seen.append((label, outcome)))
    gate = asyncio.Event()

    async def arm_a() -> list[int]:
        await gate.wait()
        return [1, 2, 3]

    async def arm_b() -> list[int]:
        return [1, 2, 4]

    async def broken() -> list[int]:
        raise RuntimeError("the other arm is gone")

    results = []
    assert sampler.submit("r", shadow_comparison(arm_a, arm_b, 3, 0.9), results.append)
    assert sampler.submit("r", shadow_comparison(arm_a, broken, 3, 0.9), results.append)
    assert not sampler.submit("r", shadow_comparison(arm_a, arm_b, 3, 0.9), results.append)
    assert sampler.in_flight == 2 and seen == [("r", DROPPED_BUSY)]
    gate.set()
    await sampler.drain()
    assert sorted(seen) == [("r", COMPARED), ("r", DROPPED_BUSY), ("r", FAILED)]
    assert [(c.overlap, c.differing) for c in results] == [(pytest.approx(2 / 3), ("3", "4"))]
    assert not ShadowSampler(0).sampled(1.0) and not ShadowSampler(4).sampled(0.0)


# -- simulation: false rollbacks and detection ------------------------------------------------------------

RUNS = 1000
SAMPLES_PER_RUN = 300
PER_SECOND = 3


def run_guard(rng: np.random.Generator, below_probability: float, quality: QualityPolicy) -> int | None:
    """Feed one stage's comparisons to the guard, PER_SECOND a second, judging after every second (the
    controller reads less often: this is the harder case for the bound). The comparisons' count at the
    first rejection, or None."""
    evidence = QualityEvidence(quality)
    below = rng.random(SAMPLES_PER_RUN) < below_probability
    for start in range(0, SAMPLES_PER_RUN, PER_SECOND):
        chunk = below[start:start + PER_SECOND]
        low = int(chunk.sum())
        evidence.add({30: low, 100: len(chunk) - low} if low else {100: len(chunk)}, {})
        if evidence.rejected:
            return start + len(chunk)
    return None


def test_simulated_false_rollbacks_stay_within_alpha_and_a_wrong_canary_is_caught_at_its_minimum():
    """The guard's H0 at its boundary: exactly half of the searches below the threshold (median overlap at
    the threshold). Ville's inequality bounds the rollbacks by alpha; a faithful copy (few searches below)
    is further from the boundary and rolls back less. A canary whose answers are mostly wrong (as a shuffled
    one: ~95 % below) is caught as soon as the minimum of comparisons is in."""
    quality = policy(min_samples=30)
    rng = np.random.default_rng(15)
    boundary = [run_guard(rng, 0.5, quality) for _ in range(RUNS)]
    faithful = [run_guard(rng, 0.02, quality) for _ in range(RUNS // 4)]
    wrong = [run_guard(rng, 0.95, quality) for _ in range(200)]
    false_rate = sum(r is not None for r in boundary) / RUNS
    faithful_rate = sum(r is not None for r in faithful) / len(faithful)
    detected = sorted(r for r in wrong if r is not None)
    print(f"\nquality guard (alpha {quality.alpha}, min {quality.min_samples}, {SAMPLES_PER_RUN} comparisons a stage): "
          f"rollbacks at the boundary (50 % below) {false_rate:.4f}, faithful copies (2 % below) {faithful_rate:.4f}; "
          f"wrong canaries (95 % below) caught {len(detected)}/200, median after {detected[len(detected) // 2]} "
          f"comparisons (max {detected[-1]})")
    monte_carlo = 3 * math.sqrt(quality.alpha * (1 - quality.alpha) / RUNS)
    assert false_rate <= quality.alpha + monte_carlo
    assert faithful_rate == 0.0
    assert len(detected) == 200 and detected[len(detected) // 2] <= quality.min_samples + PER_SECOND


# -- the command line -----------------------------------------------------------------------------------

def test_rollout_start_takes_the_quality_flags_over_the_spec(tmp_path):
    from searchgw.cli import build_parser
    from searchgw.gateway.cli import rollout_from

    spec = tmp_path / "r1.yaml"
    spec.write_text("name: r1\ncollection: docs\ncanaryCollection: docs-v2\n"
                    "analysis: {quality: {shadowSampleRate: 0.01, minSamples: 50}}\n")
    args = build_parser().parse_args(["rollout", "start", "--spec", str(spec), "--shadow-sample-rate", "0.05",
                                      "--quality-min-overlap", "0.7"])
    quality = rollout_from(args).analysis.quality
    assert (quality.shadow_sample_rate, quality.min_overlap, quality.min_samples) == (0.05, 0.7, 50)


# -- several replicas: comparisons fold through the shared counts (real redis-server) --------------------

async def test_the_leader_judges_every_replicas_comparisons_summed_through_redis(redis_server):
    import dataclasses

    from searchgw.gateway.rollout import RolloutState
    from searchgw.testing import ManualClock
    from tests.gateway.test_rollout import INTERVAL, POLICY, AliasTable, spec
    from tests.gateway.test_rollout_redis_store import replica, traffic

    clock = ManualClock()
    aliases = AliasTable({"docs": "docs-v1"})
    replicas = [await replica("a", redis_server.url, clock, aliases, lead=True),
                await replica("b", redis_server.url, clock, aliases),
                await replica("c", redis_server.url, clock, aliases)]
    try:
        leader, *followers = replicas
        analysis = dataclasses.replace(POLICY, quality=QualityPolicy(shadow_sample_rate=0.05, min_samples=30))
        await leader.controller.create(spec(analysis=analysis), actor="alice")
        for each in replicas:
            await each.feed.poll_once()
        for _ in range(6):  # each follower compares 4 searches an interval, all wrong; the leader none
            clock.advance(INTERVAL / 2)
            for each in followers:
                traffic(each.controller, primary=40, canary=10)
                for _ in range(4):
                    each.controller.record_comparison("r1", 0.1, 0.05, ("7", "9"))
            clock.advance(INTERVAL / 2)
            for each in followers:
                await each.controller.tick()
            await leader.leadership.step()
            await leader.controller.tick()
            for each in replicas:
                await each.feed.poll_once()
            if (await leader.controller.get("r1")).state is RolloutState.ROLLED_BACK:
                break
        rolled_back = await leader.controller.get("r1")
        assert rolled_back.state is RolloutState.ROLLED_BACK
        quality = next(t for t in rolled_back.decisions[-1].tests if t.kind is TestKind.QUALITY_OVERLAP)
        # 8 comparisons an interval from two replicas: the leader needed both to reach its minimum of 30
        assert quality.outcome is TestOutcome.REJECTED and quality.canary_calls == 32 == quality.canary_events
    finally:
        for each in replicas:
            await each.close()


@pytest.fixture
async def redis_server(tmp_path):
    from tests.redis_rig import RedisServer

    server = await RedisServer(tmp_path / "redis").start()
    yield server
    await server.stop()
