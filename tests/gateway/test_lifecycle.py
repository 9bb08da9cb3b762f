"""Behaviour a mesh and an operator rely on: draining on SIGTERM, exit codes, one trace across both
servers, and JSON logs that carry the trace id."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from searchgw.gateway.client import GatewayClient
from searchgw.rpc.server import drain, run_until_signalled
from searchgw.telemetry import configure_tracing
from searchgw.telemetry.logs import JsonFormatter
from tests.gateway.test_gateway import query_vector, two_arms


async def test_sigterm_drains_in_flight_calls_and_refuses_new_ones(rig):
    server, client = await rig.start()
    await two_arms(client)
    # Keep searches in flight long enough to be caught by the signal (a real delay in the backend path).
    server.backend.inject("docs-v1", delay=0.5, operations={"search"})
    stopping = asyncio.create_task(run_until_signalled(lambda: server.stop(5.0)))
    await asyncio.sleep(0)  # the signal handlers are installed
    in_flight = [asyncio.create_task(client.search("docs", vector=query_vector(), routing_key=f"k{i}"))
                 for i in range(40)]
    while server.backend.hits["docs-v1"] < 40:
        await asyncio.sleep(0.01)
    os.kill(os.getpid(), signal.SIGTERM)
    results = await asyncio.gather(*in_flight, return_exceptions=True)
    await stopping
    rig.servers.remove(server)
    failures = [r for r in results if isinstance(r, BaseException)]
    assert failures == []
    assert server.metrics.ready._value.get() == 0
    with pytest.raises(Exception):
        async with GatewayClient(server.address) as late:
            await late.search("docs", vector=query_vector(), timeout=2)


def test_the_served_process_exits_0_on_sigterm(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "searchgw.cli", "serve", "--port", "0", "--metrics-port", "-1",
         "--data-dir", str(tmp_path), "--log-format", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert line.startswith("gateway serving on 127.0.0.1:"), line
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        logs = [json.loads(row) for row in process.stderr.read().splitlines() if row.startswith("{")]
        assert any(entry["message"] == "gateway stopped" for entry in logs)
        assert all({"time", "level", "logger", "message"} <= set(entry) for entry in logs)
    finally:
        process.kill()
        process.wait()


async def test_one_trace_spans_gateway_and_embedder(rig):
    exporter = InMemorySpanExporter()
    configure_tracing("searchgw-tests", processor=SimpleSpanProcessor(exporter))
    server, client = await rig.start()
    await two_arms(client)
    exporter.clear()
    await client.search("docs", text="a question about a brand new topic", routing_key="tracer")
    spans = exporter.get_finished_spans()
    search = next(s for s in spans if s.name == "/searchgw.v1.SearchService/Search")
    trace_id = search.context.trace_id
    names = {s.name for s in spans if s.context.trace_id == trace_id}
    assert {"embed", "backend.search", "/searchgw.v1.EmbedService/Embed"} <= names
    embed_server = next(s for s in spans if s.name == "/searchgw.v1.EmbedService/Embed"
                        and s.kind.name == "SERVER" and s.context.trace_id == trace_id)
    assert embed_server.parent is not None  # continued from the gateway's client span
    assert search.attributes["searchgw.collection"] == "docs-v1"
    batch = [s for s in spans if s.name == "embed.batch"
             and any(link.context.trace_id == trace_id for link in s.links)]
    assert batch, "the model run is linked to the request it served"


def test_json_log_lines_carry_the_trace_id():
    from opentelemetry import trace

    configure_tracing("searchgw-tests", processor=SimpleSpanProcessor(InMemorySpanExporter()))
    record = logging.LogRecord("searchgw.gateway.rollout", logging.INFO, __file__, 1, "decided %s", ("x",), None)
    record.rollout = "r1"
    with trace.get_tracer("test").start_as_current_span("work") as span:
        entry = json.loads(JsonFormatter().format(record))
    assert entry["trace_id"] == format(span.get_span_context().trace_id, "032x")
    assert (entry["message"], entry["rollout"], entry["level"]) == ("decided x", "r1", "info")


async def test_health_watchers_see_not_serving_as_soon_as_shutdown_begins(rig):
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    server, client = await rig.start()
    async with grpc.aio.insecure_channel(server.address) as channel:
        stream = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service="searchgw.v1.SearchService"))
        assert (await stream.read()).status == health_pb2.HealthCheckResponse.SERVING
        rig.servers.remove(server)
        stopping = asyncio.create_task(server.stop(1.0))
        assert (await stream.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING
        await stopping


async def test_a_drain_delay_keeps_answering_while_health_says_not_serving_then_refuses(rig):
    """What a proxy with its own health checks needs (tests/envoy runs it behind Envoy): calls that
    arrive after SIGTERM but before the proxy saw NOT_SERVING are still answered."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    server, client = await rig.start()
    await two_arms(client)
    rig.servers.remove(server)
    waited: list[float] = []
    release = asyncio.Event()

    async def held(delay: float) -> None:  # the delay, ended by the test instead of the clock
        waited.append(delay)
        await release.wait()

    stopping = asyncio.create_task(drain(server.server, server.state, delay_s=7.0, grace_s=1.0, sleep=held))
    async with grpc.aio.insecure_channel(server.address) as channel:
        check = health_pb2_grpc.HealthStub(channel).Check
        while not waited:
            await asyncio.sleep(0)
        status = await check(health_pb2.HealthCheckRequest(service="searchgw.v1.SearchService"), timeout=5)
        assert status.status == health_pb2.HealthCheckResponse.NOT_SERVING and waited == [7.0]
        for i in range(5):  # still answered during the delay
            await client.search("docs", vector=query_vector(), routing_key=f"late-{i}", timeout=5)
    release.set()
    await stopping
    with pytest.raises(Exception):
        async with GatewayClient(server.address) as late:
            await late.search("docs", vector=query_vector(), timeout=2)
    await server.stop(0)
