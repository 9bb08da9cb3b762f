"""A gateway whose embedder is unreachable says so, and keeps serving what needs no embedder.

Real gateways and real embedders on loopback; the embedder goes away by being stopped. Probes run
when the test calls `probe_once()` (the background loop is off), so nothing waits on a timer.
"""

from __future__ import annotations

import asyncio
import logging
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from searchgw.embedder.server import create_server as create_embedder
from searchgw.gateway.client import GatewayClient
from searchgw.gateway.server import create_server
from searchgw.errors import SearchgwError
from tests.conftest import embedder_settings
from tests.faults.processes import free_port
from tests.rigs import gateway_settings

VECTOR = [1.0, 0.0, 0.5, -1.0]
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def health(address: str, service: str) -> int:
    async with grpc.aio.insecure_channel(address) as channel:
        response = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service))
        return response.status


def dependency_up(gateway, name: str) -> float | None:
    return gateway.metrics.registry.get_sample_value("searchgw_dependency_up", {"dependency": name})


async def probe_until_up(gateway, name: str) -> None:
    """Probe until the dependency answers: the gateway's channel reconnects after its own backoff
    (at most 3 s, a real timer in grpc that a test cannot advance)."""
    dependency = gateway.dependencies.get(name)
    for _ in range(100):
        await gateway.dependencies.probe_once()
        if dependency.up:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{name} never came back: {dependency.detail}")


async def start_embedder(models, port: int = 0):
    server = await create_embedder(embedder_settings(port=port, metrics_port=-1))
    await server.load(models)
    return server


async def test_an_unreachable_embedder_fails_text_searches_fast_and_vector_searches_keep_working(tmp_path):
    vectors_only = await create_server(gateway_settings(tmp_path, metrics_port=-1), probe_interval_s=None)
    async with GatewayClient(vectors_only.address) as client:
        await client.create_collection("vecs", dimension=4)
        await client.upsert("vecs", [{"id": 1, "vector": VECTOR}])
        await client.create_collection("docs", dimension=384, embedding_model="all-MiniLM-L6-v2")
    await vectors_only.stop(0)

    port = free_port()  # nothing listens there
    gateway = await create_server(gateway_settings(tmp_path, embedder_addr=f"127.0.0.1:{port}", metrics_port=-1),
                                  probe_interval_s=None)
    client = GatewayClient(gateway.address)
    try:
        assert await health(gateway.address, "searchgw.dependency.embedder") == NOT_SERVING
        assert await health(gateway.address, "searchgw.dependency.backend") == SERVING
        assert await health(gateway.address, "") == SERVING  # vector searches are still served
        assert (dependency_up(gateway, "embedder"), dependency_up(gateway, "backend")) == (0.0, 1.0)
        assert (await client.search("vecs", vector=VECTOR, limit=1)).points[0].id.num == 1

        started = time.monotonic()
        with pytest.raises(SearchgwError) as info:
            await client.search("docs", text="anything", timeout=10)
        assert info.value.code_name == "UNAVAILABLE"
        assert f"embedder at 127.0.0.1:{port} is unreachable" in info.value.message
        assert time.monotonic() - started < 5  # not the 10 s deadline: it did not wait for the embedder
    finally:
        await client.close()
        await gateway.stop(0)


async def test_each_change_of_the_embedders_reachability_is_reported_once(tmp_path, embedding_models, caplog):
    caplog.set_level(logging.INFO, logger="searchgw.gateway.dependencies")
    embedder = await start_embedder(embedding_models)
    port = int(embedder.address.rsplit(":", 1)[1])
    gateway = await create_server(gateway_settings(tmp_path, embedder_addr=embedder.address, metrics_port=-1),
                                  probe_interval_s=None)
    client = GatewayClient(gateway.address)
    replacement = None
    try:
        assert await health(gateway.address, "searchgw.dependency.embedder") == SERVING
        assert dependency_up(gateway, "embedder") == 1.0
        await client.create_collection("docs")
        await client.upsert("docs", [{"id": 1, "text": "a canary takes a share of the traffic"}])

        await embedder.stop(0)
        await gateway.dependencies.probe_once()
        await gateway.dependencies.probe_once()  # still down: no second report
        assert await health(gateway.address, "searchgw.dependency.embedder") == NOT_SERVING
        assert dependency_up(gateway, "embedder") == 0.0
        with pytest.raises(SearchgwError) as info:
            await client.search("docs", text="canary share")
        assert info.value.code_name == "UNAVAILABLE" and "embedder" in info.value.message

        replacement = await start_embedder(embedding_models, port)
        await probe_until_up(gateway, "embedder")
        assert await health(gateway.address, "searchgw.dependency.embedder") == SERVING
        assert dependency_up(gateway, "embedder") == 1.0
        assert (await client.search("docs", text="canary share", limit=1)).points[0].id.num == 1

        changes = [r.getMessage() for r in caplog.records
                   if r.name == "searchgw.gateway.dependencies" and r.getMessage().startswith("dependency embedder")]
        assert len(changes) == 3, changes  # up at start-up, down once, up again
        assert changes[0] == changes[2] == "dependency embedder is up"
        assert changes[1].startswith("dependency embedder is unreachable: ")
    finally:
        await client.close()
        await gateway.stop(0)
        if replacement is not None:
            await replacement.stop(0)
