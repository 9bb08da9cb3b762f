"""The gRPC face of the test server: Qdrant's Collections, Points, Snapshots and Qdrant services.

Each handler only translates: request → engine call on the store's one worker thread → response.
`QdrantStatus` raised anywhere becomes that status; any other exception is INTERNAL (Qdrant's
ServiceError) and is logged. RPCs the servicer does not override answer UNIMPLEMENTED (the generated
base classes do that).

`Faults` is the test-only knob: RPCs held at a gate until released (or until the process is killed),
with a notification per arrival so a test knows a call is in flight — a stalled server, without sleeps.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from importlib.metadata import version
from typing import Any, TypeVar

import grpc
import qdrant_edge as qe
from google.protobuf.message import Message
from qdrant_client.grpc import (
    collections_pb2,
    collections_service_pb2_grpc,
    points_pb2,
    points_service_pb2_grpc,
    qdrant_pb2,
    qdrant_pb2_grpc,
    snapshots_service_pb2,
    snapshots_service_pb2_grpc,
)

from tests.qdrant_server._convert import (
    QdrantStatus,
    dense_values,
    fill_point_id,
    engine_filter,
    invalid,
    payload_to_python,
    point_id,
    point_vector,
    refuse_set_fields,
    search_params,
    unimplemented,
)
from tests.qdrant_server._store import TOKENIZERS, Store, retrieved_point, scored_point
from tests.qdrant_server._inference import fusion, named_vectors, nearest, prefetches

log = logging.getLogger("tests.qdrant_server")
R = TypeVar("R")
MessageT = TypeVar("MessageT", bound=Message)
#: What HealthCheck reports: Qdrant's title, and the version of the qdrant-client whose protos this speaks.
TITLE = "qdrant - vector search engine (searchgw test double over qdrant-edge)"
VERSION = version("qdrant-client")
#: Qdrant's gRPC services decode messages of any size (tonic's `max_decoding_message_size(usize::MAX)`);
#: grpcio's default would refuse anything over 4 MiB.
MESSAGE_LIMITS = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]


class Faults:
    """The test-only knob, used from the server's event loop: hold calls of some RPCs at a gate."""

    def __init__(self) -> None:
        self._held: frozenset[str] = frozenset()
        self._gate = asyncio.Event()
        self._gate.set()
        #: How many calls have waited at the gate since `hold` (they may have been released since).
        self.arrived = 0
        #: Called with the RPC name whenever a call starts waiting at the gate.
        self.on_hold: Callable[[str], None] | None = None
        #: Collections whose searches (Points/Query) answer UNAVAILABLE: a broken canary in another process.
        self.failing_queries: frozenset[str] = frozenset()

    def hold(self, *rpcs: str) -> None:
        """Calls of these RPCs ("Points/Query", "Collections/List", …) wait until `release`."""
        self._held = frozenset(rpcs)
        self.arrived = 0
        self._gate.clear()

    def release(self) -> None:
        self._held = frozenset()
        self._gate.set()

    async def before(self, rpc: str) -> None:
        if rpc in self._held and not self._gate.is_set():
            self.arrived += 1
            if self.on_hold is not None:
                self.on_hold(rpc)
            await self._gate.wait()


class Engine:
    """The store, the one worker thread that calls it, the faults and a log of the RPCs served."""

    def __init__(self, store: Store, faults: Faults) -> None:
        self.store = store
        self.faults = faults
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qdrant-test-engine")
        #: Every RPC received ("Points/Query", …), in order of arrival.
        self.calls: list[str] = []

    async def run(self, function: Callable[..., R], *args: Any) -> R:
        return await asyncio.get_running_loop().run_in_executor(self.executor, function, *args)


def rpc(handler: Callable[..., Awaitable[MessageT]]) -> Callable[..., Awaitable[MessageT]]:
    """Log the call, hold it if asked, time it, and turn errors into statuses as Qdrant does."""
    service, method = handler.__qualname__.split(".")
    name = f"{service.removesuffix('Servicer')}/{method}"

    @functools.wraps(handler)
    async def wrapper(self: _Servicer, request: Any, context: grpc.aio.ServicerContext) -> MessageT:
        self.engine.calls.append(name)
        await self.engine.faults.before(name)
        if name == "Points/Query" and getattr(request, "collection_name", None) in self.engine.faults.failing_queries:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"injected fault: searches of {request.collection_name} fail")
        started = time.perf_counter()
        try:
            response = await handler(self, request, context)
        except QdrantStatus as status:
            await context.abort(status.code, status.message)
        except Exception:
            log.exception("%s failed", name)
            await context.abort(grpc.StatusCode.INTERNAL, f"Service internal error: {name} failed")
        if "time" in response.DESCRIPTOR.fields_by_name:
            response.time = time.perf_counter() - started  # type: ignore[attr-defined]
        return response

    return wrapper


class _Servicer:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine


class CollectionsServicer(_Servicer, collections_service_pb2_grpc.CollectionsServicer):
    """Create, Delete, Get, List, CollectionExists, UpdateAliases, ListAliases, ListCollectionAliases."""

    @rpc
    async def Create(self, request: collections_pb2.CreateCollection, context: Any
                     ) -> collections_pb2.CollectionOperationResponse:
        await self.engine.run(self.engine.store.create_collection, request)
        return collections_pb2.CollectionOperationResponse(result=True)

    @rpc
    async def Delete(self, request: collections_pb2.DeleteCollection, context: Any
                     ) -> collections_pb2.CollectionOperationResponse:
        deleted = await self.engine.run(self.engine.store.delete_collection, request.collection_name)
        return collections_pb2.CollectionOperationResponse(result=deleted)

    @rpc
    async def Get(self, request: collections_pb2.GetCollectionInfoRequest, context: Any
                  ) -> collections_pb2.GetCollectionInfoResponse:
        info = await self.engine.run(self.engine.store.collection_info, request.collection_name)
        return collections_pb2.GetCollectionInfoResponse(result=info)

    @rpc
    async def List(self, request: collections_pb2.ListCollectionsRequest, context: Any
                   ) -> collections_pb2.ListCollectionsResponse:
        names = await self.engine.run(self.engine.store.collection_names)
        return collections_pb2.ListCollectionsResponse(
            collections=[collections_pb2.CollectionDescription(name=name) for name in names])

    @rpc
    async def CollectionExists(self, request: collections_pb2.CollectionExistsRequest, context: Any
                               ) -> collections_pb2.CollectionExistsResponse:
        # Collections only: whether Qdrant says yes for an alias is not modelled (nothing here asks).
        exists = request.collection_name in await self.engine.run(self.engine.store.collection_names)
        return collections_pb2.CollectionExistsResponse(result=collections_pb2.CollectionExists(exists=exists))

    @rpc
    async def UpdateAliases(self, request: collections_pb2.ChangeAliases, context: Any
                            ) -> collections_pb2.CollectionOperationResponse:
        await self.engine.run(self.engine.store.update_aliases, list(request.actions))
        return collections_pb2.CollectionOperationResponse(result=True)

    @rpc
    async def ListAliases(self, request: collections_pb2.ListAliasesRequest, context: Any
                          ) -> collections_pb2.ListAliasesResponse:
        return _aliases(await self.engine.run(self.engine.store.alias_map))

    @rpc
    async def ListCollectionAliases(self, request: collections_pb2.ListCollectionAliasesRequest, context: Any
                                    ) -> collections_pb2.ListAliasesResponse:
        aliases = await self.engine.run(self.engine.store.aliases_of, request.collection_name)
        return _aliases(aliases)


def _aliases(aliases: dict[str, str]) -> collections_pb2.ListAliasesResponse:
    return collections_pb2.ListAliasesResponse(aliases=[
        collections_pb2.AliasDescription(alias_name=alias, collection_name=target)
        for alias, target in sorted(aliases.items())])


def _with_payload(selector: points_pb2.WithPayloadSelector) -> bool:
    kind = selector.WhichOneof("selector_options")
    if kind is None:
        return False
    if kind != "enable":
        raise unimplemented(f"with_payload.{kind}")
    return selector.enable


def _completed() -> points_pb2.PointsOperationResponse:
    """Every write is applied before it is answered, whatever `wait` said."""
    return points_pb2.PointsOperationResponse(result=points_pb2.UpdateResult(status=points_pb2.UpdateStatus.Completed))


class PointsServicer(_Servicer, points_service_pb2_grpc.PointsServicer):
    """Upsert, Delete, Query (nearest to a dense vector), Scroll (by id or ordered), Count, Get, and
    CreateFieldIndex / DeleteFieldIndex."""

    @rpc
    async def Upsert(self, request: points_pb2.UpsertPoints, context: Any) -> points_pb2.PointsOperationResponse:
        refuse_set_fields(request, {"collection_name", "wait", "points", "timeout"}, "UpsertPoints")
        points, dimensions = [], []
        sparse_names: set[str] = set()
        for i, point in enumerate(request.points):
            vector: Any
            if point.vectors.WhichOneof("vectors_options") == "vectors":  # by name: dense, sparse, documents
                vector, dense = named_vectors(point.vectors.vectors, f"points[{i}].vectors")
                sparse_names.update(name for name in vector if name)
            else:
                vector = dense = point_vector(point.vectors, f"points[{i}].vectors")
            if dense is not None:
                dimensions.append((i, len(dense)))
            points.append(qe.Point(point_id(point.id, f"points[{i}].id"), vector, payload_to_python(point.payload)))
        if sparse_names:
            await self.engine.run(self.engine.store.check_sparse_names, request.collection_name, sparse_names)
        await self.engine.run(self.engine.store.upsert, request.collection_name, points, dimensions)
        return _completed()

    @rpc
    async def Delete(self, request: points_pb2.DeletePoints, context: Any) -> points_pb2.PointsOperationResponse:
        refuse_set_fields(request, {"collection_name", "wait", "points", "timeout"}, "DeletePoints")
        kind = request.points.WhichOneof("points_selector_one_of")
        if kind == "points":
            selector: Any = [point_id(pid, f"points.ids[{i}]") for i, pid in enumerate(request.points.points.ids)]
        elif kind == "filter":
            selector = engine_filter(request.points.filter, "points.filter")
        else:
            raise invalid("points: a points selector (ids or filter) is required")
        await self.engine.run(self.engine.store.delete_points, request.collection_name, selector)
        return _completed()

    @rpc
    async def Query(self, request: points_pb2.QueryPoints, context: Any) -> points_pb2.QueryResponse:
        refuse_set_fields(request, {"collection_name", "query", "filter", "score_threshold", "limit", "offset",
                                    "with_payload", "with_vectors", "timeout", "using", "prefetch",
                                    "params"}, "QueryPoints")
        if request.with_vectors.WhichOneof("selector_options") not in (None, "enable") or request.with_vectors.enable:
            raise unimplemented("with_vectors")
        # nearest to a dense vector, a sparse vector or a qdrant/bm25 document; or a fusion of prefetches
        stages, dense, names = prefetches(request, "prefetch")
        if stages:
            if request.using:
                raise unimplemented("using with prefetch")
            query: Any = fusion(request.query, "query")
        else:
            query, vector = nearest(request.query, request.using, "query")
            dense = [] if vector is None else [vector]
            names = {request.using} if request.using else set()
        with_payload = _with_payload(request.with_payload)
        engine_request = qe.QueryRequest(
            limit=request.limit if request.HasField("limit") else 10,
            offset=request.offset if request.HasField("offset") else None,
            query=query,
            prefetches=stages or None,
            filter=engine_filter(request.filter) if request.HasField("filter") else None,
            score_threshold=request.score_threshold if request.HasField("score_threshold") else None,
            with_payload=with_payload,
            with_vector=False,
            params=search_params(request.params) if request.HasField("params") else None,
        )
        if names:
            await self.engine.run(self.engine.store.check_sparse_names, request.collection_name, names)
        hits = await self.engine.run(self.engine.store.query_vectors, request.collection_name, dense, engine_request)
        return points_pb2.QueryResponse(result=[scored_point(hit, with_payload) for hit in hits])

    @rpc
    async def Scroll(self, request: points_pb2.ScrollPoints, context: Any) -> points_pb2.ScrollResponse:
        refuse_set_fields(request, {"collection_name", "filter", "offset", "limit", "with_payload", "with_vectors",
                                    "order_by", "timeout"}, "ScrollPoints")
        with_vectors = request.with_vectors.WhichOneof("selector_options")
        if with_vectors not in (None, "enable"):
            raise unimplemented(f"with_vectors.{with_vectors}")
        with_payload = _with_payload(request.with_payload)
        engine_request = qe.ScrollRequest(
            offset=point_id(request.offset, "offset") if request.HasField("offset") else None,
            limit=request.limit if request.HasField("limit") else 10,
            filter=engine_filter(request.filter) if request.HasField("filter") else None,
            with_payload=with_payload, with_vector=request.with_vectors.enable,
            order_by=_order_by(request.order_by) if request.HasField("order_by") else None)
        records, next_offset = await self.engine.run(self.engine.store.scroll, request.collection_name,
                                                     engine_request)
        response = points_pb2.ScrollResponse(result=[retrieved_point(record, with_payload) for record in records])
        if next_offset is not None:
            fill_point_id(next_offset, response.next_page_offset)
        return response

    @rpc
    async def Count(self, request: points_pb2.CountPoints, context: Any) -> points_pb2.CountResponse:
        refuse_set_fields(request, {"collection_name", "filter", "exact", "timeout"}, "CountPoints")
        engine_request = qe.CountRequest(
            exact=request.exact if request.HasField("exact") else True,
            filter=engine_filter(request.filter) if request.HasField("filter") else None)
        count = await self.engine.run(self.engine.store.count, request.collection_name, engine_request)
        return points_pb2.CountResponse(result=points_pb2.CountResult(count=count))


    @rpc
    async def Get(self, request: points_pb2.GetPoints, context: Any) -> points_pb2.GetResponse:
        refuse_set_fields(request, {"collection_name", "ids", "with_payload", "with_vectors", "timeout"}, "GetPoints")
        with_vectors = request.with_vectors.WhichOneof("selector_options")
        if with_vectors not in (None, "enable"):
            raise unimplemented(f"with_vectors.{with_vectors}")
        with_payload = _with_payload(request.with_payload)
        ids = [point_id(pid, f"ids[{i}]") for i, pid in enumerate(request.ids)]
        records = await self.engine.run(self.engine.store.retrieve, request.collection_name, ids, with_payload,
                                        request.with_vectors.enable)
        return points_pb2.GetResponse(result=[retrieved_point(record, with_payload) for record in records])

    @rpc
    async def CreateFieldIndex(self, request: points_pb2.CreateFieldIndexCollection, context: Any
                               ) -> points_pb2.PointsOperationResponse:
        refuse_set_fields(request, {"collection_name", "wait", "field_name", "field_type", "field_index_params",
                                    "timeout"}, "CreateFieldIndexCollection")
        if not request.field_name:
            raise invalid("field_name is empty")
        schema = _index_schema(request)
        await self.engine.run(self.engine.store.create_field_index, request.collection_name, request.field_name,
                              schema)
        return _completed()

    @rpc
    async def DeleteFieldIndex(self, request: points_pb2.DeleteFieldIndexCollection, context: Any
                               ) -> points_pb2.PointsOperationResponse:
        refuse_set_fields(request, {"collection_name", "wait", "field_name", "timeout"}, "DeleteFieldIndexCollection")
        await self.engine.run(self.engine.store.delete_field_index, request.collection_name, request.field_name)
        return _completed()


_FIELD_TYPES = {
    points_pb2.FieldType.FieldTypeKeyword: qe.PayloadSchemaType.Keyword,
    points_pb2.FieldType.FieldTypeInteger: qe.PayloadSchemaType.Integer,
    points_pb2.FieldType.FieldTypeFloat: qe.PayloadSchemaType.Float,
    points_pb2.FieldType.FieldTypeBool: qe.PayloadSchemaType.Bool,
    points_pb2.FieldType.FieldTypeDatetime: qe.PayloadSchemaType.Datetime,
    points_pb2.FieldType.FieldTypeUuid: qe.PayloadSchemaType.Uuid,
}


def _index_schema(request: points_pb2.CreateFieldIndexCollection) -> Any:
    """The engine schema of a CreateFieldIndex: a plain type, or a text index with its token rules."""
    if not request.HasField("field_type"):
        raise invalid("field_type is required")
    if request.field_type == points_pb2.FieldType.FieldTypeText:
        params = request.field_index_params
        kind = params.WhichOneof("index_params")
        if kind not in (None, "text_index_params"):
            raise invalid(f"field_index_params.{kind} does not fit a text index")
        text = params.text_index_params
        refuse_set_fields(text, {"tokenizer", "lowercase", "min_token_len", "max_token_len"},
                          "field_index_params.text_index_params")
        if text.tokenizer not in TOKENIZERS:
            raise unimplemented(f"tokenizer {text.tokenizer}")
        return qe.TextIndexParams(
            tokenizer=TOKENIZERS[text.tokenizer],
            lowercase=text.lowercase if text.HasField("lowercase") else None,
            min_token_len=text.min_token_len if text.HasField("min_token_len") else None,
            max_token_len=text.max_token_len if text.HasField("max_token_len") else None)
    if request.HasField("field_index_params"):
        raise unimplemented("field_index_params other than a text index's")
    if request.field_type not in _FIELD_TYPES:
        raise unimplemented(f"field_type {request.field_type}")
    return _FIELD_TYPES[request.field_type]


def _order_by(order_by: points_pb2.OrderBy) -> qe.OrderBy:
    refuse_set_fields(order_by, {"key", "direction", "start_from"}, "order_by")
    direction = qe.Direction.Desc if order_by.direction == points_pb2.Direction.Desc else qe.Direction.Asc
    start: Any = None
    kind = order_by.start_from.WhichOneof("value") if order_by.HasField("start_from") else None
    if kind in ("float", "integer", "datetime"):
        start = getattr(order_by.start_from, kind)
    elif kind == "timestamp":
        start = order_by.start_from.timestamp.ToJsonString()
    return qe.OrderBy(order_by.key, direction, start_from=start)


class SnapshotsServicer(_Servicer, snapshots_service_pb2_grpc.SnapshotsServicer):
    """Create, List and Delete of collection snapshots (full-storage snapshots are not implemented)."""

    @rpc
    async def Create(self, request: snapshots_service_pb2.CreateSnapshotRequest, context: Any
                     ) -> snapshots_service_pb2.CreateSnapshotResponse:
        description = await self.engine.run(self.engine.store.create_snapshot, request.collection_name)
        return snapshots_service_pb2.CreateSnapshotResponse(snapshot_description=description)

    @rpc
    async def List(self, request: snapshots_service_pb2.ListSnapshotsRequest, context: Any
                   ) -> snapshots_service_pb2.ListSnapshotsResponse:
        descriptions = await self.engine.run(self.engine.store.list_snapshots, request.collection_name)
        return snapshots_service_pb2.ListSnapshotsResponse(snapshot_descriptions=descriptions)

    @rpc
    async def Delete(self, request: snapshots_service_pb2.DeleteSnapshotRequest, context: Any
                     ) -> snapshots_service_pb2.DeleteSnapshotResponse:
        await self.engine.run(self.engine.store.delete_snapshot, request.collection_name, request.snapshot_name)
        return snapshots_service_pb2.DeleteSnapshotResponse()


class QdrantServicer(_Servicer, qdrant_pb2_grpc.QdrantServicer):
    """HealthCheck."""

    @rpc
    async def HealthCheck(self, request: qdrant_pb2.HealthCheckRequest, context: Any) -> qdrant_pb2.HealthCheckReply:
        return qdrant_pb2.HealthCheckReply(title=TITLE, version=VERSION)


class QdrantTestServer:
    """A Qdrant-protocol gRPC server over qdrant-edge, in this process, on `host:port` (0: a free port)."""

    def __init__(self, data_dir: Path, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.data_dir = Path(data_dir)
        self.host = host
        self.port = port
        self.faults = Faults()
        self._engine: Engine | None = None
        self._server: grpc.aio.Server | None = None

    @property
    def calls(self) -> list[str]:
        """Every RPC received so far ("Points/Query", …)."""
        assert self._engine is not None, "start() first"
        return self._engine.calls

    @property
    def url(self) -> str:
        """The location `QdrantBackend` takes: REST URL (unused by gRPC calls) with the gRPC port."""
        return f"http://{self.host}:{self.port}?grpc_port={self.port}"

    async def start(self) -> int:
        """Open the data directory, bind and serve; returns the port."""
        store = await asyncio.to_thread(Store, self.data_dir)
        engine = self._engine = Engine(store, self.faults)
        server = self._server = grpc.aio.server(options=MESSAGE_LIMITS)
        collections_service_pb2_grpc.add_CollectionsServicer_to_server(CollectionsServicer(engine), server)
        points_service_pb2_grpc.add_PointsServicer_to_server(PointsServicer(engine), server)
        snapshots_service_pb2_grpc.add_SnapshotsServicer_to_server(SnapshotsServicer(engine), server)
        qdrant_pb2_grpc.add_QdrantServicer_to_server(QdrantServicer(engine), server)
        self.port = server.add_insecure_port(f"{self.host}:{self.port}")
        if not self.port:
            raise RuntimeError(f"cannot bind {self.host}:{self.port}")
        await server.start()
        return self.port

    async def wait_for_termination(self) -> None:
        assert self._server is not None, "start() first"
        await self._server.wait_for_termination()

    async def stop(self, grace: float | None = 0) -> None:
        """Release held calls, stop serving, then flush and close every shard."""
        self.faults.release()
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None
        if self._engine is not None:
            engine, self._engine = self._engine, None
            await engine.run(engine.store.close)
            engine.executor.shutdown(wait=True)
