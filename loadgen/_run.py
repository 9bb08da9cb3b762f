"""run_load: plan the workers, run them (here, or one process each), merge their results."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Callable
from datetime import datetime, timezone

from searchgw.loadgen._config import LoadConfig
from searchgw.loadgen._processes import run_in_processes
from searchgw.loadgen._progress import ProgressCallback, ProgressHub
from searchgw.loadgen._recall import measure_recall
from searchgw.loadgen._report import Report
from searchgw.loadgen._tally import Tally
from searchgw.loadgen._worker import WorkerPlan, WorkerResult, plan_workers, run_plan
from searchgw.loadgen._workload import queries_for

__all__ = ["run_load", "run_load_sync"]


async def run_load(config: LoadConfig, *, on_progress: ProgressCallback | None = None) -> Report:
    """Run the load `config` describes and return the merged report.

    With `processes == 1` the worker runs on the caller's event loop; otherwise each worker runs in
    a spawned process. `on_progress` gets a snapshot every `progress_interval_s` once the load has
    begun, and a last one at the end. Raises LoadgenError when the run cannot go ahead or finish.
    """
    seed = config.seed
    if seed is None:  # draw one, so that the report says how to repeat the run
        seed = random.SystemRandom().randrange(2**32)
        config = dataclasses.replace(config, seed=seed)
    queries = queries_for(config)
    recall = await measure_recall(config, queries, seed) if config.recall or config.recall_ef else ()
    plans = plan_workers(config, queries, seed=seed)
    hub = ProgressHub(config)
    started_at = datetime.now(timezone.utc)
    ticker = asyncio.create_task(_tick(hub, on_progress, config.progress_interval_s)) if on_progress else None
    try:
        if len(plans) == 1:
            results, cpu_seconds = await _run_here(plans[0], on_start=hub.start, on_progress=hub.add)
        else:
            results, cpu_seconds = await run_in_processes(plans, on_start=hub.start, on_progress=hub.add)
    finally:
        if ticker is not None:
            ticker.cancel()
    if on_progress is not None:
        on_progress(hub.snapshot())
    report = Report.from_results(config, results, cpu_seconds=cpu_seconds, started_at=started_at)
    return dataclasses.replace(report, recall=recall) if recall else report


def run_load_sync(config: LoadConfig, *, on_progress: ProgressCallback | None = None) -> Report:
    """`run_load` on a fresh event loop, for scripts and benchmarks that are not async."""
    return asyncio.run(run_load(config, on_progress=on_progress))


async def _run_here(plan: WorkerPlan, *, on_start: Callable[[], None],
                    on_progress: Callable[[Tally], None]) -> tuple[list[WorkerResult], float]:
    async def ready() -> None:
        on_start()

    result = await run_plan(plan, ready=ready, on_progress=on_progress)
    return [result], result.cpu_seconds


async def _tick(hub: ProgressHub, on_progress: ProgressCallback, interval_s: float) -> None:
    while True:
        await asyncio.sleep(interval_s)
        if hub.started:
            on_progress(hub.snapshot())
