"""Gateway benchmark (issue 3 §8): Search by vector through the gateway against bare grpc.aio servers.

    .venv/bin/python -m bench.bench_gateway [--quick] [--scenarios]

In one run, with loadgen (`rpc=search --vector`, uniform routing keys) in a process of its own and
the same concurrency for every server:

(a) echo: a bare grpc.aio server whose Search answers an empty SearchResponse at once;
(b) backend: a bare grpc.aio server whose Search does nothing but the same backend query
    (EdgeBackend.search, limit 10) and turns the hits into the same response points;
(c) the gateway (`gateway.server.create_server`, tracing on as deployed, metrics, the rollout
    controller running) — searched through a logical collection with no rollout, and through one
    with an active rollout at 50 % canary whose stages never advance during the run;

each on a 1 000-point and a 20 000-point x 384 edge collection (HNSW built with `optimize`), one
caller (latency) and 16 callers (throughput). Every configuration is run once per round, rounds
interleaved; a configuration's figure is its best round, which keeps other load on a shared
machine out of the ratios. Also: route decision time (bench_routing), and the rollback reaction —
a rollout whose canary starts failing, driven on a manual clock through the real gateway: when the
canary has failed `min_requests_per_arm` times, how long until ROLLED_BACK.

Targets: (c) >= 0.80 x (b); on 1 000 points (c) >= 0.60 x (a); (c) p50 <= (b) p50 + 0.5 ms at one
caller; <= 2 µs per route decision; rollback within one analysis interval once the samples are in.

`--scenarios` also runs what the report plots: an auto-rollback under loadgen traffic on the real
clock, and a routing ramp (measured canary share against the configured weight).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from bench._common import LoadRunner, Machine, configure_like_production, load_average, loadavg_text
from bench._common import print_table, verdict
from bench.bench_routing import bench_routing
from searchgw.gateway.backends import CollectionSpec, EdgeBackend, FaultInjectingBackend, FaultKind, Point, SearchQuery
from searchgw.gateway.client import GatewayClient, stage
from searchgw.gateway.server import GatewayServer, create_server
from searchgw.gateway.services.convert import scored_point_to_proto
from searchgw.gateway.settings import GatewaySettings
from searchgw.loadgen import LatencyHistogram, LoadConfig, Report, Tally
from searchgw.v1 import common_pb2
from searchgw.v1 import rollout_service_pb2 as roll_pb
from searchgw.v1 import search_service_pb2 as search_pb
from searchgw.v1 import search_service_pb2_grpc as search_grpc
from searchgw.testing import ManualClock

DIM = 384
SIZES = (1_000, 20_000)
CONCURRENCY = 16  # the throughput runs; latency runs use one caller
UPSERT_BATCH = 1_000
#: Targets.
TARGET_VS_BACKEND = 0.80
TARGET_VS_ECHO_1K = 0.60
TARGET_ADDED_P50_MS = 0.5
TARGET_DECISION_NS = 2_000
ROUTE_KEY = "route, active rollout (50 %)"

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


def unit_vectors(count: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((count, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


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


async def fill(backend: EdgeBackend, name: str, vectors: np.ndarray) -> float:
    await backend.create_collection(CollectionSpec(name=name, dimension=DIM))
    started = time.perf_counter()
    for first in range(0, len(vectors), UPSERT_BATCH):
        chunk = vectors[first:first + UPSERT_BATCH]
        await backend.upsert(name, [Point(id=first + i, vector=v) for i, v in enumerate(chunk)])
    return time.perf_counter() - started


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


# -- rollback reaction (manual clock) -------------------------------------------------------------------
@dataclass
class RollbackTrial:
    consecutive: int  # the policy's max_consecutive_failures
    interval_s: float
    window_s: float
    min_requests: int
    phase: float  # where in an analysis interval the fault began (0..1)
    fault_at: float  # manual seconds from the rollout's start
    samples_at: float  # when the canary had failed min_requests times
    first_failed_at: float | None
    rolled_back_at: float | None
    failed_checks: int
    client_errors: int  # calls that failed for the client (fallback should keep this at 0)
    fallbacks: int

    @property
    def reaction_s(self) -> float:
        """From the moment the evidence was in (min samples of the failing canary) to ROLLED_BACK."""
        return float("inf") if self.rolled_back_at is None else self.rolled_back_at - self.samples_at

    @property
    def reaction_intervals(self) -> float:
        return self.reaction_s / self.interval_s

    @property
    def from_fault_intervals(self) -> float:
        return float("inf") if self.rolled_back_at is None else (self.rolled_back_at - self.fault_at) / self.interval_s


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


async def rollback_trial(rig: ManualRig, dataset: Dataset, name: str, *, consecutive: int, phase: float,
                         interval_s: float = 10.0, window_s: float = 30.0, min_requests: int = 50,
                         rate: float = 100.0, step_s: float = 0.5) -> RollbackTrial:
    """A rollout at 50 % on `dataset`; traffic at `rate` calls/s of manual time; the canary starts failing
    `phase` of the way into an analysis interval once the window is full; run until ROLLED_BACK."""
    rig.faults.clear()
    collection = dataset.logical("manual")
    client = rig.client
    await client.create_rollout(name, collection, dataset.canary, analysis=analysis(interval_s, window_s, min_requests,
                                                                                    consecutive),
                                stages=[stage(50, 30 * 24 * 3600.0, 0), stage(100)])
    started = rig.clock.now
    vectors = unit_vectors(256, seed=9)
    rng = random.Random(f"{name}")
    calls = round(rate * step_s)
    fault_at = window_s + interval_s * (1 + phase)  # checks fall at multiples of the interval
    fallbacks = errors = 0
    samples_at = None
    while rig.clock.now - started < fault_at:
        _, failed = await rig.step(collection, vectors, rng, calls, step_s)
        errors += failed
    rig.faults.inject(dataset.canary, error=FaultKind.UNAVAILABLE, operations={"search"})
    fault_time = rig.clock.now - started
    for _ in range(int(10 * interval_s * consecutive / step_s)):
        responses, failed = await rig.step(collection, vectors, rng, calls, step_s)
        errors += failed
        fallbacks += sum(r.route.fallback for r in responses)
        if samples_at is None and fallbacks >= min_requests:
            # The failures of this step were made before the clock moved; they were in at its start.
            samples_at = rig.clock.now - step_s - started
        rollout = await client.get_rollout(name)
        if rollout.state != State.STATE_RUNNING:
            break
    rollout = await client.get_rollout(name)
    rig.faults.clear()

    def at(kind: int) -> float | None:
        times = [d.time.ToMilliseconds() / 1e3 - started for d in rollout.decisions if d.kind == kind]
        return times[0] if times else None

    return RollbackTrial(consecutive=consecutive, interval_s=interval_s, window_s=window_s, min_requests=min_requests,
                         phase=phase, fault_at=fault_time, samples_at=samples_at if samples_at is not None else fault_time,
                         first_failed_at=at(Kind.KIND_CHECK_FAILED), rolled_back_at=at(Kind.KIND_ROLLED_BACK),
                         failed_checks=sum(d.kind == Kind.KIND_CHECK_FAILED for d in rollout.decisions),
                         client_errors=errors, fallbacks=fallbacks)


# -- scenarios for the report (real-time rollback, routing ramp) -------------------------------------------
@dataclass
class Interval:
    """One loadgen progress interval: what the clients saw."""

    t: float  # seconds since the load began, at the interval's end
    seconds: float
    tally: Tally


@dataclass
class DecisionPoint:
    t: float
    kind: str  # e.g. ADVANCED, CHECK_FAILED, ROLLED_BACK
    weight: float
    primary: tuple[int, float, float | None] | None  # requests, error rate, p95 seconds (analysis window)
    canary: tuple[int, float, float | None] | None
    reason: str


def _arm_stats(message: roll_pb.ArmStats, present: bool) -> tuple[int, float, float | None] | None:
    if not present:
        return None
    latency = message.latency_seconds if message.HasField("latency_seconds") else None
    return message.requests, message.error_rate, latency


def _decision_point(decision: roll_pb.Decision, t0: float) -> DecisionPoint:
    return DecisionPoint(t=decision.time.ToMilliseconds() / 1e3 - t0, kind=Kind.Kind.Name(decision.kind)[5:],
                         weight=decision.weight_percent, primary=_arm_stats(decision.primary, decision.HasField("primary")),
                         canary=_arm_stats(decision.canary, decision.HasField("canary")), reason=decision.reason)


@dataclass
class Timeline:
    """An auto-rollback under loadgen traffic on the real clock."""

    rate: float
    interval_s: float
    window_s: float
    min_requests: int
    consecutive: int
    fault_at: float
    intervals: list[Interval]
    decisions: list[DecisionPoint]
    report: Report
    final_state: str

    def rolled_back_at(self) -> float | None:
        return next((d.t for d in self.decisions if d.kind == "ROLLED_BACK"), None)


class _Progress:
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


async def rollback_timeline(runner: LoadRunner, backend: EdgeBackend, dataset: Dataset, data_dir: Path, *,
                            quick: bool) -> Timeline:
    """A rollout 10 % → 30 % → 60 % on the real clock under open-loop loadgen traffic; the canary starts
    failing in the middle of the 30 % stage; the controller rolls it back. Decisions come from
    WatchRollout, client-side numbers from loadgen's per-interval progress."""
    faults = FaultInjectingBackend(SharedBackend(backend))
    server = await create_server(gateway_settings(data_dir, controller_tick_s=0.1), backend=faults)
    client = GatewayClient(server.address)
    interval_s, window_s, min_requests, consecutive = 1.0, 3.0, 30, 2
    rate = 250.0
    start_at, stage1_s, fault_after_s, tail_s = 1.0, 3.0, 2.5, 3.0
    duration = start_at + stage1_s + 1.0 + fault_after_s + interval_s * (consecutive + 1) + tail_s
    collection = dataset.logical("timeline")
    config = LoadConfig(target=server.address, rpc="search", vector=True, collection=collection, limit=10,
                        dimension=DIM, keys="uniform", key_count=10_000, mode="open", rate=rate, processes=1,
                        duration_s=duration, warmup_s=0.0, deadline_s=5.0, seed=5, progress_interval_s=0.25)
    progress = _Progress()
    decisions: list[roll_pb.Decision] = []
    name = "timeline"
    try:
        load = asyncio.create_task(runner.run(config, progress))
        await progress.wait_until(start_at)
        await client.create_rollout(name, collection, dataset.canary,
                                    analysis=analysis(interval_s, window_s, min_requests, consecutive),
                                    stages=[stage(10, stage1_s, 50), stage(30, 3600, 0), stage(60)])

        async def watch() -> None:
            async for message in client.watch_rollout(name):
                if message.HasField("decision"):
                    decisions.append(message.decision)

        watcher = asyncio.create_task(watch())
        # Fault in the middle of the 30 % stage: wait for the advance, then a while.
        while not any(d.kind == Kind.KIND_ADVANCED for d in decisions) and not load.done():
            await asyncio.sleep(0.05)
        await asyncio.sleep(fault_after_s)
        faults.inject(dataset.canary, error=FaultKind.UNAVAILABLE, operations={"search"})
        fault_at = time.time() - progress.t0
        report = await load
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(watcher, 1.0)
        watcher.cancel()
        rollout = await client.get_rollout(name)
        history = list(rollout.decisions)  # GetRollout: the whole history (the stream may have ended early)
    finally:
        await client.close()
        await server.stop(0)
    points = [_decision_point(d, progress.t0) for d in history]
    return Timeline(rate, interval_s, window_s, min_requests, consecutive, fault_at, progress.intervals, points, report,
                    State.State.Name(rollout.state)[6:])


@dataclass
class Ramp:
    """Canary share measured by loadgen against the configured weight, stage by stage."""

    weights: list[float]
    changes: list[float]  # t of each weight change (seconds since the load began)
    intervals: list[Interval]
    report: Report
    sticky_keys: int  # keys followed through every stage
    left_canary: int  # of those, times a key on the canary went back to primary as the weight rose
    sticky_shares: list[float]  # share of the followed keys on the canary, per stage

    def weight_at(self, t: float) -> float:
        current = 0.0
        for change, weight in zip(self.changes, self.weights):
            if t >= change:
                current = weight
        return current

    def measured(self, settle_s: float = 0.3) -> list[tuple[float, int, int]]:
        """(weight, canary calls, all calls) per stage, leaving out intervals that straddle a change."""
        rows = []
        bounds = [*self.changes[1:], float("inf")]
        for weight, start, end in zip(self.weights, self.changes, bounds):
            canary = total = 0
            for interval in self.intervals:
                if interval.t - interval.seconds >= start + settle_s and interval.t <= end:
                    arms = interval.tally.by_arm()
                    canary += arms.get("canary", LatencyHistogram()).count
                    total += sum(h.count for arm, h in arms.items() if arm in ("canary", "primary"))
            rows.append((weight, canary, total))
        return rows


async def routing_ramp(runner: LoadRunner, rig: ManualRig, dataset: Dataset, *, quick: bool) -> Ramp:
    """One rollout ramped stage by stage (manual controller clock, real traffic from loadgen)."""
    weights = [5.0, 25.0, 50.0, 100.0] if quick else [1.0, 5.0, 10.0, 25.0, 50.0, 75.0, 100.0]
    dwell_s = 2.0 if quick else 4.0
    # Well under the gateway's capacity (an overloaded server would measure queueing, not routing).
    rate = 250.0 if quick else 400.0
    collection = dataset.logical("ramp")
    config = LoadConfig(target=rig.server.address, rpc="search", vector=True, collection=collection, limit=10,
                        dimension=DIM, keys="uniform", key_count=10_000, mode="open", rate=rate, processes=1,
                        duration_s=dwell_s * len(weights) + 0.5, warmup_s=0.0, deadline_s=5.0, seed=3,
                        progress_interval_s=0.25)
    progress = _Progress()
    name = "ramp"
    rig.faults.clear()
    load = asyncio.create_task(runner.run(config, progress))
    await progress.wait_until(0.25)
    await rig.client.create_rollout(name, collection, dataset.canary, analysis=analysis(1.0, 2.0, 1),
                                    stages=[stage(w) for w in weights])
    changes = [time.time() - progress.t0]
    sticky = [f"sticky-{i}" for i in range(400 if quick else 1000)]
    vector = unit_vectors(1, seed=4)[0].tolist()
    on_canary: list[set[str]] = []
    for index in range(len(weights)):
        responses = []
        for first in range(0, len(sticky), 50):
            responses += await asyncio.gather(*(rig.client.search(collection, vector=vector, limit=1, routing_key=key)
                                                for key in sticky[first:first + 50]))
        on_canary.append({key for key, r in zip(sticky, responses) if r.route.arm == common_pb2.ARM_CANARY})
        if index + 1 == len(weights):
            break
        await progress.wait_until(0.25 + dwell_s * (index + 1))
        rig.clock.advance(1.0)
        await rig.server.controller.tick()
        changes.append(time.time() - progress.t0)
    report = await load
    left = sum(len(earlier - later) for earlier, later in zip(on_canary, on_canary[1:]))
    return Ramp(weights, changes, progress.intervals, report, len(sticky), left,
                [len(keys) / len(sticky) for keys in on_canary])


# -- the whole benchmark ---------------------------------------------------------------------------------
@dataclass
class Goal:
    name: str
    value: str
    goal: str
    ok: bool


@dataclass
class GatewayResults:
    machine: Machine
    quick: bool
    durations: Durations
    datasets: dict[int, Dataset]
    runs: list[Run]
    routing_ns: dict[str, float]
    trials: list[RollbackTrial]
    timeline: Timeline | None = None
    ramp: Ramp | None = None

    def run(self, kind: str, size: int, concurrency: int) -> Run:
        return next(r for r in self.runs if (r.kind, r.size, r.concurrency) == (kind, size, concurrency))

    def goals(self) -> list[Goal]:
        goals = []
        for size in self.datasets:
            gateway, backend = self.run("gateway+rollout", size, CONCURRENCY), self.run("backend", size, CONCURRENCY)
            ratio = gateway.calls_per_s / backend.calls_per_s
            goals.append(Goal(f"{size} points, {CONCURRENCY} callers: gateway (50 % canary) / (b) backend-only calls/s",
                              f"{ratio:.2f}x", f">= {TARGET_VS_BACKEND:.2f}x", ratio >= TARGET_VS_BACKEND))
        if 1_000 in self.datasets:
            gateway, echo = self.run("gateway+rollout", 1_000, CONCURRENCY), self.run("echo", 0, CONCURRENCY)
            ratio = gateway.calls_per_s / echo.calls_per_s
            goals.append(Goal(f"1000 points, {CONCURRENCY} callers: gateway (50 % canary) / (a) echo calls/s",
                              f"{ratio:.2f}x", f">= {TARGET_VS_ECHO_1K:.2f}x", ratio >= TARGET_VS_ECHO_1K))
        for size in self.datasets:
            added = self.run("gateway+rollout", size, 1).p(0.5) - self.run("backend", size, 1).p(0.5)
            goals.append(Goal(f"{size} points, 1 caller: gateway p50 - (b) p50", f"{added:+.2f} ms",
                              f"<= {TARGET_ADDED_P50_MS} ms", added <= TARGET_ADDED_P50_MS))
        decision = self.routing_ns[ROUTE_KEY]
        goals.append(Goal("route decision, active rollout", f"{decision / 1e3:.2f} µs",
                          f"<= {TARGET_DECISION_NS / 1e3:.0f} µs", decision <= TARGET_DECISION_NS))
        strict = [t for t in self.trials if t.consecutive == 1]
        if strict:
            worst = max(t.reaction_intervals for t in strict)
            goals.append(Goal("rollback after min samples (1 failed check rolls back), worst phase",
                              f"{worst:.2f} intervals", "<= 1 interval", worst <= 1.0))
        return goals


async def run(quick: bool = False, *, runner: LoadRunner | None = None, scenarios: bool = False,
              log=print) -> GatewayResults:
    """The whole gateway benchmark; `runner` may be shared with other benchmarks."""
    configure_like_production()
    durations = Durations.for_mode(quick)
    machine = Machine.now()
    log(f"gateway benchmark ({'quick' if quick else 'full'}), {machine.line()}, {loadavg_text()}")
    own_runner = runner is None
    runner = runner or LoadRunner()
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp:
        root = Path(tmp)
        backend = EdgeBackend(root / "edge")
        servers: list[Any] = []
        try:
            datasets = {}
            for size in SIZES:
                datasets[size] = await build_dataset(backend, size, extra_aliases=("manual", "timeline", "ramp"))
                log(f"  {size} points x2: upsert {datasets[size].upsert_s:.1f} s, "
                    f"optimize {datasets[size].optimize_s:.1f} s")
            echo, echo_address = await start_bare_server(EchoSearch())
            bare, bare_address = await start_bare_server(BackendSearch(backend))
            servers += [echo, bare]
            gateway = await create_server(gateway_settings(root / "gateway"), backend=SharedBackend(backend))
            async with GatewayClient(gateway.address) as client:
                for dataset in datasets.values():
                    await client.create_rollout(f"bench-{dataset.size}", dataset.rollout, dataset.canary,
                                                analysis=analysis(10.0, 60.0, 50),
                                                stages=[stage(50, 30 * 24 * 3600.0, 0), stage(100)])
            targets = [Target("echo", 0, echo_address, "any")]
            for dataset in datasets.values():
                targets += [Target("backend", dataset.size, bare_address, dataset.plain),
                            Target("gateway", dataset.size, gateway.address, dataset.plain),
                            Target("gateway+rollout", dataset.size, gateway.address, dataset.rollout)]
            runs = await measure(runner, targets, (1, CONCURRENCY), durations, log=log)
            await gateway.stop(0)
            for server in servers:
                await server.stop(0)
            servers.clear()

            routing = await asyncio.to_thread(bench_routing, durations.routing_calls)
            rig = await ManualRig.start(backend, root / "manual")
            try:
                trials = []
                small = datasets[SIZES[0]]
                for consecutive in (1, 3):
                    for phase in durations.rollback_phases:
                        trials.append(await rollback_trial(rig, small, f"rb-{consecutive}-{round(phase * 100)}",
                                                           consecutive=consecutive, phase=phase))
                log(f"  rollback trials done ({loadavg_text()})")
                results = GatewayResults(machine, quick, durations, datasets, runs, routing, trials)
                if scenarios:
                    results.ramp = await routing_ramp(runner, rig, small, quick=quick)
                    log(f"  routing ramp done ({loadavg_text()})")
            finally:
                await rig.close()
            if scenarios:
                results.timeline = await rollback_timeline(runner, backend, small, root / "timeline", quick=quick)
                log(f"  rollback timeline done ({loadavg_text()})")
        finally:
            for server in servers:
                await server.stop(0)
            await backend.close()
            if own_runner:
                runner.close()
    return results


def print_results(results: GatewayResults) -> None:
    print(f"\nGateway, {results.machine.line()}; {loadavg_text()} at the end; best of {results.durations.rounds} "
          f"round(s) of {results.durations.load_s:g} s per configuration")
    for size, dataset in results.datasets.items():
        print(f"  {size} points x 384 (x2 arms): upsert {dataset.upsert_s:.1f} s, HNSW build {dataset.optimize_s:.1f} s")
    for concurrency in (CONCURRENCY, 1):
        echo = results.run("echo", 0, concurrency)
        print(f"\n{concurrency} caller(s), loadgen in its own process")
        rows = []
        for run_ in sorted((r for r in results.runs if r.concurrency == concurrency), key=lambda r: (r.size, r.kind)):
            backend = results.run("backend", run_.size, concurrency) if run_.size else None
            rows.append([Target(run_.kind, run_.size, "", "").label, f"{run_.calls_per_s:.0f}",
                         f"{run_.calls_per_s / echo.calls_per_s:.2f}",
                         f"{run_.calls_per_s / backend.calls_per_s:.2f}" if backend else "",
                         f"{run_.p(0.5):.2f}", f"{run_.p(0.99):.2f}",
                         f"{run_.p(0.5) - backend.p(0.5):+.2f}" if backend else "",
                         f"{run_.cpu_us_per_call:.0f}", f"{100 * run_.report.cpu_share:.0f} %", f"{run_.load[0]:.2f}",
                         " ".join(f"{x:.0f}" for x in run_.rounds) + (f" ({run_.errors} errors)" if run_.errors else "")])
        print_table(rows, ["", "calls/s", "/ (a)", "/ (b)", "p50 ms", "p99 ms", "p50 - (b)", "server CPU µs/call",
                           "loadgen CPU", "load", "rounds calls/s"])
    print("\nroute decision")
    for name, ns in results.routing_ns.items():
        if name.startswith("route") or name.startswith("resolve"):
            print(f"  {name:<36} {ns:8.0f} ns")
    print("\nrollback reaction (manual clock, real gateway and requests; canary search UNAVAILABLE)")
    rows = [[f"max {t.consecutive} consecutive, fault at {t.phase:.0%} of an interval",
             f"{t.fault_at:.1f}", f"{t.samples_at:.1f}", f"{t.first_failed_at:.1f}" if t.first_failed_at else "-",
             f"{t.rolled_back_at:.1f}" if t.rolled_back_at else "never", f"{t.reaction_s:.1f}",
             f"{t.reaction_intervals:.2f}", f"{t.from_fault_intervals:.2f}", str(t.client_errors)]
            for t in results.trials]
    print_table(rows, ["policy (interval 10 s, window 30 s, 50 per arm)", "fault s", "samples in s", "1st failed s",
                       "rolled back s", "reaction s", "intervals", "from fault", "client errors"])
    if results.ramp is not None:
        ramp = results.ramp
        print("\nrouting ramp: canary share measured by loadgen (uniform keys over 10 000)")
        rows = [[f"{weight:g} %", f"{100 * canary / total:.2f} %" if total else "-", str(total),
                 f"{100 * share:.1f} %"]
                for (weight, canary, total), share in zip(ramp.measured(), ramp.sticky_shares)]
        print_table(rows, ["configured", "measured", "calls", f"of {ramp.sticky_keys} followed keys"])
        print(f"  followed keys that left the canary as the weight rose: {ramp.left_canary}")
    if results.timeline is not None:
        timeline = results.timeline
        print(f"\nauto-rollback under load: fault at {timeline.fault_at:.1f} s, rolled back at "
              f"{timeline.rolled_back_at() or float('nan'):.1f} s, final state {timeline.final_state}, client errors "
              f"{timeline.report.errors} of {timeline.report.calls}, fallbacks {sum(timeline.report.tally.fallbacks.values())}")
        for point in timeline.decisions:
            print(f"  {point.t:6.2f} s  {point.kind:<14} weight {point.weight:5.1f} %  {point.reason[:110]}")
    print("\nTargets")
    for goal in results.goals():
        print(f"  {verdict(goal.ok):<6} {goal.name}: {goal.value} (target {goal.goal})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one short round (a smoke test)")
    parser.add_argument("--scenarios", action="store_true", help="also the real-time rollback and the routing ramp")
    args = parser.parse_args()
    print_results(asyncio.run(run(args.quick, scenarios=args.scenarios)))


if __name__ == "__main__":
    main()
