"""One kind of call per RPC: how to build the next request, and which arm answered it."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Protocol

import grpc

from searchgw.loadgen._config import LoadConfig
from searchgw.loadgen._tally import NO_ROUTE
from searchgw.loadgen._workload import Inputs, RoutingKeys
from searchgw.v1 import common_pb2, embed_service_pb2, embed_service_pb2_grpc, search_service_pb2
from searchgw.v1 import search_service_pb2_grpc

__all__ = ["Call", "CallSource", "call_source", "call_metadata"]

Metadata = tuple[tuple[str, str], ...]

_ARM_NAMES = {
    common_pb2.ARM_UNSPECIFIED: "unspecified",
    common_pb2.ARM_PRIMARY: "primary",
    common_pb2.ARM_CANARY: "canary",
}


@dataclass(frozen=True)
class Call:
    request: Any
    metadata: Metadata


class CallSource(Protocol):
    def method(self, channel: grpc.aio.Channel) -> grpc.aio.UnaryUnaryMultiCallable: ...

    def next_call(self) -> Call: ...

    def route_of(self, response: Any) -> tuple[str, bool]:
        """(arm, fallback) of a successful response."""
        ...


def call_metadata(config: LoadConfig) -> Metadata:
    """The metadata every call carries: auth, the arm override, then --metadata."""
    pairs: list[tuple[str, str]] = []
    if config.token:
        pairs.append(("authorization", f"Bearer {config.token}"))
    if config.canary_arm:
        pairs.append(("x-canary-arm", config.canary_arm))
    return (*pairs, *config.metadata_pairs())


class SearchCalls:
    def __init__(self, config: LoadConfig, inputs: Inputs, keys: RoutingKeys) -> None:
        self._config = config
        self._inputs = inputs
        self._keys = keys
        self._metadata = call_metadata(config)

    def method(self, channel: grpc.aio.Channel) -> grpc.aio.UnaryUnaryMultiCallable:
        return search_service_pb2_grpc.SearchServiceStub(channel).Search

    def next_call(self) -> Call:
        request = search_service_pb2.SearchRequest(collection=self._config.collection, limit=self._config.limit,
                                                   params=search_params(self._config))
        if self._config.vector:
            request.vector.values.extend(self._inputs.vector())
        else:
            request.text = self._inputs.text()
        key = self._keys.next()
        if key and self._config.key_in_metadata:
            return Call(request, (*self._metadata, ("x-routing-key", key)))
        request.routing_key = key
        return Call(request, self._metadata)

    def route_of(self, response: search_service_pb2.SearchResponse) -> tuple[str, bool]:
        if not response.HasField("route"):
            return NO_ROUTE, False
        return _ARM_NAMES.get(response.route.arm, "unspecified"), response.route.fallback


class EmbedCalls:
    def __init__(self, config: LoadConfig, inputs: Inputs) -> None:
        self._config = config
        self._inputs = inputs
        self._metadata = call_metadata(config)

    def method(self, channel: grpc.aio.Channel) -> grpc.aio.UnaryUnaryMultiCallable:
        return embed_service_pb2_grpc.EmbedServiceStub(channel).Embed

    def next_call(self) -> Call:
        texts = [self._inputs.text() for _ in range(self._config.batch_size)]
        return Call(embed_service_pb2.EmbedRequest(texts=texts, model=self._config.model), self._metadata)

    def route_of(self, response: embed_service_pb2.EmbedResponse) -> tuple[str, bool]:
        return NO_ROUTE, False


class UpsertCalls:
    def __init__(self, config: LoadConfig, inputs: Inputs, rng: random.Random) -> None:
        self._config = config
        self._inputs = inputs
        self._rng = rng
        self._metadata = call_metadata(config)

    def method(self, channel: grpc.aio.Channel) -> grpc.aio.UnaryUnaryMultiCallable:
        return search_service_pb2_grpc.SearchServiceStub(channel).Upsert

    def next_call(self) -> Call:
        request = search_service_pb2.UpsertRequest(collection=self._config.collection)
        for point_id in self._rng.sample(range(self._config.id_space), self._config.batch_size):
            point = request.points.add()
            point.id.num = point_id
            point.payload.update({"source": "loadgen"})
            if self._config.vector:
                point.vector.values.extend(self._inputs.vector())
            else:
                point.text = self._inputs.text()
        return Call(request, self._metadata)

    def route_of(self, response: search_service_pb2.UpsertResponse) -> tuple[str, bool]:
        return NO_ROUTE, False


def search_params(config: LoadConfig, *, hnsw_ef: int | None = None,
                  exact: bool | None = None) -> search_service_pb2.SearchParams | None:
    """SearchRequest.params from --hnsw-ef, --exact, --oversampling (None when all are unset);
    `hnsw_ef` / `exact` override the configured ones."""
    ef = config.hnsw_ef if hnsw_ef is None else hnsw_ef
    exact = config.exact if exact is None else exact
    if not (ef or exact or config.oversampling):
        return None
    params = search_service_pb2.SearchParams(hnsw_ef=ef, exact=exact)
    if config.oversampling:
        params.quantization.rescore = True
        params.quantization.oversampling = config.oversampling
    return params


def call_source(config: LoadConfig, inputs: Inputs, rng: random.Random) -> CallSource:
    if config.rpc == "search":
        keys = RoutingKeys(config.keys, count=config.key_count, zipf_s=config.zipf_s, rng=rng)
        return SearchCalls(config, inputs, keys)
    if config.rpc == "embed":
        return EmbedCalls(config, inputs)
    return UpsertCalls(config, inputs, rng)
