"""Writes to both arms of a rollout, ordered per point id, and writes racing with rollout creation.

Live gateway (outcome_rig): the fault injector's delay is a Stall, held until released, so the bad
interleavings are forced, not waited for. Where the test must know that a second call has got as far
as it can, it waits for a condition (the call done, held in the stall, or waiting in the gateway's
write order), never for a length of time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from searchgw.v1 import common_pb2
from tests.gateway.outcome_rig import OutcomeRig, start_rollout, two_arms, unit_vector


@pytest.fixture
async def outcome_rig(tmp_path, embedder_server):
    rig = OutcomeRig(tmp_path, embedder_server.address)
    yield rig
    await rig.close()


async def until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Until `condition()` holds (a condition, polled; no test depends on how long it takes)."""
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.001)


def waiting_in_gateway(server) -> int:
    order = getattr(server.core, "write_order", None)  # absent without the fix: never waiting
    return 0 if order is None else order.waiting


async def payload_of(client, collection: str, seed: int) -> dict:
    response = await client.search(collection, vector=unit_vector(seed), limit=1, with_payload=True)
    point = response.points[0]
    return {key: value.string_value for key, value in point.payload.fields.items()} | {"id": point.id.num}


async def test_concurrent_upserts_of_one_id_leave_both_arms_identical(outcome_rig):
    server, client, _ = await outcome_rig.start()
    await two_arms(client)
    await start_rollout(client, 50)
    stall = outcome_rig.stall
    server.backend.inject("docs-v2", delay=1.0, operations={"upsert"})  # the canary's next write is held
    first = asyncio.create_task(client.upsert("docs", [{"id": 1, "vector": unit_vector(0), "payload": {"v": "a"}}]))
    await stall.wait_held(1)  # "a" is on primary; its canary write waits
    server.backend.clear("docs-v2")
    second = asyncio.create_task(client.upsert("docs", [{"id": 1, "vector": unit_vector(0),
                                                         "payload": {"v": "b"}}]))
    # unordered, "b" lands on both arms now; ordered, it waits for "a" to finish on both
    await until(lambda: second.done() or waiting_in_gateway(server) >= 1)
    stall.release()
    await asyncio.gather(first, second)
    on_primary, on_canary = await payload_of(client, "docs-v1", 0), await payload_of(client, "docs-v2", 0)
    assert on_primary == on_canary == {"v": "b", "id": 1}


async def test_a_delete_by_filter_and_an_upsert_land_in_the_same_order_on_both_arms(outcome_rig):
    server, client, _ = await outcome_rig.start()
    await two_arms(client)
    await start_rollout(client, 50)
    await client.upsert("docs", [{"id": 1, "vector": unit_vector(0), "payload": {"v": "old"}}])
    stall = outcome_rig.stall
    server.backend.inject("docs-v2", delay=1.0, operations={"upsert"})
    upsert = asyncio.create_task(client.upsert("docs", [{"id": 1, "vector": unit_vector(0),
                                                         "payload": {"v": "new"}}]))
    await stall.wait_held(1)
    server.backend.clear("docs-v2")
    condition = common_pb2.Condition(field=common_pb2.FieldCondition(key="v", keyword="new"))
    delete = asyncio.create_task(client.delete("docs", filter=common_pb2.Filter(must=[condition])))
    await until(lambda: delete.done() or waiting_in_gateway(server) >= 1)
    stall.release()
    await asyncio.gather(upsert, delete)
    for name in ("docs-v1", "docs-v2"):  # the delete came second on both: the point is gone from both
        assert (await client.get_collection(name)).points_count == 7, name


async def test_an_upsert_that_starts_while_a_rollout_is_being_created_lands_in_both_arms(outcome_rig):
    server, client, _ = await outcome_rig.start()
    await two_arms(client)
    stall = outcome_rig.stall
    # CreateRollout is held resolving the alias; without the fix, so would be a write's own resolve of it
    server.backend.inject("docs", delay=1.0, operations={"resolve"})
    creating = asyncio.create_task(start_rollout(client, 50))
    await stall.wait_held(1)
    upsert = asyncio.create_task(client.upsert("docs", [{"id": 100, "vector": unit_vector(100)}]))
    await until(lambda: stall.held >= 2 or waiting_in_gateway(server) >= 1)
    stall.release()
    await creating
    response = await upsert
    assert sorted(response.collections) == ["docs-v1", "docs-v2"]
    for name in ("docs-v1", "docs-v2"):
        assert (await client.get_collection(name)).points_count == 9, name


async def test_a_rollout_is_published_only_after_the_writes_in_flight_on_its_collection(outcome_rig):
    server, client, _ = await outcome_rig.start()
    await two_arms(client)
    stall = outcome_rig.stall
    server.backend.inject("docs-v1", delay=1.0, operations={"upsert"})  # a write to primary, held in flight
    upsert = asyncio.create_task(client.upsert("docs", [{"id": 100, "vector": unit_vector(100)}]))
    await stall.wait_held(1)
    creating = asyncio.create_task(start_rollout(client, 50))
    order = getattr(server.core, "write_order", None)  # absent without the fix: the rollout goes live at once
    await until(lambda: creating.done() or server.router.table("docs") is not None
                or order is not None and order.in_flight("docs") == 1 and order.held("docs"))
    assert server.router.table("docs") is None  # not live while a write that read the old table runs
    stall.release()
    assert (await upsert).collections == ["docs-v1"]  # it finished before the rollout existed
    await creating
    assert server.router.table("docs") is not None
    later = await client.upsert("docs", [{"id": 101, "vector": unit_vector(101)}])
    assert sorted(later.collections) == ["docs-v1", "docs-v2"]
