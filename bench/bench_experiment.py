"""What an experiment adds to a search (a script, not a test).

    .venv/bin/python -m bench.bench_experiment [--quick]

A real gateway in this process (edge backend, 4-d raw vectors, no embedder) with two aliases over
identical collections: `plain-0..3` (no experiment: each alias's target serves; the client picks one of
the four per key) and `exp` (a running 3-variant experiment over four collections: the gateway hashes the
key to an arm, counts the ending for it and signs a search id). Rounds of
keyed searches through the gRPC client, 16 at a time, alternate plain, exp, plain, exp…; it prints
each side's median searches/s and their ratio (exp / plain), and then the ReportOutcome rate for
batches of 100 outcomes. Both sides share the machine in the same run, so the ratio is what counts;
both spread their searches over four collections alike (the embedded engine batches per collection).
The first section
isolates the gateway's own work per search: the experiment's request-path calls (`held` + `assign` +
`record_search` + `issue_search_id`) against the route decision every search already makes
(`Router.route` of a rollout), in nanoseconds, best of 5, in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from searchgw.gateway.client import GatewayClient
from searchgw.gateway.server import create_server
from searchgw.gateway.settings import GatewaySettings

VECTOR = [1.0, 0.0, 0.5, -1.0]


async def _round(client: GatewayClient, alias: str, searches: int, start: int) -> tuple[float, list[str]]:
    gate = asyncio.Semaphore(16)
    ids: list[str] = []

    async def one(i: int) -> None:
        # "plain": four aliases, one per collection, picked per key, so both sides spread their searches
        # over four collections alike (the embedded engine batches per collection).
        target = alias if alias == "exp" else f"plain-{(start + i) % 4}"
        async with gate:
            response = await client.search(target, vector=VECTOR, limit=5, routing_key=f"user-{start + i}")
            if response.search_id:
                ids.append(response.search_id)

    began = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(searches)))
    return searches / (time.perf_counter() - began), ids


def _best_ns(body, calls: int) -> float:
    best = float("inf")
    for _ in range(5):
        began = time.perf_counter_ns()
        body(calls)
        best = min(best, (time.perf_counter_ns() - began) / calls)
    return best


async def request_path_cost(calls: int) -> None:
    from searchgw.gateway.experiments import ArmSpec, Experiment, ExperimentManager, MemoryExperimentStore, SearchIds
    from searchgw.gateway.metrics import GatewayMetrics
    from searchgw.gateway.routing import Router, RouteTable
    from searchgw.testing import ManualClock

    router = Router({"docs": RouteTable("r1", "salt", "docs-v1", "docs-v2", 2500)})
    clock = ManualClock()

    async def resolve(name: str) -> str:
        return "e-0" if name == "exp" else name

    async def switch(alias: str, collection: str) -> None:
        return None

    manager = ExperimentManager(MemoryExperimentStore(), switch_alias=switch, resolve_alias=resolve, clock=clock,
                                wall_clock=clock.wall, search_ids=SearchIds(b"k"), observer=GatewayMetrics())
    await manager.create(Experiment(name="bench", collection="exp", control=ArmSpec("control", "", 0),
                                    variants=(ArmSpec("", "e-1"), ArmSpec("", "e-2"), ArmSpec("", "e-3"))))
    await manager.start("bench")
    keys = [f"user-{i}" for i in range(calls)]

    def route(n: int) -> None:
        for key in keys[:n]:
            router.route("docs", key)

    def experiment(n: int) -> None:
        for key in keys[:n]:
            held = manager.held("exp")
            assert held is not None
            arm = held.assign(key)
            manager.record_search(arm, "OK", 0.002)
            manager.issue_search_id(arm)

    baseline, added = _best_ns(route, calls), _best_ns(experiment, calls)
    print(f"request-path work per search, best of 5 × {calls} calls:")
    print(f"  rollout route decision (baseline)       {baseline:8.0f} ns")
    print(f"  experiment: assign + count + search id  {added:8.0f} ns  ({added / baseline:.1f}× the baseline)")


async def main(quick: bool) -> None:
    await request_path_cost(2000 if quick else 20000)
    rounds, searches = (3, 300) if quick else (7, 1000)
    with tempfile.TemporaryDirectory() as tmp:
        settings = GatewaySettings(port=0, metrics_port=-1, data_dir=Path(tmp), log_level="warning",
                                   page_token_secret="bench")
        server = await create_server(settings)
        client = GatewayClient(server.address)
        try:
            for name in ("p-0", "p-1", "p-2", "p-3", "e-0", "e-1", "e-2", "e-3"):
                await client.create_collection(name, dimension=4)
                await client.upsert(name, [{"id": i, "vector": [float(i % 7), 1.0, float(i % 3), 0.5]}
                                           for i in range(1, 501)])
            for i in range(4):
                await client.update_alias(f"plain-{i}", f"p-{i}")
            await client.update_alias("exp", "e-0")
            await client.create_experiment("bench", "exp", ["e-1", "e-2", "e-3"])
            await client.start_experiment("bench")
            rates: dict[str, list[float]] = {"plain": [], "exp": []}
            ids: list[str] = []
            for r in range(rounds):
                for alias in ("plain", "exp"):
                    rate, issued = await _round(client, alias, searches, r * searches)
                    rates[alias].append(rate)
                    ids += issued
            plain, exp = statistics.median(rates["plain"]), statistics.median(rates["exp"])
            print(f"searches/s, median of {rounds} interleaved rounds of {searches} (16 in flight):")
            print(f"  no experiment        {plain:8.0f}")
            print(f"  3-variant experiment {exp:8.0f}")
            print(f"  ratio experiment / no experiment: {exp / plain:.3f}")
            began = time.perf_counter()
            for i in range(0, len(ids), 100):
                await client.report_outcomes([(search_id, "click") for search_id in ids[i:i + 100]])
            print(f"ReportOutcome: {len(ids) / (time.perf_counter() - began):.0f} outcomes/s in batches of 100")
        finally:
            await client.close()
            await server.stop(0)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds of 300 searches per side")
    asyncio.run(main(parser.parse_args().quick))
