"""Shadow quality of an experiment's variants over a real gateway (issue 15.4, "for rollouts and experiments").

Real parts: gRPC on 127.0.0.1 port 0, the embedded Qdrant engine, the session's ONNX embedder. The experiment
folds when the test advances the rig's ManualClock and calls `tick()`. What is sampled is decided by a seeded
random source given to the gateway's one `ShadowSampler`; the tests wait for the background shadow searches
with `drain()`, never with a sleep.

Evidence:
- with the quality guard on, a variant holding control's points with their vectors shuffled among the ids
  (no errors, same speed, wrong answers) is vetoed: it cannot win although it converts best, and
  GetExperiment, the verdict text, the decisions and Prometheus carry the numbers; a faithful copy with a
  rebuilt index is not vetoed and shows overlap ≈ 1;
- with the guard off (the default) the same numbers are shown but nothing is vetoed: the variant may win;
- the caller never waits on shadow work: while control hangs, a variant's searches answer; a full sampler
  drops (counted); the shadow searches are counted for no arm;
- a model variant's shadow search embeds the query with control's own model.
"""

from __future__ import annotations

import asyncio
import random

import numpy as np
import pytest

from searchgw.gateway.shadow import ShadowSampler
from searchgw.v1 import collection_service_pb2 as coll_pb
from searchgw.v1 import experiment_service_pb2 as exp_pb
from searchgw.v1 import rollout_service_pb2 as roll_pb
from tests.gateway.outcome_rig import OutcomeRig
from tests.gateway.test_model_canary import model_rig  # noqa: F401 - a fixture used below

DIMENSION = 384
POINTS = 200
ROUNDS = 6
SEARCHES_PER_ROUND = 60
BATCH = 6
Status = exp_pb.VariantVerdict


def unit_rows(count: int, seed: int) -> np.ndarray:
    rows = np.random.default_rng(seed).normal(size=(count, DIMENSION)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


VECTORS = unit_rows(POINTS, 1)
SHUFFLED = VECTORS[np.random.default_rng(2).permutation(POINTS)]


def points(vectors: np.ndarray) -> list[dict]:
    return [{"id": i + 1, "vector": vectors[i].tolist(), "payload": {"n": i}} for i in range(len(vectors))]


def sample(server, name: str, labels: dict[str, str]) -> float:
    return server.metrics.registry.get_sample_value(name, labels) or 0.0


def seeded_sampler(server, seed: int = 7, max_in_flight: int = 4) -> ShadowSampler:
    sampler = ShadowSampler(max_in_flight, observe=server.metrics.observe_shadow, random=random.Random(seed).random)
    server.core.shadow = sampler
    return sampler


async def arms(client) -> None:
    """docs → docs-a (control, VECTORS); docs-shuffled (the vectors shuffled among the ids); docs-rebuilt (the
    same points, another HNSW build)."""
    await client.create_collection("docs-a", dimension=DIMENSION)
    await client.create_collection("docs-shuffled", dimension=DIMENSION)
    await client.create_collection("docs-rebuilt", dimension=DIMENSION,
                                   hnsw=coll_pb.HnswConfig(m=8, ef_construct=32, full_scan_threshold=10))
    await client.upsert("docs-a", points(VECTORS))
    await client.upsert("docs-shuffled", points(SHUFFLED))
    await client.upsert("docs-rebuilt", points(VECTORS))
    await client.update_alias("docs", "docs-a")


async def run_experiment(rig, *, guard: bool) -> tuple[object, object, exp_pb.Experiment, dict[str, int]]:
    """Experiment exp over control, `shuffled` and `rebuilt` (even split); keyed searches near stored points;
    each search reports a click, and every `shuffled` search (only those) a conversion too: without the guard
    the shuffled variant converts best by far."""
    server, client = await rig.start()
    await arms(client)
    quality = roll_pb.QualityPolicy(shadow_sample_rate=0.5, min_samples=20)
    await client.create_experiment("exp", "docs", [("shuffled", "docs-shuffled", 0), ("rebuilt", "docs-rebuilt", 0)],
                                   interval_s=1.0, quality=quality, quality_guard=guard)
    await client.start_experiment("exp")
    sampler = seeded_sampler(server)
    served: dict[str, int] = {}
    experiment = None
    for round_ in range(ROUNDS):
        rng = np.random.default_rng(100 + round_)
        outcomes = []
        for start in range(0, SEARCHES_PER_ROUND, BATCH):
            calls = []
            for i in range(start, start + BATCH):
                query = VECTORS[rng.integers(POINTS)] + rng.normal(scale=0.02, size=DIMENSION).astype(np.float32)
                calls.append(client.search("docs", vector=(query / np.linalg.norm(query)).tolist(), limit=10,
                                           routing_key=f"user-{round_}-{i}"))
            for answer in await asyncio.gather(*calls):
                served[answer.route.variant] = served.get(answer.route.variant, 0) + 1
                outcomes.append((answer.search_id, "click"))
                if answer.route.variant == "shuffled":
                    outcomes.append((answer.search_id, "conversion"))
            await sampler.drain()
        await client.report_outcomes(outcomes)
        rig.clock.advance(1.0)
        await server.experiments.tick()
        experiment = await client.get_experiment("exp")
    return server, client, experiment, served


def verdict_of(experiment: exp_pb.Experiment, arm: str) -> exp_pb.VariantVerdict:
    return next(v for v in experiment.verdicts if v.arm == arm)


async def test_with_the_guard_on_a_shuffled_variant_is_vetoed_and_a_rebuilt_copy_is_not(rig):
    server, client, experiment, served = await run_experiment(rig, guard=True)
    print(f"\nguard on, {served}: {experiment.summary}")
    assert set(served) == {"control", "shuffled", "rebuilt"}

    shuffled, rebuilt = verdict_of(experiment, "shuffled"), verdict_of(experiment, "rebuilt")
    # the shuffled variant converts best, yet cannot win: vetoed, with the numbers
    assert experiment.winner != "shuffled"
    assert shuffled.status == Status.STATUS_BETTER_BUT_HARMFUL
    report = shuffled.quality
    assert report.rejected and report.samples >= 20 and report.median_overlap < 0.6 and report.k == 10
    assert report.below > report.samples / 2 and report.differing_ids
    assert "overlap@10 median" in shuffled.veto and "the variant's results differ from control's" in shuffled.veto
    assert "shuffled vetoed: quality: overlap@10 median" in experiment.summary
    vetoes = [d for d in experiment.decisions if d.kind == "vetoed"]
    assert len(vetoes) == 1 and vetoes[0].reason.startswith("shuffled: quality:") and vetoes[0].actor == "controller"
    # the faithful copy with a rebuilt index is not vetoed, and its numbers are shown
    assert rebuilt.veto == "" and not rebuilt.quality.rejected and rebuilt.status != Status.STATUS_HARMFUL
    assert rebuilt.quality.samples >= 20
    assert rebuilt.quality.median_overlap >= 0.9 and rebuilt.quality.mean_rbo >= 0.9
    assert "rebuilt quality: overlap@10 median" in experiment.summary
    # the alpha of the guard is split across the two variants
    assert experiment.policy.quality_guard and experiment.policy.quality.alpha == pytest.approx(0.01)
    # Prometheus
    labels = {"experiment": "exp", "arm": "shuffled"}
    assert sample(server, "searchgw_experiment_quality_vetoed", labels) == 1
    assert sample(server, "searchgw_experiment_quality_vetoed", {**labels, "arm": "rebuilt"}) == 0
    assert sample(server, "searchgw_experiment_shadow_queries_total", {**labels, "outcome": "compared"}) == \
        report.samples
    assert sample(server, "searchgw_experiment_shadow_overlap_ratio_count", labels) == report.samples
    assert sample(server, "searchgw_experiment_quality_median_overlap", {**labels, "arm": "rebuilt"}) >= 0.9
    # shadow searches are counted for no arm: the arms' searches are exactly the users'
    assert sum(a.searches for a in experiment.arms) == ROUNDS * SEARCHES_PER_ROUND
    assert {a.arm: a.searches for a in experiment.arms} == served
    # control never got a shadow search of its own (only variants' searches are shadowed)
    assert sample(server, "searchgw_experiment_shadow_queries_total",
                  {"experiment": "exp", "arm": "control", "outcome": "compared"}) == 0
    # the rollout shadow metrics are untouched by an experiment's shadow work
    assert sample(server, "searchgw_shadow_queries_total", {"rollout": "exp", "outcome": "compared"}) == 0


async def test_with_the_guard_off_the_numbers_are_shown_and_nothing_is_vetoed(rig):
    server, client, experiment, served = await run_experiment(rig, guard=False)
    print(f"\nguard off, {served}: {experiment.summary}")
    shuffled = verdict_of(experiment, "shuffled")
    assert shuffled.quality.samples >= 20 and shuffled.quality.rejected  # the evidence is there ...
    assert shuffled.veto == "" and "vetoed" not in experiment.summary  # ... but the guard is off
    assert experiment.winner == "shuffled" and shuffled.status == Status.STATUS_BETTER
    assert not [d for d in experiment.decisions if d.kind == "vetoed"]
    assert sample(server, "searchgw_experiment_quality_vetoed", {"experiment": "exp", "arm": "shuffled"}) == 0


async def test_bad_quality_settings_are_refused_naming_the_field(rig):
    from searchgw.errors import InvalidArgument

    server, client = await rig.start()
    await arms(client)
    cases = ((roll_pb.QualityPolicy(shadow_sample_rate=0.9), False, "experiment.policy.quality.shadow_sample_rate"),
             (roll_pb.QualityPolicy(shadow_sample_rate=0.1, min_overlap=0.655), False,
              "experiment.policy.quality.min_overlap"),
             (None, True, "experiment.policy.quality_guard"))
    for quality, guard, field in cases:
        with pytest.raises(InvalidArgument) as caught:
            await client.create_experiment("exp", "docs", ["docs-rebuilt"], quality=quality, quality_guard=guard)
        assert caught.value.field == field
    assert not (await client.list_experiments()).experiments


# -- off the request path ------------------------------------------------------------------------------

@pytest.fixture
async def outcome_rig(tmp_path, embedder_server):
    rig = OutcomeRig(tmp_path, embedder_server.address)
    yield rig
    await rig.close()


async def test_a_hanging_control_never_delays_a_variants_caller_and_a_full_sampler_drops_and_counts(outcome_rig):
    server, client, _ = await outcome_rig.start()
    await arms(client)
    await client.create_experiment("exp", "docs", [("rebuilt", "docs-rebuilt", 9999)], control_split_bps=1,
                                   quality=roll_pb.QualityPolicy(shadow_sample_rate=0.5))
    await client.start_experiment("exp")
    sampler = ShadowSampler(1, observe=server.metrics.observe_shadow, random=lambda: 0.0)  # every search
    server.core.shadow = sampler
    # control's searches hang (a Stall, until released): only the shadow searches go there
    server.backend.inject("docs-a", delay=1.0, operations={"search"})
    keys = [f"k{i}" for i in range(40)]
    keys = [k for k in keys if server.experiments.held("docs").assign(k).arm == "rebuilt"][:5]
    answers = [await client.search("docs", vector=VECTORS[0].tolist(), limit=3, routing_key=key) for key in keys]
    assert len(answers) == 5 and all(a.route.variant == "rebuilt" and len(a.points) == 3 for a in answers)
    await outcome_rig.stall.wait_held(1)  # the first shadow hangs on control, holding the only slot
    assert sampler.in_flight == 1
    labels = {"experiment": "exp", "arm": "rebuilt"}
    assert sample(server, "searchgw_experiment_shadow_queries_total", {**labels, "outcome": "dropped_busy"}) == 4
    outcome_rig.stall.release()
    await sampler.drain()
    assert sample(server, "searchgw_experiment_shadow_queries_total", {**labels, "outcome": "compared"}) == 1
    # the users' five searches are counted for the variant; the shadow search for nobody
    experiment = await client.get_experiment("exp")
    assert {a.arm: a.searches for a in experiment.arms} == {"control": 0, "rebuilt": 5}


# -- a model variant -----------------------------------------------------------------------------------

async def test_a_model_variants_shadow_embeds_the_query_with_controls_own_model(model_rig):  # noqa: F811
    """docs-v2 embeds with CANARY_MODEL (the same weights under another name: no shared embedding cache).
    A text search served by the variant is embedded once with the variant's model for the answer and once
    with control's for the shadow search; each arm's own embedding finds the same top 3."""
    rig, server, client = model_rig
    await client.abort_rollout("r1", "an experiment instead")
    await client.create_experiment("exp", "docs", [("model", "docs-v2", 9999)], control_split_bps=1, interval_s=1.0,
                                   quality=roll_pb.QualityPolicy(shadow_sample_rate=0.5))
    await client.start_experiment("exp")
    sampler = ShadowSampler(4, observe=server.metrics.observe_shadow, random=lambda: 0.0)
    server.core.shadow = sampler
    key = next(k for k in (f"k{i}" for i in range(40)) if server.experiments.held("docs").assign(k).arm == "model")
    before = sample(server, "searchgw_embed_duration_seconds_count", {})
    answer = await client.search("docs", text="how long should bread dough rise?", limit=3, routing_key=key)
    assert answer.route.variant == "model" and answer.route.collection == "docs-v2"
    await sampler.drain()
    assert sample(server, "searchgw_embed_duration_seconds_count", {}) - before == 2
    rig.clock.advance(1.0)
    await server.experiments.tick()
    report = verdict_of(await client.get_experiment("exp"), "model").quality
    assert (report.samples, report.median_overlap, report.mean_rbo) == (1, 1.0, 1.0)
