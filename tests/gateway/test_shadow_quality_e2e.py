"""Result quality over a real gateway (issue 15, part 4): shadow searches and the quality guard.

Real parts: gRPC on 127.0.0.1 port 0, the embedded Qdrant engine, the session's ONNX embedder. The rollout
controller runs on a manual clock (ticks called by the test). What is sampled is decided by a seeded
random source given to the gateway's `ShadowSampler` (the sample *rate* is the policy's); the tests wait
for the background shadow searches with `drain()`, never with a sleep.

Evidence:
- a canary holding primary's points with their vectors shuffled among the ids (no errors, same speed, wrong
  answers) is rolled back by the quality guard, with the numbers in the decision; a faithful copy with a
  rebuilt index (other HNSW m / ef_construct) is not, and GetRollout shows its quality numbers;
- a shadow search never reaches the caller: while the other arm hangs, searches answer; a full sampler
  drops (counted `dropped_busy`); a failing shadow is counted `failed`; shadow searches are not analysed;
- a model canary's shadow embeds the query with the canary's own model; a raw vector is skipped (counted).
"""

from __future__ import annotations

import asyncio
import random

import numpy as np
import pytest

from searchgw.gateway.backends import FaultKind
from searchgw.gateway.client import stage
from searchgw.gateway.routing import Arm
from searchgw.gateway.shadow import ShadowSampler
from searchgw.v1 import collection_service_pb2 as coll_pb
from searchgw.v1 import rollout_service_pb2 as roll_pb
from tests.gateway.outcome_rig import OutcomeRig, key_on, start_rollout, two_arms as small_arms
from tests.gateway.test_gateway import policy, tick
from tests.gateway.test_model_canary import model_rig  # noqa: F401 - a fixture used below

State = roll_pb.Rollout
Kind = roll_pb.Decision
Stat = roll_pb.StatisticalTest

DIMENSION = 384
POINTS = 200
SEARCHES_PER_ROUND = 20
BATCH = 4


def unit_rows(count: int, seed: int) -> np.ndarray:
    rows = np.random.default_rng(seed).normal(size=(count, DIMENSION)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


VECTORS = unit_rows(POINTS, 1)


def points(vectors: np.ndarray) -> list[dict]:
    return [{"id": i + 1, "vector": vectors[i].tolist(), "payload": {"n": i}} for i in range(len(vectors))]


def quality_policy(**overrides) -> roll_pb.AnalysisPolicy:
    values = dict(shadow_sample_rate=0.5, min_samples=20)
    values.update(overrides)
    return policy(quality=roll_pb.QualityPolicy(**values))


def seeded_sampler(server, seed: int = 7, max_in_flight: int = 4) -> ShadowSampler:
    """The gateway's shadow sampler with a seeded random source (what is sampled is repeatable)."""
    sampler = ShadowSampler(max_in_flight, observe=server.metrics.observe_shadow, random=random.Random(seed).random)
    server.core.shadow = sampler
    return sampler


def shadow_count(server, outcome: str, rollout: str = "r1") -> float:
    return server.metrics.registry.get_sample_value("searchgw_shadow_queries_total",
                                                    {"rollout": rollout, "outcome": outcome}) or 0.0


async def searches(client, sampler: ShadowSampler, round_: int) -> None:
    """SEARCHES_PER_ROUND searches near stored points, a few at a time; then their shadow searches end."""
    rng = np.random.default_rng(100 + round_)
    for start in range(0, SEARCHES_PER_ROUND, BATCH):
        calls = []
        for i in range(start, start + BATCH):
            target = VECTORS[rng.integers(POINTS)]
            query = target + rng.normal(scale=0.02, size=DIMENSION).astype(np.float32)
            calls.append(client.search("docs", vector=(query / np.linalg.norm(query)).tolist(), limit=10,
                                       routing_key=f"user-{round_}-{i}"))
        await asyncio.gather(*calls)
        await sampler.drain()


async def run_rollout(rig, canary_vectors: np.ndarray, *, hnsw: coll_pb.HnswConfig | None = None, rounds: int):
    """docs → docs-v1 (VECTORS) and canary docs-v2 (`canary_vectors` under the same ids), rollout r1 at 10 %
    with shadow sampling; `rounds` rounds of searches then a check, stopping once the rollout ends."""
    server, client = await rig.start()
    await client.create_collection("docs-v1", dimension=DIMENSION)
    await client.create_collection("docs-v2", dimension=DIMENSION, hnsw=hnsw)
    await client.upsert("docs-v1", points(VECTORS))
    await client.upsert("docs-v2", points(canary_vectors))
    await client.update_alias("docs", "docs-v1")
    await client.create_rollout("r1", "docs", "docs-v2", analysis=quality_policy(),
                                stages=[stage(10, 3600, 5), stage(100, 3600, 5)])
    sampler = seeded_sampler(server)
    done = 0
    for round_ in range(rounds):
        await searches(client, sampler, round_)
        done += SEARCHES_PER_ROUND
        await tick(rig, server)
        rollout = await client.get_rollout("r1")
        if rollout.state != State.STATE_RUNNING:
            break
    return server, client, rollout, done


def quality_test(decision: roll_pb.Decision) -> roll_pb.StatisticalTest:
    return next(t for t in decision.tests if t.kind == Stat.KIND_QUALITY_OVERLAP)


async def test_a_canary_with_its_vectors_shuffled_among_the_ids_is_rolled_back_by_the_quality_guard(rig):
    shuffled = VECTORS[np.random.default_rng(2).permutation(POINTS)]
    server, client, rollout, searched = await run_rollout(rig, shuffled, rounds=8)

    assert rollout.state == State.STATE_ROLLED_BACK
    failed, rolled_back = rollout.decisions[-2:]
    print(f"\nshuffled canary, after {searched} searches: {rolled_back.reason}")
    assert (failed.kind, rolled_back.kind) == (Kind.KIND_CHECK_FAILED, Kind.KIND_ROLLED_BACK)
    quality = quality_test(failed)
    assert quality.outcome == Stat.OUTCOME_REJECTED
    assert quality.canary_calls >= 20 and quality.canary_events > 0.5 * quality.canary_calls
    assert quality.e_value >= 1 / quality.alpha and quality.null_value == 0.5
    assert "overlap@10 median" in quality.summary and "ids differing most often" in quality.summary
    assert "quality" in rolled_back.reason and "differ from primary's" in rolled_back.reason
    # no error and no latency test rejected: only the results were wrong
    others = [t for t in failed.tests if t.kind != Stat.KIND_QUALITY_OVERLAP]
    assert all(t.outcome != Stat.OUTCOME_REJECTED for t in others)
    assert failed.canary.errors == 0 and failed.primary.errors == 0
    # the shadow searches are not analysed: the arms' calls are exactly the users' searches
    assert failed.primary.requests + failed.canary.requests == searched
    assert shadow_count(server, "compared") >= quality.canary_calls
    # GetRollout keeps the numbers of the check that failed
    report = rollout.quality
    assert report.rejected and report.samples == quality.canary_calls and report.median_overlap < 0.6
    assert report.differing_ids and report.differing_ids[0].count >= report.differing_ids[-1].count
    # all traffic is back on primary
    assert server.router.route("docs", "anyone").collection is None


async def test_a_faithful_copy_with_a_rebuilt_index_is_not_rolled_back_and_shows_its_quality(rig):
    rebuilt = coll_pb.HnswConfig(m=8, ef_construct=32, full_scan_threshold=10)
    server, client, rollout, searched = await run_rollout(rig, VECTORS, hnsw=rebuilt, rounds=6)

    assert rollout.state == State.STATE_RUNNING
    report = rollout.quality
    print(f"\nrebuilt copy, after {searched} searches: {report.summary}")
    assert report.samples >= 40 and not report.rejected
    assert report.median_overlap >= 0.9 and report.mean_rbo >= 0.9 and report.k == 10
    last = rollout.decisions[-1]
    assert last.kind in (Kind.KIND_CHECK_PASSED, Kind.KIND_INCONCLUSIVE)
    assert quality_test(last).outcome == Stat.OUTCOME_NOT_REJECTED
    assert shadow_count(server, "failed") == 0


async def test_too_few_comparisons_hold_the_stage_and_never_fail_it(rig):
    server, client = await rig.start()
    await client.create_collection("docs-v1", dimension=DIMENSION)
    await client.create_collection("docs-v2", dimension=DIMENSION)
    await client.upsert("docs-v1", points(VECTORS))
    await client.upsert("docs-v2", points(VECTORS[::-1].copy()))  # wrong answers, but too few to judge
    await client.update_alias("docs", "docs-v1")
    await client.create_rollout("r1", "docs", "docs-v2", analysis=quality_policy(min_samples=1000),
                                stages=[stage(10, 0, 0), stage(100, 0, 0)])
    sampler = seeded_sampler(server)
    await searches(client, sampler, 0)
    await tick(rig, server)
    rollout = await client.get_rollout("r1")
    assert rollout.state == State.STATE_RUNNING and rollout.current_stage == 0  # no pass, no fail
    last = rollout.decisions[-1]
    assert last.kind == Kind.KIND_INCONCLUSIVE
    assert quality_test(last).outcome == Stat.OUTCOME_WAITING
    assert "waiting for 1000 comparisons" in last.reason


async def test_a_bad_quality_policy_is_refused_naming_the_field(rig):
    from searchgw.errors import InvalidArgument

    server, client = await rig.start()
    await client.create_collection("docs-v1", dimension=DIMENSION)
    await client.create_collection("docs-v2", dimension=DIMENSION)
    await client.update_alias("docs", "docs-v1")
    for field, value in (("shadow_sample_rate", 0.9), ("min_overlap", 0.655), ("k", 1000)):
        with pytest.raises(InvalidArgument) as caught:
            await client.create_rollout("r1", "docs", "docs-v2", analysis=quality_policy(**{field: value}))
        assert caught.value.field == f"rollout.analysis.quality.{field}"
    assert not (await client.list_rollouts()).rollouts


# -- off the request path ------------------------------------------------------------------------------

@pytest.fixture
async def outcome_rig(tmp_path, embedder_server):
    rig = OutcomeRig(tmp_path, embedder_server.address)
    yield rig
    await rig.close()


async def test_a_hanging_shadow_never_delays_the_caller_and_a_full_sampler_drops_and_counts(outcome_rig):
    server, client, recorded = await outcome_rig.start()
    await small_arms(client)
    await client.create_rollout("r1", "docs", "docs-v2", analysis=quality_policy(shadow_sample_rate=0.5),
                                stages=[stage(10, 3600, 0), stage(100)])
    sampler = ShadowSampler(1, observe=server.metrics.observe_shadow, random=lambda: 0.0)  # every search
    server.core.shadow = sampler
    # the canary's searches hang (a Stall, until released), then fail
    server.backend.inject("docs-v2", delay=1.0, error=FaultKind.UNAVAILABLE, operations={"search"})
    key = key_on(server, Arm.PRIMARY)

    answers = [await client.search("docs", vector=[1.0] + [0.0] * (DIMENSION - 1), limit=3, routing_key=key)
               for _ in range(5)]
    assert all(a.route.collection == "docs-v1" and len(a.points) == 3 for a in answers)
    await outcome_rig.stall.wait_held(1)  # the first shadow hangs on the canary, holding the only slot
    assert sampler.in_flight == 1
    assert shadow_count(server, "dropped_busy") == 4
    # the hanging shadow then fails: counted, and nobody saw it
    outcome_rig.stall.release()
    await sampler.drain()
    assert shadow_count(server, "failed") == 1 and shadow_count(server, "compared") == 0
    # only the users' searches were recorded for the analysis, all on primary, all OK
    assert [(r.arm, r.code_name) for r in recorded.calls] == [(Arm.PRIMARY, "OK")] * 5


async def test_a_canary_failure_answered_by_primary_is_not_compared(outcome_rig):
    server, client, recorded = await outcome_rig.start()
    await small_arms(client)
    await client.create_rollout("r1", "docs", "docs-v2", analysis=quality_policy(), stages=[stage(100, 3600, 0)])
    sampler = ShadowSampler(4, observe=server.metrics.observe_shadow, random=lambda: 0.0)
    server.core.shadow = sampler
    server.backend.inject("docs-v2", error=FaultKind.UNAVAILABLE, operations={"search"})
    answer = await client.search("docs", vector=[1.0] + [0.0] * (DIMENSION - 1), limit=3, routing_key="u")
    assert answer.route.fallback
    await sampler.drain()
    assert shadow_count(server, "skipped_fallback") == 1 and shadow_count(server, "compared") == 0


# -- model canaries ------------------------------------------------------------------------------------

async def test_a_model_canarys_shadow_embeds_with_the_canarys_model_and_skips_raw_vectors(model_rig):  # noqa: F811
    from tests.gateway.test_model_canary import CANARY_MODEL

    rig, server, client = model_rig
    await client.abort_rollout("r1", "replaced by one that samples")
    await client.create_rollout("r2", "docs", "docs-v2", analysis=quality_policy(), stages=[stage(10, 3600, 0),
                                                                                          stage(100)])
    sampler = ShadowSampler(4, observe=server.metrics.observe_shadow, random=lambda: 0.0)
    server.core.shadow = sampler
    embedded = server.metrics.registry.get_sample_value  # the gateway's embed calls, any model
    before = embedded("searchgw_embed_duration_seconds_count") or 0.0
    key = key_on(server, Arm.PRIMARY)
    answer = await client.search("docs", text="how long should bread dough rise?", limit=3, routing_key=key)
    assert answer.route.collection == "docs-v1"
    await sampler.drain()
    # primary's embedding for the answer, the canary's own for the shadow (another model name: no shared cache)
    assert (embedded("searchgw_embed_duration_seconds_count") or 0.0) - before == 2
    assert shadow_count(server, "compared", "r2") == 1
    await tick(rig, server)
    report = (await client.get_rollout("r2")).quality
    # the same weights under another name (CANARY_MODEL): each arm's own embedding finds the same top 3
    assert CANARY_MODEL and (report.samples, report.median_overlap, report.mean_rbo) == (1, 1.0, 1.0)
    # a raw vector belongs to primary's space: not compared, counted
    await client.search("docs", vector=[1.0] + [0.0] * (DIMENSION - 1), limit=3, routing_key=key)
    await sampler.drain()
    assert shadow_count(server, "skipped_vector", "r2") == 1 and shadow_count(server, "compared", "r2") == 1
