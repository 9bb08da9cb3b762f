"""Gateway benchmark, rollback reaction: a rollout whose canary starts failing, driven on a manual clock
through the real gateway — when the canary has failed `min_requests_per_arm` times, how long until
ROLLED_BACK (target: within one analysis interval once the samples are in; see bench_gateway).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from bench._gateway import Dataset, Kind, ManualRig, State, analysis, unit_vectors
from searchgw.gateway.backends import FaultKind
from searchgw.gateway.client import stage

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
