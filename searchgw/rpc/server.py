"""Health and reflection registration, shared by both servers.

`ServingState` owns the `grpc.health.v1.Health` servicer. Each service is NOT_SERVING until the
server says it is ready (the embedder: model loaded and warmed), SERVING after, and NOT_SERVING
again when a worker dies or shutdown begins. The overall status ("") follows the services.
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class ServingState:
    """The health of a server's services."""

    def __init__(self, service_names: Iterable[str]) -> None:
        self.service_names = tuple(service_names)
        self.servicer = health.aio.HealthServicer()
        self._serving = False

    @property
    def serving(self) -> bool:
        return self._serving

    async def set_serving(self, serving: bool) -> None:
        self._serving = serving
        status = SERVING if serving else NOT_SERVING
        for name in ("", *self.service_names):
            await self.servicer.set(name, status)

    async def shutdown(self) -> None:
        """Flip everything to NOT_SERVING for good (watchers see it before the server stops)."""
        self._serving = False
        await self.servicer.enter_graceful_shutdown()


async def add_health_and_reflection(server: grpc.aio.Server, state: ServingState) -> None:
    """Register health (NOT_SERVING until `state.set_serving(True)`) and server reflection."""
    health_pb2_grpc.add_HealthServicer_to_server(state.servicer, server)
    await state.set_serving(False)
    reflection.enable_server_reflection(
        (*state.service_names, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
