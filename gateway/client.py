"""GatewayClient: a small typed async client for SearchService, CollectionService and RolloutService.

Used by the CLI, the tests, the load generator and internal Python callers. Methods take plain
Python arguments and return the response messages; failures raise `searchgw.errors` types, read
from the status's structured details by `searchgw.rpc.status.error_from_rpc` (the status code is
`exc.code_name`; INVALID_ARGUMENT's `exc.field` is the field the server named).

The `list_*` methods return one page (AIP-158: `page_size` 0 means 50, at most 1000; pass the
response's `next_page_token` back for the next); `list_aliases` follows every page.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

import grpc
from google.protobuf import duration_pb2, struct_pb2

from searchgw import errors
from searchgw.rpc.status import error_from_rpc
from searchgw.v1 import collection_service_pb2 as coll_pb
from searchgw.v1 import collection_service_pb2_grpc as coll_grpc
from searchgw.v1 import common_pb2 as common_pb
from searchgw.v1 import experiment_service_pb2 as exp_pb
from searchgw.v1 import experiment_service_pb2_grpc as exp_grpc
from searchgw.v1 import rollout_service_pb2 as roll_pb
from searchgw.v1 import rollout_service_pb2_grpc as roll_grpc
from searchgw.v1 import search_service_pb2 as search_pb
from searchgw.v1 import search_service_pb2_grpc as search_grpc

PointIdLike = int | str


def point_id(value: PointIdLike) -> common_pb.PointId:
    return common_pb.PointId(num=value) if isinstance(value, int) else common_pb.PointId(uuid=value)


def _struct(payload: Mapping[str, Any] | None) -> struct_pb2.Struct | None:
    if payload is None:
        return None
    value = struct_pb2.Struct()
    value.update(payload)
    return value


def _duration(seconds: float) -> duration_pb2.Duration:
    value = duration_pb2.Duration()
    value.FromNanoseconds(int(seconds * 1e9))
    return value


def stage(weight_percent: float, min_duration_s: float = 0.0, min_requests: int = 0) -> roll_pb.Stage:
    """A rollout stage, for `create_rollout(stages=[stage(5, 60, 100), ...])`."""
    return roll_pb.Stage(weight_percent=weight_percent, min_duration=_duration(min_duration_s),
                         min_requests=min_requests)


class PageResponse(Protocol):
    """A List* response: a page of items and the token of the next page ("" on the last)."""

    @property
    def next_page_token(self) -> str: ...


PageT = TypeVar("PageT", bound=PageResponse)


async def every_page(fetch: Callable[[str], Awaitable[PageT]]) -> AsyncIterator[PageT]:
    """Every page of a listing, first to last: `fetch(page_token)` asks for one page, e.g.
    `every_page(lambda token: client.list_collections(page_token=token))`."""
    token = ""
    while True:
        page = await fetch(token)
        yield page
        token = page.next_page_token
        if not token:
            return


def _page_size(value: int) -> int:
    """The page size to send; the wire type is unsigned, so a negative one is refused here, as the
    server refuses it in-process: INVALID_ARGUMENT naming `page_size`."""
    if value < 0:
        raise errors.InvalidArgument("page_size", f"{value}; must not be negative (0 means the server's default)")
    return value


class GatewayClient:
    """Async client of the gateway at `target` (host:port)."""

    def __init__(self, target: str, *, channel: grpc.aio.Channel | None = None,
                 metadata: Sequence[tuple[str, str]] = (), credentials: grpc.ChannelCredentials | None = None,
                 max_message_bytes: int = 32 * 1024 * 1024) -> None:
        options = [("grpc.max_receive_message_length", max_message_bytes),
                   ("grpc.max_send_message_length", max_message_bytes)]
        if channel is None:
            channel = (grpc.aio.secure_channel(target, credentials, options=options) if credentials
                       else grpc.aio.insecure_channel(target, options=options))
        self._channel = channel
        self._metadata = tuple(metadata)
        self.search_stub = search_grpc.SearchServiceStub(channel)
        self.collection_stub = coll_grpc.CollectionServiceStub(channel)
        self.rollout_stub = roll_grpc.RolloutServiceStub(channel)
        self.experiment_stub = exp_grpc.ExperimentServiceStub(channel)

    async def __aenter__(self) -> GatewayClient:
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def _call(self, method, request, timeout: float | None, metadata: Sequence[tuple[str, str]] = ()):
        try:
            return await method(request, timeout=timeout, metadata=self._metadata + tuple(metadata))
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc) from None

    # -- SearchService ---------------------------------------------------------------------
    async def search(self, collection: str, *, text: str | None = None, vector: Sequence[float] | None = None,
                     limit: int = 0, routing_key: str = "", with_payload: bool = False,
                     filter: common_pb.Filter | None = None, score_threshold: float | None = None,
                     page_token: str = "", force_arm: str | None = None,
                     timeout: float | None = None, mode: search_pb.SearchMode = search_pb.SEARCH_MODE_UNSPECIFIED,
                     fusion: search_pb.Fusion | None = None,
                     params: search_pb.SearchParams | None = None, group_by: str = "",
                     group_size: int = 0) -> search_pb.SearchResponse:
        """`mode` SEARCH_MODE_SPARSE or SEARCH_MODE_HYBRID ranks by BM25 (with `text`); `fusion` says how
        a hybrid search fuses (unset: RRF, k = 60); `params`: the per-query knobs (hnsw_ef, exact,
        quantization). `group_by` a payload key (`_searchgw_doc`: one hit per chunked document)
        gives `limit` groups."""
        request = search_pb.SearchRequest(collection=collection, limit=limit, routing_key=routing_key,
                                          with_payload=with_payload, page_token=page_token, filter=filter,
                                          mode=mode, fusion=fusion, params=params, group_by=group_by,
                                          group_size=group_size)
        if text is not None:
            request.text = text
        if vector is not None:
            request.vector.values.extend(vector)
        if score_threshold is not None:
            request.score_threshold = score_threshold
        metadata = (("x-canary-arm", force_arm),) if force_arm else ()
        return await self._call(self.search_stub.Search, request, timeout, metadata)

    async def upsert(self, collection: str, points: Sequence[Mapping[str, Any]], *,
                     timeout: float | None = None, chunking: search_pb.Chunking | None = None) -> search_pb.UpsertResponse:
        """points: mappings with `id`, and `text` or `vector`, and optional `payload` and (with a vector)
        `bm25_text`. With `chunking` (enabled), each text is written as chunks (the response counts them)."""
        inputs = []
        for point in points:
            item = search_pb.PointInput(id=point_id(point["id"]), payload=_struct(point.get("payload")))
            if point.get("text") is not None:
                item.text = point["text"]
            if point.get("vector") is not None:
                item.vector.values.extend(point["vector"])
            if point.get("bm25_text") is not None:
                item.bm25_text = point["bm25_text"]
            inputs.append(item)
        return await self._call(self.search_stub.Upsert, search_pb.UpsertRequest(collection=collection,
                                                                                 points=inputs, chunking=chunking),
                                timeout)

    async def delete(self, collection: str, *, ids: Sequence[PointIdLike] | None = None,
                     filter: common_pb.Filter | None = None, timeout: float | None = None) -> search_pb.DeleteResponse:
        request = search_pb.DeleteRequest(collection=collection)
        if ids is not None:
            request.ids.ids.extend(point_id(i) for i in ids)
        if filter is not None:
            request.filter.CopyFrom(filter)
        return await self._call(self.search_stub.Delete, request, timeout)

    async def count_points(self, collection: str, *, filter: common_pb.Filter | None = None,
                           arm: common_pb.Arm = common_pb.ARM_UNSPECIFIED,
                           timeout: float | None = None) -> search_pb.CountPointsResponse:
        """How many points match `filter` (every point without one), exactly; primary's during a rollout
        unless `arm` names the canary."""
        return await self._call(self.search_stub.CountPoints,
                                search_pb.CountPointsRequest(collection=collection, filter=filter, arm=arm), timeout)

    async def scroll_points(self, collection: str, *, filter: common_pb.Filter | None = None, page_size: int = 0,
                            page_token: str = "", order_by: str = "", descending: bool = False,
                            with_payload: bool = False, with_vector: bool = False,
                            arm: common_pb.Arm = common_pb.ARM_UNSPECIFIED,
                            timeout: float | None = None) -> search_pb.ScrollPointsResponse:
        """One page of points, by id or ordered by the payload field `order_by` (which needs an integer,
        float or datetime index); `every_page(lambda token: client.scroll_points(..., page_token=token))`
        follows them all."""
        request = search_pb.ScrollPointsRequest(collection=collection, filter=filter, page_size=_page_size(page_size),
                                                page_token=page_token, with_payload=with_payload,
                                                with_vector=with_vector, arm=arm)
        if order_by:
            request.order_by.key = order_by
            request.order_by.direction = (search_pb.OrderBy.DIRECTION_DESC if descending
                                          else search_pb.OrderBy.DIRECTION_ASC)
        return await self._call(self.search_stub.ScrollPoints, request, timeout)

    async def get_points(self, collection: str, ids: Sequence[PointIdLike], *, with_payload: bool = True,
                         with_vector: bool = False, arm: common_pb.Arm = common_pb.ARM_UNSPECIFIED,
                         timeout: float | None = None) -> search_pb.GetPointsResponse:
        """The points with these ids, in that order; ids the collection does not hold are left out."""
        request = search_pb.GetPointsRequest(collection=collection, ids=[point_id(i) for i in ids],
                                             with_payload=with_payload, with_vector=with_vector, arm=arm)
        return await self._call(self.search_stub.GetPoints, request, timeout)

    # -- CollectionService -----------------------------------------------------------------
    async def create_collection(self, name: str, *, dimension: int = 0, embedding_model: str = "",
                                distance: coll_pb.Distance = coll_pb.DISTANCE_COSINE,
                                hnsw: coll_pb.HnswConfig | None = None,
                                payload_indexes: Sequence[coll_pb.PayloadIndex] = (),
                                timeout: float | None = None, bm25: coll_pb.Bm25Config | None = None,
                                ) -> coll_pb.Collection:
        """`bm25`: a sparse BM25 index beside the dense one (`coll_pb.Bm25Config()` for the defaults)."""
        collection = coll_pb.Collection(name=name, dimension=dimension, embedding_model=embedding_model,
                                        distance=distance, hnsw=hnsw, payload_indexes=payload_indexes, bm25=bm25)
        response = await self._call(self.collection_stub.CreateCollection,
                                    coll_pb.CreateCollectionRequest(collection=collection), timeout)
        return response.collection

    async def create_payload_index(self, collection: str, key: str, type: coll_pb.PayloadIndexType, *,
                                   text: coll_pb.TextIndexParams | None = None,
                                   timeout: float | None = None) -> coll_pb.Collection:
        """Index a payload field (both arms during a rollout); the collection with its indexes."""
        index = coll_pb.PayloadIndex(key=key, type=type, text=text)
        response = await self._call(self.collection_stub.CreatePayloadIndex,
                                    coll_pb.CreatePayloadIndexRequest(collection=collection, index=index), timeout)
        return response.collection

    async def delete_payload_index(self, collection: str, key: str, *,
                                   timeout: float | None = None) -> coll_pb.Collection:
        """Remove a payload field's index (both arms during a rollout); the collection with its indexes."""
        response = await self._call(self.collection_stub.DeletePayloadIndex,
                                    coll_pb.DeletePayloadIndexRequest(collection=collection, key=key), timeout)
        return response.collection

    async def get_collection(self, name: str, *, timeout: float | None = None) -> coll_pb.Collection:
        response = await self._call(self.collection_stub.GetCollection, coll_pb.GetCollectionRequest(name=name),
                                    timeout)
        return response.collection

    async def list_collections(self, *, page_size: int = 0, page_token: str = "",
                               timeout: float | None = None) -> coll_pb.ListCollectionsResponse:
        return await self._call(self.collection_stub.ListCollections,
                                coll_pb.ListCollectionsRequest(page_size=_page_size(page_size), page_token=page_token),
                                timeout)

    async def delete_collection(self, name: str, *, timeout: float | None = None) -> None:
        await self._call(self.collection_stub.DeleteCollection, coll_pb.DeleteCollectionRequest(name=name), timeout)

    async def update_alias(self, alias: str, collection: str, *, timeout: float | None = None) -> str:
        response = await self._call(self.collection_stub.UpdateAlias,
                                    coll_pb.UpdateAliasRequest(alias=alias, collection=collection), timeout)
        return response.previous_collection

    async def optimize_collection(self, name: str, *, timeout: float | None = None) -> coll_pb.Collection:
        return (await self.optimize_collection_report(name, timeout=timeout)).collection

    async def optimize_collection_report(self, name: str, *, background: bool = False,
                                         timeout: float | None = None) -> coll_pb.OptimizeCollectionResponse:
        """The whole response: the collection and the build's report (none with `background`)."""
        return await self._call(self.collection_stub.OptimizeCollection,
                                coll_pb.OptimizeCollectionRequest(name=name, background=background), timeout)

    async def list_aliases_page(self, *, page_size: int = 0, page_token: str = "",
                                timeout: float | None = None) -> coll_pb.ListAliasesResponse:
        """One page of aliases, by name."""
        return await self._call(self.collection_stub.ListAliases,
                                coll_pb.ListAliasesRequest(page_size=_page_size(page_size), page_token=page_token),
                                timeout)

    async def list_aliases(self, *, page_size: int = 0, timeout: float | None = None) -> dict[str, str]:
        """Every alias and its collection, by name (it follows every page; `timeout` is per page)."""
        aliases: dict[str, str] = {}
        async for page in every_page(lambda token: self.list_aliases_page(page_size=page_size, page_token=token,
                                                                          timeout=timeout)):
            aliases.update((a.alias, a.collection) for a in page.aliases)
        return aliases

    async def create_snapshot(self, name: str, *, timeout: float | None = None) -> coll_pb.Snapshot:
        response = await self._call(self.collection_stub.CreateSnapshot, coll_pb.CreateSnapshotRequest(name=name),
                                    timeout)
        return response.snapshot

    async def list_snapshots(self, collection: str, *, page_size: int = 0, page_token: str = "",
                             timeout: float | None = None) -> coll_pb.ListSnapshotsResponse:
        return await self._call(self.collection_stub.ListSnapshots,
                                coll_pb.ListSnapshotsRequest(collection=collection, page_size=_page_size(page_size),
                                                             page_token=page_token), timeout)

    async def restore_snapshot(self, snapshot: str, collection: str, *,
                               timeout: float | None = None) -> coll_pb.Collection:
        response = await self._call(self.collection_stub.RestoreSnapshot,
                                    coll_pb.RestoreSnapshotRequest(snapshot=snapshot, collection=collection), timeout)
        return response.collection

    async def delete_snapshot(self, collection: str, snapshot: str, *, timeout: float | None = None) -> None:
        await self._call(self.collection_stub.DeleteSnapshot,
                         coll_pb.DeleteSnapshotRequest(collection=collection, snapshot=snapshot), timeout)

    async def prune_snapshots(self, collection: str, *, keep_last: int = 0, max_age_s: float = 0.0,
                              timeout: float | None = None) -> coll_pb.PruneSnapshotsResponse:
        request = coll_pb.PruneSnapshotsRequest(collection=collection, keep_last=keep_last)
        if max_age_s:
            request.max_age.FromNanoseconds(round(max_age_s * 1e9))
        return await self._call(self.collection_stub.PruneSnapshots, request, timeout)

    # -- RolloutService --------------------------------------------------------------------
    async def create_rollout(self, name: str, collection: str, canary_collection: str, *,
                             stages: Sequence[roll_pb.Stage] = (), analysis: roll_pb.AnalysisPolicy | None = None,
                             auto_promote: bool = False, primary_collection: str = "",
                             promotion: roll_pb.PromotionPolicy | None = None,
                             timeout: float | None = None) -> roll_pb.Rollout:
        rollout = roll_pb.Rollout(name=name, collection=collection, canary_collection=canary_collection,
                                  primary_collection=primary_collection, stages=stages, analysis=analysis,
                                  auto_promote=auto_promote, promotion=promotion)
        response = await self._call(self.rollout_stub.CreateRollout, roll_pb.CreateRolloutRequest(rollout=rollout),
                                    timeout)
        return response.rollout

    async def create_rollout_message(self, rollout: roll_pb.Rollout, *,
                                     timeout: float | None = None) -> roll_pb.Rollout:
        """Start `rollout` as given (every field the proto has, e.g. parsed from a YAML spec)."""
        response = await self._call(self.rollout_stub.CreateRollout, roll_pb.CreateRolloutRequest(rollout=rollout),
                                    timeout)
        return response.rollout

    async def get_rollout(self, name: str, *, timeout: float | None = None) -> roll_pb.Rollout:
        return (await self._call(self.rollout_stub.GetRollout, roll_pb.GetRolloutRequest(name=name), timeout)).rollout

    async def list_rollouts(self, *, collection: str = "", page_size: int = 0, page_token: str = "",
                            timeout: float | None = None) -> roll_pb.ListRolloutsResponse:
        return await self._call(self.rollout_stub.ListRollouts,
                                roll_pb.ListRolloutsRequest(collection=collection, page_size=_page_size(page_size),
                                                            page_token=page_token), timeout)

    async def pause_rollout(self, name: str, reason: str = "", *, timeout: float | None = None) -> roll_pb.Rollout:
        return (await self._call(self.rollout_stub.PauseRollout, roll_pb.PauseRolloutRequest(name=name, reason=reason),
                                 timeout)).rollout

    async def resume_rollout(self, name: str, reason: str = "", *, timeout: float | None = None) -> roll_pb.Rollout:
        return (await self._call(self.rollout_stub.ResumeRollout,
                                 roll_pb.ResumeRolloutRequest(name=name, reason=reason), timeout)).rollout

    async def promote_rollout(self, name: str, reason: str = "", *, timeout: float | None = None) -> roll_pb.Rollout:
        return (await self._call(self.rollout_stub.PromoteRollout,
                                 roll_pb.PromoteRolloutRequest(name=name, reason=reason), timeout)).rollout

    async def abort_rollout(self, name: str, reason: str = "", *, timeout: float | None = None) -> roll_pb.Rollout:
        return (await self._call(self.rollout_stub.AbortRollout,
                                 roll_pb.AbortRolloutRequest(name=name, reason=reason), timeout)).rollout

    async def prepare_rollout(self, name: str, collection: str, canary_collection: str, *,
                              canary: coll_pb.Collection | None = None, stages: Sequence[roll_pb.Stage] = (),
                              analysis: roll_pb.AnalysisPolicy | None = None,
                              preflight_policy: roll_pb.PreflightPolicy | None = None, auto_promote: bool = False,
                              batch_size: int = 0, timeout: float | None = None) -> roll_pb.Rollout:
        """Create `canary_collection` from primary's spec (`canary`'s non-zero fields override it) and
        backfill it; the rollout is PREPARING (see `get_rollout(...).backfill` for progress)."""
        rollout = roll_pb.Rollout(name=name, collection=collection, canary_collection=canary_collection,
                                  stages=stages, analysis=analysis, auto_promote=auto_promote,
                                  preflight_policy=preflight_policy)
        request = roll_pb.PrepareRolloutRequest(rollout=rollout, canary=canary, batch_size=batch_size)
        return (await self._call(self.rollout_stub.PrepareRollout, request, timeout)).rollout

    async def validate_rollout(self, name: str, queries: Sequence[str] = (), *,
                               policy: roll_pb.PreflightPolicy | None = None,
                               timeout: float | None = None) -> roll_pb.Rollout:
        """Run the pre-flight of a PREPARED rollout; the result is the returned rollout's `preflight`."""
        request = roll_pb.ValidateRolloutRequest(name=name, queries=list(queries), policy=policy)
        return (await self._call(self.rollout_stub.ValidateRollout, request, timeout)).rollout

    async def start_rollout(self, name: str, reason: str = "", *, timeout: float | None = None) -> roll_pb.Rollout:
        """Send a PREPARED rollout's first stage of traffic to the canary (needs a passed pre-flight)."""
        return (await self._call(self.rollout_stub.StartRollout,
                                 roll_pb.StartRolloutRequest(name=name, reason=reason), timeout)).rollout

    async def undo_rollout(self, name: str, reason: str = "", *, timeout: float | None = None) -> roll_pb.Rollout:
        return (await self._call(self.rollout_stub.UndoRollout,
                                 roll_pb.UndoRolloutRequest(name=name, reason=reason), timeout)).rollout

    async def watch_rollout(self, name: str) -> AsyncIterator[roll_pb.WatchRolloutResponse]:
        call = self.rollout_stub.WatchRollout(roll_pb.WatchRolloutRequest(name=name), metadata=self._metadata)
        try:
            async for message in call:
                yield message
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc) from None
        finally:
            call.cancel()

    # -- ExperimentService -------------------------------------------------------------------
    async def create_experiment(self, name: str, collection: str, variants: Sequence[str | tuple[str, str, int]], *,
                                control_collection: str = "", control_split_bps: int = 0, alpha: float = 0.0,
                                goal: str = "", outcome_kinds: Sequence[str] = (), latency_threshold_s: float = 0.0,
                                interval_s: float = 0.0, quality: roll_pb.QualityPolicy | None = None,
                                quality_guard: bool = False, timeout: float | None = None) -> exp_pb.Experiment:
        """`variants`: collection names (named v1, v2, ..., an even split), or (name, collection, split_bps).
        `quality`: shadow comparisons of each variant with control; `quality_guard`: a variant whose results
        differ from control's cannot win."""
        arms = [exp_pb.ExperimentArm(collection=v) if isinstance(v, str)
                else exp_pb.ExperimentArm(name=v[0], collection=v[1], split_bps=v[2]) for v in variants]
        policy = exp_pb.ExperimentPolicy(alpha=alpha, goal=goal, outcome_kinds=list(outcome_kinds), quality=quality,
                                         quality_guard=quality_guard)
        if latency_threshold_s:
            policy.latency_threshold.CopyFrom(_duration(latency_threshold_s))
        if interval_s:
            policy.interval.CopyFrom(_duration(interval_s))
        experiment = exp_pb.Experiment(name=name, collection=collection, control_collection=control_collection,
                                       control_split_bps=control_split_bps, variants=arms, policy=policy)
        return (await self._call(self.experiment_stub.CreateExperiment,
                                 exp_pb.CreateExperimentRequest(experiment=experiment), timeout)).experiment

    async def get_experiment(self, name: str, *, timeout: float | None = None) -> exp_pb.Experiment:
        return (await self._call(self.experiment_stub.GetExperiment, exp_pb.GetExperimentRequest(name=name),
                                 timeout)).experiment

    async def list_experiments(self, *, collection: str = "", page_size: int = 0, page_token: str = "",
                               timeout: float | None = None) -> exp_pb.ListExperimentsResponse:
        return await self._call(self.experiment_stub.ListExperiments,
                                exp_pb.ListExperimentsRequest(collection=collection, page_size=_page_size(page_size),
                                                              page_token=page_token), timeout)

    async def start_experiment(self, name: str, reason: str = "", *, timeout: float | None = None) -> exp_pb.Experiment:
        return (await self._call(self.experiment_stub.StartExperiment,
                                 exp_pb.StartExperimentRequest(name=name, reason=reason), timeout)).experiment

    async def pause_experiment(self, name: str, reason: str = "", *, timeout: float | None = None) -> exp_pb.Experiment:
        return (await self._call(self.experiment_stub.PauseExperiment,
                                 exp_pb.PauseExperimentRequest(name=name, reason=reason), timeout)).experiment

    async def stop_experiment(self, name: str, reason: str = "", *, timeout: float | None = None) -> exp_pb.Experiment:
        return (await self._call(self.experiment_stub.StopExperiment,
                                 exp_pb.StopExperimentRequest(name=name, reason=reason), timeout)).experiment

    async def conclude_experiment(self, name: str, *, arm: str = "", promote: bool = False, reason: str = "",
                                  timeout: float | None = None) -> exp_pb.Experiment:
        """End `name` with `arm` (default: the winner); `promote` points the alias at that arm's collection."""
        request = exp_pb.ConcludeExperimentRequest(name=name, arm=arm, promote=promote, reason=reason)
        return (await self._call(self.experiment_stub.ConcludeExperiment, request, timeout)).experiment

    async def report_outcomes(self, outcomes: Sequence[tuple[str, str] | tuple[str, str, float]], *,
                              timeout: float | None = None) -> exp_pb.ReportOutcomeResponse:
        """Report (search_id, kind[, value]) outcomes; the response has one status per outcome."""
        request = exp_pb.ReportOutcomeRequest(outcomes=[
            exp_pb.Outcome(search_id=o[0], kind=o[1], value=o[2] if len(o) > 2 else 1.0) for o in outcomes])
        return await self._call(self.experiment_stub.ReportOutcome, request, timeout)

    async def watch_experiment(self, name: str) -> AsyncIterator[exp_pb.WatchExperimentResponse]:
        call = self.experiment_stub.WatchExperiment(exp_pb.WatchExperimentRequest(name=name), metadata=self._metadata)
        try:
            async for message in call:
                yield message
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc) from None
        finally:
            call.cancel()
