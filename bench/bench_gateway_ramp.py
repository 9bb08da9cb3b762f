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
    end: float = float("inf")  # t at which the last stage's dwell ended

    def weight_at(self, t: float) -> float:
        current = 0.0
        for change, weight in zip(self.changes, self.weights):
            if t >= change:
                current = weight
        return current

    def measured(self, settle_s: float = 0.3) -> list[tuple[float, int, int]]:
        """(weight, canary calls, all calls) per stage, leaving out intervals that straddle a change."""
        rows = []
        bounds = [*self.changes[1:], self.end]
        for weight, start, end in zip(self.weights, self.changes, bounds):
            canary = total = 0
            for interval in self.intervals:
                if interval.t - interval.seconds >= start + settle_s and interval.t <= end:
                    arms = interval.tally.by_arm()
                    # a call routed to the canary that primary answered (the canary failed or was at its
                    # in-flight limit) says arm primary and fallback: it was routed to the canary
                    canary += arms.get("canary", LatencyHistogram()).count + interval.tally.fallbacks["primary"]
                    total += sum(h.count for arm, h in arms.items() if arm in ("canary", "primary"))
            rows.append((weight, canary, total))
        return rows


#: Manual-clock ticks allowed for the rollout to reach a stage's weight (a stage passes its check first).
MAX_TICKS_PER_STAGE = 30


async def advance_to(rig: ManualRig, name: str, weight: float, *, pause_s: float = 0.25) -> None:
    """Tick the controller, one manual second at a time, until the rollout's weight is `weight`: a stage
    advances after a passing check, which may take more than one tick. Each manual second is given
    `pause_s` of real traffic first, so the check has calls to judge."""
    for _ in range(MAX_TICKS_PER_STAGE):
        await asyncio.sleep(pause_s)
        rig.clock.advance(1.0)
        await rig.server.controller.tick()
        rollout = await rig.client.get_rollout(name)
        if rollout.weight_percent == weight:
            return
        if rollout.state not in (rollout.STATE_RUNNING, rollout.STATE_PAUSED):
            raise RuntimeError(f"the ramp's rollout left RUNNING: {rollout.decisions[-1].reason}")
    raise RuntimeError(f"the ramp's rollout did not reach {weight} % in {MAX_TICKS_PER_STAGE} ticks "
                       f"(at {rollout.weight_percent} %: {rollout.decisions[-1].reason})")


async def routing_ramp(runner: LoadRunner, rig: ManualRig, dataset: Dataset, *, quick: bool) -> Ramp:
    """One rollout ramped stage by stage (manual controller clock, real traffic from loadgen). Each stage
    is held `dwell_s` from the moment the rollout's weight actually changed; the last stage is never
    passed (no promotion), so every stage's routing is measured while the rollout runs."""
    weights = [5.0, 25.0, 50.0, 100.0] if quick else [1.0, 5.0, 10.0, 25.0, 50.0, 75.0, 100.0]
    dwell_s = 2.0 if quick else 4.0
    # Well under the gateway's capacity (an overloaded server would measure queueing, not routing).
    rate = 250.0 if quick else 400.0
    collection = dataset.logical("ramp")
    # Room for the ticks and the followed keys' searches (they share the gateway with the load and may
    # outlast a dwell): the load outlasts the ramp, and its tail after the last dwell is not counted.
    config = LoadConfig(target=rig.server.address, rpc="search", vector=True, collection=collection, limit=10,
                        dimension=DIM, keys="uniform", key_count=10_000, mode="open", rate=rate, processes=1,
                        duration_s=(dwell_s + 6.0) * len(weights) + 2.0, warmup_s=0.0, deadline_s=5.0, seed=3,
                        progress_interval_s=0.25)
    progress = LoadProgress()
    name = "ramp"
    rig.faults.clear()
    load = asyncio.create_task(runner.run(config, progress))
    await progress.wait_until(0.25)
    await rig.client.create_rollout(name, collection, dataset.canary, analysis=analysis(1.0, 2.0, 1),
                                    stages=[stage(w) for w in weights])
    changes = [time.time() - progress.t0]
    sticky = [f"sticky-{i}" for i in range(400 if quick else 600)]
    vector = unit_vectors(1, seed=4)[0].tolist()
    on_canary: list[set[str]] = []
    for index in range(len(weights)):
        responses = []
        for first in range(0, len(sticky), 50):
            responses += await asyncio.gather(*(rig.client.search(collection, vector=vector, limit=1, routing_key=key)
                                                for key in sticky[first:first + 50]))
        on_canary.append({key for key, r in zip(sticky, responses)
                          if r.route.arm == common_pb2.ARM_CANARY or r.route.fallback})
        await progress.wait_until(changes[-1] + dwell_s)
        if index + 1 == len(weights):
            break
        await advance_to(rig, name, weights[index + 1])
        changes.append(time.time() - progress.t0)
    # The load's tail after the last stage's dwell belongs to no stage: end the measured span there.
    changes.append(time.time() - progress.t0)
    report = await load
    left = sum(len(earlier - later) for earlier, later in zip(on_canary, on_canary[1:]))
    return Ramp(weights, changes[:-1], progress.intervals, report, len(sticky), left,
                [len(keys) / len(sticky) for keys in on_canary], end=changes[-1])
