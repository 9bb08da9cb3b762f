"""Scale of the embedded engine (issue 16.4): 384-d collections from 10k to 1M points, float32 and int8.

    python -m bench.bench_scale [--max-points 1000000] [--sizes 10000,30000,...] [--queries 300]
                                [--json bench/results/scale.json] [--quick]

For every size and both storages (float32 vectors; the same with int8 scalar quantization kept in RAM)
it measures, each phase in a fresh spawned process so memory figures belong to that phase alone:

- **build**: ingest through `EdgeBackend.upsert` (batches of 1 000; points/s), then
  `EdgeBackend.optimize` (the HNSW build, m 16, ef_construct 100; seconds), and the peak RSS of it all;
- **serve**: a new process opens the collection (open time), answers the same `--queries` queries
  one at a time through `EdgeBackend.search`, limit 10, in each search mode, and reports its RSS
  after the warm-up (minus the RSS of the interpreter before opening: the collection's own memory)
  and the shard's size on disk.

Search modes: `exact` (every point scored on the float32 vectors: the ground truth), `hnsw` (the
engine's default ef) and `hnsw ef=N` for each `--ef` value; on the int8 collection also
`int8 rescore xN` (quantized HNSW search, N × 10 candidates re-scored on the float32 vectors) and
`int8 no rescore`. recall@10 = |top-10 ∩ exact top-10| / 10, averaged over the queries.

The vectors are synthetic but structured like sentence embeddings, not uniform noise (on which
nearest neighbours are all nearly equidistant and ANN recall means little): a Gaussian mixture of
1 000 clusters whose sizes follow Zipf's law (weight of the r-th cluster ∝ 1/r), each point its
cluster's unit centre plus noise of norm ~0.7 with a decaying spectrum (the i-th of 384 random
orthogonal directions has standard deviation ∝ 1/√i), normalised. Queries come from the same
mixture (new draws, not stored points). Data are generated from a seed per batch of 1 000 points,
so both storages hold the very same points.

Everything else on the machine runs too (other benchmarks, test suites): latencies are of a loaded
2-core box; recall, sizes and memory do not depend on load.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import multiprocessing
import os
import resource
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

DIMENSION = 384
CLUSTERS = 1_000
NOISE_NORM = 0.7
BATCH = 1_000
SEED = 20_261_203
LIMIT = 10
DEFAULT_SIZES = (10_000, 30_000, 100_000, 300_000, 1_000_000)
DEFAULT_EFS = (32, 64, 128, 256)
OVERSAMPLINGS = (1.0, 2.0, 4.0)
#: The issue's target: p99 at most this many ms at recall@10 at least RECALL_TARGET.
P99_TARGET_MS = 10.0
RECALL_TARGET = 0.95
STORAGES = ("float32", "int8")


# -- data ----------------------------------------------------------------------------------------
class Mixture:
    """The Gaussian mixture the points and queries are drawn from (see the module docstring)."""

    def __init__(self, seed: int = SEED) -> None:
        rng = np.random.default_rng(seed)
        centres = rng.standard_normal((CLUSTERS, DIMENSION))
        self.centres = (centres / np.linalg.norm(centres, axis=1, keepdims=True)).astype(np.float32)
        weights = 1.0 / np.arange(1, CLUSTERS + 1)
        self.weights = weights / weights.sum()
        basis, _ = np.linalg.qr(rng.standard_normal((DIMENSION, DIMENSION)))
        spectrum = 1.0 / np.sqrt(np.arange(1, DIMENSION + 1))
        spectrum *= NOISE_NORM / np.sqrt((spectrum ** 2).sum())  # expected noise norm NOISE_NORM
        self.noise = (spectrum[:, None] * basis.T).astype(np.float32)  # row i: direction i scaled
        self.seed = seed

    def draw(self, stream: int, index: int, count: int) -> np.ndarray:
        rng = np.random.default_rng((self.seed, stream, index))
        labels = rng.choice(CLUSTERS, size=count, p=self.weights)
        vectors = self.centres[labels] + rng.standard_normal((count, DIMENSION), dtype=np.float32) @ self.noise
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    def batch(self, number: int) -> np.ndarray:
        """Points number × BATCH … (number + 1) × BATCH − 1."""
        return self.draw(0, number, BATCH)

    def queries(self, count: int) -> np.ndarray:
        return self.draw(1, 0, count)


# -- phases, each in a spawned process -----------------------------------------------------------
def _rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _spec(storage: str) -> Any:
    from searchgw.gateway.backends.types import CollectionSpec, ScalarQuantization

    quantization = ScalarQuantization(always_ram=True) if storage == "int8" else None
    return CollectionSpec(name=f"scale_{storage}", dimension=DIMENSION, scalar_quantization=quantization)


def build_phase(data_dir: str, storage: str, points: int) -> dict[str, float]:
    from searchgw.gateway.backends.edge import EdgeBackend
    from searchgw.gateway.backends.types import Point

    async def run() -> dict[str, float]:
        mixture = Mixture()
        backend = EdgeBackend(data_dir)
        try:
            spec = _spec(storage)
            await backend.create_collection(spec)
            ingest_s = 0.0
            for number in range(points // BATCH):
                vectors = mixture.batch(number)
                batch = [Point(number * BATCH + i, vector) for i, vector in enumerate(vectors)]
                started = time.perf_counter()
                await backend.upsert(spec.name, batch)
                ingest_s += time.perf_counter() - started
            started = time.perf_counter()
            await backend.optimize(spec.name)
            build_s = time.perf_counter() - started
            return {"ingest_s": ingest_s, "ingest_points_per_s": points / ingest_s, "build_s": build_s,
                    "build_peak_rss_mib": _peak_rss_mib()}
        finally:
            await backend.close()

    return asyncio.run(run())


def _directory_mib(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


@dataclass
class ModeResult:
    mode: str
    p50_ms: float
    p99_ms: float
    recall: float


def serve_phase(data_dir: str, storage: str, queries: int, efs: tuple[int, ...],
                truth: list[list[int]] | None) -> dict[str, Any]:
    from searchgw.gateway.backends.edge import EdgeBackend
    from searchgw.gateway.backends.types import QuantizationParams, SearchParams, SearchQuery

    async def run() -> dict[str, Any]:
        mixture = Mixture()
        vectors = mixture.queries(queries)
        base_rss = _rss_mib()
        backend = EdgeBackend(data_dir, micro_batching=False)
        spec = _spec(storage)
        try:
            started = time.perf_counter()
            await backend.count(spec.name)  # opens the shard
            open_s = time.perf_counter() - started

            async def timed(params: SearchParams | None) -> tuple[list[float], list[list[int]]]:
                seconds, ids = [], []
                for vector in vectors:
                    began = time.perf_counter()
                    hits = await backend.search(spec.name, SearchQuery(vector, limit=LIMIT, params=params))
                    seconds.append(time.perf_counter() - began)
                    ids.append([int(hit.id) for hit in hits])
                return seconds, ids

            float_only = QuantizationParams(ignore=True) if storage == "int8" else None
            modes: dict[str, SearchParams | None] = {"exact": SearchParams(exact=True, quantization=float_only)}
            if storage == "float32":
                modes["hnsw"] = None
                modes.update({f"hnsw ef={ef}": SearchParams(hnsw_ef=ef) for ef in efs})
            else:
                modes["int8 no rescore"] = SearchParams(quantization=QuantizationParams(rescore=False))
                for ef in efs:
                    for oversampling in OVERSAMPLINGS:
                        modes[f"int8 ef={ef} rescore x{oversampling:g}"] = SearchParams(
                            hnsw_ef=ef, quantization=QuantizationParams(rescore=True, oversampling=oversampling))
            await timed(None)  # warm-up: pages in the graph and vectors
            rss = _rss_mib()
            results: list[ModeResult] = []
            exact_ids = truth
            for mode, params in modes.items():
                seconds, ids = await timed(params)
                if mode == "exact" and exact_ids is None:
                    exact_ids = ids
                assert exact_ids is not None
                recall = float(np.mean([len(set(found) & set(true)) / LIMIT for found, true in zip(ids, exact_ids)]))
                ms = np.array(seconds) * 1000
                results.append(ModeResult(mode, float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), recall))
            return {"open_s": open_s, "rss_mib": rss, "rss_collection_mib": rss - base_rss,
                    "disk_mib": _directory_mib(Path(data_dir) / "collections" / spec.name),
                    "modes": [asdict(r) for r in results], "truth": exact_ids}
        finally:
            await backend.close()

    return asyncio.run(run())


def _in_child(function: Any, *args: Any) -> Any:
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(function, *args).result()


# -- the run -------------------------------------------------------------------------------------
@dataclass
class SizeResult:
    points: int
    storage: str
    ingest_s: float
    ingest_points_per_s: float
    build_s: float
    build_peak_rss_mib: float
    open_s: float
    rss_mib: float
    rss_collection_mib: float
    disk_mib: float
    modes: list[dict[str, Any]] = field(default_factory=list)
    load: tuple[float, float, float] = (0.0, 0.0, 0.0)


def best_mode(result: SizeResult) -> dict[str, Any] | None:
    """The fastest (by p99) approximate mode that reaches the recall target, if any."""
    good = [m for m in result.modes if m["mode"] != "exact" and m["recall"] >= RECALL_TARGET]
    return min(good, key=lambda m: m["p99_ms"]) if good else None


def print_result(result: SizeResult, log: Any = print) -> None:
    log(f"\n{result.points:>9,} points, {result.storage}: ingest {result.ingest_points_per_s:,.0f} points/s, "
        f"build {result.build_s:.1f} s (peak RSS {result.build_peak_rss_mib:,.0f} MiB), open {result.open_s:.2f} s, "
        f"serving RSS {result.rss_mib:,.0f} MiB (collection {result.rss_collection_mib:,.0f} MiB), "
        f"disk {result.disk_mib:,.0f} MiB, load {' '.join(f'{x:.1f}' for x in result.load)}")
    log(f"  {'mode':<28} {'p50 ms':>8} {'p99 ms':>8} {'recall@10':>10}")
    for mode in result.modes:
        log(f"  {mode['mode']:<28} {mode['p50_ms']:>8.2f} {mode['p99_ms']:>8.2f} {mode['recall']:>10.3f}")
    best = best_mode(result)
    if best is None:
        log(f"  no approximate mode reached recall@10 >= {RECALL_TARGET}")
    else:
        verdict = "met" if best["p99_ms"] <= P99_TARGET_MS else "MISSED"
        log(f"  target p99 <= {P99_TARGET_MS:g} ms at recall@10 >= {RECALL_TARGET}: {verdict} by '{best['mode']}' "
            f"(p99 {best['p99_ms']:.2f} ms, recall {best['recall']:.3f})")


def run(sizes: list[int], queries: int, efs: tuple[int, ...], work_dir: Path, json_path: Path | None,
        log: Any = print, storages: tuple[str, ...] = STORAGES) -> list[SizeResult]:
    results: list[SizeResult] = []
    for points in sizes:
        truth: list[list[int]] | None = None
        for storage in storages:
            data_dir = work_dir / f"{storage}-{points}"
            shutil.rmtree(data_dir, ignore_errors=True)
            log(f"[{time.strftime('%H:%M:%S')}] {points:,} points, {storage}: ingest and build …")
            built = _in_child(build_phase, str(data_dir), storage, points)
            log(f"[{time.strftime('%H:%M:%S')}]   built in {built['build_s']:.1f} s; serving …")
            served = _in_child(serve_phase, str(data_dir), storage, queries, efs, truth)
            truth = served.pop("truth")
            results.append(SizeResult(points=points, storage=storage, load=os.getloadavg(), **built, **served))
            print_result(results[-1], log)
            shutil.rmtree(data_dir, ignore_errors=True)
            if json_path is not None:
                json_path.parent.mkdir(parents=True, exist_ok=True)
                json_path.write_text(json.dumps([asdict(r) for r in results], indent=1))
    return results


def fitted_rows(results: list[SizeResult], storage: str) -> list[SizeResult]:
    """The rows a per-million slope is fitted over: the sizes from 100k up when two were measured, else all."""
    rows = [r for r in results if r.storage == storage]
    big = [r for r in rows if r.points >= 100_000]
    return big if len(big) >= 2 else rows


def capacity(results: list[SizeResult], measure: str = "rss_collection_mib") -> dict[str, float]:
    """MiB of `measure` (serving memory by default; `disk_mib` for the shard on disk) per million vectors
    for each storage: its least-squares slope against the collection's size over `fitted_rows` (one
    row: its own ratio)."""
    slopes = {}
    for storage in STORAGES:
        rows = fitted_rows(results, storage)
        if len(rows) >= 2:
            x = np.array([r.points for r in rows], dtype=float)
            y = np.array([getattr(r, measure) for r in rows])
            slopes[storage] = float(np.polyfit(x, y, 1)[0] * 1e6)
        elif rows:
            slopes[storage] = getattr(rows[0], measure) / rows[0].points * 1e6
    return slopes


# -- the page section and the plot ----------------------------------------------------------------
SECTION = Path(__file__).resolve().parent / "scale.md"
PLOT = Path(__file__).resolve().parents[1] / "docs" / "img" / "scale.png"


def load_results(paths: list[Path]) -> list[SizeResult]:
    """Results from one or more --json files (later files win for the same size and storage)."""
    merged: dict[tuple[int, str], SizeResult] = {}
    for path in paths:
        for row in json.loads(path.read_text()):
            row["load"] = tuple(row["load"])
            merged[(row["points"], row["storage"])] = SizeResult(**row)
    return sorted(merged.values(), key=lambda r: (r.points, STORAGES.index(r.storage)))


def _mode(result: SizeResult, name: str) -> dict[str, Any] | None:
    return next((m for m in result.modes if m["mode"] == name), None)


def plot(results: list[SizeResult], path: Path = PLOT) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (latency, memory) = plt.subplots(1, 2, figsize=(12, 4.6))
    styles = {"float32": ("#1f77b4", "o"), "int8": ("#d62728", "s")}
    for storage, (color, marker) in styles.items():
        rows = [r for r in results if r.storage == storage]
        if not rows:
            continue
        x = [r.points for r in rows]
        best = [best_mode(r) for r in rows]
        latency.plot(x, [b["p99_ms"] if b else float("nan") for b in best], color=color, marker=marker,
                     label=f"{storage}: p99 of the fastest mode with recall@10 >= {RECALL_TARGET}")
        latency.plot(x, [b["p50_ms"] if b else float("nan") for b in best], color=color, marker=marker,
                     linestyle="--", alpha=0.7, label=f"{storage}: p50 of that mode")
        exact = [_mode(r, "exact") for r in rows]
        latency.plot(x, [e["p50_ms"] if e else float("nan") for e in exact], color=color, marker=marker,
                     linestyle=":", alpha=0.5, label=f"{storage}: exact search p50")
        memory.plot(x, [r.rss_collection_mib for r in rows], color=color, marker=marker,
                    label=f"{storage}: serving RSS of the collection")
        memory.plot(x, [r.build_peak_rss_mib for r in rows], color=color, marker=marker, linestyle="--",
                    alpha=0.7, label=f"{storage}: peak RSS, ingest + build")
        memory.plot(x, [r.disk_mib for r in rows], color=color, marker=marker, linestyle=":", alpha=0.5,
                    label=f"{storage}: on disk")
    latency.axhline(P99_TARGET_MS, color="#444444", linewidth=0.8, linestyle="-.", label="target p99 10 ms")
    for axis, title, unit in ((latency, "search latency (1 caller, limit 10)", "ms"),
                              (memory, "memory against collection size", "MiB")):
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("points (384-d)")
        axis.set_ylabel(unit)
        axis.set_title(title)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=7)
    loads = ", ".join(f"{r.points // 1000}k {r.storage}: {r.load[0]:.0f}" for r in results)
    fig.text(0.01, 0.005, f"bench/bench_scale.py, 2 shared cores; 1-minute load average at each point: {loads}",
             fontsize=6.5, color="#444444")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def render(results: list[SizeResult], index_build_log: str = "", command: str = "", notes: str = "") -> str:
    """The 'Scale' section of docs/benchmarks.md (bench/report.py includes bench/scale.md)."""
    out = ["## Scale: 10k to 1M vectors on the embedded engine (issue 16.4; `bench/bench_scale.py`)\n"]
    out.append(f"Measured with `{command or 'python -m bench.bench_scale --json FILE'}` then rendered with "
               "`python -m bench.bench_scale --render FILE… [--index-build-log FILE]` (it takes long: this section "
               "is kept in `bench/scale.md`, which `bench.report` includes, and is not re-measured by it). "
               "Data: a Gaussian mixture of 1 000 clusters with Zipf-distributed sizes and a decaying noise "
               "spectrum, normalised (see the module docstring) — not uniform noise. Every phase runs in a fresh "
               "process; the machine is 2 cores shared with other work (the load average is in each row): "
               "latencies are of a loaded box, recall and memory are not affected.\n")
    out.append(f"![latency and memory against size](img/{PLOT.name})\n")
    rows = ["| points | storage | ingest points/s | build s | peak RSS ingest+build MiB | serving RSS MiB (collection) "
            "| disk MiB | exact p50 ms | best mode (recall@10 >= 0.95) | its p50 / p99 ms | its recall@10 | load |",
            "|---:|:---|---:|---:|---:|---:|---:|---:|:---|---:|---:|---:|"]
    for r in results:
        best, exact = best_mode(r), _mode(r, "exact")
        rows.append(f"| {r.points:,} | {r.storage} | {r.ingest_points_per_s:,.0f} | {r.build_s:,.1f} | "
                    f"{r.build_peak_rss_mib:,.0f} | {r.rss_mib:,.0f} ({r.rss_collection_mib:,.0f}) | {r.disk_mib:,.0f} | "
                    f"{exact['p50_ms']:.2f} | " + (f"`{best['mode']}` | {best['p50_ms']:.2f} / {best['p99_ms']:.2f} | "
                                                    f"{best['recall']:.3f}" if best else "none | – | –")
                    + f" | {r.load[0]:.0f} |")
    out.append("\n".join(rows) + "\n")
    out.append("Every mode measured (recall@10 against exact search, same 300 queries):\n")
    for r in results:
        out.append(f"<details><summary>{r.points:,} points, {r.storage}</summary>\n\n| mode | p50 ms | p99 ms | "
                   "recall@10 |\n|:---|---:|---:|---:|\n" + "\n".join(
                       f"| {m['mode']} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} | {m['recall']:.3f} |" for m in r.modes)
                   + "\n\n</details>\n")
    slopes = capacity(results)
    disk = capacity(results, "disk_mib")
    raw = DIMENSION * 4 * 1e6 / 2**20
    out.append("**Capacity** (from the measurements above: the slope of each quantity against the number of points "
               "— least squares over the sizes from 100k up when two were measured, else over all sizes; the raw "
               f"float32 vectors alone are {raw:,.0f} MiB per million 384-d vectors, their int8 copies "
               f"{raw / 4:,.0f} MiB). The int8 collection keeps its float32 originals in RAM too (the collection "
               "spec has no on-disk vector storage), so quantization adds memory here and buys speed; with the "
               "originals on disk its RAM would be about the int8 slope minus the raw float32 size:\n")
    cap = ["| storage | serving RSS per million vectors | on disk per million vectors | vectors a 24 GiB host holds "
           "(RSS, 4 GiB kept free) |", "|:---|---:|---:|---:|"]
    for storage, mib in slopes.items():
        cap.append(f"| {storage} | {mib:,.0f} MiB | {disk.get(storage, float('nan')):,.0f} MiB | "
                   f"{20 * 1024 / mib:,.1f} M |")
    out.append("\n".join(cap) + "\n")
    biggest = max((r.points for r in results), default=0)
    if biggest < 1_000_000:
        out.append(f"**1M points: extrapolated, not measured** (the largest size measured here is {biggest:,}): "
                   "serving memory from the linear fit above; build time from the largest measured build scaled "
                   "as HNSW's n·log n (at that row's machine load, which dominates it here); latency is not "
                   "extrapolated (HNSW search cost grows with log n, but a 10x larger graph also leaves the "
                   "CPU caches, which only a measurement shows):\n")
        ext = ["| storage | serving RSS at 1M (MiB) | build time at 1M (s) |", "|:---|---:|---:|"]
        for storage in STORAGES:
            rows_ = [r for r in results if r.storage == storage]
            if len(rows_) < 2:
                continue
            largest = max(rows_, key=lambda r: r.points)
            growth = 1e6 / largest.points * np.log(1e6) / np.log(largest.points)
            rss = slopes[storage] * (1e6 - largest.points) / 1e6 + largest.rss_collection_mib
            ext.append(f"| {storage} | {rss:,.0f} | {largest.build_s * growth:,.0f} (from {largest.build_s:,.0f} s at "
                       f"{largest.points:,}, load {largest.load[0]:.0f}) |")
        out.append("\n".join(ext) + "\n")
    if notes:
        out.append(notes.strip() + "\n")
    if index_build_log:
        out.append("### Index builds while serving (issue 16.3; `bench/bench_index_build.py`)\n")
        out.append("```text\n" + index_build_log.strip() + "\n```\n")
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-points", type=int, default=1_000_000)
    parser.add_argument("--sizes", default=",".join(str(s) for s in DEFAULT_SIZES),
                        help="comma-separated collection sizes (multiples of 1000); those above --max-points are skipped")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--ef", default=",".join(str(e) for e in DEFAULT_EFS), help="hnsw_ef values to sweep")
    parser.add_argument("--json", type=Path, default=None, help="write the results here (after every size)")
    parser.add_argument("--work-dir", type=Path, default=None, help="where collections are built (default: a temp dir)")
    parser.add_argument("--storages", default=",".join(STORAGES), help="float32, int8 or both, in this order "
                        "(exact search runs on the first one's float32 vectors and is reused as the truth)")
    parser.add_argument("--quick", action="store_true", help="10k and 20k points, 100 queries")
    parser.add_argument("--render", type=Path, nargs="+", metavar="JSON",
                        help="measure nothing: write bench/scale.md and docs/img/scale.png from these --json files")
    parser.add_argument("--index-build-log", type=Path, help="with --render: bench_index_build's output to include")
    parser.add_argument("--command", default="", help="with --render: the measuring command, as the page shows it")
    parser.add_argument("--notes", type=Path, help="with --render: a markdown file of notes to include")
    args = parser.parse_args()
    if args.render:
        results = load_results(args.render)
        plot(results)
        log = args.index_build_log.read_text() if args.index_build_log else ""
        notes = args.notes.read_text() if args.notes else ""
        SECTION.write_text(render(results, log, args.command, notes), encoding="utf-8")
        print(f"wrote {SECTION} and {PLOT}")
        return
    sizes = [s for s in (int(x) for x in args.sizes.split(",")) if s <= args.max_points]
    queries = args.queries
    if args.quick:
        sizes, queries = [s for s in (10_000, 20_000) if s <= args.max_points], min(queries, 100)
    efs = tuple(int(x) for x in args.ef.split(","))
    print(f"bench_scale: sizes {sizes}, {queries} queries, ef {efs}, {os.cpu_count()} cores, "
          f"load {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-scale-", dir=args.work_dir) as work:
        results = run(sizes, queries, efs, Path(work), args.json, log=lambda *a: print(*a, flush=True),
                      storages=tuple(args.storages.split(",")))
    print("\nmemory per million vectors (slope of serving RSS against size):")
    for storage, mib in capacity(results).items():
        print(f"  {storage}: {mib:,.0f} MiB")


if __name__ == "__main__":
    sys.exit(main())
