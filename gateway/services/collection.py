"""CollectionServicer: searchgw.v1.CollectionService over CollectionAdmin."""

from __future__ import annotations

import time

import grpc

from searchgw.gateway.collections import CollectionAdmin
from searchgw.gateway.services.convert import (
    collection_spec_from_proto,
    collection_to_proto,
    duration_from_proto,
    index_build_to_proto,
    payload_index_from_proto,
    snapshot_to_proto,
)
from searchgw.v1 import collection_service_pb2 as pb
from searchgw.v1 import collection_service_pb2_grpc as pb_grpc


class CollectionServicer(pb_grpc.CollectionServiceServicer):
    def __init__(self, admin: CollectionAdmin) -> None:
        self._admin = admin

    async def CreateCollection(self, request, context) -> pb.CreateCollectionResponse:
        info = await self._admin.create(collection_spec_from_proto(request.collection))
        return pb.CreateCollectionResponse(collection=collection_to_proto(info))

    async def GetCollection(self, request, context) -> pb.GetCollectionResponse:
        return pb.GetCollectionResponse(collection=collection_to_proto(await self._admin.get(request.name)))

    async def ListCollections(self, request: pb.ListCollectionsRequest,
                              context: grpc.aio.ServicerContext) -> pb.ListCollectionsResponse:
        page = await self._admin.list(request.page_size, request.page_token)
        return pb.ListCollectionsResponse(collections=[collection_to_proto(i) for i in page.items],
                                          next_page_token=page.next_page_token)

    async def DeleteCollection(self, request, context) -> pb.DeleteCollectionResponse:
        await self._admin.delete(request.name)
        return pb.DeleteCollectionResponse()

    async def UpdateAlias(self, request, context) -> pb.UpdateAliasResponse:
        previous = await self._admin.update_alias(request.alias, request.collection)
        return pb.UpdateAliasResponse(previous_collection=previous or "")

    async def DeleteAlias(self, request, context) -> pb.DeleteAliasResponse:
        await self._admin.delete_alias(request.alias)
        return pb.DeleteAliasResponse()

    async def ListAliases(self, request: pb.ListAliasesRequest,
                          context: grpc.aio.ServicerContext) -> pb.ListAliasesResponse:
        page = await self._admin.aliases(request.page_size, request.page_token)
        return pb.ListAliasesResponse(aliases=[pb.Alias(alias=a, collection=c) for a, c in page.items],
                                      next_page_token=page.next_page_token)

    async def OptimizeCollection(self, request, context) -> pb.OptimizeCollectionResponse:
        info, build = await self._admin.optimize(request.name, background=request.background)
        return pb.OptimizeCollectionResponse(collection=collection_to_proto(info),
                                             build=None if build is None else index_build_to_proto(build))

    async def CreateSnapshot(self, request, context) -> pb.CreateSnapshotResponse:
        return pb.CreateSnapshotResponse(snapshot=snapshot_to_proto(await self._admin.create_snapshot(request.name)))

    async def ListSnapshots(self, request: pb.ListSnapshotsRequest,
                            context: grpc.aio.ServicerContext) -> pb.ListSnapshotsResponse:
        page = await self._admin.list_snapshots(request.collection, request.page_size, request.page_token)
        return pb.ListSnapshotsResponse(snapshots=[snapshot_to_proto(s) for s in page.items],
                                        next_page_token=page.next_page_token)

    async def RestoreSnapshot(self, request, context) -> pb.RestoreSnapshotResponse:
        info = await self._admin.restore_snapshot(request.snapshot, request.collection)
        return pb.RestoreSnapshotResponse(collection=collection_to_proto(info))

    async def DeleteSnapshot(self, request: pb.DeleteSnapshotRequest,
                             context: grpc.aio.ServicerContext) -> pb.DeleteSnapshotResponse:
        await self._admin.delete_snapshot(request.collection, request.snapshot)
        return pb.DeleteSnapshotResponse()

    async def PruneSnapshots(self, request: pb.PruneSnapshotsRequest,
                             context: grpc.aio.ServicerContext) -> pb.PruneSnapshotsResponse:
        pruning = await self._admin.prune_snapshots(request.collection, request.keep_last,
                                                    duration_from_proto(request.max_age), time.time())
        return pb.PruneSnapshotsResponse(deleted=[snapshot_to_proto(s) for s in pruning.delete],
                                         kept=[snapshot_to_proto(s) for s in pruning.keep])

    async def CreatePayloadIndex(self, request: pb.CreatePayloadIndexRequest,
                                 context: grpc.aio.ServicerContext) -> pb.CreatePayloadIndexResponse:
        info = await self._admin.create_payload_index(request.collection, payload_index_from_proto(request.index))
        return pb.CreatePayloadIndexResponse(collection=collection_to_proto(info))

    async def DeletePayloadIndex(self, request: pb.DeletePayloadIndexRequest,
                                 context: grpc.aio.ServicerContext) -> pb.DeletePayloadIndexResponse:
        info = await self._admin.delete_payload_index(request.collection, request.key)
        return pb.DeletePayloadIndexResponse(collection=collection_to_proto(info))
