"""FaultInjectingBackend: any backend, with failures and delays switched on per collection at run time.

Tests and benchmarks use it to make a canary fail for real::

    backend = FaultInjectingBackend(EdgeBackend(data_dir))
    backend.inject("docs-v2", error=FaultKind.UNAVAILABLE)         # every call on docs-v2 fails
    backend.inject("docs-v2", delay=0.2, operations={"search"})    # searches on it take 0.2 s longer
    backend.clear("docs-v2")

A fault matches the collection name exactly as the call names it (the gateway's core passes physical
names; `restore_snapshot` is matched by the new collection's name). Calls that name no collection
(`list_collections`, `list_aliases`, `close`) pass through.
"""

from __future__ import annotations

import asyncio
import enum
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import TypeVar

from searchgw.gateway.backends.base import VectorBackend
from searchgw.gateway.backends.types import (
    CollectionInfo,
    CollectionSpec,
    Filter,
    IndexBuild,
    OrderBy,
    PayloadIndex,
    Point,
    PointId,
    ScoredPoint,
    ScrollPage,
    SearchQuery,
    SnapshotInfo,
    StoredPoint,
)
from searchgw.errors import Unavailable

ResultT = TypeVar("ResultT")

#: The operations a fault can be limited to: the VectorBackend methods that name a collection.
OPERATIONS = frozenset({"create_collection", "get_collection", "delete_collection", "update_alias", "delete_alias",
                        "resolve", "upsert", "delete_points", "search", "count", "scroll", "optimize",
                        "create_snapshot", "list_snapshots", "restore_snapshot", "delete_snapshot", "retrieve",
                        "create_payload_index", "delete_payload_index"})


class FaultKind(enum.Enum):
    #: Raise searchgw.errors.Unavailable, as a backend that cannot reach its engine does.
    UNAVAILABLE = "unavailable"
    #: Raise a plain RuntimeError: an unexpected engine failure.
    EXCEPTION = "exception"


@dataclass(frozen=True)
class Fault:
    error: FaultKind | None = None
    delay: float = 0.0
    #: The operations it applies to; None: all of them.
    operations: frozenset[str] | None = None

    def applies_to(self, operation: str) -> bool:
        return self.operations is None or operation in self.operations


class FaultInjectingBackend:
    """Wraps `inner`; `sleep` is the delay's sleep (tests pass a recorder instead of waiting)."""

    def __init__(self, inner: VectorBackend, *,
                 sleep: Callable[[float], Awaitable[object]] = asyncio.sleep) -> None:
        self.inner = inner
        self.kind = inner.kind
        self._sleep = sleep
        self._faults: dict[str, Fault] = {}
        #: How many calls each collection's fault has hit.
        self.hits: Counter[str] = Counter()

    # -- control -----------------------------------------------------------------------------
    def inject(self, collection: str, *, error: FaultKind | None = None, delay: float = 0.0,
               operations: Collection[str] | None = None) -> None:
        """Make calls on `collection` wait `delay` seconds, then fail with `error` (when given)."""
        if error is None and delay <= 0:
            raise ValueError("a fault needs an error, a delay, or both")
        if operations is not None and not set(operations) <= OPERATIONS:
            raise ValueError(f"unknown operations: {sorted(set(operations) - OPERATIONS)}")
        self._faults[collection] = Fault(error, delay, None if operations is None else frozenset(operations))

    def clear(self, collection: str | None = None) -> None:
        """Remove the fault on `collection`, or every fault."""
        if collection is None:
            self._faults.clear()
        else:
            self._faults.pop(collection, None)

    async def _call(self, operation: str, collection: str, call: Callable[[], Awaitable[ResultT]]) -> ResultT:
        fault = self._faults.get(collection)
        if fault is not None and fault.applies_to(operation):
            self.hits[collection] += 1
            if fault.delay > 0:
                await self._sleep(fault.delay)
            if fault.error is FaultKind.UNAVAILABLE:
                raise Unavailable(f"injected fault: {operation} on {collection!r} is unavailable")
            if fault.error is FaultKind.EXCEPTION:
                raise RuntimeError(f"injected fault: {operation} on {collection!r} failed")
        return await call()

    # -- VectorBackend -----------------------------------------------------------------------
    async def create_collection(self, spec: CollectionSpec) -> CollectionInfo:
        return await self._call("create_collection", spec.name, lambda: self.inner.create_collection(spec))

    async def get_collection(self, name: str) -> CollectionInfo:
        return await self._call("get_collection", name, lambda: self.inner.get_collection(name))

    async def list_collections(self) -> list[CollectionInfo]:
        return await self.inner.list_collections()

    async def delete_collection(self, name: str) -> None:
        await self._call("delete_collection", name, lambda: self.inner.delete_collection(name))

    async def update_alias(self, alias: str, collection: str) -> str | None:
        return await self._call("update_alias", collection, lambda: self.inner.update_alias(alias, collection))

    async def delete_alias(self, alias: str) -> None:
        await self._call("delete_alias", alias, lambda: self.inner.delete_alias(alias))

    async def list_aliases(self) -> dict[str, str]:
        return await self.inner.list_aliases()

    async def resolve(self, name: str) -> str:
        return await self._call("resolve", name, lambda: self.inner.resolve(name))

    async def upsert(self, collection: str, points: Sequence[Point]) -> None:
        await self._call("upsert", collection, lambda: self.inner.upsert(collection, points))

    async def delete_points(self, collection: str, *, ids: Sequence[PointId] | None = None,
                            filter: Filter | None = None) -> None:
        await self._call("delete_points", collection,
                         lambda: self.inner.delete_points(collection, ids=ids, filter=filter))

    async def search(self, collection: str, query: SearchQuery) -> list[ScoredPoint]:
        return await self._call("search", collection, lambda: self.inner.search(collection, query))

    async def count(self, collection: str, filter: Filter | None = None) -> int:
        return await self._call("count", collection, lambda: self.inner.count(collection, filter))

    async def scroll(self, collection: str, *, offset: PointId | None = None, limit: int = 256,
                     filter: Filter | None = None, order_by: OrderBy | None = None,
                     with_payload: bool = True, with_vector: bool = True) -> ScrollPage:
        return await self._call("scroll", collection, lambda: self.inner.scroll(
            collection, offset=offset, limit=limit, filter=filter, order_by=order_by, with_payload=with_payload,
            with_vector=with_vector))

    async def retrieve(self, collection: str, ids: Sequence[PointId], *, with_payload: bool = True,
                       with_vector: bool = False) -> list[StoredPoint]:
        return await self._call("retrieve", collection, lambda: self.inner.retrieve(
            collection, ids, with_payload=with_payload, with_vector=with_vector))

    async def create_payload_index(self, collection: str, index: PayloadIndex) -> CollectionInfo:
        return await self._call("create_payload_index", collection,
                                lambda: self.inner.create_payload_index(collection, index))

    async def delete_payload_index(self, collection: str, key: str) -> CollectionInfo:
        return await self._call("delete_payload_index", collection,
                                lambda: self.inner.delete_payload_index(collection, key))

    async def optimize(self, collection: str) -> IndexBuild:
        return await self._call("optimize", collection, lambda: self.inner.optimize(collection))

    async def create_snapshot(self, collection: str) -> SnapshotInfo:
        return await self._call("create_snapshot", collection, lambda: self.inner.create_snapshot(collection))

    async def list_snapshots(self, collection: str) -> list[SnapshotInfo]:
        return await self._call("list_snapshots", collection, lambda: self.inner.list_snapshots(collection))

    async def restore_snapshot(self, snapshot: str, collection: str) -> CollectionInfo:
        return await self._call("restore_snapshot", collection,
                                lambda: self.inner.restore_snapshot(snapshot, collection))

    async def delete_snapshot(self, collection: str, snapshot: str) -> None:
        return await self._call("delete_snapshot", collection,
                                lambda: self.inner.delete_snapshot(collection, snapshot))

    async def close(self) -> None:
        await self.inner.close()
