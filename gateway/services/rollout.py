"""RolloutServicer: searchgw.v1.RolloutService over RolloutController."""

from __future__ import annotations

import grpc

from searchgw.gateway.rollout import RolloutController
from searchgw.gateway.services.convert import (
    canary_overrides_from_proto,
    decision_to_proto,
    preflight_policy_from_proto,
    rollout_from_proto,
    rollout_to_proto,
)
from searchgw.rpc import current_rpc
from searchgw.v1 import rollout_service_pb2 as pb
from searchgw.v1 import rollout_service_pb2_grpc as pb_grpc


def _actor() -> str:
    """Who acts: the authenticated principal when there is one."""
    return current_rpc().labels.get("principal", "")


class RolloutServicer(pb_grpc.RolloutServiceServicer):
    def __init__(self, controller: RolloutController) -> None:
        self._controller = controller

    async def CreateRollout(self, request, context) -> pb.CreateRolloutResponse:
        rollout = await self._controller.create(rollout_from_proto(request.rollout), actor=_actor())
        return pb.CreateRolloutResponse(rollout=rollout_to_proto(rollout))

    async def GetRollout(self, request, context) -> pb.GetRolloutResponse:
        return pb.GetRolloutResponse(rollout=rollout_to_proto(await self._controller.get(request.name)))

    async def ListRollouts(self, request: pb.ListRolloutsRequest,
                           context: grpc.aio.ServicerContext) -> pb.ListRolloutsResponse:
        page = await self._controller.list(request.collection or None, request.page_size, request.page_token)
        return pb.ListRolloutsResponse(rollouts=[rollout_to_proto(r, with_decisions=False) for r in page.items],
                                       next_page_token=page.next_page_token)

    async def PauseRollout(self, request, context) -> pb.PauseRolloutResponse:
        rollout = await self._controller.pause(request.name, request.reason, actor=_actor())
        return pb.PauseRolloutResponse(rollout=rollout_to_proto(rollout))

    async def ResumeRollout(self, request, context) -> pb.ResumeRolloutResponse:
        rollout = await self._controller.resume(request.name, request.reason, actor=_actor())
        return pb.ResumeRolloutResponse(rollout=rollout_to_proto(rollout))

    async def PromoteRollout(self, request, context) -> pb.PromoteRolloutResponse:
        rollout = await self._controller.promote(request.name, request.reason, actor=_actor())
        return pb.PromoteRolloutResponse(rollout=rollout_to_proto(rollout))

    async def AbortRollout(self, request, context) -> pb.AbortRolloutResponse:
        rollout = await self._controller.abort(request.name, request.reason, actor=_actor())
        return pb.AbortRolloutResponse(rollout=rollout_to_proto(rollout))

    async def UndoRollout(self, request, context) -> pb.UndoRolloutResponse:
        rollout = await self._controller.undo(request.name, request.reason, actor=_actor())
        return pb.UndoRolloutResponse(rollout=rollout_to_proto(rollout))

    async def WatchRollout(self, request, context):
        async for rollout, decision in self._controller.watch(request.name):
            yield pb.WatchRolloutResponse(rollout=rollout_to_proto(rollout, with_decisions=False),
                                          decision=decision_to_proto(decision) if decision else None)

    async def PrepareRollout(self, request, context) -> pb.PrepareRolloutResponse:
        rollout = await self._controller.prepare(rollout_from_proto(request.rollout),
                                                 canary_overrides_from_proto(request.canary),
                                                 batch_size=request.batch_size, actor=_actor())
        return pb.PrepareRolloutResponse(rollout=rollout_to_proto(rollout))

    async def ValidateRollout(self, request, context) -> pb.ValidateRolloutResponse:
        policy = preflight_policy_from_proto(request.policy) if request.HasField("policy") else None
        rollout = await self._controller.validate(request.name, list(request.queries), policy, actor=_actor())
        return pb.ValidateRolloutResponse(rollout=rollout_to_proto(rollout))

    async def StartRollout(self, request, context) -> pb.StartRolloutResponse:
        rollout = await self._controller.start_traffic(request.name, request.reason, actor=_actor())
        return pb.StartRolloutResponse(rollout=rollout_to_proto(rollout))
