"""SearchServicer: searchgw.v1.SearchService over SearchCore."""

from __future__ import annotations

import time
from collections.abc import Callable

from searchgw.gateway.core import PointInput, SearchCore, SearchParams
from searchgw.gateway.reading import PointReader, ScrollParams
from searchgw.gateway.routing import FORCED_ARM_HEADER, ROUTING_KEY_HEADER, parse_forced_arm
from searchgw.gateway.services.convert import (
    arm_from_proto,
    chunking_from_proto,
    filter_from_proto,
    order_by_from_proto,
    fusion_from_proto,
    payload_from_proto,
    point_groups_to_proto,
    point_id_from_proto,
    route_to_proto,
    scored_point_to_proto,
    search_params_from_proto,
    vector_from_proto,
    stored_point_to_proto,
    search_mode_from_proto,
)
from searchgw.rpc import current_rpc
from searchgw.v1 import search_service_pb2 as pb
from searchgw.v1 import search_service_pb2_grpc as pb_grpc


def _deadline(context, clock: Callable[[], float]) -> float | None:
    remaining = context.time_remaining()
    return None if remaining is None else clock() + remaining


class SearchServicer(pb_grpc.SearchServiceServicer):
    def __init__(self, core: SearchCore, *, clock: Callable[[], float] = time.monotonic,
                 reader: PointReader | None = None) -> None:
        self._core = core
        self._clock = clock
        self._reader = reader

    def _points(self) -> PointReader:
        if self._reader is None:
            raise NotImplementedError("this SearchServicer was built without a PointReader")
        return self._reader

    async def CountPoints(self, request: pb.CountPointsRequest, context) -> pb.CountPointsResponse:
        current_rpc().labels["collection"] = request.collection
        count, route = await self._points().count(
            request.collection, filter_from_proto(request.filter) if request.HasField("filter") else None,
            arm_from_proto(request.arm))
        current_rpc().labels["arm"] = route.arm.value
        return pb.CountPointsResponse(count=count, route=route_to_proto(route))

    async def ScrollPoints(self, request: pb.ScrollPointsRequest, context) -> pb.ScrollPointsResponse:
        current_rpc().labels["collection"] = request.collection
        outcome = await self._points().scroll(ScrollParams(
            collection=request.collection,
            filter=filter_from_proto(request.filter) if request.HasField("filter") else None,
            page_size=request.page_size, page_token=request.page_token,
            order_by=order_by_from_proto(request.order_by) if request.HasField("order_by") else None,
            with_payload=request.with_payload, with_vector=request.with_vector, arm=arm_from_proto(request.arm)))
        current_rpc().labels["arm"] = outcome.route.arm.value
        return pb.ScrollPointsResponse(
            points=[stored_point_to_proto(p, with_payload=request.with_payload, with_vector=request.with_vector)
                    for p in outcome.points],
            next_page_token=outcome.next_page_token, route=route_to_proto(outcome.route))

    async def GetPoints(self, request: pb.GetPointsRequest, context) -> pb.GetPointsResponse:
        current_rpc().labels["collection"] = request.collection
        ids = [point_id_from_proto(p, f"ids[{i}]") for i, p in enumerate(request.ids)]
        outcome = await self._points().get(request.collection, ids, with_payload=request.with_payload,
                                           with_vector=request.with_vector, arm=arm_from_proto(request.arm))
        current_rpc().labels["arm"] = outcome.route.arm.value
        return pb.GetPointsResponse(
            points=[stored_point_to_proto(p, with_payload=request.with_payload, with_vector=request.with_vector)
                    for p in outcome.points], route=route_to_proto(outcome.route))

    async def Search(self, request: pb.SearchRequest, context) -> pb.SearchResponse:
        labels = current_rpc().labels
        labels["collection"] = request.collection
        metadata_key = forced = None
        for key, value in context.invocation_metadata() or ():  # read once, for the two headers
            if key == ROUTING_KEY_HEADER:
                metadata_key = value
            elif key == FORCED_ARM_HEADER:
                forced = value
        query = request.WhichOneof("query")
        routing_key = request.routing_key
        params = SearchParams(
            collection=request.collection,
            text=request.text if query == "text" else None,
            vector=vector_from_proto(request.vector) if query == "vector" else None,
            limit=request.limit,
            routing_key=routing_key,
            metadata_key=metadata_key or "",
            forced_arm=parse_forced_arm(forced),
            peer="" if routing_key or metadata_key else context.peer() or "",  # only an unkeyed call needs it
            filter=filter_from_proto(request.filter) if request.HasField("filter") else None,
            score_threshold=request.score_threshold if request.HasField("score_threshold") else None,
            with_payload=request.with_payload,
            page_token=request.page_token,
            mode=search_mode_from_proto(request.mode),
            fusion=fusion_from_proto(request.fusion),
            search_params=search_params_from_proto(request.params) if request.HasField("params") else None,
            group_by=request.group_by,
            group_size=request.group_size,
        )
        outcome = await self._core.search(params, deadline=_deadline(context, self._clock),
                                          on_route=lambda arm: labels.__setitem__("arm", arm.value))
        return pb.SearchResponse(points=[scored_point_to_proto(p) for p in outcome.points],
                                 route=route_to_proto(outcome.route), next_page_token=outcome.next_page_token,
                                 search_id=outcome.search_id,
                                 groups=point_groups_to_proto(outcome.points) if request.group_by else None)

    async def Upsert(self, request: pb.UpsertRequest, context) -> pb.UpsertResponse:
        current_rpc().labels["collection"] = request.collection
        points = []
        for index, point in enumerate(request.points):
            content = point.WhichOneof("content")
            points.append(PointInput(
                id=point_id_from_proto(point.id, f"points[{index}].id"),
                text=point.text if content == "text" else None,
                vector=point.vector.values if content == "vector" else None,
                payload=payload_from_proto(point.payload, f"points[{index}].payload"),
                bm25_text=point.bm25_text if point.HasField("bm25_text") else None,
            ))
        if request.chunking.enabled:
            written = await self._core.upsert_chunked(request.collection, points,
                                                      chunking_from_proto(request.chunking),
                                                      deadline=_deadline(context, self._clock))
            return pb.UpsertResponse(upserted=written.points, collections=written.collections, chunks=written.chunks,
                                     point_chunks=written.point_chunks)
        count, collections = await self._core.upsert(request.collection, points,
                                                      deadline=_deadline(context, self._clock))
        return pb.UpsertResponse(upserted=count, collections=collections)

    async def Delete(self, request: pb.DeleteRequest, context) -> pb.DeleteResponse:
        current_rpc().labels["collection"] = request.collection
        selector = request.WhichOneof("selector")
        ids = filter_ = None
        if selector == "ids":
            ids = [point_id_from_proto(p, f"ids.ids[{i}]") for i, p in enumerate(request.ids.ids)]
        elif selector == "filter":
            filter_ = filter_from_proto(request.filter)
        collections = await self._core.delete(request.collection, ids=ids, filter=filter_)
        return pb.DeleteResponse(collections=collections)
