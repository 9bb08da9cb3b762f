"""The gateway's metrics stay bounded and honest whatever clients send.

Real gateways on loopback (edge backend, the session's embedder); the registry is read directly.
"""

from __future__ import annotations

import asyncio
import pathlib
import uuid

import pytest
from prometheus_client import generate_latest

from searchgw.gateway.client import stage
from searchgw.gateway.metrics import FINISHED_ROLLOUT_LINGER_S, OTHER_COLLECTION
from searchgw.errors import SearchgwError

VECTOR = [1.0, 0.0, 0.5, -1.0]


def sample(server, name: str, labels: dict[str, str]) -> float:
    return server.metrics.registry.get_sample_value(name, labels) or 0.0


def series(server) -> int:
    return sum(len(family.samples) for family in server.metrics.registry.collect())


def series_of(server, family_name: str) -> list[dict[str, str]]:
    return [s.labels for family in server.metrics.registry.collect() if family.name == family_name
            for s in family.samples]


async def eventually(predicate, timeout_s: float = 10.0) -> None:
    """Wait until the server has observed a call that the client already saw end."""
    loop = asyncio.get_running_loop()
    until = loop.time() + timeout_s
    while not predicate():
        assert loop.time() < until, "the gateway never counted the call"
        await asyncio.sleep(0.01)


async def vector_collections(client, *names: str) -> None:
    for name in names:
        await client.create_collection(name, dimension=4)
        await client.upsert(name, [{"id": i, "vector": VECTOR} for i in range(1, 4)])


async def test_series_count_stays_flat_under_ten_thousand_calls_with_random_collection_names(rig):
    server, client = await rig.start()
    await vector_collections(client, "vecs")

    async def burst(count: int) -> None:
        async def one(i: int) -> None:
            with pytest.raises(SearchgwError):
                await client.search(f"no-such-{uuid.uuid4().hex}", vector=VECTOR, limit=1)
        for start in range(0, count, 500):
            await asyncio.gather(*(one(i) for i in range(start, min(count, start + 500))))

    await client.search("vecs", vector=VECTOR, limit=1)
    await burst(100)  # every series such calls make exists now
    before = series(server)
    await burst(10_000)
    after = series(server)
    print(f"\nseries before: {before}, after 10,000 more calls with random names: {after}")
    assert after == before
    assert sample(server, "searchgw_requests_total", {"rpc": "Search", "collection": OTHER_COLLECTION,
                                                      "arm": "primary", "code": "NOT_FOUND"}) == 10_100
    assert sample(server, "searchgw_requests_total", {"rpc": "Search", "collection": "vecs", "arm": "primary",
                                                      "code": "OK"}) == 1


async def test_collection_labels_follow_creates_aliases_and_deletes(rig):
    server, client = await rig.start()
    await vector_collections(client, "vec-a")
    await client.update_alias("vecs", "vec-a")
    await client.search("vecs", vector=VECTOR, limit=1)
    await client.search("vec-a", vector=VECTOR, limit=1)
    assert sample(server, "searchgw_requests_total", {"rpc": "Search", "collection": "vecs", "arm": "primary",
                                                      "code": "OK"}) == 1
    assert sample(server, "searchgw_requests_total", {"rpc": "Search", "collection": "vec-a", "arm": "primary",
                                                      "code": "OK"}) == 1
    await vector_collections(client, "vec-b")
    await client.update_alias("vecs", "vec-b")
    await client.delete_collection("vec-a")
    with pytest.raises(SearchgwError):
        await client.search("vec-a", vector=VECTOR, limit=1)
    assert sample(server, "searchgw_requests_total", {"rpc": "Search", "collection": OTHER_COLLECTION,
                                                      "arm": "primary", "code": "NOT_FOUND"}) == 1


async def test_names_that_exist_at_start_up_are_labelled(rig):
    server, client = await rig.start()
    await vector_collections(client, "vecs")
    await rig.stop(server)
    server, client = await rig.start()
    await client.search("vecs", vector=VECTOR, limit=1)
    assert sample(server, "searchgw_requests_total", {"rpc": "Search", "collection": "vecs", "arm": "primary",
                                                      "code": "OK"}) == 1


async def test_admin_calls_carry_no_collection_label(rig):
    server, client = await rig.start()
    await client.create_collection("vecs", dimension=4)
    await client.list_collections()
    assert sample(server, "searchgw_admin_requests_total", {"rpc": "CreateCollection", "code": "OK"}) == 1
    assert sample(server, "searchgw_admin_requests_total", {"rpc": "ListCollections", "code": "OK"}) == 1
    assert {labels["rpc"] for labels in series_of(server, "searchgw_requests")} <= {"Search", "Upsert", "Delete"}


async def test_forced_arm_calls_are_labelled_as_forced_and_never_as_the_canary(rig):
    server, client = await rig.start()
    await vector_collections(client, "vec-a", "vec-b")
    await client.update_alias("vecs", "vec-a")
    await client.create_rollout("r1", "vecs", "vec-b", stages=[stage(50, 3600, 0), stage(100)])
    for i in range(20):
        response = await client.search("vecs", vector=VECTOR, limit=1, routing_key=f"user-{i}", force_arm="canary")
        assert response.route.collection == "vec-b"
    await client.search("vecs", vector=VECTOR, limit=1, force_arm="primary")
    assert sample(server, "searchgw_requests_total", {"rpc": "Search", "collection": "vecs", "arm": "canary_forced",
                                                      "code": "OK"}) == 20
    assert sample(server, "searchgw_requests_total", {"rpc": "Search", "collection": "vecs",
                                                      "arm": "primary_forced", "code": "OK"}) == 1
    assert not [s for s in series_of(server, "searchgw_requests") if s.get("arm") in ("canary", "primary")]


async def test_calls_that_end_by_deadline_or_cancellation_are_counted(rig):
    # A backend that hangs is a fault we cannot cause for real: FaultInjectingBackend delays it.
    server, client = await rig.start()
    await vector_collections(client, "slow")
    server.backend.inject("slow", delay=60.0, operations={"search"})
    with pytest.raises(SearchgwError) as info:
        await client.search("slow", vector=VECTOR, limit=1, timeout=0.3)
    assert info.value.code_name == "DEADLINE_EXCEEDED"
    labels = {"rpc": "Search", "collection": "slow", "arm": "primary", "code": "DEADLINE_EXCEEDED"}
    await eventually(lambda: sample(server, "searchgw_requests_total", labels) == 1)

    call = asyncio.create_task(client.search("slow", vector=VECTOR, limit=1, timeout=30))
    await eventually(lambda: server.backend.hits["slow"] == 2)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    labels = {"rpc": "Search", "collection": "slow", "arm": "primary", "code": "CANCELLED"}
    await eventually(lambda: sample(server, "searchgw_requests_total", labels) == 1)


async def test_no_created_series_are_exported(rig):
    server, client = await rig.start()
    await vector_collections(client, "vecs")
    await client.search("vecs", vector=VECTOR, limit=1)
    text = generate_latest(server.metrics.registry).decode()
    assert "searchgw_requests_total{" in text
    assert "_created" not in text


async def test_an_ended_rollout_is_exported_for_a_while_then_removed_and_not_restored_at_start_up(rig):
    server, client = await rig.start()
    await vector_collections(client, "vec-a", "vec-b", "vec-c")
    await client.update_alias("vecs", "vec-a")
    await client.create_rollout("r1", "vecs", "vec-b", stages=[stage(50, 3600, 0), stage(100)])
    await client.abort_rollout("r1", "test")
    await client.create_rollout("r2", "vecs", "vec-c", stages=[stage(50, 3600, 0), stage(100)])
    # The end is visible to scrapes (and the rolled-back alert) for a while...
    assert sample(server, "searchgw_rollout_state", {"rollout": "r1", "collection": "vecs", "state": "aborted"}) == 1
    assert sample(server, "searchgw_rollout_decisions_total", {"rollout": "r1", "kind": "aborted"}) == 1
    rig.clock.advance(FINISHED_ROLLOUT_LINGER_S - 1)
    assert server.metrics.sweep() == []
    rig.clock.advance(1)
    assert server.metrics.sweep() == ["r1"]
    # ...then every r1 series is gone, and r2's stay.
    text = generate_latest(server.metrics.registry).decode()
    assert 'rollout="r1"' not in text
    assert sample(server, "searchgw_rollout_weight_ratio", {"rollout": "r2", "collection": "vecs"}) == 0.5

    await client.abort_rollout("r2", "test")
    await rig.stop(server)
    server, client = await rig.start()
    assert (await client.get_rollout("r2")).state == 6  # STATE_ABORTED: the store still has it
    assert "searchgw_rollout" not in "".join(
        line for line in generate_latest(server.metrics.registry).decode().splitlines()
        if not line.startswith("#"))


async def test_each_metric_family_exported_is_documented(rig):
    server, _ = await rig.start()
    docs = pathlib.Path(__file__).parents[2] / "docs"
    documented = (docs / "architecture.md").read_text() + (docs / "operations.md").read_text()
    for family in server.metrics.registry.collect():
        name = f"{family.name}_total" if family.type == "counter" else family.name
        assert f"`{name}" in documented, name



async def test_every_sequential_test_is_exported_after_a_check_and_removed_with_its_rollout(rig):
    server, client = await rig.start()
    await vector_collections(client, "vec-a", "vec-b")
    await client.update_alias("vecs", "vec-a")
    await client.create_rollout("r1", "vecs", "vec-b", stages=[stage(50, 3600, 0), stage(100)])
    await asyncio.gather(*(client.search("vecs", vector=VECTOR, routing_key=f"k{i}") for i in range(40)))
    rig.clock.advance(10)
    await server.controller.tick()
    tests = {labels["test"] for labels in series_of(server, "searchgw_rollout_test_p_value")}
    assert tests == {"error_ratio", "latency_ratio", "error_limit", "sample_ratio"}
    assert sample(server, "searchgw_rollout_test_p_value", {"rollout": "r1", "test": "error_ratio"}) == 1.0
    assert sample(server, "searchgw_rollout_test_rejected", {"rollout": "r1", "test": "error_limit"}) == 0
    await client.abort_rollout("r1", "test")
    rig.clock.advance(FINISHED_ROLLOUT_LINGER_S)
    assert server.metrics.sweep() == ["r1"]
    assert series_of(server, "searchgw_rollout_test_p_value") == []
