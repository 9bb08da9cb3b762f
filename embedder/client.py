"""EmbedderClient: a small async client for searchgw.v1.EmbedService.

Failures come back as `searchgw.errors` (see `searchgw.rpc.status.dependency_error`), so callers such
as the gateway can let them flow to their own clients with the right code. Trace context is carried
in the call metadata (W3C traceparent), so a caller's trace continues in the embedder.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import grpc
import numpy as np
from opentelemetry.instrumentation.grpc import aio_client_interceptors

from searchgw.rpc.status import dependency_error
from searchgw.v1 import embed_service_pb2 as pb
from searchgw.v1 import embed_service_pb2_grpc as pb_grpc


@dataclass(frozen=True)
class Embeddings:
    vectors: np.ndarray  # [n, dimension] float32, request order
    model: str
    dimension: int
    tokens: int
    truncated_inputs: int
    cache_hits: int


class EmbedderClient:
    """Async client; `target` is host:port. Use as an async context manager or call `close()`."""

    def __init__(self, target: str, *, channel: grpc.aio.Channel | None = None,
                 credentials: grpc.ChannelCredentials | None = None, metadata: Sequence[tuple[str, str]] = (),
                 max_message_bytes: int = 32 * 1024 * 1024) -> None:
        self.target = target
        options = [("grpc.max_receive_message_length", max_message_bytes),
                   ("grpc.max_send_message_length", max_message_bytes),
                   ("grpc.keepalive_time_ms", 30000),
                   # Spread calls over every address the name resolves to (a headless Service's pods).
                   ("grpc.lb_policy_name", "round_robin"),
                   # Reconnect within seconds after an embedder restart (defaults back off to minutes).
                   ("grpc.initial_reconnect_backoff_ms", 500),
                   ("grpc.min_reconnect_backoff_ms", 500),
                   ("grpc.max_reconnect_backoff_ms", 3000)]
        if channel is None:
            interceptors = aio_client_interceptors()
            channel = (grpc.aio.secure_channel(target, credentials, options=options, interceptors=interceptors)
                       if credentials is not None else
                       grpc.aio.insecure_channel(target, options=options, interceptors=interceptors))
        self._channel = channel
        self._metadata = tuple(metadata)
        self._stub = pb_grpc.EmbedServiceStub(self._channel)

    async def __aenter__(self) -> EmbedderClient:
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def embed(self, texts: Sequence[str], *, model: str = "", truncate: bool | None = None,
                    normalize: bool | None = None, timeout: float | None = None, field: str = "texts") -> Embeddings:
        """Embed `texts`; an INVALID_ARGUMENT from the server is reported against `field`."""
        request = pb.EmbedRequest(texts=texts, model=model)
        if truncate is not None:
            request.truncate = truncate
        if normalize is not None:
            request.normalize = normalize
        try:
            response = await self._stub.Embed(request, timeout=timeout, metadata=self._metadata)
        except grpc.aio.AioRpcError as exc:
            raise dependency_error(exc, field=field, what="embedder") from None
        dimension = response.dimension
        vectors = np.array([e.values for e in response.embeddings], dtype=np.float32).reshape(-1, dimension)
        return Embeddings(vectors=vectors, model=response.model, dimension=dimension, tokens=response.usage.tokens,
                          truncated_inputs=response.usage.truncated_inputs, cache_hits=response.usage.cache_hits)

    async def model_info(self, *, timeout: float | None = None) -> pb.GetModelInfoResponse:
        try:
            return await self._stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=timeout, metadata=self._metadata)
        except grpc.aio.AioRpcError as exc:
            raise dependency_error(exc, what="embedder") from None
