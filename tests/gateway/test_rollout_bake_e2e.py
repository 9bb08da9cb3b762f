"""The bake over a real gateway: real gRPC on loopback, the real embedded engine, the real embedder.

Evidence for issue 12 ("promote, write for a while during the bake, undo: every acknowledged write is in
the collection that serves after the undo"): concurrent upserts and deletes through the gRPC server
before, during and after an UndoRollout; afterwards every acknowledged upsert is in the collection the
alias serves (with its last acknowledged payload), and every acknowledged delete is absent. The rollout
controller runs on a manual clock (ticks called by the test); the grace period's DELETE deletes the old
collection on the engine, and keeps it while an alias points at it.
"""

from __future__ import annotations

import asyncio
import functools
import random

import numpy as np
import pytest

from searchgw.errors import FailedPrecondition
from searchgw.gateway.client import point_id, stage
from searchgw.v1 import common_pb2
from searchgw.v1 import rollout_service_pb2 as roll_pb
from tests import rigs
from tests.gateway.test_gateway import PASSAGE_POINTS, policy, query_vector, tick, traffic

State = roll_pb.Rollout
Kind = roll_pb.Decision
two_arms = functools.partial(rigs.two_arms, points=PASSAGE_POINTS)

WRITERS = 4
IDS_PER_WRITER = 40
WRITES_PER_WRITER = 60


def promotion(bake_s: float, grace_s: float, action: int = roll_pb.PromotionPolicy.OLD_COLLECTION_ACTION_KEEP):
    message = roll_pb.PromotionPolicy(old_collection_action=action)
    message.bake_duration.FromSeconds(int(bake_s))
    message.grace_period.FromSeconds(int(grace_s))
    return message


def unit(rng: random.Random) -> list[float]:
    vector = np.array([rng.gauss(0, 1) for _ in range(384)], dtype=np.float32)
    return (vector / np.linalg.norm(vector)).tolist()


async def start_baking(rig, client, server, **promotion_args) -> None:
    await two_arms(client)
    await client.create_rollout("r1", "docs", "docs-v2", analysis=policy(), stages=[stage(10, 20, 5), stage(100, 20, 5)],
                                promotion=promotion(**promotion_args))
    await traffic(client, 200, prefix="before")  # primary's calls: the baseline the bake is judged against
    await tick(rig, server)
    baking = await client.promote_rollout("r1", "looks good")
    if promotion_args["bake_s"]:
        assert baking.state == State.STATE_BAKING and baking.decisions[-1].kind == Kind.KIND_BAKE_STARTED
    else:
        assert baking.state == State.STATE_PROMOTED and baking.decisions[-1].kind == Kind.KIND_PROMOTED
    assert await server.backend.resolve("docs") == "docs-v2"


async def stored(client, ids: list[int]) -> dict[int, dict]:
    """The points of `ids` that the collection behind `docs` holds, with their payloads (searched by id)."""
    found: dict[int, dict] = {}
    for start in range(0, len(ids), 50):
        batch = ids[start:start + 50]
        only = common_pb2.Filter(must=[common_pb2.Condition(has_id=common_pb2.PointIdList(
            ids=[point_id(i) for i in batch]))])
        response = await client.search("docs", vector=query_vector(), limit=len(batch), filter=only,
                                       with_payload=True)
        for point in response.points:
            found[point.id.num] = dict(point.payload)
    return found


async def test_writes_during_the_bake_and_around_an_undo_are_all_in_the_collection_that_serves_after(rig):
    server, client = await rig.start()
    await start_baking(rig, client, server, bake_s=600, grace_s=3600)

    acknowledged: dict[int, int | None] = {}  # id → last acknowledged payload version (None: deleted)
    failures: list[BaseException] = []
    done = 0
    undo_at = WRITERS * WRITES_PER_WRITER // 2
    halfway = asyncio.Event()
    window: list[int] = []  # writes acknowledged when the undo returned

    async def writer(number: int) -> None:
        nonlocal done
        rng = random.Random(number)
        ids = [10_000 + number * IDS_PER_WRITER + i for i in range(IDS_PER_WRITER)]
        for version in range(1, WRITES_PER_WRITER + 1):
            point = rng.choice(ids)
            try:
                if point in acknowledged and acknowledged[point] is not None and rng.random() < 0.3:
                    await client.delete("docs", ids=[point])
                    acknowledged[point] = None
                else:
                    await client.upsert("docs", [{"id": point, "vector": unit(rng),
                                                  "payload": {"writer": number, "version": version}}])
                    acknowledged[point] = version
            except Exception as exc:  # an unacknowledged write: it must not happen, and is reported
                failures.append(exc)
            done += 1
            if done >= undo_at:
                halfway.set()

    async def operator() -> None:
        await traffic(client, 100, prefix="baking")  # the bake's checks run on the new collection's traffic
        await tick(rig, server)
        await halfway.wait()
        undone = await client.undo_rollout("r1", "recall dropped")
        assert undone.state == State.STATE_UNDONE
        window.append(done)

    await asyncio.gather(operator(), *(writer(n) for n in range(WRITERS)))

    assert failures == []
    assert done == WRITERS * WRITES_PER_WRITER
    assert undo_at <= window[0] < done  # writes were acknowledged before, and after, the undo
    assert await server.backend.resolve("docs") == "docs-v1"  # the old collection serves again
    rollout = await client.get_rollout("r1")
    kinds = [d.kind for d in rollout.decisions]
    assert kinds[-1] == Kind.KIND_UNDONE and Kind.KIND_BAKE_STARTED in kinds
    found = await stored(client, sorted(acknowledged))
    upserted = {i: v for i, v in acknowledged.items() if v is not None}
    deleted = {i for i, v in acknowledged.items() if v is None}
    assert deleted, "the run should delete some points"
    assert {i: p["version"] for i, p in found.items()} == upserted  # every upsert, its last version; no delete
    assert not deleted & found.keys()
    original = await stored(client, [p["id"] for p in PASSAGE_POINTS])
    assert len(original) == len(PASSAGE_POINTS)
    print(f"\nbake evidence: {done} acknowledged writes ({len(upserted)} ids upserted, {len(deleted)} deleted) "
          f"by {WRITERS} concurrent writers, undo after {undo_at} (returned after {window[0]}); all in docs-v1 after the undo")


async def test_after_the_bake_undo_is_refused_and_the_grace_period_deletes_the_old_collection(rig):
    server, client = await rig.start(manual_wall_clock=True)
    await start_baking(rig, client, server, bake_s=600, grace_s=3600,
                       action=roll_pb.PromotionPolicy.OLD_COLLECTION_ACTION_DELETE)
    for _ in range(60):  # 600 s of the bake, a check every 10 s
        await tick(rig, server)
    rollout = await client.get_rollout("r1")
    assert rollout.state == State.STATE_PROMOTED and rollout.decisions[-1].kind == Kind.KIND_BAKE_COMPLETED
    await client.upsert("docs", [{"id": 77_777, "vector": query_vector(7), "payload": {"after": True}}])
    with pytest.raises(FailedPrecondition, match="its bake is over, and writes since then reached only 'docs-v2'"):
        await client.undo_rollout("r1")

    await tick(rig, server, 3600.0)

    rollout = await client.get_rollout("r1")
    assert rollout.decisions[-1].kind == Kind.KIND_OLD_COLLECTION_DELETED
    names = {info.spec.name for info in await server.backend.list_collections()}
    assert "docs-v1" not in names and "docs-v2" in names


async def test_the_grace_period_keeps_an_old_collection_an_alias_points_at(rig):
    server, client = await rig.start(manual_wall_clock=True)
    await start_baking(rig, client, server, bake_s=0, grace_s=60,
                       action=roll_pb.PromotionPolicy.OLD_COLLECTION_ACTION_DELETE)
    await client.update_alias("docs-previous", "docs-v1")

    await tick(rig, server, 60.0)

    rollout = await client.get_rollout("r1")
    assert rollout.decisions[-1].kind == Kind.KIND_OLD_COLLECTION_KEPT
    assert "alias(es) docs-previous point at it" in rollout.decisions[-1].reason
    assert "docs-v1" in {info.spec.name for info in await server.backend.list_collections()}
