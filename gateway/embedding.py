"""How the gateway gets vectors for texts: the `TextEmbedder` interface. Free of gRPC.

Its gRPC implementation, `RemoteEmbedder` (over the embedder's client), lives on the gRPC floor in
`searchgw.gateway.remote_embedder`; the server assembles it (`gateway/server.py`) and hands it to
the services as a `TextEmbedder`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np


class TextEmbedder(Protocol):
    async def embed(self, texts: Sequence[str], *, model: str, field: str, deadline: float | None) -> np.ndarray:
        """Vectors [len(texts), dim] for `texts` with `model`; errors name `field` of the caller's request."""
        ...

    async def default_model(self) -> str:
        """The embedder's default model name."""
        ...

    async def dimension_of(self, model: str) -> int:
        """The dimension of `model`'s vectors (NotFound when the embedder does not serve it)."""
        ...


__all__ = ["TextEmbedder"]
