"""A vector backend fails under one arm of a rollout.

The failures are injected with `FaultInjectingBackend`: it stands for an engine failure we cannot cause
for real in a test (a Qdrant node down, a corrupt segment, a full disk). `FaultKind.UNAVAILABLE` is a
backend that reports it cannot reach its engine; `FaultKind.EXCEPTION` is the engine raising something
unexpected, which the core must also turn into UNAVAILABLE (never INTERNAL).

On the canary, primary answers instead (`route.fallback`), and each such answer is counted in
`searchgw_canary_fallbacks_total`. On primary there is nothing to fall back to: the caller gets
UNAVAILABLE, counted in `searchgw_requests_total{code="UNAVAILABLE"}`.
"""

from __future__ import annotations

import asyncio

import pytest

from searchgw.gateway.backends import FaultKind
from searchgw.gateway.client import stage
from searchgw.errors import SearchgwError
from searchgw.v1 import common_pb2
from tests.rigs import two_arms

VECTOR = [1.0, 0.0, 0.5, -1.0]


async def two_arms_in_rollout(client) -> None:
    """vecs → vec-a (primary) and vec-b (canary) in rollout r1 at 50 %."""
    await two_arms(client, [{"id": i, "vector": VECTOR} for i in range(1, 4)], alias="vecs", primary="vec-a",
                   canary="vec-b", dimension=4)
    await client.create_rollout("r1", "vecs", "vec-b", stages=[stage(50, 3600, 0), stage(100)])


async def searches(client, count: int) -> list:
    async def one(i: int):
        try:
            return await client.search("vecs", vector=VECTOR, limit=2, routing_key=f"user-{i}", timeout=10)
        except SearchgwError as exc:
            return exc

    return await asyncio.gather(*(one(i) for i in range(count)))


def sample(server, name: str, labels: dict[str, str]) -> float:
    return server.metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize("kind", [FaultKind.EXCEPTION, FaultKind.UNAVAILABLE])
async def test_a_failing_canary_is_answered_by_primary_and_each_fallback_is_counted(rig, kind):
    server, client = await rig.start()
    await two_arms_in_rollout(client)
    server.backend.inject("vec-b", error=kind, operations={"search"})
    results = await searches(client, 200)
    assert not [r for r in results if isinstance(r, Exception)]
    fallbacks = [r for r in results if r.route.fallback]
    assert 60 < len(fallbacks) < 140  # about the canary's 50 %
    assert {(r.route.arm, r.route.collection) for r in fallbacks} == {(common_pb2.ARM_PRIMARY, "vec-a")}
    assert sample(server, "searchgw_canary_fallbacks_total", {"collection": "vecs"}) == len(fallbacks)
    assert server.backend.hits["vec-b"] == len(fallbacks)


@pytest.mark.parametrize("kind", [FaultKind.EXCEPTION, FaultKind.UNAVAILABLE])
async def test_a_failing_primary_is_unavailable_to_its_callers_and_counted(rig, kind):
    server, client = await rig.start()
    await two_arms_in_rollout(client)
    server.backend.inject("vec-a", error=kind, operations={"search"})
    results = await searches(client, 200)
    failed = [r for r in results if isinstance(r, Exception)]
    served = [r for r in results if not isinstance(r, Exception)]
    assert 60 < len(failed) < 140
    assert {e.code_name for e in failed} == {"UNAVAILABLE"}
    assert {(r.route.arm, r.route.fallback) for r in served} == {(common_pb2.ARM_CANARY, False)}
    assert sample(server, "searchgw_requests_total", {"rpc": "Search", "collection": "vecs", "arm": "primary",
                                                      "code": "UNAVAILABLE"}) == len(failed)
    assert sample(server, "searchgw_canary_fallbacks_total", {"collection": "vecs"}) == 0


async def test_when_both_arms_fail_the_canary_caller_gets_unavailable_after_one_fallback(rig):
    server, client = await rig.start()
    await two_arms_in_rollout(client)
    for arm in ("vec-a", "vec-b"):
        server.backend.inject(arm, error=FaultKind.EXCEPTION, operations={"search"})
    results = await searches(client, 100)
    assert {r.code_name for r in results if isinstance(r, Exception)} == {"UNAVAILABLE"}
    assert all(isinstance(r, Exception) for r in results)
    canary_callers = server.backend.hits["vec-b"]
    assert sample(server, "searchgw_canary_fallbacks_total", {"collection": "vecs"}) == canary_callers
    total_unavailable = sum(sample(server, "searchgw_requests_total", {"rpc": "Search", "collection": "vecs",
                                                                       "arm": arm, "code": "UNAVAILABLE"})
                            for arm in ("primary", "canary"))
    assert total_unavailable == 100


async def test_without_a_rollout_a_failing_collection_is_unavailable_and_counted(rig):
    server, client = await rig.start()
    await client.create_collection("solo", dimension=4)
    server.backend.inject("solo", error=FaultKind.EXCEPTION, operations={"search"})
    with pytest.raises(SearchgwError) as info:
        await client.search("solo", vector=VECTOR, timeout=10)
    assert info.value.code_name == "UNAVAILABLE"
    assert sample(server, "searchgw_requests_total", {"rpc": "Search", "collection": "solo", "arm": "primary",
                                                      "code": "UNAVAILABLE"}) == 1
