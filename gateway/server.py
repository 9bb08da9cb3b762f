"""create_server(settings): the gateway, its rollout controller, health, metrics and lifecycle.

Start-up: open the backend, restore rollouts from the store (RUNNING ones resume at their stage and
weight), connect to the embedder (or start one in-process), then SERVING. Shutdown on SIGTERM:
health NOT_SERVING, new calls refused, in-flight calls finish within the grace period, the
controller stops (every transition is already persisted), the backend is closed.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import grpc

from embedder.client import EmbedderClient
from gateway.backends import VectorBackend, open_backend
from gateway.collections import CollectionAdmin
from gateway.core import SearchCore
from gateway.embedding import RemoteEmbedder, TextEmbedder
from gateway.metrics import GatewayMetrics
from gateway.paging import PageTokens
from gateway.rollout import RolloutController, SqliteRolloutStore
from gateway.routing import Router
from gateway.services import CollectionServicer, RolloutServicer, SearchServicer
from gateway.settings import GatewaySettings
from searchgw import security
from searchgw.rpc import DomainErrorInterceptor, ServingState, add_health_and_reflection
from searchgw.rpc.server import server_options
from searchgw.telemetry import MetricsEndpoint, server_tracing_interceptor
from searchgw.v1 import (
    collection_service_pb2,
    collection_service_pb2_grpc,
    rollout_service_pb2,
    rollout_service_pb2_grpc,
    search_service_pb2,
    search_service_pb2_grpc,
)

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    search_service_pb2.DESCRIPTOR.services_by_name["SearchService"].full_name,
    collection_service_pb2.DESCRIPTOR.services_by_name["CollectionService"].full_name,
    rollout_service_pb2.DESCRIPTOR.services_by_name["RolloutService"].full_name,
)
_SEARCH, _COLLECTION, _ROLLOUT = SERVICE_NAMES
#: The scope each RPC needs when authentication is on: reads, writes, and administration.
METHOD_SCOPES = {
    f"/{_SEARCH}/Search": "read",
    f"/{_SEARCH}/Upsert": "write",
    f"/{_SEARCH}/Delete": "write",
    **{f"/{service.full_name}/{method.name}": "admin"
       for service in (collection_service_pb2.DESCRIPTOR.services_by_name["CollectionService"],
                       rollout_service_pb2.DESCRIPTOR.services_by_name["RolloutService"])
       for method in service.methods},
}


@dataclass
class GatewayServer:
    settings: GatewaySettings
    server: grpc.aio.Server
    port: int
    state: ServingState
    metrics: GatewayMetrics
    core: SearchCore
    controller: RolloutController
    store: SqliteRolloutStore
    backend: VectorBackend
    embedder_client: EmbedderClient | None
    metrics_endpoint: MetricsEndpoint | None

    @property
    def address(self) -> str:
        host = self.settings.host
        return f"{'127.0.0.1' if host in ('0.0.0.0', '::', '[::]') else host}:{self.port}"

    async def stop(self, grace: float | None = None) -> None:
        grace = self.settings.grace_period_s if grace is None else grace
        self.metrics.ready.set(0)
        await self.state.shutdown()
        await self.server.stop(grace)
        await self.controller.stop()
        await self.store.close()
        if self.embedder_client is not None:
            await self.embedder_client.close()
        await self.backend.close()
        if self.metrics_endpoint is not None:
            self.metrics_endpoint.stop()
        log.info("gateway stopped")


async def create_server(
    settings: GatewaySettings,
    *,
    backend: VectorBackend | None = None,
    embedder: TextEmbedder | None = None,
    clock=time.monotonic,
    rollout_clock=None,
    wall_clock=time.time,
    run_controller: bool = True,
) -> GatewayServer:
    """Build and start the gateway.

    `backend` and `embedder` replace the configured ones; `rollout_clock` (default `clock`) drives the
    rollout controller, and `run_controller=False` leaves its ticks to the caller (tests).
    """
    metrics = GatewayMetrics()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if backend is None:
        backend = await open_backend(settings.backend, data_dir=settings.data_dir / "edge",
                                     qdrant_location=settings.qdrant_url, api_key=settings.qdrant_api_key or None,
                                     timeout=settings.qdrant_timeout_s, prefer_grpc=settings.qdrant_prefer_grpc)
    embedder_client = None
    if embedder is None and settings.embedder_addr:
        credentials = None
        if settings.embedder_tls_ca is not None:
            credentials = security.channel_credentials(settings.embedder_tls_ca, settings.embedder_tls_cert,
                                                       settings.embedder_tls_key)
        embedder_client = EmbedderClient(
            settings.embedder_addr, max_message_bytes=settings.max_message_bytes, credentials=credentials,
            metadata=(("authorization", f"Bearer {settings.embedder_token}"),) if settings.embedder_token else ())
        embedder = RemoteEmbedder(embedder_client, timeout_s=settings.embed_timeout_s, clock=clock)

    page_tokens = PageTokens(settings.page_token_secret)  # one key for every listing and search
    router = Router()
    store = SqliteRolloutStore(settings.data_dir / "rollouts.sqlite3")
    controller = RolloutController(
        store, router,
        switch_alias=backend.update_alias, resolve_alias=backend.resolve,
        clock=rollout_clock or clock, wall_clock=wall_clock, observer=metrics,
        tick_interval=settings.controller_tick_s, page_tokens=page_tokens,
    )
    core = SearchCore(backend, router, controller, embedder, settings, metrics, clock=clock, page_tokens=page_tokens)

    server = grpc.aio.server(
        interceptors=[server_tracing_interceptor(), DomainErrorInterceptor(metrics),
                      *security.interceptors_for(settings, METHOD_SCOPES)],
        options=server_options(max_message_bytes=settings.max_message_bytes,
                               keepalive_time_s=settings.keepalive_time_s,
                               keepalive_timeout_s=settings.keepalive_timeout_s),
    )
    search_service_pb2_grpc.add_SearchServiceServicer_to_server(SearchServicer(core, clock=clock), server)
    collection_service_pb2_grpc.add_CollectionServiceServicer_to_server(
        CollectionServicer(CollectionAdmin(core, controller, page_tokens)), server)
    rollout_service_pb2_grpc.add_RolloutServiceServicer_to_server(RolloutServicer(controller), server)
    state = ServingState(SERVICE_NAMES)
    await add_health_and_reflection(server, state)
    port = security.bind(server, f"{settings.host}:{settings.port}", cert=settings.tls_cert, key=settings.tls_key,
                         client_ca=settings.tls_client_ca)

    await controller.start(run_loop=run_controller)
    await server.start()
    endpoint = None
    if settings.metrics_port >= 0:
        endpoint = MetricsEndpoint(metrics.registry, settings.metrics_host, settings.metrics_port)
        endpoint.start()
    await state.set_serving(True)
    metrics.ready.set(1)
    log.info("gateway serving", extra={"port": port, "backend": backend.kind,
                                       "metrics_port": endpoint.port if endpoint else None})
    return GatewayServer(settings=settings, server=server, port=port, state=state, metrics=metrics, core=core,
                         controller=controller, store=store, backend=backend, embedder_client=embedder_client,
                         metrics_endpoint=endpoint)


__all__ = ["GatewayServer", "create_server"]
