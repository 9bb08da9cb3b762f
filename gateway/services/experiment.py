"""ExperimentServicer: searchgw.v1.ExperimentService over ExperimentManager."""

from __future__ import annotations

from searchgw.gateway.experiments import ExperimentManager, OutcomeStatus
from searchgw.gateway.services.convert import (
    experiment_from_proto,
    experiment_to_proto,
    outcome_status_to_proto,
    outcomes_from_proto,
)
from searchgw.rpc import current_rpc
from searchgw.v1 import experiment_service_pb2 as pb
from searchgw.v1 import experiment_service_pb2_grpc as pb_grpc


def _actor() -> str:
    return current_rpc().labels.get("principal", "")


class ExperimentServicer(pb_grpc.ExperimentServiceServicer):
    def __init__(self, manager: ExperimentManager) -> None:
        self._manager = manager

    def _proto(self, name: str, *, with_decisions: bool = True) -> pb.Experiment:
        return experiment_to_proto(self._manager.get(name), self._manager.verdict(name), with_decisions=with_decisions)

    async def CreateExperiment(self, request, context) -> pb.CreateExperimentResponse:
        experiment = await self._manager.create(experiment_from_proto(request.experiment), actor=_actor())
        return pb.CreateExperimentResponse(experiment=self._proto(experiment.name))

    async def GetExperiment(self, request, context) -> pb.GetExperimentResponse:
        return pb.GetExperimentResponse(experiment=self._proto(request.name))

    async def ListExperiments(self, request, context) -> pb.ListExperimentsResponse:
        page = self._manager.list(request.collection or None, request.page_size, request.page_token)
        return pb.ListExperimentsResponse(
            experiments=[experiment_to_proto(e, self._manager.verdict(e.name), with_decisions=False)
                         for e in page.items], next_page_token=page.next_page_token)

    async def StartExperiment(self, request, context) -> pb.StartExperimentResponse:
        await self._manager.start(request.name, request.reason, actor=_actor())
        return pb.StartExperimentResponse(experiment=self._proto(request.name))

    async def PauseExperiment(self, request, context) -> pb.PauseExperimentResponse:
        await self._manager.pause(request.name, request.reason, actor=_actor())
        return pb.PauseExperimentResponse(experiment=self._proto(request.name))

    async def StopExperiment(self, request, context) -> pb.StopExperimentResponse:
        await self._manager.stop(request.name, request.reason, actor=_actor())
        return pb.StopExperimentResponse(experiment=self._proto(request.name))

    async def ConcludeExperiment(self, request, context) -> pb.ConcludeExperimentResponse:
        await self._manager.conclude(request.name, request.arm, request.promote, request.reason, actor=_actor())
        return pb.ConcludeExperimentResponse(experiment=self._proto(request.name))

    async def WatchExperiment(self, request, context):
        async for experiment in self._manager.watch(request.name):
            yield pb.WatchExperimentResponse(experiment=experiment_to_proto(
                experiment, self._manager.verdict(experiment.name), with_decisions=False))

    async def ReportOutcome(self, request, context) -> pb.ReportOutcomeResponse:
        statuses = self._manager.report_outcomes(outcomes_from_proto(request.outcomes))
        return pb.ReportOutcomeResponse(results=[outcome_status_to_proto(s) for s in statuses],
                                        accepted=sum(s is OutcomeStatus.ACCEPTED for s in statuses))
