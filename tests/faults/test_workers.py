"""`searchgw serve --workers 2`: two gateway processes on one port (SO_REUSEPORT), a real redis-server
for the shared rollout state and the Qdrant-protocol test server (tests/qdrant_server) as the remote
backend, all child processes; nothing mocked.

- Searches over many connections reach both workers (each worker's own /metrics counts its calls),
  and a rollout created through one worker routes every key to the same arm on both.
- SIGTERM to the supervisor drains both workers; it exits 0 and the port is closed.
- `--workers 2` with the embedded backend, or with SQLite state, is refused at start-up, naming `--workers`.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from searchgw.errors import Unavailable
from searchgw.gateway.client import GatewayClient, stage
from searchgw.gateway.settings import GatewaySettings
from searchgw.settings import SettingsError
from searchgw.v1 import common_pb2
from tests.faults.processes import ROOT, ServerProcess
from tests.qdrant_server import QdrantServerProcess
from tests.redis_rig import RedisServer

VECTOR = [1.0, 3.0, 0.0, 0.0]
KEYS = [f"user-{i}" for i in range(40)]


def two_free_ports() -> int:
    """A port P such that P and P + 1 are both free now (the workers' metrics ports)."""
    for _ in range(50):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = first.getsockname()[1]
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
                return port
    raise RuntimeError("no two adjacent free ports")


def searches_counted(metrics_port: int) -> float:
    """The Search calls one worker counted (its own /metrics)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("searchgw_requests_total{") and 'rpc="Search"' in line)


async def routed_arms(address: str, connections: int) -> dict[str, set[int]]:
    """Each key's arms, searched over `connections` connections of their own (each may reach either worker)."""
    arms: dict[str, set[int]] = {}
    for _ in range(connections):
        async with GatewayClient(address) as client:
            for key in KEYS:
                hits = await client.search("kv", vector=VECTOR, limit=1, routing_key=key)
                assert hits.route.rollout == "r1", "a worker has not heard of the rollout"
                arms.setdefault(key, set()).add(hits.route.arm)
    return arms


@pytest.mark.slow
async def test_two_workers_share_the_port_the_traffic_and_the_rollout_and_drain_on_sigterm(tmp_path: Path):
    redis = await RedisServer(tmp_path / "redis").start()
    qdrant = await QdrantServerProcess.start(tmp_path / "qdrant", tmp_path / "qdrant.log")
    metrics_port = two_free_ports()
    gateway = None
    try:
        gateway = await ServerProcess.start(
            ["serve", "--workers", "2", "--port", "0", "--metrics-port", str(metrics_port),
             "--data-dir", str(tmp_path / "gateway"), "--log-format", "text", "--backend", "qdrant",
             "--qdrant-url", qdrant.url, "--state", redis.url, "--state-lease-s", "2", "--controller-tick-s", "0.2",
             "--grace-period-s", "2"],
            "gateway serving on ", tmp_path / "gateway.log")
        async with GatewayClient(gateway.address) as admin:
            for name in ("kv-a", "kv-b"):
                await admin.create_collection(name, dimension=4)
                await admin.upsert(name, [{"id": i, "vector": [1.0, float(i), 0.0, 0.0]} for i in range(1, 21)])
            await admin.update_alias("kv", "kv-a")
            await admin.create_rollout("r1", "kv", "kv-b", stages=[stage(50, 3600, 0), stage(100)])

        deadline = time.monotonic() + 30
        while True:  # the other worker follows the rollout through Redis (pub/sub, or its next poll)
            try:
                arms = await routed_arms(gateway.address, 16)
                break
            except AssertionError:
                assert time.monotonic() < deadline, "a worker never routed by the rollout"
                await asyncio.sleep(0.2)
        assert all(len(seen) == 1 for seen in arms.values()), f"workers disagree on a key's arm: {arms}"
        assert {common_pb2.ARM_CANARY, common_pb2.ARM_PRIMARY} == set().union(*arms.values())
        counted = [searches_counted(metrics_port), searches_counted(metrics_port + 1)]
        assert all(count > 0 for count in counted), f"one worker got no searches: {counted}"

        gateway.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(gateway.process.wait(), 60) == 0
        with pytest.raises(Unavailable):  # nothing listens on the port any more
            async with GatewayClient(gateway.address) as late:
                await late.search("kv", vector=VECTOR, limit=1, timeout=2)
        log = gateway.log_path.read_text()
        assert log.count("gateway stopped") == 2, "both workers drained and stopped"
    finally:
        if gateway is not None:
            await gateway.stop()
        await qdrant.kill()
        await redis.stop()


def test_several_workers_need_a_remote_backend_and_shared_state(tmp_path: Path):
    with pytest.raises(SettingsError, match="--workers 2: the edge backend is embedded"):
        GatewaySettings(workers=2)
    with pytest.raises(SettingsError, match="--workers 2: .*SQLite state belongs to one process"):
        GatewaySettings(workers=2, backend="qdrant", qdrant_url="http://127.0.0.1:6334")
    with pytest.raises(SettingsError, match="--workers 2: --with-embedder"):
        GatewaySettings(workers=2, backend="qdrant", qdrant_url="http://127.0.0.1:6334", state="redis://127.0.0.1:1/0",
                        with_embedder=True)
    with pytest.raises(SettingsError, match="--workers: 0"):
        GatewaySettings(workers=0)
    assert GatewaySettings(workers=2, backend="qdrant", qdrant_url="http://127.0.0.1:6334",
                           state="redis://127.0.0.1:1/0").workers == 2


def test_the_cli_refuses_workers_with_the_embedded_backend(tmp_path: Path):
    result = subprocess.run([sys.executable, "-m", "searchgw.cli", "serve", "--workers", "2", "--port", "0",
                             "--metrics-port", "-1", "--data-dir", str(tmp_path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "--workers 2" in result.stderr and "--backend qdrant" in result.stderr
