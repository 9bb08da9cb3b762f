"""RemoteEmbedder: the gateway's `TextEmbedder` over the embedder's gRPC client (the gRPC floor).

The server builds one when `--embedder-addr` is set; the domain (SearchCore, CollectionAdmin, demo
seeding) sees only the `TextEmbedder` interface of `searchgw.gateway.embedding`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from searchgw.embedder.client import EmbedderClient
from searchgw.errors import DeadlineExceeded, NotFound
from searchgw.gateway.embedding import ChunkedText, ChunkingOptions, TextChunk


class RemoteEmbedder:
    """TextEmbedder over an EmbedderClient: caps each call at the embed timeout and the caller's deadline."""

    def __init__(self, client: EmbedderClient, *, timeout_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self._timeout_s = timeout_s
        self._clock = clock
        self._models: dict[str, int] | None = None
        self._default = ""

    def _timeout(self, deadline: float | None) -> float:
        timeout = self._timeout_s
        if deadline is not None:
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise DeadlineExceeded("the deadline passed before the query could be embedded")
            timeout = min(timeout, remaining)
        return timeout

    async def embed(self, texts: Sequence[str], *, model: str, field: str, deadline: float | None,
                    fields: Sequence[str] | None = None) -> np.ndarray:
        # truncate=False said out loud: an embedder of an older default still refuses, never cuts.
        result = await self.client.embed(texts, model=model, truncate=False, timeout=self._timeout(deadline),
                                         field=field, fields=fields)
        vectors: np.ndarray = result.vectors
        return vectors

    async def chunk(self, texts: Sequence[str], *, model: str, options: ChunkingOptions, fields: Sequence[str],
                    options_field: str, deadline: float | None) -> list[ChunkedText]:
        results = await self.client.chunk_text(
            texts, model=model, max_tokens=options.max_tokens, overlap_tokens=options.overlap_tokens,
            timeout=self._timeout(deadline), field=options_field, fields=fields, options_field=options_field)
        return [ChunkedText(tuple(TextChunk(*chunk) for chunk in result.chunks), result.tokens)
                for result in results]

    async def _load_models(self) -> dict[str, int]:
        if self._models is None:
            info = await self.client.model_info(timeout=self._timeout_s)
            self._models = {m.name: m.dimension for m in info.models}
            self._default = info.default_model
        return self._models

    async def default_model(self) -> str:
        await self._load_models()
        return self._default

    async def dimension_of(self, model: str) -> int:
        models = await self._load_models()
        if model not in models:
            raise NotFound(f"embedding model {model!r} is not served by the embedder; served: {', '.join(models)}")
        return models[model]


__all__ = ["RemoteEmbedder"]
