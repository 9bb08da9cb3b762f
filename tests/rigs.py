"""Rigs for tests: real gateways on loopback over real backends and the session's real embedder."""

from __future__ import annotations

import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

from searchgw.embedder.client import EmbedderClient
from searchgw.gateway.backends import EdgeBackend, FaultInjectingBackend, QdrantBackend
from searchgw.gateway.client import GatewayClient
from searchgw.gateway.remote_embedder import RemoteEmbedder
from searchgw.gateway.server import GatewayServer, create_server
from searchgw.gateway.settings import GatewaySettings
from searchgw.testing import ManualClock


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

    async def start(self, backend_kind: str = "edge", *, qdrant_url: str = ":memory:", manual_wall_clock: bool = False,
                    **overrides) -> tuple[GatewayServer, GatewayClient]:
        """A gateway on the edge backend, or on the qdrant backend at `qdrant_url` (local mode by default).

        `manual_wall_clock`: the rollout controller's wall clock is `self.clock.wall` (grace periods)."""
        if backend_kind == "edge":
            inner = EdgeBackend(self.tmp_path / "edge")
        else:
            inner = QdrantBackend(qdrant_url)
        backend = FaultInjectingBackend(inner)
        embedder_client = EmbedderClient(self.embedder_address)
        server = await create_server(
            gateway_settings(self.tmp_path, backend=backend_kind, qdrant_url=qdrant_url, **overrides),
            backend=backend, embedder=RemoteEmbedder(embedder_client, timeout_s=10.0),
            rollout_clock=self.clock, run_controller=False,
            **({"wall_clock": self.clock.wall} if manual_wall_clock else {}),
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


async def two_arms(client: GatewayClient, points: Sequence[Mapping[str, Any]], *, alias: str = "docs",
                   primary: str = "docs-v1", canary: str = "docs-v2", dimension: int = 0,
                   canary_model: str = "") -> None:
    """A rollout's two arms: `alias` → `primary` and `canary` beside it, each collection holding `points`.

    `dimension` 0 takes the embedding model's; `canary_model` names the canary's model ("" the default).
    """
    for name, model in ((primary, ""), (canary, canary_model)):
        await client.create_collection(name, dimension=dimension, embedding_model=model)
        await client.upsert(name, [dict(point) for point in points])
    await client.update_alias(alias, primary)
