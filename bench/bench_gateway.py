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

Targets (issue 16): (c) >= 0.85 x (b) on 1 000 points, >= 0.90 x (b) on 20 000; on 1 000 points (c) >= 0.50 x
(a); (c) p50 <= (b) p50 + 0.3 ms at one caller; <= 2 µs per route decision; rollback within one analysis interval once the samples are in.

`--scenarios` also runs what the report plots: an auto-rollback under loadgen traffic on the real
clock, and a routing ramp (measured canary share against the configured weight).

This module runs the scenarios and checks the targets; each scenario lives in a module of its own:
bench_gateway_load (a, b, c), bench_routing (route decisions), bench_gateway_rollback (rollback
reaction), bench_gateway_timeline (auto-rollback under load), bench_gateway_ramp (routing ramp); what
they share (data sets, settings, the manual-clock gateway) is in bench/_gateway.py.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench._common import LoadRunner, Machine, configure_like_production, loadavg_text
from bench._common import print_table, verdict
from bench._gateway import CONCURRENCY, SIZES, Dataset, Durations, ManualRig, SharedBackend, analysis, build_dataset
from bench._gateway import gateway_settings
from bench.bench_gateway_load import (
    TARGET_ADDED_P50_MS,
    TARGET_VS_BACKEND,
    TARGET_VS_BACKEND_BY_SIZE,
    TARGET_VS_ECHO_1K,
    BackendSearch,
    EchoSearch,
    Run,
    Target,
    measure,
    start_bare_server,
)
from bench.bench_gateway_ramp import Ramp, routing_ramp
from bench.bench_gateway_rollback import RollbackTrial, rollback_trial
from bench.bench_gateway_timeline import Timeline, rollback_timeline
from bench.bench_routing import bench_routing
from searchgw.gateway.backends import EdgeBackend
from searchgw.gateway.client import GatewayClient, stage
from searchgw.gateway.server import create_server

TARGET_DECISION_NS = 2_000
ROUTE_KEY = "route, active rollout (50 %)"


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
            target = TARGET_VS_BACKEND_BY_SIZE.get(size, TARGET_VS_BACKEND)
            goals.append(Goal(f"{size} points, {CONCURRENCY} callers: gateway (50 % canary) / (b) backend-only calls/s",
                              f"{ratio:.2f}x", f">= {target:.2f}x", ratio >= target))
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
