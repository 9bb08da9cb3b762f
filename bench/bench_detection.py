"""Detection against the real gateway: how long a broken canary serves, and what clients see meanwhile.

    .venv/bin/python -m bench.bench_detection [--quick]

A live gateway on loopback (embedded qdrant-edge, two small real collections of random unit vectors,
vector searches), a rollout at 5 % with a 2 s analysis interval, open-loop keyed load (~100 calls/s,
10,000 uniform keys, 250 ms deadline) from loadgen in a child process. Both arms' searches take a
lognormal time (median 4 ms, σ 0.4: an engine doing work) and primary fails 0.5 % of its searches.
Scenarios, each a new rollout, the fault switched on as the rollout starts:

  A/A        the canary exactly like primary: must not roll back;
  errors     the canary fails 5 % of searches (primary 0.5 %);
  latency    the canary's searches take 1.5 × as long;
  deadline   the canary's searches take 0.5 s, past every caller's 250 ms deadline.

Measured: the time from the fault's start to ROLLED_BACK (real clock) and in analysis intervals;
the calls clients saw fail (fallback to primary should answer the canary's failures); and, on the
very calls the gateway recorded for the rollout (`RolloutController.record` is tapped), what the
default policy (10 s interval) and the old rule (10 s checks on a 60 s window, 3 in a row) would have
decided — the simulation of bench/_rollout_sim.py on the live run's counts.

Bounded: 4 scenarios × 40 s of load (20 s with --quick) plus set-up, under 4 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from bench._common import LoadRunner, Machine, configure_like_production, loadavg_text, print_table
from bench._rollout_sim import B, OLD_POLICY, Scenario, StageCounts, old_rule, run_new_rule
from bench._gateway import DIM, SharedBackend, build_dataset, gateway_settings
from searchgw.gateway.backends import EdgeBackend, FaultInjectingBackend
from searchgw.gateway.client import GatewayClient, stage
from searchgw.gateway.rollout.analysis import bucket_latency, latency_bucket
from searchgw.gateway.rollout.model import DEFAULT_ERROR_CODES, AnalysisPolicy
from searchgw.gateway.routing import Arm
from searchgw.gateway.server import create_server
from searchgw.loadgen import LoadConfig, Report
from searchgw.errors import Unavailable
from searchgw.v1 import rollout_service_pb2 as roll_pb

ResultT = TypeVar("ResultT")

RATE = 100.0
WEIGHT = 5.0
INTERVAL_S = 2.0
DEADLINE_S = 0.25
SEARCH_MEDIAN_S, SEARCH_SIGMA = 0.004, 0.4
PRIMARY_ERRORS = 0.005
SIZE = 2_000
_ERROR_CODES = frozenset(DEFAULT_ERROR_CODES)


@dataclass
class Behaviour:
    """How one collection's searches behave: a lognormal time × factor, then a failure with `error_rate`."""

    error_rate: float = PRIMARY_ERRORS
    latency_factor: float = 1.0
    #: A fixed time instead (the deadline scenario).
    fixed_delay_s: float | None = None


class ScenarioBackend(FaultInjectingBackend):
    """The fault-injecting backend, plus per-collection random search times and random failures."""

    def __init__(self, inner: Any, seed: int) -> None:
        super().__init__(inner)
        self.behaviour: dict[str, Behaviour] = {}
        self._random = random.Random(seed)

    async def _call(self, operation: str, collection: str, call: Callable[[], Awaitable[ResultT]]) -> ResultT:
        behaviour = self.behaviour.get(collection)
        if behaviour is not None and operation == "search":
            delay = behaviour.fixed_delay_s
            if delay is None:
                delay = (SEARCH_MEDIAN_S * math.exp(SEARCH_SIGMA * self._random.gauss(0.0, 1.0))
                         * behaviour.latency_factor)
            await asyncio.sleep(delay)
            if self._random.random() < behaviour.error_rate:
                raise Unavailable(f"injected fault: search on {collection!r} failed")
        return await super()._call(operation, collection, call)


@dataclass
class Tap:
    """The calls the gateway recorded for the rollout, per second since `start` and per arm."""

    seconds: int
    start: float = 0.0
    rollout: str = ""
    calls: np.ndarray = field(init=False)
    errors: np.ndarray = field(init=False)
    new_keys: np.ndarray = field(init=False)
    all_hist: np.ndarray = field(init=False)
    ok_hist: np.ndarray = field(init=False)
    codes: dict[str, int] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.reset("", 0.0)

    def reset(self, rollout: str, start: float) -> None:
        self.rollout, self.start = rollout, start
        self.calls = np.zeros((self.seconds, 2), dtype=np.int64)
        self.errors = np.zeros_like(self.calls)
        self.new_keys = np.zeros_like(self.calls)
        self.all_hist = np.zeros((self.seconds, 2, B), dtype=np.int64)
        self.ok_hist = np.zeros_like(self.all_hist)
        self.codes = {}
        self.seen = set()

    def record(self, rollout: str, arm: Arm, code: str, latency_s: float, key: str) -> None:
        if rollout != self.rollout:
            return
        second = int(time.monotonic() - self.start)
        if not 0 <= second < self.seconds:
            return
        side = 1 if arm is Arm.CANARY else 0
        bucket = latency_bucket(latency_s)
        self.calls[second, side] += 1
        self.all_hist[second, side, bucket] += 1
        self.codes[f"{arm.value}:{code}"] = self.codes.get(f"{arm.value}:{code}", 0) + 1
        if code in _ERROR_CODES:
            self.errors[second, side] += 1
        elif code == "OK":
            self.ok_hist[second, side, bucket] += 1
        if key and key not in self.seen:
            self.seen.add(key)
            self.new_keys[second, side] += 1

    def counts(self, seconds: int) -> StageCounts:
        scenario = Scenario(rate=RATE, weight_percent=WEIGHT, seconds=seconds)
        # Calls ending in a code outside the policy's error codes (e.g. CANCELLED) are neither errors
        # nor successes; left out here (the gateway's analysis counts them as calls, not errors).
        ok = self.ok_hist[:seconds].sum(axis=2)
        calls = ok + self.errors[:seconds]
        return StageCounts(scenario, calls, self.errors[:seconds].copy(), self.new_keys[:seconds].copy(),
                           self.ok_hist[:seconds].copy(), self.all_hist[:seconds].copy())


@dataclass
class Outcome:
    name: str
    fault: str
    final_state: str
    detected_s: float | None
    report: Report
    fallbacks: int
    tap_codes: dict[str, int]
    canary_calls: int
    simulated_new_s: float | None
    simulated_old_s: float | None
    reason: str
    #: What the recorded calls looked like: p50/p95 of successful calls per arm (ms), and the live
    #: latency test's slow shares at its threshold (from the last decision's reasons).
    latency_ms: dict[str, tuple[float, float]] = field(default_factory=dict)
    latency_test: str = ""

    @property
    def client_errors(self) -> int:
        return self.report.tally.calls - self.report.tally.calls_with("OK")

    def client_error_codes(self) -> dict[str, int]:
        """Client-visible failures by "code@arm" (the arm the response named; primary's own injected
        0.5 % reach clients by design: there is nothing to fall back to)."""
        codes: dict[str, int] = {}
        for (code, arm), histogram in self.report.tally.cells.items():
            if code != "OK":
                codes[f"{code}@{arm or '?'}"] = codes.get(f"{code}@{arm or '?'}", 0) + histogram.count
        return codes


def policy_message(interval_s: float) -> roll_pb.AnalysisPolicy:
    policy = roll_pb.AnalysisPolicy()
    policy.interval.FromMilliseconds(round(interval_s * 1000))
    policy.window.FromMilliseconds(60_000)
    return policy


async def run_scenario(runner: LoadRunner, client: GatewayClient, server: Any, faults: ScenarioBackend, tap: Tap,
                       collection: str, primary: str, canary: str, name: str, fault: str, behaviour: Behaviour,
                       duration_s: float, seed: int) -> Outcome:
    """One rollout under `duration_s` of load; the fault starts with the rollout, 2 s into the load."""
    faults.behaviour = {primary: Behaviour(), canary: Behaviour()}
    config = LoadConfig(target=server.address, rpc="search", vector=True, collection=collection, limit=10,
                        dimension=DIM, keys="uniform", key_count=10_000, mode="open", rate=RATE, processes=1,
                        duration_s=duration_s, warmup_s=0.0, deadline_s=DEADLINE_S, seed=seed)
    load = asyncio.create_task(runner.run(config))
    await asyncio.sleep(2.0)  # primary's traffic flows (and sets the latency threshold) before the rollout
    faults.behaviour[canary] = behaviour
    started = time.monotonic()
    tap.reset(name, started)
    await client.create_rollout(name, collection, canary, stages=[stage(WEIGHT, 3600, 0)],
                                analysis=policy_message(INTERVAL_S))
    detected = None
    rollout = await client.get_rollout(name)
    while not load.done():
        rollout = await client.get_rollout(name)
        if rollout.state == roll_pb.Rollout.STATE_ROLLED_BACK:
            detected = time.monotonic() - started
            break
        await asyncio.sleep(0.1)
    report = await load
    elapsed = min(tap.seconds, int(time.monotonic() - started))
    if rollout.state not in (roll_pb.Rollout.STATE_ROLLED_BACK, roll_pb.Rollout.STATE_ABORTED):
        rollout = await client.abort_rollout(name, reason="benchmark scenario over")
    faults.behaviour = {}
    counts = tap.counts(elapsed)
    # The same calls under the default policy (10 s checks) and the old rule: time from the fault.
    new = run_new_rule(counts, AnalysisPolicy()).failed_at if elapsed >= 10 else None
    old = old_rule(counts.calls, counts.errors, counts.all_hist, weight=WEIGHT / 100, policy=OLD_POLICY).rolled_back_at
    decisions = list(rollout.decisions)
    reason = decisions[-1].reason if decisions else ""
    latency_ms = {}
    for side, arm in ((0, "primary"), (1, "canary")):
        hist = counts.ok_hist[:, side].sum(axis=0)
        if hist.sum():
            cumulative = np.cumsum(hist) / hist.sum()
            latency_ms[arm] = tuple(float(bucket_latency(int(np.argmax(cumulative >= q)))) * 1000
                                    for q in (0.5, 0.95))
    checks = [d for d in decisions if d.kind in (roll_pb.Decision.KIND_CHECK_PASSED, roll_pb.Decision.KIND_INCONCLUSIVE,
                                                  roll_pb.Decision.KIND_CHECK_FAILED)]
    latency_test = next((part.strip() for part in (checks[-1].reason.split(";") if checks else [])
                         if "slow or failed" in part), "")
    return Outcome(name, fault, roll_pb.Rollout.State.Name(rollout.state)[6:], detected, report,
                   sum(report.tally.fallbacks.values()), dict(tap.codes), int(tap.calls[:, 1].sum()), new, old,
                   reason, latency_ms, latency_test)


async def run(quick: bool = False) -> tuple[Machine, list[Outcome]]:
    configure_like_production()
    machine = Machine.now()
    duration_s = 20.0 if quick else 40.0
    outcomes: list[Outcome] = []
    with LoadRunner() as runner, tempfile.TemporaryDirectory(prefix="bench-detection-") as tmp:
        root = Path(tmp)
        backend = EdgeBackend(root / "edge")
        dataset = await build_dataset(backend, SIZE)
        faults = ScenarioBackend(SharedBackend(backend), seed=11)
        server = await create_server(gateway_settings(root / "gateway", controller_tick_s=0.1), backend=faults)
        client = GatewayClient(server.address)
        tap = Tap(seconds=int(duration_s) + 5)
        record = server.controller.record

        def tapped(rollout: str, arm: Arm, code_name: str, latency_s: float, key: str = "") -> None:
            record(rollout, arm, code_name, latency_s, key)
            tap.record(rollout, arm, code_name, latency_s, key)

        server.controller.record = tapped  # type: ignore[method-assign]
        scenarios = [
            ("aa", "A/A (canary like primary)", Behaviour()),
            ("errors", "errors 0.5% -> 5%", Behaviour(error_rate=0.05)),
            ("latency", "latency x1.5", Behaviour(latency_factor=1.5)),
            ("deadline", f"slower than the {DEADLINE_S * 1000:.0f} ms deadline", Behaviour(fixed_delay_s=0.5)),
        ]
        try:
            for index, (name, fault, behaviour) in enumerate(scenarios):
                outcome = await run_scenario(runner, client, server, faults, tap, dataset.rollout, dataset.primary,
                                             dataset.canary, f"detect-{name}", fault, behaviour, duration_s,
                                             seed=100 + index)
                outcomes.append(outcome)
                print(f"  {fault}: {outcome.final_state} after "
                      f"{'-' if outcome.detected_s is None else f'{outcome.detected_s:.1f} s'} ({loadavg_text()})",
                      flush=True)
        finally:
            await client.close()
            await server.stop(0)
            await backend.close()
    return machine, outcomes


def _s(value: float | None) -> str:
    return "not detected" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.1f} s"


def print_outcomes(machine: Machine, outcomes: list[Outcome]) -> None:
    print(f"\nDetection on the live gateway ({machine.line()}; {RATE:g} calls/s open loop, {WEIGHT:g} % canary, "
          f"interval {INTERVAL_S:g} s, deadline {DEADLINE_S * 1000:.0f} ms)")
    rows = []
    for o in outcomes:
        per_interval = "-" if o.detected_s is None else f"{o.detected_s / INTERVAL_S:.1f}"
        rows.append([o.fault, o.final_state, _s(o.detected_s), per_interval, str(o.report.tally.calls),
                     f"{o.client_errors} {o.client_error_codes() or ''}", str(o.fallbacks), str(o.canary_calls),
                     _s(o.simulated_new_s), _s(o.simulated_old_s)])
    print_table(rows, ["scenario", "state", "fault → rolled back", "÷ interval", "client calls",
                       "client-visible errors", "fallbacks", "canary calls recorded",
                       "same calls: new rule @10 s", "same calls: old rule"])
    for o in outcomes:
        latency = ", ".join(f"{arm} p50 {p50:.1f} ms p95 {p95:.1f} ms" for arm, (p50, p95) in o.latency_ms.items())
        print(f"  {o.name}: recorded codes {o.tap_codes}; successful calls as recorded: {latency}")
        print(f"    last check's latency test: {o.latency_test[:300]}")
        print(f"    last decision: {o.reason[:300]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20 s of load per scenario instead of 40 s")
    args = parser.parse_args()
    started = time.perf_counter()
    machine, outcomes = asyncio.run(run(args.quick))
    print_outcomes(machine, outcomes)
    print(f"\n(total {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
