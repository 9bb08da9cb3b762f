"""What the gateway benchmarks share: the data sets, the gateway's settings and analysis policies, a
gateway on a manual clock (`ManualRig`), and loadgen's progress on one time axis.

The scenarios: bench_gateway_load (Search against bare grpc.aio servers), bench_gateway_rollback
(rollback reaction on a manual clock), bench_gateway_timeline (an auto-rollback under load on the real
clock), bench_gateway_ramp (a routing ramp); bench_gateway runs them all and checks the targets.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.bench_backends import DIM, fill, unit_vectors
from searchgw.gateway.backends import EdgeBackend, FaultInjectingBackend
from searchgw.gateway.client import GatewayClient
from searchgw.gateway.server import GatewayServer, create_server
from searchgw.gateway.settings import GatewaySettings
from searchgw.loadgen import Tally
from searchgw.testing import ManualClock
from searchgw.v1 import rollout_service_pb2 as roll_pb
from searchgw.v1 import search_service_pb2 as search_pb

SIZES = (1_000, 20_000)
CONCURRENCY = 16  # the throughput runs; latency runs use one caller

State = roll_pb.Rollout
Kind = roll_pb.Decision


@dataclass(frozen=True)
class Durations:
    load_s: float
    warmup_s: float
    rounds: int
    routing_calls: int
    rollback_phases: tuple[float, ...]  # where in an analysis interval the fault begins

    @classmethod
    def for_mode(cls, quick: bool) -> Durations:
        if quick:
            return cls(load_s=2.0, warmup_s=0.5, rounds=1, routing_calls=20_000, rollback_phases=(0.5,))
        return cls(load_s=4.0, warmup_s=1.0, rounds=3, routing_calls=300_000, rollback_phases=(0.1, 0.5, 0.9))


# -- data ------------------------------------------------------------------------------------------
class SharedBackend:
    """A backend several servers use in turn: everything passes through except `close()`, which the
    benchmark does once at the end (a gateway closes its backend when it stops)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.kind = inner.kind

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def close(self) -> None:
        pass


@dataclass(frozen=True)
class Dataset:
    """One size: primary and canary physical collections (different random points), and logical
    names pointing at primary — `plain` never gets a rollout, `canary` gets one at 50 %."""

    size: int
    primary: str
    canary: str
    upsert_s: float
    optimize_s: float

    @property
    def plain(self) -> str:
        return f"plain-{self.size}"

    @property
    def rollout(self) -> str:
        return f"rollout-{self.size}"

    def logical(self, purpose: str) -> str:
        return f"{purpose}-{self.size}"


async def build_dataset(backend: EdgeBackend, size: int, *, extra_aliases: Sequence[str] = ()) -> Dataset:
    upsert_s = optimize_s = 0.0
    names = (f"docs-{size}-v1", f"docs-{size}-v2")
    for seed, name in enumerate(names, start=1):
        upsert_s += await fill(backend, name, unit_vectors(size, seed=seed))
        started = time.perf_counter()
        await backend.optimize(name)
        optimize_s += time.perf_counter() - started
    dataset = Dataset(size, names[0], names[1], upsert_s, optimize_s)
    for alias in (dataset.plain, dataset.rollout, *(dataset.logical(p) for p in extra_aliases)):
        await backend.update_alias(alias, dataset.primary)
    return dataset



def gateway_settings(data_dir: Path, **overrides: Any) -> GatewaySettings:
    values: dict[str, Any] = dict(port=0, metrics_port=-1, data_dir=data_dir, grace_period_s=0.5,
                                  log_level="error", page_token_secret="bench")
    values.update(overrides)
    return GatewaySettings(**values)


def analysis(interval_s: float, window_s: float, min_requests: int, consecutive: int = 3,
             total: int | None = None) -> roll_pb.AnalysisPolicy:
    policy = roll_pb.AnalysisPolicy(min_requests_per_arm=min_requests, max_consecutive_failures=consecutive,
                                    max_total_failures=total or max(consecutive, 5))
    policy.interval.FromMilliseconds(round(interval_s * 1000))
    policy.window.FromMilliseconds(round(window_s * 1000))
    return policy


# -- a gateway on a manual clock -----------------------------------------------------------------------
class ManualRig:
    """A gateway whose rollout controller runs on a manual clock (also its decision times), over the
    shared backend with faults injectable; the benchmark ticks it."""

    def __init__(self, server: GatewayServer, faults: FaultInjectingBackend, clock: ManualClock) -> None:
        self.server = server
        self.faults = faults
        self.clock = clock
        self.client = GatewayClient(server.address)

    @classmethod
    async def start(cls, backend: EdgeBackend, data_dir: Path) -> ManualRig:
        faults = FaultInjectingBackend(SharedBackend(backend))
        clock = ManualClock()
        server = await create_server(gateway_settings(data_dir), backend=faults, rollout_clock=clock,
                                     wall_clock=clock, run_controller=False)
        return cls(server, faults, clock)

    async def close(self) -> None:
        await self.client.close()
        await self.server.stop(0)

    async def step(self, collection: str, vectors: np.ndarray, rng: random.Random, calls: int,
                   seconds: float) -> tuple[list[search_pb.SearchResponse], int]:
        """`calls` concurrent searches with random keys, then `seconds` of manual time and a tick."""
        results = await asyncio.gather(*(
            self.client.search(collection, vector=vectors[rng.randrange(len(vectors))].tolist(), limit=10,
                               routing_key=f"user-{rng.randrange(1_000_000)}")
            for _ in range(calls)), return_exceptions=True)
        self.clock.advance(seconds)
        await self.server.controller.tick()
        responses = [r for r in results if isinstance(r, search_pb.SearchResponse)]
        return responses, len(results) - len(responses)


# -- loadgen's progress ----------------------------------------------------------------------------------
@dataclass
class Interval:
    """One loadgen progress interval: what the clients saw."""

    t: float  # seconds since the load began, at the interval's end
    seconds: float
    tally: Tally


class LoadProgress:
    """Collects loadgen's progress intervals on one time axis (seconds since the load began)."""

    def __init__(self) -> None:
        self.t0: float | None = None
        self.started = asyncio.Event()
        self.intervals: list[Interval] = []
        self._last = 0.0

    def __call__(self, wall: float, progress: Any) -> None:
        if self.t0 is None:
            self.t0 = wall - progress.elapsed_s
            self.started.set()
        t = wall - self.t0
        self.intervals.append(Interval(t, t - self._last, progress.interval))
        self._last = t

    async def wait_until(self, t: float) -> None:
        await self.started.wait()
        await asyncio.sleep(max(0.0, self.t0 + t - time.time()))
