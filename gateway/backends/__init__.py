"""Vector storage behind one small async interface (`VectorBackend`), free of gRPC.

- `EdgeBackend` (kind "edge"): the embedded default on qdrant-edge; collections in a data directory.
- `QdrantBackend` (kind "qdrant"): a Qdrant server, or qdrant-client's local mode.
- `FaultInjectingBackend`: wraps either to make a collection fail or slow down on demand.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from searchgw.gateway.backends.base import VectorBackend
from searchgw.gateway.backends.edge import EdgeBackend
from searchgw.gateway.backends.faults import FaultInjectingBackend, FaultKind
from searchgw.gateway.backends.qdrant import QdrantBackend
from searchgw.gateway.backends.types import (
    CollectionInfo,
    CollectionSpec,
    Condition,
    Distance,
    FieldCondition,
    Filter,
    HasId,
    Payload,
    Point,
    PointId,
    Range,
    ScalarQuantization,
    ScoredPoint,
    SearchQuery,
    SnapshotInfo,
    Vector,
)

BACKEND_KINDS = ("edge", "qdrant")


async def open_backend(kind: str, *, data_dir: str | Path, qdrant_location: str = "", api_key: str | None = None,
                       timeout: float = 10.0, prefer_grpc: bool = True) -> VectorBackend:
    """The backend `kind` names: "edge" in `data_dir`, or "qdrant" at `qdrant_location`.

    Opening does blocking I/O (the edge backend locks its directory and reads its catalog), so it
    runs off the event loop.
    """
    if kind == "edge":
        return await asyncio.to_thread(EdgeBackend, data_dir)
    if kind == "qdrant":
        return await asyncio.to_thread(QdrantBackend, qdrant_location, api_key=api_key, timeout=timeout,
                                       prefer_grpc=prefer_grpc)
    raise ValueError(f"unknown backend kind {kind!r}; expected one of {', '.join(BACKEND_KINDS)}")


__all__ = [
    "BACKEND_KINDS",
    "CollectionInfo",
    "CollectionSpec",
    "Condition",
    "Distance",
    "EdgeBackend",
    "FaultInjectingBackend",
    "FaultKind",
    "FieldCondition",
    "Filter",
    "HasId",
    "Payload",
    "Point",
    "PointId",
    "QdrantBackend",
    "Range",
    "ScalarQuantization",
    "ScoredPoint",
    "SearchQuery",
    "SnapshotInfo",
    "Vector",
    "VectorBackend",
    "open_backend",
]
