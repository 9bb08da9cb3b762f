"""Rigs for tests: real gateways on loopback over real backends and the session's real embedder."""

from __future__ import annotations

import pathlib

from searchgw.embedder.client import EmbedderClient
from searchgw.gateway.backends import EdgeBackend, FaultInjectingBackend, QdrantBackend
from searchgw.gateway.client import GatewayClient
from searchgw.gateway.remote_embedder import RemoteEmbedder
from searchgw.gateway.server import GatewayServer, create_server
from searchgw.gateway.settings import GatewaySettings


class ManualClock:
    """Monotonic seconds that move only when a test says so (drives the rollout controller)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def gateway_settings(data_dir: pathlib.Path, **overrides) -> GatewaySettings:
    values = dict(port=0, metrics_port=0, data_dir=data_dir, grace_period_s=1.0, log_format="text",
                  page_token_secret="test-secret")
    values.update(overrides)
    return GatewaySettings(**values)


class GatewayRig:
    """A running gateway with its backend (fault-injectable), client and the rollout clock."""

    def __init__(self, tmp_path: pathlib.Path, embedder_address: str) -> None:
        self.tmp_path = tmp_path
        self.embedder_address = embedder_address
        self.clock = ManualClock()
        self.servers: list[GatewayServer] = []
        self.clients: list[GatewayClient] = []

    async def start(self, backend_kind: str = "edge", **overrides) -> tuple[GatewayServer, GatewayClient]:
        if backend_kind == "edge":
            inner = EdgeBackend(self.tmp_path / "edge")
        else:
            inner = QdrantBackend(":memory:")
        backend = FaultInjectingBackend(inner)
        embedder_client = EmbedderClient(self.embedder_address)
        server = await create_server(
            gateway_settings(self.tmp_path, backend=backend_kind, qdrant_url=":memory:", **overrides),
            backend=backend, embedder=RemoteEmbedder(embedder_client, timeout_s=10.0),
            rollout_clock=self.clock, run_controller=False,
        )
        server.embedder_client = embedder_client  # closed with the server
        client = GatewayClient(server.address)
        self.servers.append(server)
        self.clients.append(client)
        return server, client

    async def stop(self, server: GatewayServer) -> None:
        await server.stop(0)
        self.servers.remove(server)

    async def close(self) -> None:
        for client in self.clients:
            await client.close()
        for server in list(self.servers):
            await server.stop(0)
