"""How much a slow canary hurts primary, with and without the canary concurrency limit (issue 9 §5).

    .venv/bin/python -m bench.bench_slow_canary [--quick]

One gateway (`create_server`, tracing as deployed, the embedded qdrant-edge engine) in this process,
on loopback; the load comes from two loadgen processes at once, open loop (Poisson arrivals):

- routed traffic: Search by vector on `docs`, uniform routing keys, a rollout at 50 % canary;
- the probe: Search on `docs` forced to primary (`x-canary-arm: primary`: the same request path as a
  routed primary call, kept out of the analysis) with a short deadline. Its success rate and p99 are
  what primary's users get.

Arms (20 000 x 384 points each, the same vectors):
- primary `docs-v1`: HNSW built (`optimize`);
- healthy canary `docs-v2-indexed`: a restored snapshot of primary (index included);
- slow canary `docs-v2-unindexed`: the same points, never optimised: every query is an exhaustive
  scan that holds the interpreter lock for its whole length (see gateway/backends/edge.py);
- delayed canary: the healthy canary with 200 ms added to each search by the fault-injecting
  backend (an asyncio sleep: slow, but holding nothing).

Every configuration is run in every round, rounds interleaved; figures are the median over rounds.
Each is shown as a ratio against the healthy-canary baseline measured in the same run (success
rate ratio, p99 ratio). The canary limit is `--canary-max-concurrency` (set on the live core between runs).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench._common import LoadRunner, Machine, configure_like_production, loadavg_text, percentile_ms
from bench._common import print_table
from searchgw.gateway.backends import CollectionSpec, EdgeBackend, FaultInjectingBackend, Point
from searchgw.gateway.client import GatewayClient, stage
from searchgw.gateway.server import GatewayServer, create_server
from searchgw.gateway.settings import GatewaySettings
from searchgw.loadgen import LoadConfig, Report
from searchgw.testing import ManualClock

DIM = 384
POINTS = 20_000
UPSERT_BATCH = 1_000
PRIMARY, HEALTHY, SLOW = "docs-v1", "docs-v2-indexed", "docs-v2-unindexed"
LOGICAL = "docs"
CANARY_WEIGHT_PERCENT = 50
FAULT_DELAY_S = 0.2
ROUTED_DEADLINE_S = 1.0
PROBE_DEADLINE_S = 0.25
DEFAULT_LIMIT = GatewaySettings.canary_max_concurrency


@dataclass(frozen=True)
class Scenario:
    label: str
    canary: str
    limit: int
    delayed: bool = False


@dataclass(frozen=True)
class Load:
    routed_rate: float
    probe_rate: float
    duration_s: float
    warmup_s: float
    rounds: int


@dataclass
class Outcome:
    """One scenario's runs: the probe's success rate and p99, the routed calls' canary share."""

    success: list[float]
    p99_ms: list[float]
    canary_share: list[float]
    fallback_share: list[float]

    @staticmethod
    def median(values: list[float]) -> float:
        return statistics.median(values)


def unit_vectors(count: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(count, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


async def build_arms(backend: EdgeBackend) -> None:
    vectors = unit_vectors(POINTS, seed=1)
    for name in (PRIMARY, SLOW):
        await backend.create_collection(CollectionSpec(name=name, dimension=DIM))
        for first in range(0, POINTS, UPSERT_BATCH):
            chunk = vectors[first:first + UPSERT_BATCH]
            await backend.upsert(name, [Point(id=first + i, vector=v) for i, v in enumerate(chunk)])
    await backend.optimize(PRIMARY)
    snapshot = await backend.create_snapshot(PRIMARY)
    await backend.restore_snapshot(snapshot.name, HEALTHY)
    await backend.update_alias(LOGICAL, PRIMARY)


def load_configs(address: str, load: Load, seed: int) -> tuple[LoadConfig, LoadConfig]:
    common = dict(target=address, rpc="search", vector=True, collection=LOGICAL, mode="open",
                  duration_s=load.duration_s, warmup_s=load.warmup_s, seed=seed)
    routed = LoadConfig(**common, rate=load.routed_rate, deadline_s=ROUTED_DEADLINE_S, keys="uniform",
                        key_count=10_000)
    probe = LoadConfig(**common, rate=load.probe_rate, deadline_s=PROBE_DEADLINE_S, canary_arm="primary")
    return routed, probe


async def run_scenario(server: GatewayServer, client: GatewayClient, runners: tuple[LoadRunner, LoadRunner],
                       scenario: Scenario, load: Load, seed: int, backend: FaultInjectingBackend,
                       ) -> tuple[Report, Report]:
    rollout = f"r-{seed}"
    await client.create_rollout(rollout, LOGICAL, scenario.canary,
                                stages=[stage(CANARY_WEIGHT_PERCENT, 3600, 0), stage(100)])
    server.core.canary_slots.floor = scenario.limit
    if scenario.delayed:
        backend.inject(scenario.canary, delay=FAULT_DELAY_S, operations={"search"})
    try:
        routed, probe = load_configs(server.address, load, seed)
        return tuple(await asyncio.gather(runners[0].run(routed), runners[1].run(probe)))
    finally:
        backend.clear()
        await client.abort_rollout(rollout, reason="benchmark run done")


async def main(quick: bool) -> None:
    configure_like_production()
    machine = Machine.now()
    load = (Load(routed_rate=300, probe_rate=50, duration_s=3, warmup_s=1, rounds=1) if quick else
            Load(routed_rate=300, probe_rate=50, duration_s=6, warmup_s=1, rounds=2))
    scenarios = [
        Scenario("healthy canary (baseline)", HEALTHY, 0),
        Scenario(f"healthy canary, limit {DEFAULT_LIMIT}", HEALTHY, DEFAULT_LIMIT),
        Scenario("unindexed canary, no limit", SLOW, 0),
        Scenario(f"unindexed canary, limit {DEFAULT_LIMIT}", SLOW, DEFAULT_LIMIT),
        Scenario(f"canary +{FAULT_DELAY_S * 1e3:.0f} ms, no limit", HEALTHY, 0, delayed=True),
        Scenario(f"canary +{FAULT_DELAY_S * 1e3:.0f} ms, limit {DEFAULT_LIMIT}", HEALTHY, DEFAULT_LIMIT,
                 delayed=True),
    ]
    started = time.perf_counter()
    print(f"slow canary vs primary — {machine.line()}, {loadavg_text()}")
    with tempfile.TemporaryDirectory(prefix="bench-slow-canary-") as tmp, LoadRunner() as routed_runner, \
            LoadRunner() as probe_runner:
        backend = FaultInjectingBackend(EdgeBackend(Path(tmp) / "edge"))
        build_started = time.perf_counter()
        await build_arms(backend.inner)
        print(f"  arms built in {time.perf_counter() - build_started:.1f} s ({POINTS} x {DIM} each)")
        settings = GatewaySettings(port=0, metrics_port=-1, data_dir=Path(tmp), log_format="text",
                                   log_level="error")
        server = await create_server(settings, backend=backend, rollout_clock=ManualClock(), run_controller=False)
        client = GatewayClient(server.address)
        outcomes = {s.label: Outcome([], [], [], []) for s in scenarios}
        try:
            for round_ in range(load.rounds):
                for index, scenario in enumerate(scenarios):
                    routed, probe = await run_scenario(server, client, (routed_runner, probe_runner), scenario,
                                                       load, seed=round_ * 100 + index, backend=backend)
                    print(f"  round {round_ + 1}, {scenario.label}: probe {_codes(probe)}; routed {_codes(routed)}",
                          flush=True)
                    outcome = outcomes[scenario.label]
                    outcome.success.append(probe.ok / probe.calls if probe.calls else float("nan"))
                    outcome.p99_ms.append(percentile_ms(probe, 0.99))
                    by_arm = routed.tally.by_arm()
                    canary_calls = by_arm["canary"].count if "canary" in by_arm else 0
                    outcome.canary_share.append(canary_calls / routed.calls if routed.calls else float("nan"))
                    outcome.fallback_share.append(sum(routed.tally.fallbacks.values()) / max(1, routed.calls))
        finally:
            await client.close()
            await server.stop(0)
    baseline = outcomes[scenarios[0].label]
    base_success, base_p99 = Outcome.median(baseline.success), Outcome.median(baseline.p99_ms)
    rows = []
    for scenario in scenarios:
        outcome = outcomes[scenario.label]
        success, p99 = Outcome.median(outcome.success), Outcome.median(outcome.p99_ms)
        rows.append([scenario.label, f"{success:.4f}", _ratio(success, base_success, 3), f"{p99:.1f}",
                     _ratio(p99, base_p99, 2), f"{Outcome.median(outcome.canary_share):.2f}",
                     f"{Outcome.median(outcome.fallback_share):.2f}"])
    print(f"\nprimary probe: {load.probe_rate:g} calls/s forced to primary, deadline {PROBE_DEADLINE_S * 1e3:.0f} ms; "
          f"routed: {load.routed_rate:g} calls/s at {CANARY_WEIGHT_PERCENT} % canary, deadline "
          f"{ROUTED_DEADLINE_S:g} s; median of {load.rounds} round(s) of {load.duration_s:g} s")
    print_table(rows, ["canary", "probe ok", "vs baseline", "probe p99 ms", "vs baseline", "canary-served",
                       "fallback"])
    print(f"\n  took {time.perf_counter() - started:.0f} s; {loadavg_text()}")


def _codes(report: Report) -> str:
    codes = sorted({code for code, _arm in report.tally.cells})
    return ", ".join(f"{code} {report.tally.calls_with(code)}" for code in codes)


def _ratio(value: float, baseline: float, digits: int) -> str:
    return f"{value / baseline:.{digits}f}x" if baseline > 0 else "n/a (baseline 0)"


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one short round per configuration")
    asyncio.run(main(parser.parse_args().quick))


if __name__ == "__main__":
    cli()
