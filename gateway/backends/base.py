"""The one small async interface every vector backend implements.

Names: a *collection* is physical (it holds points); an *alias* is a logical name that points at one
collection. Collections and aliases share one namespace. Data operations (`upsert`, `delete_points`,
`search`, `count`) accept either and act on the collection the name resolves to at call time.

Errors are `searchgw.errors` types, never the engine's own for an expected case:

- NotFound: an unknown collection or alias.
- AlreadyExists: the name is taken (by a collection or an alias).
- InvalidArgument(field, ...): a bad name, spec, id, vector (`vector`, `points[i].vector`, checked
  against the collection before the engine is called), payload or filter. A rejected write writes
  nothing.
- FailedPrecondition: the state forbids the move (deleting a collection an alias still points at).
- Unavailable: the engine cannot be reached, timed out, or the backend is closed.

Snapshots: `create_snapshot` takes a point-in-time copy of one collection (its points and its spec,
embedding model included); `restore_snapshot` turns one into a NEW collection and never overwrites
(AlreadyExists when the name is taken; NotFound for an unknown snapshot); `delete_snapshot` removes
one (NotFound for an unknown one). Each backend's module
docstring states what a snapshot guarantees there.

Anything else escaping a backend is an unexpected engine failure; `InstrumentedBackend`, which the
server wraps around the backend it hands to every service, turns it into Unavailable.

Names, limits and checks are `searchgw.gateway.rules`, shared with the rest of the gateway: a backend
checks what it is given with them and otherwise only converts domain values into its engine's form.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

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


@runtime_checkable
class VectorBackend(Protocol):
    """Vector storage: collections, aliases and the points in them."""

    #: A short name for logs and metric labels: "edge" or "qdrant".
    kind: str

    async def create_collection(self, spec: CollectionSpec) -> CollectionInfo:
        """Create an empty collection; zero HNSW settings take the defaults (the info shows them)."""
        ...

    async def get_collection(self, name: str) -> CollectionInfo:
        """Describe the collection `name` is, or that the alias `name` points at."""
        ...

    async def list_collections(self) -> list[CollectionInfo]:
        """Every collection, by name."""
        ...

    async def delete_collection(self, name: str) -> None:
        """Delete a collection and its points. FailedPrecondition while an alias points at it."""
        ...

    async def update_alias(self, alias: str, collection: str) -> str | None:
        """Point `alias` at `collection` in one atomic switch; returns the previous target, if any.

        NotFound (and the alias unchanged) when `collection` does not exist.
        """
        ...

    async def delete_alias(self, alias: str) -> None:
        """Remove an alias; its collection stays."""
        ...

    async def list_aliases(self) -> dict[str, str]:
        """Every alias and the collection it points at."""
        ...

    async def resolve(self, name: str) -> str:
        """The collection `name` means: an alias's target, or a collection's own name."""
        ...

    async def upsert(self, collection: str, points: Sequence[Point]) -> None:
        """Insert or replace points: all of them, or none when any is invalid."""
        ...

    async def delete_points(self, collection: str, *, ids: Sequence[PointId] | None = None,
                            filter: Filter | None = None) -> None:
        """Delete the points with these ids, or the points that match a filter (exactly one is given)."""
        ...

    async def search(self, collection: str, query: SearchQuery) -> list[ScoredPoint]:
        """The points nearest to `query.vector`, best first."""
        ...

    async def count(self, collection: str, filter: Filter | None = None) -> int:
        """How many points the collection holds (exact); with `filter`, how many match it."""
        ...

    async def scroll(self, collection: str, *, offset: PointId | None = None, limit: int = 256,
                     filter: Filter | None = None, order_by: OrderBy | None = None,
                     with_payload: bool = True, with_vector: bool = True) -> ScrollPage:
        """Up to `limit` points in id order (integer ids before UUIDs), starting at the id `offset`
        (inclusive; None: the first), each with its vector and payload (unless `with_vector` /
        `with_payload` are False); `next_offset` is the id the next page starts at (None after the
        last). With `filter`, only the points that match it. A backfill or export walks a collection
        with it page by page.

        With `order_by` (then `offset` must be None) the points come ordered by that payload field,
        which needs an integer, float or datetime index (InvalidArgument naming `order_by.key`
        otherwise), starting at `order_by.start_from`; the page's `order_values` say where the next
        one starts (points without the field are left out, as the engines do).
        """
        ...

    async def retrieve(self, collection: str, ids: Sequence[PointId], *, with_payload: bool = True,
                       with_vector: bool = False) -> list[StoredPoint]:
        """The points with these ids, in the order of `ids` (each once); ids it does not hold are left out."""
        ...

    async def create_payload_index(self, collection: str, index: PayloadIndex) -> CollectionInfo:
        """Index a payload field (replacing the key's index, if any); the collection with its indexes."""
        ...

    async def delete_payload_index(self, collection: str, key: str) -> CollectionInfo:
        """Remove a payload field's index (NotFound when it has none); the collection with its indexes."""
        ...

    async def optimize(self, collection: str) -> IndexBuild:
        """Index what is not indexed yet, and return when done, with what the build did.

        The embedded engine builds its HNSW graph only when asked, in a child process on a copy of
        the collection, and swaps it in (searches go on meanwhile; see `EdgeBackend.optimize`); a
        Qdrant server indexes by itself, so there this does nothing.
        """
        ...

    async def create_snapshot(self, collection: str) -> SnapshotInfo:
        """Snapshot the collection `collection` is (or the alias `collection` points at)."""
        ...

    async def list_snapshots(self, collection: str) -> list[SnapshotInfo]:
        """The collection's snapshots, oldest first."""
        ...

    async def restore_snapshot(self, snapshot: str, collection: str) -> CollectionInfo:
        """Create the collection `collection` from the snapshot named `snapshot`, with its spec and points.

        AlreadyExists when a collection or alias is named `collection` (nothing is overwritten);
        NotFound when there is no snapshot of that name.
        """
        ...

    async def delete_snapshot(self, collection: str, snapshot: str) -> None:
        """Delete the snapshot named `snapshot` of the collection `collection` is (or the alias
        `collection` points at; on the embedded backend also a deleted collection's old name).

        NotFound when that collection has no snapshot of that name; FailedPrecondition while the
        snapshot is being restored.
        """
        ...

    async def close(self) -> None:
        """Persist what is pending and release every resource; later calls fail with Unavailable."""
        ...
