"""create_server(settings): the embedding server, its health, metrics endpoint and lifecycle.

Start-up order: bind the port with health NOT_SERVING, load the models (off the event loop), warm
them up, then SERVING. Shutdown: health NOT_SERVING, refuse new calls, let in-flight calls finish
within the grace period, stop the batchers.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import grpc

from searchgw.embedder.core import EmbedderCore
from searchgw.embedder.metrics import EmbedderMetrics
from searchgw.embedder.model import DEFAULT_MODEL_NAME, EmbeddingModel, default_model_dir
from searchgw.embedder.service import EmbedServicer
from searchgw.embedder.settings import EmbedderSettings
from searchgw import security
from searchgw.rpc import DomainErrorInterceptor, ServingState, add_health_and_reflection
from searchgw.rpc.server import drain, server_options
from searchgw.telemetry import MetricsEndpoint, server_tracing_interceptor
from searchgw.v1 import embed_service_pb2, embed_service_pb2_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = embed_service_pb2.DESCRIPTOR.services_by_name["EmbedService"].full_name
#: The scope each RPC needs when authentication is on.
METHOD_SCOPES = {f"/{SERVICE_NAME}/Embed": "read", f"/{SERVICE_NAME}/GetModelInfo": "read"}


def load_models(settings: EmbedderSettings) -> list[EmbeddingModel]:
    """Load every configured model (blocking: call it in a thread)."""
    threads = settings.threads_per_session()
    sources = settings.model_sources() or [(DEFAULT_MODEL_NAME, default_model_dir(settings.cache_dir))]
    return [EmbeddingModel.load(path, name=name, intra_op_threads=threads) for name, path in sources]


@dataclass
class EmbedderServer:
    settings: EmbedderSettings
    server: grpc.aio.Server
    port: int
    state: ServingState
    metrics: EmbedderMetrics
    servicer: EmbedServicer
    metrics_endpoint: MetricsEndpoint | None = None
    core: EmbedderCore | None = None
    _health_tasks: set = field(default_factory=set)

    @property
    def address(self) -> str:
        host = self.settings.host
        return f"{'127.0.0.1' if host in ('0.0.0.0', '::', '[::]') else host}:{self.port}"

    async def load(self, models: list[EmbeddingModel] | None = None) -> None:
        """Load and warm the models, then report SERVING."""
        if models is None:
            models = await asyncio.to_thread(load_models, self.settings)
        core = EmbedderCore(models, self.settings, self.metrics)
        await core.start()
        core.add_health_listener(self._on_worker_health)
        self.core = core
        self.servicer.core = core
        await self._set_serving(True)
        for spec in core.specs():
            log.info("model ready", extra={"model": spec.name, "dimension": spec.dimension,
                                           "max_input_tokens": spec.max_input_tokens, "source": str(spec.source)})

    async def _set_serving(self, serving: bool) -> None:
        await self.state.set_serving(serving)
        self.metrics.ready.set(1 if serving else 0)

    def _on_worker_health(self, healthy: bool) -> None:
        log.warning("inference worker health changed", extra={"healthy": healthy})
        task = asyncio.get_running_loop().create_task(self._set_serving(healthy))
        self._health_tasks.add(task)
        task.add_done_callback(self._health_tasks.discard)

    async def stop(self, grace: float | None = None) -> None:
        grace = self.settings.grace_period_s if grace is None else grace
        self.metrics.ready.set(0)
        delay = self.settings.drain_delay_s
        log.info("draining: NOT_SERVING, answering for %.1f s more, then GOAWAY and %.1f s for in-flight calls",
                 delay, grace)
        await drain(self.server, self.state, delay_s=delay, grace_s=grace)
        if self.core is not None:
            await self.core.stop()
        if self.metrics_endpoint is not None:
            self.metrics_endpoint.stop()
        log.info("embedder stopped")


async def create_server(settings: EmbedderSettings) -> EmbedderServer:
    """Bind and start the gRPC server (health NOT_SERVING); call `load()` next."""
    metrics = EmbedderMetrics()
    server = grpc.aio.server(
        interceptors=[server_tracing_interceptor(), DomainErrorInterceptor(metrics),
                      *security.interceptors_for(settings, METHOD_SCOPES)],
        options=server_options(max_message_bytes=settings.max_message_bytes,
                               keepalive_time_s=settings.keepalive_time_s,
                               keepalive_timeout_s=settings.keepalive_timeout_s),
    )
    servicer = EmbedServicer()
    embed_service_pb2_grpc.add_EmbedServiceServicer_to_server(servicer, server)
    state = ServingState([SERVICE_NAME])
    await add_health_and_reflection(server, state)
    port = security.bind(server, f"{settings.host}:{settings.port}", cert=settings.tls_cert, key=settings.tls_key,
                         client_ca=settings.tls_client_ca)
    await server.start()
    endpoint = None
    if settings.metrics_port >= 0:
        endpoint = MetricsEndpoint(metrics.registry, settings.metrics_host, settings.metrics_port)
        endpoint.start()
    log.info("embedder listening", extra={"port": port, "metrics_port": endpoint.port if endpoint else None})
    return EmbedderServer(settings=settings, server=server, port=port, state=state, metrics=metrics,
                          servicer=servicer, metrics_endpoint=endpoint)
