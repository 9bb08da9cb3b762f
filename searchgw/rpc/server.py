"""Health and reflection registration, shared by both servers.

`ServingState` owns the `grpc.health.v1.Health` servicer. Each service is NOT_SERVING until the
server says it is ready (the embedder: model loaded and warmed), SERVING after, and NOT_SERVING
again when a worker dies or shutdown begins. The overall status ("") follows the services.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

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


async def drain(server: grpc.aio.Server, state: ServingState, *, delay_s: float, grace_s: float,
                sleep: Callable[[float], Awaitable[None]] | None = None) -> None:
    """Stop `server` the way a proxy in front of it needs: health NOT_SERVING at once (watchers and
    health checks see it), new calls still answered for `delay_s` while the proxy takes the server out,
    then `server.stop(grace_s)`: HTTP/2 GOAWAY on every connection (the proxy opens no new stream on
    them), the listener closed, in-flight calls given `grace_s` to finish. `sleep` waits the delay
    (asyncio.sleep; a test passes its own)."""
    import asyncio

    await state.shutdown()
    if delay_s > 0:
        await (sleep or asyncio.sleep)(delay_s)
    await server.stop(grace_s)


async def add_health_and_reflection(server: grpc.aio.Server, state: ServingState) -> None:
    """Register health (NOT_SERVING until `state.set_serving(True)`) and server reflection."""
    health_pb2_grpc.add_HealthServicer_to_server(state.servicer, server)
    await state.set_serving(False)
    reflection.enable_server_reflection(
        (*state.service_names, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )


def server_options(*, max_message_bytes: int, keepalive_time_s: float, keepalive_timeout_s: float,
                   reuse_port: bool = False) -> list[tuple]:
    """Channel arguments for a server: message size limits and HTTP/2 keepalive; `reuse_port` lets
    several processes listen on one port (SO_REUSEPORT: the kernel spreads connections over them)."""
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.keepalive_time_ms", int(keepalive_time_s * 1000)),
        ("grpc.keepalive_timeout_ms", int(keepalive_timeout_s * 1000)),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 5000),
        ("grpc.so_reuseport", 1 if reuse_port else 0),
    ]


async def run_until_signalled(stop: Callable[[], Awaitable[None]],
                              on_ready: Callable[[], None] | None = None) -> None:
    """Wait for SIGTERM or SIGINT, then run `stop` (flip health, drain, persist) once.

    `on_ready` runs once the handlers are installed: announce readiness there, so a signal sent
    as soon as a supervisor sees the announcement is never lost.
    """
    import asyncio
    import signal

    loop = asyncio.get_running_loop()
    signalled = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, signalled.set)
    if on_ready is not None:
        on_ready()
    try:
        await signalled.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    await stop()
