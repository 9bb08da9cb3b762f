"""Vector storage behind one small async interface (`VectorBackend`), free of gRPC.

- `EdgeBackend` (kind "edge"): the embedded default on qdrant-edge; collections in a data directory.
- `QdrantBackend` (kind "qdrant"): a Qdrant server, or qdrant-client's local mode.
- `FaultInjectingBackend`: wraps either to make a collection fail or slow down on demand.
- `InstrumentedBackend`: wraps any of them to time and trace every call and turn unexpected engine
  failures into Unavailable; the server builds one and hands it to every service.

The engines load when first named (`EdgeBackend`, `QdrantBackend`, `open_backend`): importing this
package loads only the interface, the domain types and the wrappers. qdrant-client imports grpc (it
talks gRPC to a Qdrant server), so `QdrantBackend` is the one part of this package that does.
The names and limits every backend applies are `searchgw.gateway.rules`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

from searchgw.gateway.backends.base import VectorBackend
from searchgw.gateway.backends.faults import FaultInjectingBackend, FaultKind
from searchgw.gateway.backends.instrumented import BackendObserver, InstrumentedBackend
from searchgw.gateway.backends.types import (
    BM25_VECTOR,
    Bm25Config,
    Bm25Tokenizer,
    CollectionInfo,
    CollectionSpec,
    Condition,
    DatetimeRange,
    Distance,
    FieldCondition,
    Filter,
    Fusion,
    FusionMethod,
    HasId,
    IndexBuild,
    IsEmpty,
    IsNull,
    MinShould,
    OrderBy,
    Payload,
    PayloadIndex,
    PayloadIndexType,
    Point,
    PointId,
    Range,
    ScalarQuantization,
    ScoredPoint,
    ScrollPage,
    SearchMode,
    StoredPoint,
    SearchQuery,
    SnapshotInfo,
    TextIndexParams,
    Tokenizer,
    ValuesCount,
    Vector,
)

if TYPE_CHECKING:
    from searchgw.gateway.backends.edge import EdgeBackend
    from searchgw.gateway.backends.qdrant import QdrantBackend

BACKEND_KINDS = ("edge", "qdrant")


def __getattr__(name: str) -> Any:
    """The engines, imported when first named (see the module docstring)."""
    if name == "EdgeBackend":
        from searchgw.gateway.backends.edge import EdgeBackend

        return EdgeBackend
    if name == "QdrantBackend":
        from searchgw.gateway.backends.qdrant import QdrantBackend

        return QdrantBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


async def open_backend(kind: str, *, data_dir: str | Path, qdrant_location: str = "", api_key: str | None = None,
                       timeout: float = 10.0, prefer_grpc: bool = True) -> VectorBackend:
    """The backend `kind` names: "edge" in `data_dir`, or "qdrant" at `qdrant_location`.

    Opening does blocking I/O (the edge backend locks its directory and reads its catalog), so it
    runs off the event loop.
    """
    if kind == "edge":
        from searchgw.gateway.backends.edge import EdgeBackend

        return await asyncio.to_thread(EdgeBackend, data_dir)
    if kind == "qdrant":
        from searchgw.gateway.backends.qdrant import QdrantBackend

        return await asyncio.to_thread(QdrantBackend, qdrant_location, api_key=api_key, timeout=timeout,
                                       prefer_grpc=prefer_grpc)
    raise ValueError(f"unknown backend kind {kind!r}; expected one of {', '.join(BACKEND_KINDS)}")


__all__ = [
    "BM25_VECTOR",
    "Bm25Config",
    "Bm25Tokenizer",
    "BACKEND_KINDS",
    "BackendObserver",
    "CollectionInfo",
    "CollectionSpec",
    "Condition",
    "DatetimeRange",
    "Distance",
    "EdgeBackend",
    "FaultInjectingBackend",
    "FaultKind",
    "FieldCondition",
    "Filter",
    "Fusion",
    "FusionMethod",
    "HasId",
    "IndexBuild",
    "InstrumentedBackend",
    "IsEmpty",
    "IsNull",
    "MinShould",
    "OrderBy",
    "Payload",
    "PayloadIndex",
    "PayloadIndexType",
    "Point",
    "PointId",
    "QdrantBackend",
    "Range",
    "ScalarQuantization",
    "ScoredPoint",
    "ScrollPage",
    "SearchMode",
    "StoredPoint",
    "SearchQuery",
    "SnapshotInfo",
    "TextIndexParams",
    "Tokenizer",
    "ValuesCount",
    "Vector",
    "VectorBackend",
    "open_backend",
]
