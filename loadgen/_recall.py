"""Recall against latency (`--recall`): the same queries exact and approximate, one at a time.

Before the load, `measure_recall` runs `--recall-queries` queries (drawn with the run's seed from the
same inputs as the load) once with `params.exact` — the true top-k — and once per setting: the
configured knobs, then each `--recall-ef` value. Per setting it reports recall@limit (the share of
the exact top-k the approximate search found, averaged over the queries) and latency percentiles of
those calls. Calls run one at a time, so latencies are of an otherwise idle server (plus whatever
else the machine runs).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any

import grpc

from searchgw.loadgen._calls import call_metadata, search_params
from searchgw.loadgen._channel import connect
from searchgw.loadgen._config import LoadConfig
from searchgw.loadgen._errors import LoadgenError
from searchgw.loadgen._histogram import LatencyHistogram
from searchgw.loadgen._workload import Inputs, Query
from searchgw.v1 import common_pb2, search_service_pb2, search_service_pb2_grpc

__all__ = ["RecallPoint", "measure_recall"]


@dataclass(frozen=True)
class RecallPoint:
    """One setting of the recall measurement."""

    setting: str  # "exact", "configured" or "hnsw_ef=N"
    recall: float  # mean recall@limit against the exact answers (1.0 for exact itself)
    queries: int
    latency: LatencyHistogram

    def to_dict(self) -> dict[str, Any]:
        from searchgw.loadgen._report import latency_summary_ms

        return {"setting": self.setting, "recall": round(self.recall, 4), "queries": self.queries,
                "latency_ms": latency_summary_ms(self.latency)}


def _key(point_id: common_pb2.PointId) -> str | int:
    return point_id.uuid if point_id.WhichOneof("kind") == "uuid" else point_id.num


async def measure_recall(config: LoadConfig, queries: tuple[Query, ...], seed: int) -> tuple[RecallPoint, ...]:
    inputs = Inputs(queries, dimension=config.dimension, rng=random.Random(seed ^ 0x5EED))
    requests = []
    for _ in range(config.recall_queries):
        request = search_service_pb2.SearchRequest(collection=config.collection, limit=config.limit)
        if config.vector:
            request.vector.values.extend(inputs.vector())
        else:
            request.text = inputs.text()
        requests.append(request)
    settings: list[tuple[str, search_service_pb2.SearchParams | None]] = [
        ("exact", search_params(config, exact=True)), ("configured", search_params(config, exact=False))]
    settings += [(f"hnsw_ef={ef}", search_params(config, hnsw_ef=ef, exact=False)) for ef in config.recall_ef]
    metadata = call_metadata(config)
    channel = await connect(config)
    try:
        search = search_service_pb2_grpc.SearchServiceStub(channel).Search
        truth: list[set[str | int]] = []
        points: list[RecallPoint] = []
        for name, params in settings:
            histogram, found = LatencyHistogram(), 0.0
            for index, request in enumerate(requests):
                call = search_service_pb2.SearchRequest()
                call.CopyFrom(request)
                if params is not None:
                    call.params.CopyFrom(params)
                started = time.perf_counter_ns()
                try:
                    response = await search(call, metadata=metadata, timeout=config.deadline_s)
                except grpc.aio.AioRpcError as exc:
                    raise LoadgenError(f"recall measurement ({name}): Search failed with {exc.code().name}: "
                                       f"{exc.details()}") from None
                histogram.record(time.perf_counter_ns() - started)
                ids = {_key(point.id) for point in response.points}
                if name == "exact":
                    truth.append(ids)
                    found += 1.0
                else:
                    found += len(ids & truth[index]) / len(truth[index]) if truth[index] else 1.0
            points.append(RecallPoint(name, found / len(requests), len(requests), histogram))
        return tuple(points)
    finally:
        await channel.close()
