"""Gateway scenario for the report: an auto-rollback under open-loop loadgen traffic on the real clock
(decisions from WatchRollout, client-side numbers from loadgen's per-interval progress).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from pathlib import Path

from bench._common import LoadRunner
from bench._gateway import (
    DIM,
    Dataset,
    Interval,
    Kind,
    LoadProgress,
    SharedBackend,
    State,
    analysis,
    gateway_settings,
)
from searchgw.gateway.backends import EdgeBackend, FaultInjectingBackend, FaultKind
from searchgw.gateway.client import GatewayClient, stage
from searchgw.gateway.server import create_server
from searchgw.loadgen import LoadConfig, Report
from searchgw.v1 import rollout_service_pb2 as roll_pb

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
    progress = LoadProgress()
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
