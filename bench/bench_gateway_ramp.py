"""Gateway scenario for the report: a routing ramp — one rollout ramped stage by stage (manual controller
clock, real traffic from loadgen), the canary share measured against the configured weight.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from bench._common import LoadRunner
from bench._gateway import DIM, Dataset, Interval, LoadProgress, ManualRig, analysis, unit_vectors
from searchgw.gateway.client import stage
from searchgw.loadgen import LatencyHistogram, LoadConfig, Report
from searchgw.v1 import common_pb2

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
    progress = LoadProgress()
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
