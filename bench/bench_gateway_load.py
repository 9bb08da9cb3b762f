"""Gateway benchmark, throughput and latency: Search by vector through the gateway against bare grpc.aio
servers (the scenario behind targets (c) >= 0.80 x (b), (c) >= 0.60 x (a) on 1 000 points, and the added
p50 at one caller; see bench_gateway, which runs it with the others).

(a) echo: a bare grpc.aio server whose Search answers an empty SearchResponse at once;
(b) backend: a bare grpc.aio server whose Search does nothing but the same backend query
    (EdgeBackend.search, limit 10) and turns the hits into the same response points;
(c) the gateway, through a logical collection with no rollout and through one at 50 % canary.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import grpc
import numpy as np

from bench._common import LoadRunner, load_average, loadavg_text
from bench._gateway import DIM, Durations
from searchgw.gateway.backends import EdgeBackend, SearchQuery
from searchgw.gateway.services.convert import scored_point_to_proto
from searchgw.loadgen import LatencyHistogram, LoadConfig, Report
from searchgw.v1 import search_service_pb2 as search_pb
from searchgw.v1 import search_service_pb2_grpc as search_grpc

#: Targets (issue 16): the gateway at 50 % canary against (b) per collection size, against (a) on
#: 1 000 points, and its added p50 at one caller.
TARGET_VS_BACKEND_BY_SIZE = {1_000: 0.85, 20_000: 0.90}
TARGET_VS_BACKEND = min(TARGET_VS_BACKEND_BY_SIZE.values())  # any other size
TARGET_VS_ECHO_1K = 0.50
TARGET_ADDED_P50_MS = 0.3


# -- bare servers ----------------------------------------------------------------------------------
class EchoSearch(search_grpc.SearchServiceServicer):
    """(a): answers at once."""

    async def Search(self, request: search_pb.SearchRequest, context) -> search_pb.SearchResponse:
        return search_pb.SearchResponse()


class BackendSearch(search_grpc.SearchServiceServicer):
    """(b): the same backend query as the gateway's, and nothing else."""

    def __init__(self, backend: EdgeBackend) -> None:
        self._backend = backend

    async def Search(self, request: search_pb.SearchRequest, context) -> search_pb.SearchResponse:
        query = SearchQuery(vector=np.asarray(request.vector.values, dtype=np.float32), limit=request.limit or 10)
        hits = await self._backend.search(request.collection, query)
        return search_pb.SearchResponse(points=[scored_point_to_proto(hit) for hit in hits])


async def start_bare_server(servicer: search_grpc.SearchServiceServicer) -> tuple[grpc.aio.Server, str]:
    server = grpc.aio.server()
    search_grpc.add_SearchServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


# -- throughput and latency --------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    """A server and collection to load."""

    kind: str  # echo | backend | gateway | gateway+rollout
    size: int  # 0 for echo
    address: str
    collection: str

    @property
    def label(self) -> str:
        names = {"echo": "(a) bare grpc.aio echo", "backend": "(b) bare grpc.aio + backend query",
                 "gateway": "(c) gateway, no rollout", "gateway+rollout": "(c) gateway, rollout at 50 %"}
        return names[self.kind] + (f", {self.size} points" if self.size else "")


@dataclass
class Run:
    kind: str
    size: int
    concurrency: int
    report: Report  # of the best round
    load: tuple[float, float, float]
    rounds: list[float] = field(default_factory=list)  # calls/s of every round
    server_cpu_s: float = 0.0  # CPU of the benchmark's process (the servers) during the best round

    @property
    def cpu_us_per_call(self) -> float:
        calls = self.report.calls + self.report.tally.warmup_calls
        return 1e6 * self.server_cpu_s / calls if calls else float("nan")

    @property
    def calls_per_s(self) -> float:
        return self.report.ok_per_s

    @property
    def latency(self) -> LatencyHistogram:
        return self.report.tally.by_code().get("OK", LatencyHistogram())

    def p(self, quantile: float) -> float:
        return self.latency.value_at(quantile) / 1e6

    @property
    def errors(self) -> int:
        return self.report.errors


def load_config(target: Target, concurrency: int, durations: Durations, seed: int) -> LoadConfig:
    return LoadConfig(target=target.address, rpc="search", vector=True, collection=target.collection, limit=10,
                      dimension=DIM, keys="uniform", key_count=10_000, concurrency=concurrency, processes=1,
                      duration_s=durations.load_s, warmup_s=durations.warmup_s, deadline_s=10.0, seed=seed)


async def measure(runner: LoadRunner, targets: Sequence[Target], concurrencies: Sequence[int], durations: Durations,
                  log=print) -> list[Run]:
    """Every (target, concurrency) once per round, rounds interleaved; keep each one's best round."""
    best: dict[tuple[str, int, int], Run] = {}
    for round_ in range(durations.rounds):
        for concurrency in concurrencies:
            for index, target in enumerate(targets):
                cpu_before = time.process_time()
                report = await runner.run(load_config(target, concurrency, durations, seed=round_ * 100 + index))
                server_cpu_s = time.process_time() - cpu_before
                key = (target.kind, target.size, concurrency)
                run = best.get(key)
                if run is None:
                    run = best[key] = Run(target.kind, target.size, concurrency, report, load_average(),
                                          server_cpu_s=server_cpu_s)
                elif report.ok_per_s > run.calls_per_s:
                    run.report, run.load, run.server_cpu_s = report, load_average(), server_cpu_s
                run.rounds.append(report.ok_per_s)
        log(f"  round {round_ + 1}/{durations.rounds} done ({loadavg_text()})")
    return list(best.values())
