"""Micro-benchmarks of the routing and rollout hot paths (a script, not a test).

    .venv/bin/python -m bench.bench_routing [--quick]

Prints nanoseconds per route decision (with and without an active rollout, forced arm, and with
key resolution), per `record()`, and per `tick()` with 1 and 100 rollouts due — the latter with an
in-memory store (the controller's own work) and with SQLite (synchronous=FULL, so one fsync per
rollout checked). Each figure is the best of several repeats, to keep other load out of it.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from searchgw.gateway.rollout import (
    AnalysisPolicy,
    MemoryRolloutStore,
    Rollout,
    RolloutController,
    RolloutStore,
    SqliteRolloutStore,
    Stage,
)
from searchgw.gateway.routing import Arm, Router, RouteTable, resolve_routing_key
from searchgw.testing import ManualClock

REPEATS = 5


def best_ns_per_call(body: Callable[[int], None], calls: int) -> float:
    """The best of REPEATS runs of `body(calls)`, in nanoseconds per call."""
    best = float("inf")
    for _ in range(REPEATS):
        started = time.perf_counter_ns()
        body(calls)
        best = min(best, (time.perf_counter_ns() - started) / calls)
    return best


def bench_routing(calls: int) -> dict[str, float]:
    router = Router({"docs": RouteTable(rollout="r1", salt="9f86d081884c7d65", primary="docs-v1",
                                        canary="docs-v2", weight_bps=5_000)})
    keys = [f"user-{i}" for i in range(10_000)]
    route = router.route

    def with_rollout(n: int) -> None:
        for i in range(n):
            route("docs", keys[i % 10_000])

    def without_rollout(n: int) -> None:
        for i in range(n):
            route("other", keys[i % 10_000])

    canary = Arm.CANARY  # as a caller holds it after parsing the header

    def forced(n: int) -> None:
        for i in range(n):
            route("docs", keys[i % 10_000], canary)

    def resolved(n: int) -> None:
        for i in range(n):
            key, _ = resolve_routing_key("", keys[i % 10_000], "ipv4:10.0.0.1:5000", "random")
            route("docs", key)

    def loop_only(n: int) -> None:
        for i in range(n):
            keys[i % 10_000]

    overhead = best_ns_per_call(loop_only, calls)
    return {
        "route, active rollout (50 %)": best_ns_per_call(with_rollout, calls) - overhead,
        "route, no rollout": best_ns_per_call(without_rollout, calls) - overhead,
        "route, forced arm": best_ns_per_call(forced, calls) - overhead,
        "resolve_routing_key + route": best_ns_per_call(resolved, calls) - overhead,
    }


def rollout_spec(index: int) -> Rollout:
    # Stages that never pass during the benchmark, so every tick does the same work.
    return Rollout(name=f"r{index}", collection=f"c{index}", canary_collection=f"c{index}-v2",
                   stages=(Stage(50.0, min_duration_s=1e6),), analysis=AnalysisPolicy(min_requests_per_arm=10))


async def make_controller(store: RolloutStore, rollouts: int, clock: Callable[[], float]) -> RolloutController:
    aliases = {f"c{i}": f"c{i}-v1" for i in range(rollouts)}

    async def resolve(logical: str) -> str:
        return aliases[logical]

    async def switch(logical: str, physical: str) -> None:
        aliases[logical] = physical

    controller = RolloutController(store, Router(), switch_alias=switch, resolve_alias=resolve, clock=clock,
                                   wall_clock=time.time, max_routine_decisions=10)
    await controller.start(run_loop=False)
    for index in range(rollouts):
        await controller.create(rollout_spec(index), actor="bench")
    return controller


async def bench_record(calls: int) -> float:
    controller = await make_controller(MemoryRolloutStore(), 1, time.monotonic)
    record = controller.record
    arms = (Arm.PRIMARY, Arm.CANARY)

    def body(n: int) -> None:
        for i in range(n):
            record("r0", arms[i & 1], "OK", 0.001 + (i % 100) * 0.0001)

    return best_ns_per_call(body, calls)


async def bench_tick(store: RolloutStore, rollouts: int, ticks: int) -> float:
    """ns per tick in which every one of `rollouts` is due, its windows holding a minute of traffic."""
    clock = ManualClock()
    controller = await make_controller(store, rollouts, clock)
    for step in range(600):  # 60 s of traffic at 10 requests per arm per 100 ms, latencies spread
        clock.now += 0.1
        for index in range(rollouts):
            for i in range(10):
                latency = 0.001 + ((step * 10 + i) % 50) * 0.0002
                controller.record(f"r{index}", Arm.PRIMARY, "OK", latency)
                controller.record(f"r{index}", Arm.CANARY, "OK", latency)
    best = float("inf")
    for _ in range(ticks):
        clock.now += 10.0  # every rollout's interval has elapsed
        started = time.perf_counter_ns()
        await controller.tick()
        best = min(best, time.perf_counter_ns() - started)
    await controller.stop()
    return best


async def bench_controller(quick: bool) -> dict[str, float]:
    results = {"record()": await bench_record(20_000 if quick else 200_000)}
    for rollouts in (1, 100):
        results[f"tick(), {rollouts} rollout(s) due, memory store"] = await bench_tick(
            MemoryRolloutStore(), rollouts, ticks=3 if quick else REPEATS)
        with tempfile.TemporaryDirectory() as directory:
            store = SqliteRolloutStore(Path(directory) / "rollouts.sqlite3")
            results[f"tick(), {rollouts} rollout(s) due, SQLite store"] = await bench_tick(
                store, rollouts, ticks=3 if quick else REPEATS)
            await store.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations (a smoke run)")
    args = parser.parse_args()
    results = bench_routing(20_000 if args.quick else 300_000)
    results.update(asyncio.run(bench_controller(args.quick)))
    width = max(map(len, results))
    for name, ns in results.items():
        shown = f"{ns / 1e6:10.3f} ms" if ns >= 1e6 else f"{ns / 1e3:10.3f} µs" if ns >= 1e4 else f"{ns:10.0f} ns"
        print(f"{name:<{width}}  {shown}")


if __name__ == "__main__":
    main()
