"""EdgeBackend: the embedded default, on qdrant-edge (real HNSW, a WAL, a data directory).

Layout of `data_dir`::

    LOCK                      flock()ed while a backend has the directory open (one at a time)
    catalog.json              every collection's spec (embedding model and payload indexes included) and every alias
    collections/<name>/       one qdrant-edge shard per collection (its WAL, segments, config)
    snapshots/<name>/         that collection's snapshots (see `_snapshots`); they outlive it
    builds/<name>/            an index build's copy of the shard, while it runs (see Indexing)

Aliases are ours, not the engine's: they live in the catalog, which is replaced atomically (see
`_catalog`), so an alias switch is one atomic step that survives a restart.

Durability — what is on disk when a call returns:

- create_collection, delete_collection, update_alias, delete_alias, create_payload_index,
  delete_payload_index: the catalog is fsynced (and the shard flushed) before the call returns, so the
  change survives a crash of the process or of the machine. An index change is made in the engine
  first, then committed to the catalog; if the commit fails the engine's change is undone.
- upsert, delete_points: the engine appends the operation to the shard's write-ahead log before it
  applies it, and the call returns after both. The WAL is a memory-mapped file, so an acknowledged
  write is in the kernel's page cache: it survives SIGKILL or any crash of the process, and the next
  open replays it (tested by killing a writer process). It survives an OS crash or power loss only
  once flushed to the device: `close()` flushes every shard (a flush costs ~0.1 s on 20k points, so
  it is not done per write).

Snapshots — `create_snapshot` pauses writes to that one collection (upserts, deletes and optimize
wait; searches, and every other collection, go on), waits for the writes in flight, flushes the
shard, and archives its directory together with its catalog entry (the spec, embedding model
included) in one file it writes atomically and fsyncs before it returns. So a snapshot holds exactly
the writes acknowledged before it was taken and none after, survives a crash of the process or the
machine once returned, and never appears half-written. `restore_snapshot` unpacks it (checking its
SHA-256) into a new shard directory, opens it, checks the point count against the archive's, and
commits the new collection to the catalog like `create_collection` does; it never touches an
existing name. `delete_snapshot` unlinks the archive (the commit point), then its checksum file, and
fsyncs the directory; a snapshot still being written is not there to delete yet (NotFound), and one
being restored is refused (FailedPrecondition) until the restore ends. A deleted collection's
snapshots stay, and are deleted by its old name. Writes to the collection wait for the whole copy: 0.3 s for an empty shard (its
preallocated files are 100 MiB of zeros to read), 1 s for 5 000 × 384 here.

Threads: every engine call runs in the backend's own executor, never on the event loop. An engine
call holds the GIL for its whole length (two threads querying one shard do not overlap).

Indexing: the engine builds its HNSW graph only when `optimize()` is called; until then a large
collection is searched exhaustively (20k × 384: 2 ms per query, 0.5 ms once indexed). The engine's
build holds the GIL throughout (14-18 s for 20k × 384 here, minutes for a million), so `optimize`
never runs it in this process: it copies the flushed shard (writes wait for the copy, searches do
not), builds the copy in a child process (`_index_build`, at a lower priority), journals the writes
acknowledged meanwhile, replays them onto the built copy and swaps it in (writes wait for the
replay and the swap; searches wait for the swap alone: closing the old shard, two renames, opening
the new one). A crash mid-swap is undone at the next open (`_recover_builds`); deleting the
collection or closing the backend kills the child. `builds/<name>/` holds the copy meanwhile.

Micro-batching (on by default): searches on one collection that arrive while a query on it runs go
together as one `query_batch` call (see `_batching`). With 16 concurrent callers it raised queries/s
1.35-1.8x on 1k points, 1.7x on 20k points before indexing and 1.1-1.5x after, and lowered p50
latency; a lone caller pays nothing for it (bench/bench_backends.py, two runs on a shared 2-core box).
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import shutil
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import IO, Any, TypeVar, cast

import numpy as np
import qdrant_edge as qe

from searchgw.gateway.backends._batching import MicroBatcher
from searchgw.gateway.backends._catalog import Catalog
from searchgw.gateway.backends._grouping import grouped_search
from searchgw.gateway.backends._index_build import BuildProcess, JournalEntry
from searchgw.gateway.backends._snapshots import SnapshotStore, fsync_directory
from searchgw.gateway.backends.types import (
    BM25_VECTOR,
    Bm25Config,
    Bm25Tokenizer,
    CollectionInfo,
    CollectionSpec,
    Condition,
    Distance,
    FieldCondition,
    Filter,
    FusionMethod,
    HasId,
    IndexBuild,
    IsEmpty,
    IsNull,
    OrderBy,
    PayloadIndex,
    PayloadIndexType,
    Point,
    PointId,
    ScoredPoint,
    ScrollPage,
    SearchParams,
    SearchMode,
    SearchQuery,
    SnapshotInfo,
    StoredPoint,
    Tokenizer,
)
from searchgw.gateway.rules import (
    check_key,
    bm25_text,
    check_name,
    check_search_mode,
    check_snapshot_name,
    checked_filter,
    checked_ids,
    checked_order_by,
    checked_payload_index,
    checked_points,
    checked_query,
    checked_selector,
    normalized_spec,
    point_id,
    refuse_if_aliased,
    with_payload_index,
    without_payload_index,
)
from searchgw.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, SearchgwError, Unavailable

ResultT = TypeVar("ResultT")

_DISTANCES = {
    Distance.COSINE: qe.Distance.Cosine,
    Distance.DOT: qe.Distance.Dot,
    Distance.EUCLID: qe.Distance.Euclid,
    Distance.MANHATTAN: qe.Distance.Manhattan,
}


# -- domain → engine ---------------------------------------------------------------------------
def _engine_config(spec: CollectionSpec) -> qe.EdgeConfig:
    quantization = None
    if spec.scalar_quantization is not None:
        quantization = qe.ScalarQuantizationConfig(type=qe.ScalarType.Int8, quantile=spec.scalar_quantization.quantile,
                                                   always_ram=spec.scalar_quantization.always_ram)
    sparse = None
    if spec.bm25 is not None:  # the engine applies IDF over the collection at query time
        sparse = {BM25_VECTOR: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)}
    return qe.EdgeConfig(
        vectors=qe.EdgeVectorParams(size=spec.dimension, distance=_DISTANCES[spec.distance]),
        sparse_vectors=sparse,
        hnsw_config=qe.HnswIndexConfig(m=spec.hnsw_m, ef_construct=spec.hnsw_ef_construct,
                                       full_scan_threshold=spec.full_scan_threshold),
        quantization_config=quantization,
    )


_INDEX_SCHEMAS = {
    PayloadIndexType.KEYWORD: qe.PayloadSchemaType.Keyword,
    PayloadIndexType.INTEGER: qe.PayloadSchemaType.Integer,
    PayloadIndexType.FLOAT: qe.PayloadSchemaType.Float,
    PayloadIndexType.BOOL: qe.PayloadSchemaType.Bool,
    PayloadIndexType.DATETIME: qe.PayloadSchemaType.Datetime,
    PayloadIndexType.UUID: qe.PayloadSchemaType.Uuid,
}
_TOKENIZERS = {
    Tokenizer.WORD: qe.TokenizerType.Word,
    Tokenizer.WHITESPACE: qe.TokenizerType.Whitespace,
    Tokenizer.PREFIX: qe.TokenizerType.Prefix,
    Tokenizer.MULTILINGUAL: qe.TokenizerType.Multilingual,
}


def _engine_index_schema(index: PayloadIndex) -> Any:
    """The engine's schema for a checked index (`rules.checked_payload_index`)."""
    if index.type is not PayloadIndexType.TEXT:
        return _INDEX_SCHEMAS[index.type]
    assert index.text is not None  # checked_payload_index fills a text index's params
    return qe.TextIndexParams(tokenizer=_TOKENIZERS[index.text.tokenizer], lowercase=index.text.lowercase,
                              min_token_len=index.text.min_token_length or None,
                              max_token_len=index.text.max_token_length or None)


def _engine_field_condition(condition: FieldCondition) -> Any:
    """The new kinds of field test (text, datetime range, values count); None for the others."""
    if condition.text is not None:
        return qe.FieldCondition(key=condition.key, match=qe.MatchText(condition.text))
    if condition.datetime_range is not None:
        dates = condition.datetime_range
        return qe.FieldCondition(key=condition.key, range=qe.RangeDateTime(gt=dates.gt, gte=dates.gte,
                                                                           lt=dates.lt, lte=dates.lte))
    if condition.values_count is not None:
        counts = condition.values_count
        return qe.FieldCondition(key=condition.key, values_count=qe.ValuesCount(gt=counts.gt, gte=counts.gte,
                                                                                lt=counts.lt, lte=counts.lte))
    return None


_BM25_TOKENIZERS = {
    Bm25Tokenizer.WORD: qe.TokenizerType.Word,
    Bm25Tokenizer.WHITESPACE: qe.TokenizerType.Whitespace,
    Bm25Tokenizer.MULTILINGUAL: qe.TokenizerType.Multilingual,
}


def engine_bm25(config: Bm25Config) -> qe.Bm25:
    """qdrant-edge's own BM25 model for a collection's config (documents: term-frequency weights;
    queries: 1 per distinct token; the shard's IDF modifier weighs both at query time)."""
    return qe.Bm25(qe.Bm25Config(k=config.k1, b=config.b, avg_len=config.avg_len, language=config.language,
                                 tokenizer=_BM25_TOKENIZERS[config.tokenizer]))


def _engine_condition(condition: Condition) -> Any:
    if isinstance(condition, Filter):
        return _engine_filter(condition)
    if isinstance(condition, HasId):
        return qe.HasIdCondition(set(condition.ids))
    if isinstance(condition, IsNull):
        return qe.IsNullCondition(condition.key)
    if isinstance(condition, IsEmpty):
        return qe.IsEmptyCondition(condition.key)
    engine_condition = _engine_field_condition(condition)
    if engine_condition is not None:
        return engine_condition
    if condition.range is not None:
        bounds = condition.range
        return qe.FieldCondition(key=condition.key, range=qe.RangeFloat(gt=bounds.gt, gte=bounds.gte,
                                                                         lt=bounds.lt, lte=bounds.lte))
    if condition.any_keyword is not None:
        return qe.FieldCondition(key=condition.key, match=qe.MatchAny(list(condition.any_keyword)))
    if condition.boolean is not None:
        # qdrant-edge-py 0.9 reads a Python bool as the integer 1 or 0 (bool is an int), which then
        # matches no boolean field; numpy's bool is no int, so it arrives as a boolean.
        # (qdrant-edge's stubs say MatchValue takes a bool; a numpy bool is what the binding needs here.)
        match = qe.MatchValue(np.bool_(condition.boolean))  # type: ignore[arg-type]
        return qe.FieldCondition(key=condition.key, match=match)
    if condition.keyword is not None:
        return qe.FieldCondition(key=condition.key, match=qe.MatchValue(condition.keyword))
    assert condition.integer is not None  # a FieldCondition holds exactly one test (see __post_init__)
    return qe.FieldCondition(key=condition.key, match=qe.MatchValue(condition.integer))


def _engine_filter(filter: Filter) -> qe.Filter:
    def clause(conditions: tuple[Condition, ...]) -> list[Any] | None:
        return [_engine_condition(c) for c in conditions] or None

    min_should = None
    if filter.min_should is not None:
        min_should = qe.MinShould([_engine_condition(c) for c in filter.min_should.conditions],
                                  filter.min_should.min_count)
    return qe.Filter(must=clause(filter.must), should=clause(filter.should), must_not=clause(filter.must_not),
                     min_should=min_should)


def _engine_params(params: SearchParams | None) -> qe.SearchParams | None:
    if params is None:
        return None
    quantization = None
    if params.quantization is not None:
        q = params.quantization
        quantization = qe.QuantizationSearchParams(ignore=q.ignore, rescore=q.rescore, oversampling=q.oversampling)
    return qe.SearchParams(hnsw_ef=params.hnsw_ef, exact=params.exact, quantization=quantization)


def _engine_query(query: SearchQuery, bm25: qe.Bm25 | None) -> qe.QueryRequest:
    """The engine's request for a query: nearest to the dense vector, nearest to the BM25 query vector
    (the `bm25` sparse vector), or both as prefetches fused by the engine (Rrf / Dbsf)."""
    filter = None if query.filter is None else _engine_filter(query.filter)
    # checked_query made the vector a list[float] (empty for a sparse query, which has none)
    dense = None if query.mode is SearchMode.SPARSE else qe.Query.Nearest(cast(list[float], query.vector))
    prefetches: list[qe.Prefetch] | None = None
    scoring: Any = dense
    if query.mode is not SearchMode.DENSE:
        assert bm25 is not None and query.text is not None  # check_search_mode
        sparse = qe.Query.Nearest(bm25.embed_query(query.text), using=BM25_VECTOR)
        scoring = sparse
        if query.mode is SearchMode.HYBRID:
            depth = query.fusion.prefetch_for(query.limit, query.offset)
            prefetches = [qe.Prefetch(limit=depth, query=dense, filter=filter),
                          qe.Prefetch(limit=depth, query=sparse, filter=filter)]
            scoring = (qe.Fusion.Rrf(k=query.fusion.rrf_k) if query.fusion.method is FusionMethod.RRF
                       else qe.Fusion.Dbsf())
    return qe.QueryRequest(
        limit=query.limit,
        offset=query.offset,
        query=scoring,
        prefetches=prefetches,
        filter=filter,
        score_threshold=query.score_threshold,
        with_payload=query.with_payload,
        with_vector=False,
        params=_engine_params(query.params),
    )


def _domain_id(engine_id: int | uuid.UUID | str) -> PointId:
    return str(engine_id) if isinstance(engine_id, uuid.UUID) else engine_id


# -- the work done in the executor -------------------------------------------------------------
def _create_shard(path: Path, spec: CollectionSpec) -> qe.EdgeShard:
    if path.exists():  # left by a create or a delete that a crash cut short; the catalog never named it
        shutil.rmtree(path)
    engine = qe.EdgeShard.create(str(path), _engine_config(spec))
    for index in spec.payload_indexes:
        engine.update(qe.UpdateOperation.create_field_index(index.key, _engine_index_schema(index)))
    engine.flush()
    return engine


def _create_index(engine: qe.EdgeShard, index: PayloadIndex) -> None:
    engine.update(qe.UpdateOperation.create_field_index(index.key, _engine_index_schema(index)))
    engine.flush()


def _delete_index(engine: qe.EdgeShard, key: str) -> None:
    engine.update(qe.UpdateOperation.delete_field_index(key))
    engine.flush()


def _close_shard(engine: qe.EdgeShard) -> None:
    engine.flush()
    engine.close()


def _discard_shard(engine: qe.EdgeShard, path: Path) -> None:
    engine.close()
    shutil.rmtree(path, ignore_errors=True)


def _engine_vector(point: Point, bm25: qe.Bm25 | None) -> qe.Vector:
    """The dense vector, and with a BM25 config the BM25 document vector of the point's text (a point
    without a text has none: sparse searches never find it)."""
    dense = cast(list[float], point.vector)  # checked_points gives vectors in engine form (list[float])
    text = None if bm25 is None else bm25_text(point.payload)
    if bm25 is None or text is None:
        return dense
    return {"": dense, BM25_VECTOR: bm25.embed_document(text)}


def _upsert(engine: qe.EdgeShard, spec: CollectionSpec, points: Sequence[Point], bm25: qe.Bm25 | None) -> None:
    # Validated here, off the event loop: a big batch takes a while, and nothing is written unless
    # every point is good. One update is one WAL record, applied whole.
    checked = checked_points(spec.name, spec.dimension, points)
    if checked:
        engine.update(qe.UpdateOperation.upsert_points(
            [qe.Point(p.id, _engine_vector(p, bm25), p.payload) for p in checked]))


def _delete(engine: qe.EdgeShard, selector: list[PointId] | Filter) -> None:
    if isinstance(selector, Filter):
        engine.update(qe.UpdateOperation.delete_points_by_filter(_engine_filter(selector)))
    elif selector:
        ids: list[qe.PointId] = list(selector)
        engine.update(qe.UpdateOperation.delete_points(ids))


def _count(engine: qe.EdgeShard, filter: Filter | None = None) -> int:
    return engine.count(qe.CountRequest(exact=True, filter=None if filter is None else _engine_filter(filter)))


_NO_VECTOR = np.zeros(0, dtype=np.float32)


def _stored_point(record: qe.Record) -> StoredPoint:
    vector = _NO_VECTOR if record.vector is None else np.asarray(_dense(record.vector), dtype=np.float32)
    return StoredPoint(id=_domain_id(record.id), vector=vector, payload=dict(record.payload or {}))


def _scroll(engine: qe.EdgeShard, offset: PointId | None, limit: int, filter: Filter | None,
            order_by: OrderBy | None = None, with_payload: bool = True, with_vector: bool = True) -> ScrollPage:
    engine_order = None
    if order_by is not None:
        engine_order = qe.OrderBy(order_by.key, qe.Direction.Desc if order_by.descending else qe.Direction.Asc,
                                  start_from=order_by.start_from)
    records, next_offset = engine.scroll(qe.ScrollRequest(
        offset=offset, limit=limit, filter=None if filter is None else _engine_filter(filter),
        with_payload=with_payload, with_vector=with_vector, order_by=engine_order))
    points = tuple(_stored_point(record) for record in records)
    if order_by is not None:
        values = tuple(record.order_value for record in records)
        return ScrollPage(points, None, tuple(value for value in values if value is not None))
    return ScrollPage(points, None if next_offset is None else _domain_id(next_offset))


def _copy_shard(engine: qe.EdgeShard, path: Path, copy: Path) -> None:
    """Copy the shard's directory to `copy`. Writes are paused, so the copy is the image a SIGKILL
    would leave: every acknowledged write is in its WAL, which the child's open replays. No flush
    here: an engine call holds the interpreter, and file copies do not."""
    shutil.rmtree(copy.parent, ignore_errors=True)
    copy.parent.mkdir(parents=True)
    shutil.copytree(path, copy)


def _swap(engine: qe.EdgeShard, path: Path, copy: Path) -> tuple[qe.EdgeShard, SearchgwError | None]:
    """Close the serving shard, put the built copy in its place, open it. The serving directory moves
    aside first (`retired`, next to the copy): a crash between the two renames leaves it there, and
    the next open moves it back (see `_recover_builds`). If the copy cannot take its place or does not
    open, the serving shard goes back and opens again: (the shard now serving, the error or None)."""
    retired = copy.parent / "retired"
    engine.close()
    os.rename(path, retired)
    try:
        os.rename(copy, path)
    except BaseException:
        os.rename(retired, path)
        return qe.EdgeShard.load(str(path)), Unavailable("the built index could not be moved into place")
    fsync_directory(path.parent)
    fsync_directory(copy.parent)
    try:
        return qe.EdgeShard.load(str(path)), None
    except Exception as exc:  # the built copy does not open: put the serving shard back
        os.rename(path, copy.parent / "failed")
        os.rename(retired, path)
        fsync_directory(path.parent)
        return qe.EdgeShard.load(str(path)), Unavailable(f"the built index does not open ({exc}); the collection "
                                                          "is served as before the build")


def _recover_builds(builds: Path, collections: Path) -> None:
    """Index builds a crash cut short: put back a serving directory caught between the two renames
    of a swap, and drop every copy."""
    if not builds.is_dir():
        return
    for work in builds.iterdir():
        serving, retired = collections / work.name, work / "retired"
        if not serving.exists() and retired.is_dir():
            os.rename(retired, serving)
            fsync_directory(collections)
        shutil.rmtree(work, ignore_errors=True)


def _retrieve_points(engine: qe.EdgeShard, ids: list[PointId], with_payload: bool, with_vector: bool) -> list[StoredPoint]:
    engine_ids: list[qe.PointId] = list(ids)
    found = {point.id: point for point in map(_stored_point, engine.retrieve(engine_ids, with_payload=with_payload,
                                                                             with_vector=with_vector))}
    return [found[i] for i in dict.fromkeys(ids) if i in found]


def _dense(vector: Any) -> Any:
    """The unnamed dense vector of a record (a point with a BM25 vector has its vectors by name)."""
    return vector[""] if isinstance(vector, dict) else vector



def _snapshot(engine: qe.EdgeShard, store: SnapshotStore, path: Path, spec: CollectionSpec,
              wall_clock: Callable[[], float]) -> SnapshotInfo:
    engine.flush()
    return store.write(path, spec, _count(engine), wall_clock)


def _adopt_shard(staging: Path, path: Path) -> tuple[qe.EdgeShard, int]:
    """Move an unpacked shard into place and open it; returns it and its point count."""
    if path.exists():  # left by a create or a restore that a crash cut short; the catalog never named it
        shutil.rmtree(path)
    os.rename(staging, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    engine = qe.EdgeShard.load(str(path))
    engine.flush()
    return engine, _count(engine)


def _run_queries(engine: qe.EdgeShard, queries: Sequence[SearchQuery],
                 bm25: qe.Bm25 | None = None) -> list[list[ScoredPoint]]:
    """One query alone, several as one planned batch (cheaper per query than one call each)."""
    requests = [_engine_query(query, bm25) for query in queries]
    if len(requests) == 1:
        hits = [engine.query(requests[0])]
    else:
        hits = engine.query_batch(qe.QueryBatchRequest(requests))
    return [
        [ScoredPoint(id=_domain_id(hit.id), score=hit.score,
                     payload=dict(hit.payload or {}) if query.with_payload else None) for hit in query_hits]
        for query, query_hits in zip(queries, hits, strict=True)
    ]


class _OpenShard:
    """An open collection: its engine shard, the calls in flight on it, and its search batcher."""

    def __init__(self, spec: CollectionSpec, engine: qe.EdgeShard, executor: ThreadPoolExecutor, *,
                 micro_batching: bool, max_batch_size: int,
                 index_builder: Callable[[str], Awaitable[BuildProcess]] = BuildProcess.start) -> None:
        self.spec = spec
        self._engine = engine
        self._executor = executor
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed_error: SearchgwError | None = None
        #: Writes in flight, and the pause a snapshot holds while it copies the shard.
        self._writes = 0
        self._writes_idle = asyncio.Event()
        self._writes_idle.set()
        self._paused: asyncio.Event | None = None
        self.batcher = MicroBatcher(self._search_batch, max_batch_size=max_batch_size) if micro_batching else None
        #: While an index build runs: the writes applied since its copy was taken, in the order the
        #: engine applied them (appended under `_journal_lock` with the write itself).
        self._journal: list[JournalEntry] | None = None
        self._journal_lock = threading.Lock()
        #: Set while the built shard is swapped in: every call waits.
        self._swapping: asyncio.Event | None = None
        #: The index build in progress, if any (a second optimize joins it), and while its child
        #: process runs (the one step `close` may cut short: the copy and the swap run to their end).
        self.build: asyncio.Task[IndexBuild] | None = None
        self._building = False
        self._index_builder = index_builder
        #: The engine's BM25 model for the collection's config (None: the collection has no BM25 vector).
        self.bm25 = None if spec.bm25 is None else engine_bm25(spec.bm25)

    async def call(self, function: Callable[..., ResultT], *args: Any) -> ResultT:
        """`function(engine, *args)` in the executor; refused once the shard is closing."""
        while self._swapping is not None:
            await self._swapping.wait()
        if self._closed_error is not None:
            raise self._closed_error
        self._in_flight += 1
        self._idle.clear()
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, function, self._engine, *args)
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._idle.set()

    async def write(self, function: Callable[..., ResultT], *args: Any) -> ResultT:
        """`call` for an operation that changes the shard's files: it waits while a snapshot is taken."""
        while self._paused is not None:
            await self._paused.wait()
        self._writes += 1
        self._writes_idle.clear()
        try:
            return await self.call(self._journaled, function, *args)
        finally:
            self._writes -= 1
            if not self._writes:
                self._writes_idle.set()

    def _journaled(self, engine: qe.EdgeShard, function: Callable[..., ResultT], *args: Any) -> ResultT:
        """A write, recorded in the build's journal once the engine took it (in the executor)."""
        with self._journal_lock:
            result = function(engine, *args)
            if self._journal is not None:
                self._journal.append((function, args))
            return result

    async def rebuild(self, path: Path, copy: Path) -> IndexBuild:
        """Build the index without stopping searches or losing writes:

        1. writes pause; the shard's directory is copied to `copy`; the journal starts;
           writes resume (searches never stop);
        2. a child process builds the copy's index (`_index_build`); meanwhile every write goes to
           the serving shard and into the journal;
        3. writes pause again; the child replays the journal onto the built copy, in order, and
           closes it;
        4. searches pause for the swap alone: the serving shard closes, the copy takes its
           directory's place and opens (the one engine call of the build in this process that
           holds the interpreter); everything resumes on the built shard.

        A failure before step 4 drops the copy and leaves the serving shard as it was."""
        started = time.perf_counter()
        writes_paused = searches_paused = 0.0
        loop = asyncio.get_running_loop()
        process: BuildProcess | None = None
        try:
            async with self.writes_paused():
                pause = time.perf_counter()
                await self.call(_copy_shard, path, copy)
                self._journal = []
                writes_paused += time.perf_counter() - pause
            self._building = True
            try:
                process = await self._index_builder(str(copy))
                build_seconds, optimized = await process.built()
            finally:
                self._building = False
            async with self.writes_paused():
                pause = time.perf_counter()
                journal, self._journal = self._journal or [], None
                if self._closed_error is not None:
                    raise self._closed_error
                await process.finish(journal)
                if self._closed_error is not None:
                    raise self._closed_error
                swapping = self._swapping = asyncio.Event()
                try:
                    swap = time.perf_counter()
                    await self._idle.wait()
                    self._engine, failure = await loop.run_in_executor(self._executor, _swap, self._engine, path,
                                                                        copy)
                    searches_paused = time.perf_counter() - swap
                finally:
                    self._swapping = None
                    swapping.set()
                writes_paused += time.perf_counter() - pause
            if failure is not None:
                raise failure
        finally:
            self._journal = None
            if process is not None:
                await asyncio.shield(process.kill())  # ended already unless something failed
            await loop.run_in_executor(self._executor, shutil.rmtree, copy.parent, True)
        return IndexBuild(optimized=optimized, seconds=time.perf_counter() - started, build_seconds=build_seconds,
                          writes_paused_seconds=writes_paused, searches_paused_seconds=searches_paused,
                          replayed_writes=len(journal))

    @asynccontextmanager
    async def writes_paused(self) -> AsyncIterator[None]:
        """New writes wait and those in flight finish; one pause at a time."""
        while self._paused is not None:
            await self._paused.wait()
        resume = self._paused = asyncio.Event()
        try:
            await self._writes_idle.wait()
            yield
        finally:
            self._paused = None
            resume.set()

    async def search(self, query: SearchQuery) -> list[ScoredPoint]:
        if self.batcher is None:
            (hits,) = await self.call(_run_queries, [query], self.bm25)
            return hits
        return await self.batcher.submit(query)

    async def _search_batch(self, queries: Sequence[SearchQuery]) -> list[list[ScoredPoint]]:
        return await self.call(_run_queries, queries, self.bm25)

    async def close(self, error: SearchgwError, finish: Callable[[qe.EdgeShard], None]) -> None:
        """Refuse new calls with `error`, stop an index build, wait for the calls in flight, then
        `finish(engine)`."""
        self._closed_error = error
        if self.build is not None and not self.build.done():
            if self._building:
                self.build.cancel()  # kills the build's process
            await asyncio.wait([self.build])  # a copy or a swap under way runs to its end, then stops
        await self._idle.wait()
        await asyncio.get_running_loop().run_in_executor(self._executor, finish, self._engine)


def _retrieve(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()  # seen, so a failure after the caller left is not reported as never retrieved


async def _detached(coroutine: Coroutine[Any, Any, ResultT]) -> ResultT:
    """Await `coroutine` as a task that runs to its end even when the caller is cancelled: a snapshot
    must not let writes resume while its copy still runs, nor a restore stop halfway."""
    task = asyncio.ensure_future(coroutine)
    task.add_done_callback(_retrieve)
    return await asyncio.shield(task)


def _lock_directory(root: Path) -> IO[str]:
    lock = open(root / "LOCK", "a")  # noqa: SIM115 - held open until close()
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise FailedPrecondition(f"{root} is in use by another EdgeBackend (in this or another process)") from None
    return lock


#: Where a restore unpacks a snapshot before it moves it into place (no collection name starts with '.').
_STAGING_PREFIX = ".restore-"


class EdgeBackend:
    """The embedded backend over qdrant-edge; see the module docstring for layout and guarantees.

    The constructor takes the directory's lock and reads the catalog (small, blocking I/O: build it
    with `open_backend`, which does so off the event loop). Shards open on first use.
    """

    kind = "edge"

    def __init__(self, data_dir: str | Path, *, micro_batching: bool = True, max_batch_size: int = 32,
                 max_workers: int = 2, wall_clock: Callable[[], float] = time.time,
                 index_builder: Callable[[str], Awaitable[BuildProcess]] = BuildProcess.start) -> None:
        """`index_builder(path)`: starts the child process that builds the index of the shard copy at
        `path` (`_index_build.BuildProcess.start`); tests wrap it to watch a build."""
        self._root = Path(data_dir)
        (self._root / "collections").mkdir(parents=True, exist_ok=True)
        self._lock = _lock_directory(self._root)
        for staging in (self._root / "collections").glob(_STAGING_PREFIX + "*"):  # restores a crash cut short
            shutil.rmtree(staging, ignore_errors=True)
        _recover_builds(self._root / "builds", self._root / "collections")
        self._snapshots = SnapshotStore(self._root / "snapshots")
        self._wall_clock = wall_clock
        #: Snapshots being restored (by name, how many restores read each): they cannot be deleted.
        self._restoring: Counter[str] = Counter()
        #: Snapshots being deleted: a restore of one is NotFound already.
        self._deleting: set[str] = set()
        self._catalog_path = self._root / "catalog.json"
        self._catalog = Catalog.load(self._catalog_path)
        self._micro_batching = micro_batching
        self._max_batch_size = max_batch_size
        self._index_builder = index_builder
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="edge-backend")
        self._shards: dict[str, _OpenShard] = {}
        #: Serialises catalog changes and shard opening.
        self._admin = asyncio.Lock()
        self._closed = False

    # -- plumbing ----------------------------------------------------------------------------
    async def _run(self, function: Callable[..., ResultT], *args: Any) -> ResultT:
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    def _check_open(self) -> None:
        if self._closed:
            raise Unavailable("the edge backend is closed")

    def _path(self, collection: str) -> Path:
        return self._root / "collections" / collection

    def _physical(self, name: str) -> str:
        self._check_open()
        target = self._catalog.aliases.get(name)
        if target is not None:
            return target
        if name in self._catalog.specs:
            return name
        raise NotFound(f"collection or alias {name!r} does not exist")

    async def _shard(self, name: str) -> _OpenShard:
        physical = self._physical(name)
        shard = self._shards.get(physical)
        if shard is not None:
            return shard
        async with self._admin:
            self._check_open()
            spec = self._catalog.specs.get(physical)
            if spec is None:  # deleted while we waited
                raise NotFound(f"collection {physical!r} does not exist")
            shard = self._shards.get(physical)
            if shard is None:
                engine = await self._run(qe.EdgeShard.load, str(self._path(physical)))
                shard = self._shards[physical] = self._new_shard(spec, engine)
            return shard

    def _new_shard(self, spec: CollectionSpec, engine: qe.EdgeShard) -> _OpenShard:
        return _OpenShard(spec, engine, self._executor, micro_batching=self._micro_batching,
                          max_batch_size=self._max_batch_size, index_builder=self._index_builder)

    async def _commit(self, catalog: Catalog) -> None:
        """Make `catalog` durable, then current. Call with the admin lock held."""
        await self._run(catalog.save, self._catalog_path)
        self._catalog = catalog

    # -- collections -------------------------------------------------------------------------
    async def create_collection(self, spec: CollectionSpec) -> CollectionInfo:
        spec = normalized_spec(spec)
        async with self._admin:
            self._check_open()
            if spec.name in self._catalog.specs or spec.name in self._catalog.aliases:
                raise AlreadyExists(f"a collection or alias named {spec.name!r} exists")
            path = self._path(spec.name)
            engine = await self._run(_create_shard, path, spec)
            try:
                await self._commit(self._catalog.with_collection(spec))
            except BaseException:
                await self._run(_discard_shard, engine, path)
                raise
            self._shards[spec.name] = self._new_shard(spec, engine)
        return CollectionInfo(spec=spec, points_count=0)

    async def get_collection(self, name: str) -> CollectionInfo:
        shard = await self._shard(name)
        points = await shard.call(_count)
        return CollectionInfo(spec=shard.spec, points_count=points, aliases=self._catalog.aliases_of(shard.spec.name))

    async def list_collections(self) -> list[CollectionInfo]:
        self._check_open()
        return [await self.get_collection(name) for name in sorted(self._catalog.specs)]

    async def delete_collection(self, name: str) -> None:
        async with self._admin:
            self._check_open()
            if name not in self._catalog.specs:
                raise NotFound(f"collection {name!r} does not exist" + (
                    " (it is an alias: delete_alias removes it)" if name in self._catalog.aliases else ""))
            refuse_if_aliased(name, self._catalog.aliases)
            await self._commit(self._catalog.without_collection(name))
            path = self._path(name)
            shard = self._shards.pop(name, None)
            if shard is not None:
                await shard.close(NotFound(f"collection {name!r} was deleted"),
                                  lambda engine: _discard_shard(engine, path))
            else:
                await self._run(shutil.rmtree, path, True)

    # -- aliases -----------------------------------------------------------------------------
    async def update_alias(self, alias: str, collection: str) -> str | None:
        check_name("alias", alias)
        async with self._admin:
            self._check_open()
            if collection not in self._catalog.specs:
                raise NotFound(f"collection {collection!r} does not exist" + (
                    " (it is an alias; point at a collection)" if collection in self._catalog.aliases else ""))
            if alias in self._catalog.specs:
                raise AlreadyExists(f"{alias!r} is a collection; an alias needs a name of its own")
            previous = self._catalog.aliases.get(alias)
            if previous != collection:
                await self._commit(self._catalog.with_alias(alias, collection))
            return previous

    async def delete_alias(self, alias: str) -> None:
        async with self._admin:
            self._check_open()
            if alias not in self._catalog.aliases:
                raise NotFound(f"alias {alias!r} does not exist")
            await self._commit(self._catalog.without_alias(alias))

    async def list_aliases(self) -> dict[str, str]:
        self._check_open()
        return dict(sorted(self._catalog.aliases.items()))

    async def resolve(self, name: str) -> str:
        return self._physical(name)

    # -- points ------------------------------------------------------------------------------
    async def upsert(self, collection: str, points: Sequence[Point]) -> None:
        shard = await self._shard(collection)
        await shard.write(_upsert, shard.spec, list(points), shard.bm25)

    async def delete_points(self, collection: str, *, ids: Sequence[PointId] | None = None,
                            filter: Filter | None = None) -> None:
        shard = await self._shard(collection)
        await shard.write(_delete, checked_selector(ids, filter))

    async def search(self, collection: str, query: SearchQuery) -> list[ScoredPoint]:
        shard = await self._shard(collection)
        checked = checked_query(shard.spec.name, shard.spec.dimension, query)
        check_search_mode(shard.spec, checked, collection)
        if checked.group_by is not None:  # qdrant-edge has no group-by: over-fetch and collapse
            return await grouped_search(shard.search, checked)
        return await shard.search(checked)

    async def count(self, collection: str, filter: Filter | None = None) -> int:
        shard = await self._shard(collection)
        return await shard.call(_count, None if filter is None else checked_filter("filter", filter))

    async def scroll(self, collection: str, *, offset: PointId | None = None, limit: int = 256,
                     filter: Filter | None = None, order_by: OrderBy | None = None,
                     with_payload: bool = True, with_vector: bool = True) -> ScrollPage:
        shard = await self._shard(collection)
        if offset is not None:
            offset = point_id("offset", offset)
        checked = None if filter is None else checked_filter("filter", filter)
        if order_by is not None:
            order_by = checked_order_by(shard.spec, order_by)
            if offset is not None:
                raise InvalidArgument("offset", "an ordered scroll starts at order_by.start_from, not at an id")
        return await shard.call(_scroll, offset, max(1, limit), checked, order_by, bool(with_payload),
                                bool(with_vector))

    async def retrieve(self, collection: str, ids: Sequence[PointId], *, with_payload: bool = True,
                       with_vector: bool = False) -> list[StoredPoint]:
        shard = await self._shard(collection)
        checked = checked_ids("ids", ids)
        if not checked:
            return []
        return await shard.call(_retrieve_points, checked, bool(with_payload), bool(with_vector))

    # -- payload indexes ---------------------------------------------------------------------
    async def create_payload_index(self, collection: str, index: PayloadIndex) -> CollectionInfo:
        index = checked_payload_index("index", index)
        shard = await self._shard(collection)
        async with self._admin:
            self._check_open()
            spec = self._catalog.specs.get(shard.spec.name)
            if spec is None:
                raise NotFound(f"collection {shard.spec.name!r} does not exist")
            updated = with_payload_index(spec, index)
            previous = next((i for i in spec.payload_indexes if i.key == index.key), None)
            await shard.write(_create_index, index)
            try:
                await self._commit(self._catalog.with_collection(updated))
            except BaseException:  # the catalog stays as it was: so does the engine
                await shard.write(_create_index, previous) if previous else await shard.write(_delete_index,
                                                                                              index.key)
                raise
            shard.spec = updated
        return await self.get_collection(updated.name)

    async def delete_payload_index(self, collection: str, key: str) -> CollectionInfo:
        check_key("key", key)
        shard = await self._shard(collection)
        async with self._admin:
            self._check_open()
            spec = self._catalog.specs.get(shard.spec.name)
            if spec is None:
                raise NotFound(f"collection {shard.spec.name!r} does not exist")
            updated = without_payload_index(spec, key)
            removed = next(i for i in spec.payload_indexes if i.key == key)
            await shard.write(_delete_index, key)
            try:
                await self._commit(self._catalog.with_collection(updated))
            except BaseException:
                await shard.write(_create_index, removed)
                raise
            shard.spec = updated
        return await self.get_collection(updated.name)

    async def optimize(self, collection: str) -> IndexBuild:
        """Build the index in a child process on a copy, replay the writes made meanwhile, swap it in
        (`_OpenShard.rebuild`); searches go on throughout but for the swap. One build per collection
        at a time: a second call joins the one under way. The build runs to its end even if the
        caller leaves."""
        shard = await self._shard(collection)
        if shard.build is None or shard.build.done():
            copy = self._root / "builds" / shard.spec.name / "shard"
            shard.build = asyncio.ensure_future(shard.rebuild(self._path(shard.spec.name), copy))
            shard.build.add_done_callback(_retrieve)
        return await asyncio.shield(shard.build)

    # -- snapshots ---------------------------------------------------------------------------
    async def create_snapshot(self, collection: str) -> SnapshotInfo:
        shard = await self._shard(collection)

        async def take() -> SnapshotInfo:
            async with shard.writes_paused():
                return await shard.call(_snapshot, self._snapshots, self._path(shard.spec.name), shard.spec,
                                        self._wall_clock)

        return await _detached(take())

    async def list_snapshots(self, collection: str) -> list[SnapshotInfo]:
        check_name("collection", collection)
        return await self._run(self._snapshots.list, await self._snapshot_owner(collection))

    async def _snapshot_owner(self, collection: str) -> str:
        """The physical collection whose snapshots `collection` names: a deleted collection's snapshots
        stay, listed and deleted by its old name."""
        try:
            return self._physical(collection)
        except NotFound:
            if not await self._run(self._snapshots.has_any, collection):
                raise
            return collection

    def _refuse_taken(self, name: str) -> None:
        self._check_open()
        if name in self._catalog.specs or name in self._catalog.aliases:
            raise AlreadyExists(f"a collection or alias named {name!r} exists; restore into a new name")

    async def restore_snapshot(self, snapshot: str, collection: str) -> CollectionInfo:
        check_snapshot_name("snapshot", snapshot)
        check_name("collection", collection)
        self._refuse_taken(collection)
        if snapshot in self._deleting:
            raise NotFound(f"snapshot {snapshot!r} does not exist (it is being deleted)")
        self._restoring[snapshot] += 1  # here, not in the task: a delete must see it before this call yields
        return await _detached(self._restore(snapshot, collection))

    async def _restore(self, snapshot: str, collection: str) -> CollectionInfo:
        staging = self._path(f"{_STAGING_PREFIX}{uuid.uuid4().hex}")
        try:
            return await self._restore_into(snapshot, collection, staging)
        finally:
            self._restoring[snapshot] -= 1
            if not self._restoring[snapshot]:
                del self._restoring[snapshot]

    async def delete_snapshot(self, collection: str, snapshot: str) -> None:
        check_name("collection", collection)
        check_snapshot_name("snapshot", snapshot)
        self._check_open()
        physical = await self._snapshot_owner(collection)
        if self._restoring[snapshot]:
            raise FailedPrecondition(f"snapshot {snapshot!r} is being restored; delete it once the restore ends")
        if snapshot in self._deleting:
            raise NotFound(f"snapshot {snapshot!r} does not exist (it is being deleted)")
        self._deleting.add(snapshot)
        try:
            await self._run(self._snapshots.delete, snapshot, physical)
        finally:
            self._deleting.discard(snapshot)

    async def _restore_into(self, snapshot: str, collection: str, staging: Path) -> CollectionInfo:
        try:
            spec, expected = await self._run(self._snapshots.unpack, snapshot, staging)
            spec = replace(spec, name=collection)
            async with self._admin:
                self._refuse_taken(collection)
                path = self._path(collection)
                engine, points = await self._run(_adopt_shard, staging, path)
                try:
                    if points != expected:
                        raise FailedPrecondition(f"snapshot {snapshot!r} is damaged: it restored {points} points "
                                                 f"of the {expected} it was taken with")
                    await self._commit(self._catalog.with_collection(spec))
                except BaseException:
                    await self._run(_discard_shard, engine, path)
                    raise
                self._shards[collection] = self._new_shard(spec, engine)
        finally:  # gone already unless something failed; not our executor, which close() may have shut
            await asyncio.to_thread(shutil.rmtree, staging, True)
        return CollectionInfo(spec=spec, points_count=points)

    async def close(self) -> None:
        if self._closed:
            return
        async with self._admin:
            self._closed = True
            shards, self._shards = list(self._shards.values()), {}
            for shard in shards:
                await shard.close(Unavailable("the edge backend is closed"), _close_shard)
        self._executor.shutdown(wait=True)
        self._lock.close()
