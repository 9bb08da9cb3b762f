"""How the gateway gets vectors for texts: the `TextEmbedder` interface. Free of gRPC.

Its gRPC implementation, `RemoteEmbedder` (over the embedder's client), lives on the gRPC floor in
`searchgw.gateway.remote_embedder`; the server assembles it (`gateway/server.py`) and hands it to
the services as a `TextEmbedder`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class TextChunk:
    """One chunk of a text: `text[start:end]` (code points), `tokens` as the model takes it."""

    text: str
    start: int
    end: int
    tokens: int


@dataclass(frozen=True)
class ChunkedText:
    """A text's chunks in order (one, the text itself, when it fits), and its own token count."""

    chunks: tuple[TextChunk, ...]
    tokens: int


@dataclass(frozen=True)
class ChunkingOptions:
    """How to chunk: at most `max_tokens` per chunk (0: the model's limit), special tokens included;
    `overlap_tokens` repeated from the chunk before (None: the embedder's default, 32)."""

    max_tokens: int = 0
    overlap_tokens: int | None = None


class TextEmbedder(Protocol):
    async def embed(self, texts: Sequence[str], *, model: str, field: str, deadline: float | None,
                    fields: Sequence[str] | None = None) -> np.ndarray:
        """Vectors [len(texts), dim] for `texts` with `model`. A text over the model's limit is refused
        (never truncated): InvalidArgument naming `fields[i]` (its field in the caller's request) when
        given, else `field`."""
        ...

    async def chunk(self, texts: Sequence[str], *, model: str, options: ChunkingOptions, fields: Sequence[str],
                    options_field: str, deadline: float | None) -> list[ChunkedText]:
        """Each text cut into chunks `model` takes whole, by its own tokenizer. A bad text is
        InvalidArgument naming its entry of `fields`, a bad option `options_field.<option>`."""
        ...

    async def default_model(self) -> str:
        """The embedder's default model name."""
        ...

    async def dimension_of(self, model: str) -> int:
        """The dimension of `model`'s vectors (NotFound when the embedder does not serve it)."""
        ...


__all__ = ["ChunkedText", "ChunkingOptions", "TextChunk", "TextEmbedder"]
