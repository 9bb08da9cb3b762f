"""EmbedderClient: a small async client for searchgw.v1.EmbedService.

Failures come back as `searchgw.errors` (see `searchgw.rpc.status.dependency_error`), so callers such
as the gateway can let them flow to their own clients with the right code. Trace context is carried
in the call metadata (W3C traceparent), so a caller's trace continues in the embedder.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import grpc
import numpy as np
from opentelemetry.instrumentation.grpc import aio_client_interceptors

from searchgw.errors import InvalidArgument
from searchgw.rpc.status import dependency_error, error_from_rpc
from searchgw.v1 import embed_service_pb2 as pb
from searchgw.v1 import embed_service_pb2_grpc as pb_grpc

_TEXT_FIELD = re.compile(r"^texts\[(\d+)\]$")


@dataclass(frozen=True)
class Embeddings:
    vectors: np.ndarray  # [n, dimension] float32, request order
    model: str
    dimension: int
    tokens: int
    truncated_inputs: int
    cache_hits: int


@dataclass(frozen=True)
class TextChunks:
    """One text's chunks: (text, start, end, tokens) each, in order; `tokens`: the whole text's count."""

    chunks: tuple[tuple[str, int, int, int], ...]
    tokens: int


def _attributed(exc: grpc.aio.AioRpcError, field: str, fields: Sequence[str] | None,
                options_field: str = "") -> Exception:
    """The embedder's error for our caller: an INVALID_ARGUMENT naming `texts[i]` is reported against
    `fields[i]` when given (the caller's own field for that text); one naming a chunking option
    (`max_tokens`, `overlap_tokens`) against `options_field.<option>` when given; else against `field`."""
    error = error_from_rpc(exc)
    if isinstance(error, InvalidArgument):
        match = _TEXT_FIELD.match(error.field)
        if fields is not None and match and int(match.group(1)) < len(fields):
            return InvalidArgument(fields[int(match.group(1))], f"embedder: {error.description}")
        if options_field and error.field in ("max_tokens", "overlap_tokens"):
            return InvalidArgument(f"{options_field}.{error.field}", f"embedder: {error.description}")
    return dependency_error(exc, field=field, what="embedder")


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
                    normalize: bool | None = None, timeout: float | None = None, field: str = "texts",
                    fields: Sequence[str] | None = None) -> Embeddings:
        """Embed `texts`; an INVALID_ARGUMENT from the server is reported against `field`, or, when it
        names one text and `fields` is given, against that text's entry of `fields`."""
        request = pb.EmbedRequest(texts=texts, model=model)
        if truncate is not None:
            request.truncate = truncate
        if normalize is not None:
            request.normalize = normalize
        try:
            response = await self._stub.Embed(request, timeout=timeout, metadata=self._metadata)
        except grpc.aio.AioRpcError as exc:
            raise _attributed(exc, field, fields) from None
        dimension = response.dimension
        vectors = np.array([e.values for e in response.embeddings], dtype=np.float32).reshape(-1, dimension)
        return Embeddings(vectors=vectors, model=response.model, dimension=dimension, tokens=response.usage.tokens,
                          truncated_inputs=response.usage.truncated_inputs, cache_hits=response.usage.cache_hits)

    async def chunk_text(self, texts: Sequence[str], *, model: str = "", max_tokens: int = 0,
                         overlap_tokens: int | None = None, timeout: float | None = None, field: str = "texts",
                         fields: Sequence[str] | None = None, options_field: str = "") -> list[TextChunks]:
        """Each text's chunks by `model`'s tokenizer (see ChunkText); errors are attributed as `embed`'s."""
        request = pb.ChunkTextRequest(texts=texts, model=model, max_tokens=max_tokens)
        if overlap_tokens is not None:
            request.overlap_tokens = overlap_tokens
        try:
            response = await self._stub.ChunkText(request, timeout=timeout, metadata=self._metadata)
        except grpc.aio.AioRpcError as exc:
            raise _attributed(exc, field, fields, options_field) from None
        return [TextChunks(tuple((c.text, c.start, c.end, c.tokens) for c in entry.chunks), entry.tokens)
                for entry in response.texts]

    async def model_info(self, *, timeout: float | None = None) -> pb.GetModelInfoResponse:
        try:
            return await self._stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=timeout, metadata=self._metadata)
        except grpc.aio.AioRpcError as exc:
            raise dependency_error(exc, what="embedder") from None
