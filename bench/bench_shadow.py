"""What shadow searches cost primary: throughput with quality sampling at 5 % against none (issue 15 §4).

    .venv/bin/python -m bench.bench_shadow [--quick]

One gateway (`create_server`, the embedded qdrant-edge engine) in this process, on loopback; the load
comes from one loadgen process, closed loop (enough callers to keep the gateway busy): Search by vector on
`docs`, uniform routing keys, under a rollout at 10 % canary. Primary `docs-v1` holds 10 000 x 384 points,
HNSW built; the canary `docs-v2` is a restored snapshot of it (a faithful copy, index included).

Two configurations, the same rollout but for its `quality.shadow_sample_rate`: 0 (no shadow searches) and
0.05 (5 % of searches also run on the other arm, in the background, at most `--shadow-max-in-flight` (4)
at once). Runs alternate A, B, A, B … over the rounds (a fresh rollout each run); the figure is the median
over rounds of B's successful calls/s divided by A's in the same round, plus p50/p99 ratios and the shadow
outcomes (compared, dropped_busy) of the sampled runs. The goal: B ≥ 0.95 × A.

On a machine shared with other work the throughput of one run swings by more than the effect, so the
gateway process's CPU time per search (every thread: the event loop and the engine's; shadow searches of
the run included, warm-up calls counted) is reported too: its ratio A / B is the capacity ratio when the
gateway is CPU-bound, and it is much less sensitive to what else runs on the machine.

Third, the cost of one shadow job, magnified: the same load with *every* search shadowed (the sampler's
random source fixed at 0, no bound) against none, interleaved. The difference in CPU per search is one
shadow job's cost; at a 5 % sample it adds 5 % of it, so the capacity ratio at 5 % is estimated as
cpu_none / (cpu_none + 0.05 × (cpu_all − cpu_none)) — a difference 20 times larger than the one the
direct measurement looks for, so the machine's noise matters far less.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from bench._common import LoadRunner, Machine, configure_like_production, loadavg_text, percentile_ms
from bench._common import print_table
from searchgw.gateway.backends import CollectionSpec, EdgeBackend, Point
from searchgw.gateway.client import GatewayClient, stage
from searchgw.gateway.server import GatewayServer, create_server
from searchgw.gateway.settings import GatewaySettings
from searchgw.gateway.shadow import ShadowSampler
from searchgw.loadgen import LoadConfig, Report
from searchgw.testing import ManualClock
from searchgw.v1 import rollout_service_pb2 as roll_pb

DIM = 384
POINTS = 10_000
UPSERT_BATCH = 1_000
PRIMARY, CANARY, LOGICAL = "docs-v1", "docs-v2", "docs"
CANARY_WEIGHT_PERCENT = 10
SAMPLE_RATE = 0.05
GOAL = 0.95
CONCURRENCY = 16


async def build_arms(backend: EdgeBackend) -> None:
    vectors = np.random.default_rng(1).normal(size=(POINTS, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    await backend.create_collection(CollectionSpec(name=PRIMARY, dimension=DIM))
    for first in range(0, POINTS, UPSERT_BATCH):
        chunk = vectors[first:first + UPSERT_BATCH]
        await backend.upsert(PRIMARY, [Point(id=first + i, vector=v) for i, v in enumerate(chunk)])
    await backend.optimize(PRIMARY)
    snapshot = await backend.create_snapshot(PRIMARY)
    await backend.restore_snapshot(snapshot.name, CANARY)
    await backend.update_alias(LOGICAL, PRIMARY)


def analysis(rate: float) -> roll_pb.AnalysisPolicy:
    return roll_pb.AnalysisPolicy(quality=roll_pb.QualityPolicy(shadow_sample_rate=rate))


def shadow_counts(server: GatewayServer, rollout: str) -> dict[str, int]:
    outcomes = ("compared", "dropped_busy", "failed")
    return {o: int(server.metrics.registry.get_sample_value("searchgw_shadow_queries_total",
                                                            {"rollout": rollout, "outcome": o}) or 0)
            for o in outcomes}


async def run_once(server: GatewayServer, client: GatewayClient, runner: LoadRunner, rate: float, seed: int,
                   duration_s: float, warmup_s: float) -> tuple[Report, dict[str, int], float]:
    """The run's report, its shadow outcomes, and the gateway's CPU seconds per search."""
    rollout = f"r-{seed}"
    await client.create_rollout(rollout, LOGICAL, CANARY, analysis=analysis(rate),
                                stages=[stage(CANARY_WEIGHT_PERCENT, 3600, 0), stage(100)])
    try:
        config = LoadConfig(target=server.address, rpc="search", vector=True, collection=LOGICAL, mode="closed",
                            concurrency=CONCURRENCY, duration_s=duration_s, warmup_s=warmup_s, seed=seed,
                            keys="uniform", key_count=10_000, deadline_s=5.0)
        cpu_before = time.process_time()
        report = await runner.run(config)
        await server.core.shadow.drain()
        cpu = time.process_time() - cpu_before
        return report, shadow_counts(server, rollout), cpu / max(1, report.calls + report.tally.warmup_calls)
    finally:
        await client.abort_rollout(rollout, reason="benchmark run done")


async def run(quick: bool, log=print) -> dict:
    """Measure; returns the figures (and prints the table)."""
    configure_like_production()
    rounds, duration_s, warmup_s = (2, 3.0, 1.0) if quick else (8, 4.0, 1.0)
    started = time.perf_counter()
    log(f"shadow searches vs none — {Machine.now().line()}, {loadavg_text()}")
    ratios, p50s, p99s, cpu_ratios = [], [], [], []
    sampled_counts: list[dict[str, int]] = []
    base_rates: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-shadow-") as tmp, LoadRunner() as runner:
        backend = EdgeBackend(Path(tmp) / "edge")
        await build_arms(backend)
        settings = GatewaySettings(port=0, metrics_port=-1, data_dir=Path(tmp), log_format="text", log_level="error")
        server = await create_server(settings, backend=backend, rollout_clock=ManualClock(), run_controller=False)
        client = GatewayClient(server.address)
        try:
            for round_ in range(rounds):
                order = [(0.0, "A"), (SAMPLE_RATE, "B")] if round_ % 2 == 0 else [(SAMPLE_RATE, "B"), (0.0, "A")]
                reports: dict[str, Report] = {}
                cpu: dict[str, float] = {}
                for index, (rate, label) in enumerate(order):
                    report, counts, cpu[label] = await run_once(server, client, runner, rate, round_ * 10 + index,
                                                                duration_s, warmup_s)
                    reports[label] = report
                    if label == "B":
                        sampled_counts.append(counts)
                    log(f"  round {round_ + 1} {label} (sample {rate:g}): {report.ok_per_s:.0f} ok/s, "
                        f"{report.errors} errors, p99 {percentile_ms(report, 0.99):.1f} ms, "
                        f"gateway CPU {cpu[label] * 1e3:.2f} ms/search"
                        + (f", shadow {counts}" if label == "B" else ""))
                a, b = reports["A"], reports["B"]
                base_rates.append(a.ok_per_s)
                ratios.append(b.ok_per_s / a.ok_per_s)
                cpu_ratios.append(cpu["A"] / cpu["B"])
                p50s.append(percentile_ms(b, 0.5) / percentile_ms(a, 0.5))
                p99s.append(percentile_ms(b, 0.99) / percentile_ms(a, 0.99))
            estimate = await shadow_job_cost(server, client, runner, max(2, rounds // 2), duration_s, warmup_s, log)
        finally:
            await client.close()
            await server.stop(0)
    ratio = statistics.median(ratios)
    compared = sum(c["compared"] for c in sampled_counts)
    dropped = sum(c["dropped_busy"] for c in sampled_counts)
    rows = [["throughput (ok/s), sample 5 % / none", f"{ratio:.3f}x", f"≥ {GOAL:g}x",
             "met" if ratio >= GOAL else "NOT met"],
            ["capacity by CPU per search, none / sample 5 %", f"{statistics.median(cpu_ratios):.3f}x",
             f"≥ {GOAL:g}x", "met" if statistics.median(cpu_ratios) >= GOAL else "NOT met"],
            ["capacity at 5 %, from every-search-shadowed runs", f"{estimate:.3f}x", f"≥ {GOAL:g}x",
             "met" if estimate >= GOAL else "NOT met"],
            ["p50 latency ratio", f"{statistics.median(p50s):.3f}x", "", ""],
            ["p99 latency ratio", f"{statistics.median(p99s):.3f}x", "", ""]]
    log(f"\nclosed loop, {CONCURRENCY} callers, Search by vector at {CANARY_WEIGHT_PERCENT} % canary; "
        f"{rounds} rounds of {duration_s:g} s, A/B interleaved; baseline {statistics.median(base_rates):.0f} ok/s")
    print_table(rows, ["", "median over rounds", "goal", ""])
    log(f"per-round throughput ratios: {', '.join(f'{r:.3f}' for r in ratios)}; CPU capacity ratios: "
        f"{', '.join(f'{r:.3f}' for r in cpu_ratios)}")
    log(f"shadow searches in the sampled runs: {compared} compared, {dropped} dropped (busy), "
        f"{sum(c['failed'] for c in sampled_counts)} failed")
    log(f"  took {time.perf_counter() - started:.0f} s; {loadavg_text()}")
    return {"ratio": ratio, "ratios": ratios, "estimate": estimate, "cpu_ratio": statistics.median(cpu_ratios), "p50": statistics.median(p50s), "p99": statistics.median(p99s),
            "compared": compared, "dropped": dropped}


async def shadow_job_cost(server: GatewayServer, client: GatewayClient, runner: LoadRunner, rounds: int,
                          duration_s: float, warmup_s: float, log=print) -> float:
    """The estimated capacity ratio at a 5 % sample from every-search-shadowed runs (see the module)."""
    bounded = server.core.shadow
    estimates = []
    try:
        for round_ in range(rounds):
            cpu: dict[str, float] = {}
            for label in (("none", "all") if round_ % 2 == 0 else ("all", "none")):
                server.core.shadow = (ShadowSampler(1_000, observe=server.metrics.observe_shadow, random=lambda: 0.0)
                                      if label == "all" else bounded)
                _, _, cpu[label] = await run_once(server, client, runner, SAMPLE_RATE if label == "all" else 0.0,
                                                  1_000 + round_ * 10 + (label == "all"), duration_s, warmup_s)
            job = cpu["all"] - cpu["none"]
            estimates.append(cpu["none"] / (cpu["none"] + SAMPLE_RATE * job))
            log(f"  cost round {round_ + 1}: CPU per search {cpu['none'] * 1e3:.2f} ms unshadowed, "
                f"{cpu['all'] * 1e3:.2f} ms all shadowed (one shadow job {job * 1e3:.2f} ms, "
                f"{job / cpu['none']:.2f} of a search)")
    finally:
        server.core.shadow = bounded
    return statistics.median(estimates)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two short rounds")
    asyncio.run(run(parser.parse_args().quick))


if __name__ == "__main__":
    cli()
