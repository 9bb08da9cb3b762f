"""The gateway's gRPC servicers: thin translators between searchgw.v1 messages and the domain core."""

from gateway.services.collection import CollectionServicer
from gateway.services.rollout import RolloutServicer
from gateway.services.search import SearchServicer

__all__ = ["CollectionServicer", "RolloutServicer", "SearchServicer"]
