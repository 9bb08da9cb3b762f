"""Where a lone Embed's time goes (issue 16.2, the single-call row), in one run.

    .venv/bin/python -m bench.bench_lone_request [--rounds 2]

The issue's single-call target is: the served p50 of one caller at most raw batch 1's p50 plus the
bare Embed round trip's p50 plus 0.3 ms. This splits the difference into its parts, on the same
session and the same ~13-token texts as bench_embedder:

1. **handoffs**: an empty call through a one-thread executor (`run_in_executor(pool, int)`) back to
   back, and after the machine idled 2 and 8 ms first — a lone request finds the executor's thread
   asleep; plus a small pure-Python loop after 2 ms idle against back to back (the cost of a cold
   core on this machine);
2. **raw**: `EmbeddingModel.encode` + `run` + normalise in one thread (bench_embedder's raw batch 1),
   with `run` timed apart;
3. **in the loop**: `EmbedderCore.embed([text])` awaited on the server's event loop, no gRPC; its
   own report of tokenize, queue and inference time, the rest being the two handoffs and result
   assembly;
4. **over gRPC**: loadgen (one caller, its own process) against the server, with the server-side
   `EmbedderCore.embed` and `run` times of the same calls, and the bare echo Embed's round trip.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import bench_embedder as be  # noqa: E402
from bench._common import LoadRunner, Machine, configure_like_production, loadavg_text  # noqa: E402
from searchgw.embedder.model import DEFAULT_MODEL_NAME, EmbeddingModel, default_model_dir  # noqa: E402
from searchgw.embedder.server import create_server  # noqa: E402
from searchgw.loadgen import LoadConfig  # noqa: E402

SAMPLES = 300


def p50_us(samples: list[float]) -> float:
    return float(np.median(samples)) * 1e6


async def handoffs() -> dict[str, float]:
    loop = asyncio.get_running_loop()
    pool = concurrent.futures.ThreadPoolExecutor(1)
    found = {}
    for idle_s in (0.0, 0.002, 0.008):
        took = []
        for _ in range(SAMPLES):
            if idle_s:
                time.sleep(idle_s)
            began = time.perf_counter()
            await loop.run_in_executor(pool, int)
            took.append(time.perf_counter() - began)
        found[f"executor round trip, {idle_s * 1e3:.0f} ms idle before"] = p50_us(took)
    pool.shutdown()
    for idle_s in (0.0, 0.002):
        took = []
        for _ in range(SAMPLES):
            if idle_s:
                time.sleep(idle_s)
            began = time.perf_counter()
            sum(range(2000))
            took.append(time.perf_counter() - began)
        found[f"sum(range(2000)), {idle_s * 1e3:.0f} ms idle before"] = p50_us(took)
    return found


class Timed:
    """Wraps a model's `run` and a core's `embed` to keep their durations (seconds)."""

    def __init__(self, model: EmbeddingModel) -> None:
        self.runs: list[float] = []
        self.embeds: list[float] = []
        inner = model.run

        def run(batch: Any) -> np.ndarray:
            began = time.perf_counter()
            try:
                return inner(batch)
            finally:
                self.runs.append(time.perf_counter() - began)

        model.run = run  # type: ignore[method-assign]

    def wrap_core(self, core: Any) -> None:
        inner = core.embed

        async def embed(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return await inner(*args, **kwargs)
            finally:
                self.embeds.append(time.perf_counter() - began)

        core.embed = embed

    def clear(self) -> None:
        self.runs.clear()
        self.embeds.clear()


async def run(rounds: int) -> None:
    configure_like_production()
    print(f"bench_lone_request: {Machine.now().line()}, {loadavg_text()}")
    for name, us in (await handoffs()).items():
        print(f"  {name:42} p50 {us:7.0f} µs")
    model = await asyncio.to_thread(EmbeddingModel.load, default_model_dir(be.MODEL_CACHE), DEFAULT_MODEL_NAME)
    texts = be.make_text_set(model, "short", 13, count=2048)
    timed = Timed(model)
    server = await create_server(be.server_settings(1))
    await server.load([model])
    assert server.core is not None
    core = server.core
    timed.wrap_core(core)
    runner = LoadRunner()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-lone-") as tmp:
            queries = be.write_queries(texts, Path(tmp))
            for round_ in range(rounds):
                print(f"round {round_ + 1} ({loadavg_text()}), ~13-token texts, p50s in ms:")
                timed.clear()
                raw = await asyncio.to_thread(be.measure_raw, model, texts, batch_sizes=(1,), seconds=2.0,
                                              offset=round_ * 500)
                print(f"  raw batch 1 (encode + run + normalise)      {np.median(raw.batch1_ms):6.2f}"
                      f"   of which run {np.median(timed.runs) * 1e3:6.2f}")
                timed.clear()
                parts = []
                for text in texts.texts[round_ * 500:round_ * 500 + SAMPLES]:
                    began = time.perf_counter()
                    result = await core.embed([text])
                    total = time.perf_counter() - began
                    parts.append((total, result.tokenize_seconds, result.queue_seconds, result.inference_seconds))
                total, tokenize, queued, inference = (float(v) * 1e3 for v in np.median(np.array(parts), axis=0))
                print(f"  in the loop: EmbedderCore.embed             {total:6.2f}   tokenize {tokenize:.2f}, "
                      f"queue {queued:.2f}, inference {inference:.2f}, the rest {total - tokenize - queued - inference:.2f}")
                echo = await be.measure_echo(runner, queries, be.Durations.for_mode(True))
                timed.clear()
                report = await runner.run(LoadConfig(target=server.address, rpc="embed", queries=queries, concurrency=1,
                                                     processes=1, duration_s=3.0, warmup_s=0.5, seed=round_))
                served = report.latency.value_at(0.5) / 1e6
                print(f"  over gRPC, loadgen's p50                    {served:6.2f}   server-side embed "
                      f"{np.median(timed.embeds) * 1e3:.2f}, run {np.median(timed.runs) * 1e3:.2f}; "
                      f"bare echo Embed {echo.latency.value_at(0.5) / 1e6:.2f}")
                print(f"  served - raw = {served - np.median(raw.batch1_ms):+.2f} ms (target <= echo + 0.3 = "
                      f"{echo.latency.value_at(0.5) / 1e6 + 0.3:.2f})")
    finally:
        runner.close()
        await server.stop(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    asyncio.run(run(args.rounds))


if __name__ == "__main__":
    main()
