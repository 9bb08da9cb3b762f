"""Search latency while the edge backend builds an index (issue 16.3), against idle, in one run.

    python -m bench.bench_index_build [--points 20000] [--callers 4] [--quick]

One collection of `--points` 384-d vectors (bench_scale's Gaussian mixture), searched by `--callers`
concurrent callers through `EdgeBackend.search` (limit 10) during four windows, in this order:

1. **idle** before the build (5 s);
2. **child build**: `EdgeBackend.optimize` — copy, build in a child process, replay, swap;
3. **idle** after it (5 s; the collection is indexed now);
4. **in-process build** (the old way, for contrast): the engine's own `optimize()` on a second,
   identical, unindexed collection of the same backend, called in the backend's executor, while the
   callers search the first. It holds the interpreter lock throughout.

Reported per window: searches answered, p50, p99 and the longest wait, and the ratios p99(build) /
p99(idle before) and p99(build) / p99(idle after). The idle windows bracket the build: before, the
collection is searched exhaustively (unindexed); after, through its new index.
The machine is shared (other benchmarks and test suites run too): read the ratios, not the times.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.bench_scale import BATCH, DIMENSION, Mixture
from searchgw.gateway.backends import CollectionSpec, EdgeBackend, Point, SearchQuery


@dataclass
class Window:
    name: str
    seconds: float
    latencies_ms: list[float]

    @property
    def p50(self) -> float:
        return float(np.percentile(self.latencies_ms, 50)) if self.latencies_ms else float("nan")

    @property
    def p99(self) -> float:
        return float(np.percentile(self.latencies_ms, 99)) if self.latencies_ms else float("nan")

    @property
    def longest(self) -> float:
        return max(self.latencies_ms, default=float("nan"))

    def line(self) -> str:
        return (f"  {self.name:<22} {self.seconds:>7.1f} s {len(self.latencies_ms):>8} searches "
                f"{len(self.latencies_ms) / self.seconds:>8.0f}/s  p50 {self.p50:>7.2f} ms  p99 {self.p99:>8.2f} ms  "
                f"longest {self.longest:>8.1f} ms")


async def _fill(backend: EdgeBackend, name: str, points: int, mixture: Mixture) -> None:
    await backend.create_collection(CollectionSpec(name=name, dimension=DIMENSION))
    for number in range(points // BATCH):
        vectors = mixture.batch(number)
        await backend.upsert(name, [Point(number * BATCH + i, v) for i, v in enumerate(vectors)])


async def _searching(backend: EdgeBackend, name: str, queries: np.ndarray, callers: int,
                     during: Callable[[], Awaitable[Any]] | float) -> tuple[list[float], float, Any]:
    """Search for that many seconds, or from 0.5 s before `during()` starts until it ends (so a
    search held up by it counts from its own start); the latencies (ms), the window, its result."""
    latencies: list[float] = []
    stop = asyncio.Event()

    async def caller(offset: int) -> None:
        i = offset
        while not stop.is_set():
            started = time.perf_counter()
            await backend.search(name, SearchQuery(queries[i % len(queries)], limit=10))
            latencies.append((time.perf_counter() - started) * 1000)
            i += callers

    began = time.perf_counter()
    tasks = [asyncio.ensure_future(caller(n)) for n in range(callers)]
    result = None
    if isinstance(during, float):
        await asyncio.sleep(during)
    else:
        await asyncio.sleep(0.5)
        result = await during()
    stop.set()
    await asyncio.gather(*tasks)
    return latencies, time.perf_counter() - began, result


def _engine_optimize(backend: EdgeBackend, name: str) -> tuple[bool, float]:
    """The engine's own optimize on the shard, in this process: what `optimize` did before 16.3."""
    started = time.perf_counter()
    optimized = backend._shards[name]._engine.optimize()  # noqa: SLF001 - the contrast needs the engine itself
    return optimized, time.perf_counter() - started


async def run(points: int, callers: int, work: Path, log=print) -> list[Window]:
    mixture = Mixture()
    queries = mixture.queries(500)
    backend = EdgeBackend(work, micro_batching=False)
    windows: list[Window] = []
    try:
        log(f"[{time.strftime('%H:%M:%S')}] filling two collections of {points:,} points …")
        await _fill(backend, "served", points, mixture)
        await _fill(backend, "contrast", points, mixture)
        await backend.count("contrast")
        await _searching(backend, "served", queries, callers, 1.0)  # warm-up
        latencies, seconds, _ = await _searching(backend, "served", queries, callers, 5.0)
        windows.append(Window("idle, before", seconds, latencies))
        log(windows[-1].line())
        latencies, seconds, report = await _searching(backend, "served", queries, callers,
                                                      lambda: backend.optimize("served"))
        windows.append(Window("child build", seconds, latencies))
        log(windows[-1].line())
        log(f"    build {report.build_seconds:.1f} s in the child; writes paused {report.writes_paused_seconds:.2f} s; "
            f"searches paused {report.searches_paused_seconds * 1000:.0f} ms (the swap)")
        latencies, seconds, _ = await _searching(backend, "served", queries, callers, 5.0)
        windows.append(Window("idle, after", seconds, latencies))
        log(windows[-1].line())
        loop = asyncio.get_running_loop()
        latencies, seconds, (optimized, build_s) = await _searching(
            backend, "served", queries, callers, lambda: loop.run_in_executor(None, _engine_optimize, backend, "contrast"))
        windows.append(Window("in-process build (old)", seconds, latencies))
        log(windows[-1].line())
        log(f"    the engine's optimize() in this process: {'built' if optimized else 'nothing to build'} "
            f"in {build_s:.1f} s")
    finally:
        await backend.close()
    before, child, after, old = windows
    log(f"\np99 during the child build / idle before: {child.p99 / before.p99:.2f}x; / idle after: "
        f"{child.p99 / after.p99:.2f}x; longest wait {child.longest:.0f} ms")
    log(f"searches answered per second during the child build / idle after: "
        f"{len(child.latencies_ms) / child.seconds / (len(after.latencies_ms) / after.seconds):.2f}x; during the "
        f"in-process build: {len(old.latencies_ms) / old.seconds / (len(after.latencies_ms) / after.seconds):.2f}x")
    log(f"longest wait: child build {child.longest:.0f} ms, in-process build {old.longest:.0f} ms "
        f"(the whole build: nothing else ran)")
    return windows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=20_000)
    parser.add_argument("--callers", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="10 000 points")
    args = parser.parse_args()
    points = 10_000 if args.quick else args.points
    print(f"bench_index_build: {points:,} points, {args.callers} callers, {os.cpu_count()} cores, "
          f"load {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-index-build-") as work:
        asyncio.run(run(points, args.callers, Path(work), log=lambda *a: print(*a, flush=True)))


if __name__ == "__main__":
    main()
