"""Vector backend benchmark: the embedded edge backend, with and without micro-batching, and qdrant-client
local mode for comparison.

    .venv/bin/python bench/bench_backends.py [--queries 1600]

Collections of 1 000 and 20 000 random unit vectors × 384 (cosine, fixed seed); queries are other
random unit vectors, limit 10. For each: the engine called directly (one thread, no asyncio: the
floor), then the backend one query at a time and with 16 concurrent callers, micro-batching off and
on. The 20k collection is measured before and after `optimize` (the HNSW build). qdrant-client local
mode gets the same 20k points (upsert time) and sequential queries. Takes about two minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import qdrant_edge as qe

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from searchgw.gateway.backends import (  # noqa: E402 - after the path set-up
    CollectionSpec,
    EdgeBackend,
    Point,
    QdrantBackend,
    SearchQuery,
    VectorBackend,
)

DIM = 384
CONCURRENCY = 16
UPSERT_BATCH = 1_000


def unit_vectors(count: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((count, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@dataclass(frozen=True)
class Run:
    label: str
    queries: int
    seconds: float
    latencies: list[float]

    @property
    def qps(self) -> float:
        return self.queries / self.seconds

    def line(self) -> str:
        lat = sorted(self.latencies)
        p50, p99 = lat[len(lat) // 2] * 1e3, lat[int(len(lat) * 0.99)] * 1e3
        return (f"  {self.label:<44} {self.qps:>8.0f} q/s   {self.seconds / self.queries * 1e3:6.3f} ms/q   "
                f"p50 {p50:6.3f} ms   p99 {p99:6.3f} ms")


def engine_direct(path: Path, queries: np.ndarray) -> Run:
    """The floor: qdrant-edge's own query call, in a loop, no asyncio, no executor."""
    shard = qe.EdgeShard.load(str(path))
    try:
        latencies = []
        start = time.perf_counter()
        for vector in queries:
            began = time.perf_counter()
            shard.query(qe.QueryRequest(limit=10, query=qe.Query.Nearest(vector.tolist())))
            latencies.append(time.perf_counter() - began)
        return Run("engine direct (1 thread)", len(queries), time.perf_counter() - start, latencies)
    finally:
        shard.close()


async def closed_loop(label: str, backend: VectorBackend, collection: str, queries: np.ndarray,
                      concurrency: int) -> Run:
    """`concurrency` callers, each sending its next query when the last one answered."""
    pending = iter(queries)
    latencies: list[float] = []

    async def caller() -> None:
        for vector in pending:
            began = time.perf_counter()
            await backend.search(collection, SearchQuery(vector=vector, limit=10))
            latencies.append(time.perf_counter() - began)

    start = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return Run(label, len(queries), time.perf_counter() - start, latencies)


async def fill(backend: VectorBackend, name: str, vectors: np.ndarray) -> float:
    await backend.create_collection(CollectionSpec(name=name, dimension=DIM))
    start = time.perf_counter()
    for first in range(0, len(vectors), UPSERT_BATCH):
        chunk = vectors[first:first + UPSERT_BATCH]
        await backend.upsert(name, [Point(id=first + i, vector=v) for i, v in enumerate(chunk)])
    return time.perf_counter() - start


async def edge_runs(data_dir: Path, name: str, queries: np.ndarray) -> dict[str, Run]:
    """Direct, then sequential and 16 concurrent with micro-batching off and on."""
    runs = {"direct": engine_direct(data_dir / "collections" / name, queries)}
    for batching in (False, True):
        backend = EdgeBackend(data_dir, micro_batching=batching)
        try:
            tag = "on" if batching else "off"
            await closed_loop("warm-up", backend, name, queries[:100], CONCURRENCY)
            runs[f"seq-{tag}"] = await closed_loop(f"backend, sequential, batching {tag}", backend, name, queries, 1)
            runs[f"c16-{tag}"] = await closed_loop(f"backend, {CONCURRENCY} concurrent, batching {tag}", backend,
                                                   name, queries, CONCURRENCY)
        finally:
            await backend.close()
    return runs


def report(title: str, runs: dict[str, Run], log=print) -> None:
    log(f"\n{title}")
    for run in runs.values():
        log(run.line())
    direct, seq_off = runs["direct"].qps, runs["seq-off"].qps
    log(f"  ratios: sequential backend / engine direct = {seq_off / direct:.2f}; "
          f"batching on / off: sequential {runs['seq-on'].qps / seq_off:.2f}, "
          f"{CONCURRENCY} concurrent {runs['c16-on'].qps / runs['c16-off'].qps:.2f}; "
          f"{CONCURRENCY} concurrent batching on / engine direct = {runs['c16-on'].qps / direct:.2f}")


@dataclass
class BackendResults:
    runs: dict[str, dict[str, Run]]  # "1000", "20000", "20000-indexed" -> runs by key (see edge_runs)
    upserts_s: dict[int, float]  # edge upsert time by size
    optimize_s: float  # the 20k HNSW build
    local: Run | None = None  # qdrant-client local mode, 20k, sequential
    local_upsert_s: float | None = None


async def run(queries_per_run: int = 1600, *, with_local: bool = True, log=print) -> BackendResults:
    """Every measurement of this benchmark; `log` gets the same lines `main()` prints."""
    queries = unit_vectors(queries_per_run, seed=2)
    results: dict[str, dict[str, Run]] = {}
    upserts: dict[int, float] = {}
    optimize_s = 0.0
    local_run = local_upsert_s = None

    with tempfile.TemporaryDirectory(prefix="bench-backends-") as tmp:
        root = Path(tmp)
        for size in (1_000, 20_000):
            vectors = unit_vectors(size, seed=1)
            data_dir = root / f"edge-{size}"
            backend = EdgeBackend(data_dir)
            upserts[size] = await fill(backend, "bench", vectors)
            await backend.close()
            log(f"\nedge {size} points: upsert {upserts[size]:.2f} s")
            results[f"{size}"] = await edge_runs(data_dir, "bench", queries)
            report(f"edge, {size} points" + (", not indexed" if size > 1_000 else ""), results[f"{size}"], log=log)
            if size > 1_000:
                backend = EdgeBackend(data_dir)
                start = time.perf_counter()
                await backend.optimize("bench")
                optimize_s = time.perf_counter() - start
                log(f"\nedge {size} points: optimize (HNSW build) {optimize_s:.1f} s")
                await backend.close()
                results[f"{size}-indexed"] = await edge_runs(data_dir, "bench", queries)
                report(f"edge, {size} points, indexed", results[f"{size}-indexed"], log=log)

        if with_local:
            local = QdrantBackend(":memory:")
            local_upsert_s = await fill(local, "bench", unit_vectors(20_000, seed=1))
            local_queries = queries[:100]
            await closed_loop("warm-up", local, "bench", local_queries[:5], 1)
            local_run = await closed_loop("qdrant-client local mode, sequential", local, "bench", local_queries, 1)
            await local.close()
            edge_indexed = results["20000-indexed"]["seq-on"]
            log(f"\nqdrant-client local mode, 20000 points: upsert {local_upsert_s:.1f} s")
            log(local_run.line())
            log(f"  ratio: edge (indexed, sequential) / local mode queries/s = {edge_indexed.qps / local_run.qps:.0f}")
    return BackendResults(results, upserts, optimize_s, local_run, local_upsert_s)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=1600, help="queries per measurement")
    args = parser.parse_args()
    await run(args.queries)


if __name__ == "__main__":
    asyncio.run(main())
