"""InstrumentedBackend: any backend, every call timed and traced, and engine failures made UNAVAILABLE.

The server wraps its backend in one of these once, at assembly, and every service that touches
storage (SearchCore, CollectionAdmin, the rollout controller's alias switches, demo seeding) is given
that wrapped backend, so the same engine failure is the same status on every RPC::

    backend = InstrumentedBackend(EdgeBackend(data_dir), observe=metrics.observe_backend)

A call that fails with a `searchgw.errors` type (the backend's contract: NotFound, InvalidArgument,
Unavailable, ...) passes through unchanged. Anything else escaping the engine is an unexpected
engine failure — a dependency's fault, not the client's and not a bug in the gateway — so it is
logged and raised as `Unavailable` ("retry"), never INTERNAL. Cancellation passes through.

Each call is one span `backend.<operation>` (attribute `backend`: the kind; only when a tracing SDK
records spans, see `searchgw.telemetry.tracing_records`) and one `observe(operation, kind, seconds)`;
the operation is the VectorBackend method's name.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from opentelemetry import trace

from searchgw.errors import SearchgwError, Unavailable
from searchgw.telemetry.tracing import tracing_records
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

ResultT = TypeVar("ResultT")

#: Hears each call's operation, backend kind and duration in seconds.
BackendObserver = Callable[[str, str, float], None]

log = logging.getLogger(__name__)
_tracer = trace.get_tracer("searchgw.gateway.backends")


def _ignore(operation: str, backend: str, seconds: float) -> None:
    return None


class InstrumentedBackend:
    """Wraps `inner` (see the module docstring); `clock` times the calls (monotonic seconds)."""

    def __init__(self, inner: VectorBackend, *, observe: BackendObserver = _ignore,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.inner = inner
        self.kind = inner.kind
        self._observe = observe
        self._clock = clock

    async def _call(self, operation: str, call: Callable[[], Awaitable[ResultT]]) -> ResultT:
        started = self._clock()
        try:
            if not tracing_records():  # no SDK: the span would be a no-op that still costs a context switch
                return await call()
            with _tracer.start_as_current_span(f"backend.{operation}", attributes={"backend": self.kind}):
                return await call()
        except SearchgwError:
            raise
        except Exception as exc:  # the engine failed: a dependency failure, not a client error
            log.error("backend %s failed", operation, exc_info=exc)
            raise Unavailable(f"the vector backend failed during {operation}; retry") from exc
        finally:
            self._observe(operation, self.kind, self._clock() - started)

    # -- VectorBackend -----------------------------------------------------------------------
    async def create_collection(self, spec: CollectionSpec) -> CollectionInfo:
        return await self._call("create_collection", lambda: self.inner.create_collection(spec))

    async def get_collection(self, name: str) -> CollectionInfo:
        return await self._call("get_collection", lambda: self.inner.get_collection(name))

    async def list_collections(self) -> list[CollectionInfo]:
        return await self._call("list_collections", self.inner.list_collections)

    async def delete_collection(self, name: str) -> None:
        await self._call("delete_collection", lambda: self.inner.delete_collection(name))

    async def update_alias(self, alias: str, collection: str) -> str | None:
        return await self._call("update_alias", lambda: self.inner.update_alias(alias, collection))

    async def delete_alias(self, alias: str) -> None:
        await self._call("delete_alias", lambda: self.inner.delete_alias(alias))

    async def list_aliases(self) -> dict[str, str]:
        return await self._call("list_aliases", self.inner.list_aliases)

    async def resolve(self, name: str) -> str:  # `_call` inlined: on every search without a rollout
        started = self._clock()
        try:
            if not tracing_records():
                return await self.inner.resolve(name)
            with _tracer.start_as_current_span("backend.resolve", attributes={"backend": self.kind}):
                return await self.inner.resolve(name)
        except SearchgwError:
            raise
        except Exception as exc:
            log.error("backend %s failed", "resolve", exc_info=exc)
            raise Unavailable("the vector backend failed during resolve; retry") from exc
        finally:
            self._observe("resolve", self.kind, self._clock() - started)

    async def upsert(self, collection: str, points: Sequence[Point]) -> None:
        await self._call("upsert", lambda: self.inner.upsert(collection, points))

    async def delete_points(self, collection: str, *, ids: Sequence[PointId] | None = None,
                            filter: Filter | None = None) -> None:
        await self._call("delete_points", lambda: self.inner.delete_points(collection, ids=ids, filter=filter))

    async def search(self, collection: str, query: SearchQuery) -> list[ScoredPoint]:  # `_call` inlined: every search
        started = self._clock()
        try:
            if not tracing_records():
                return await self.inner.search(collection, query)
            with _tracer.start_as_current_span("backend.search", attributes={"backend": self.kind}):
                return await self.inner.search(collection, query)
        except SearchgwError:
            raise
        except Exception as exc:
            log.error("backend %s failed", "search", exc_info=exc)
            raise Unavailable("the vector backend failed during search; retry") from exc
        finally:
            self._observe("search", self.kind, self._clock() - started)

    async def count(self, collection: str, filter: Filter | None = None) -> int:
        return await self._call("count", lambda: self.inner.count(collection, filter))

    async def scroll(self, collection: str, *, offset: PointId | None = None, limit: int = 256,
                     filter: Filter | None = None, order_by: OrderBy | None = None,
                     with_payload: bool = True, with_vector: bool = True) -> ScrollPage:
        return await self._call("scroll", lambda: self.inner.scroll(
            collection, offset=offset, limit=limit, filter=filter, order_by=order_by, with_payload=with_payload,
            with_vector=with_vector))

    async def retrieve(self, collection: str, ids: Sequence[PointId], *, with_payload: bool = True,
                       with_vector: bool = False) -> list[StoredPoint]:
        return await self._call("retrieve", lambda: self.inner.retrieve(collection, ids, with_payload=with_payload,
                                                                        with_vector=with_vector))

    async def create_payload_index(self, collection: str, index: PayloadIndex) -> CollectionInfo:
        return await self._call("create_payload_index", lambda: self.inner.create_payload_index(collection, index))

    async def delete_payload_index(self, collection: str, key: str) -> CollectionInfo:
        return await self._call("delete_payload_index", lambda: self.inner.delete_payload_index(collection, key))

    async def optimize(self, collection: str) -> IndexBuild:
        return await self._call("optimize", lambda: self.inner.optimize(collection))

    async def create_snapshot(self, collection: str) -> SnapshotInfo:
        return await self._call("create_snapshot", lambda: self.inner.create_snapshot(collection))

    async def list_snapshots(self, collection: str) -> list[SnapshotInfo]:
        return await self._call("list_snapshots", lambda: self.inner.list_snapshots(collection))

    async def restore_snapshot(self, snapshot: str, collection: str) -> CollectionInfo:
        return await self._call("restore_snapshot", lambda: self.inner.restore_snapshot(snapshot, collection))

    async def delete_snapshot(self, collection: str, snapshot: str) -> None:
        return await self._call("delete_snapshot", lambda: self.inner.delete_snapshot(collection, snapshot))

    async def close(self) -> None:
        await self.inner.close()
