"""The gateway's gRPC servicers: thin translators between searchgw.v1 messages and the domain core."""

from searchgw.gateway.services.collection import CollectionServicer
from searchgw.gateway.services.experiment import ExperimentServicer
from searchgw.gateway.services.rollout import RolloutServicer
from searchgw.gateway.services.search import SearchServicer

__all__ = ["CollectionServicer", "ExperimentServicer", "RolloutServicer", "SearchServicer"]
