"""The same engine failure is the same status on every RPC: search, writes and administration alike.

Every service is given the one instrumented backend the server assembles (`InstrumentedBackend`), so an
unexpected engine failure (`FaultKind.EXCEPTION`: the engine raising something it should not) is
UNAVAILABLE — a dependency's fault, to retry — whether a search or an administration call met it, and
never INTERNAL. `FaultKind.UNAVAILABLE` (a backend that says it cannot reach its engine) is the same.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from searchgw.errors import SearchgwError
from searchgw.gateway.backends import FaultKind
from searchgw.gateway.client import GatewayClient

VECTOR = [1.0, 0.0, 0.5, -1.0]

Call = Callable[[GatewayClient], Awaitable[Any]]

#: Every RPC that reaches the collection "solo" in the backend, by its RPC name.
CALLS: dict[str, Call] = {
    "Search": lambda c: c.search("solo", vector=VECTOR, timeout=10),
    "Upsert": lambda c: c.upsert("solo", [{"id": 9, "vector": VECTOR}], timeout=10),
    "Delete": lambda c: c.delete("solo", ids=[1], timeout=10),
    "GetCollection": lambda c: c.get_collection("solo", timeout=10),
    "OptimizeCollection": lambda c: c.optimize_collection("solo", timeout=10),
    "CreateSnapshot": lambda c: c.create_snapshot("solo", timeout=10),
    "ListSnapshots": lambda c: c.list_snapshots("solo", timeout=10),
    "UpdateAlias": lambda c: c.update_alias("solo-alias", "solo", timeout=10),
    "DeleteCollection": lambda c: c.delete_collection("solo", timeout=10),
}


def sample(server: Any, name: str, labels: dict[str, str]) -> float:
    return server.metrics.registry.get_sample_value(name, labels) or 0.0


async def counted(server: Any, name: str, labels: dict[str, str]) -> float:
    """The sample once the server has counted the call (it counts after the caller has its answer)."""
    for _ in range(100):
        if value := sample(server, name, labels):
            return value
        await asyncio.sleep(0.02)
    return 0.0


async def code_of(call: Awaitable[Any]) -> str:
    try:
        await call
    except SearchgwError as exc:
        return exc.code_name
    return "OK"


@pytest.mark.parametrize("kind", [FaultKind.EXCEPTION, FaultKind.UNAVAILABLE])
async def test_an_engine_failure_is_unavailable_on_a_search_and_on_every_admin_rpc(rig: Any, kind: FaultKind) -> None:
    server, client = await rig.start()
    await client.create_collection("solo", dimension=4)
    await client.upsert("solo", [{"id": 1, "vector": VECTOR}])
    server.backend.inject("solo", error=kind)
    codes = {rpc: await code_of(call(client)) for rpc, call in CALLS.items()}
    assert codes == {rpc: "UNAVAILABLE" for rpc in CALLS}
    assert await counted(server, "searchgw_requests_total", {"rpc": "Search", "collection": "solo",
                                                             "arm": "primary", "code": "UNAVAILABLE"}) == 1
    for rpc in ("GetCollection", "OptimizeCollection", "CreateSnapshot", "DeleteCollection"):
        assert await counted(server, "searchgw_admin_requests_total", {"rpc": rpc, "code": "UNAVAILABLE"}) == 1
    server.backend.clear()
    assert (await client.get_collection("solo")).points_count == 1  # nothing was changed by the failures


async def test_every_backend_call_of_an_admin_rpc_is_timed(rig: Any) -> None:
    server, client = await rig.start()
    await client.create_collection("solo", dimension=4)
    await client.get_collection("solo")
    for operation in ("create_collection", "resolve", "get_collection"):
        assert sample(server, "searchgw_backend_duration_seconds_count",
                      {"operation": operation, "backend": "edge"}) >= 1, operation
