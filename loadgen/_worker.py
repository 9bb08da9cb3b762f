"""One worker: an asyncio loop that drives its share of the load over one channel.

Closed loop: `concurrency` callers, each sending its next call when the previous one returns; a
call's latency runs from its send. Open loop: calls are scheduled by a Poisson process at `rate`
and each call's latency runs from its *scheduled* time (or from its send, if that came first), so
time spent waiting behind a stalled server (or behind the worker's own backlog) is counted instead of
hidden: no coordinated omission. A call that starts more than `late_after_ms` after its scheduled
time is counted as a late start.

Calls scheduled (open) or sent (closed) during the warm-up are counted only as warm-up calls.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc

from searchgw.loadgen._calls import call_source
from searchgw.loadgen._channel import connect
from searchgw.loadgen._config import LoadConfig
from searchgw.loadgen._tally import NO_ROUTE, Tally
from searchgw.loadgen._workload import Inputs, Query, arrival_times

__all__ = ["Worker", "WorkerPlan", "WorkerResult", "plan_workers", "run_plan"]

_NS_PER_S = 1_000_000_000
#: asyncio wakes a sleeper up to 1 ms late (epoll rounds its timeout up to whole milliseconds), so the
#: open loop wakes this much early; a call sent before its scheduled time is timed from its send.
_WAKE_EARLY_NS = 1_000_000


@dataclass(frozen=True)
class WorkerPlan:
    """One worker's share of a run."""

    config: LoadConfig
    index: int
    seed: int
    concurrency: int  # closed loop: callers
    rate: float  # open loop: calls/s
    max_in_flight: int  # open loop
    queries: tuple[Query, ...]


@dataclass(frozen=True)
class WorkerResult:
    tally: Tally
    started_ns: int  # monotonic (system-wide, so comparable across processes)
    measure_start_ns: int
    measure_end_ns: int  # the end of the measured window, or the last measured completion if later
    finished_ns: int
    cpu_seconds: float


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if index < total % parts else 0) for index in range(parts)]


def plan_workers(config: LoadConfig, queries: tuple[Query, ...], *, seed: int) -> list[WorkerPlan]:
    """Share callers, rate and the in-flight cap evenly; each worker gets its own seed."""
    parts = config.processes
    return [
        WorkerPlan(config=config, index=index, seed=seed + index, concurrency=concurrency,
                   rate=config.rate / parts, max_in_flight=max_in_flight, queries=queries)
        for index, (concurrency, max_in_flight) in enumerate(
            zip(_split(config.concurrency, parts), _split(config.max_in_flight, parts)))
    ]


class Worker:
    """Runs one plan over a connected channel; hands a progress delta to `on_progress` every
    `progress_interval_s` (and a last one at the end)."""

    def __init__(self, plan: WorkerPlan, channel: grpc.aio.Channel, on_progress: Callable[[Tally], None]) -> None:
        config = plan.config
        self._plan = plan
        self._config = config
        rng = random.Random(plan.seed)
        self._arrivals_rng = random.Random(rng.getrandbits(64))  # its own, so the schedule depends on the seed only
        self._calls = call_source(config, Inputs(plan.queries, dimension=config.dimension, rng=rng), rng)
        self._method = self._calls.method(channel)
        self._on_progress = on_progress
        self._late_after_ns = int(config.late_after_ms * 1_000_000)
        self._interval = Tally()
        self._total = Tally()
        self._measure_start_ns = 0
        self._last_completion_ns = 0

    async def run(self) -> WorkerResult:
        cpu_before = time.process_time()
        started_ns = time.monotonic_ns()
        self._measure_start_ns = started_ns + int(self._config.warmup_s * _NS_PER_S)
        measure_end_ns = self._measure_start_ns + int(self._config.duration_s * _NS_PER_S)
        reporter = asyncio.create_task(self._report_progress())
        try:
            if self._config.mode == "closed":
                await self._closed_loop(measure_end_ns)
            else:
                await self._open_loop(started_ns, measure_end_ns)
        finally:
            reporter.cancel()
        self._flush_progress()
        return WorkerResult(tally=self._total, started_ns=started_ns, measure_start_ns=self._measure_start_ns,
                            measure_end_ns=max(measure_end_ns, self._last_completion_ns),
                            finished_ns=time.monotonic_ns(), cpu_seconds=time.process_time() - cpu_before)

    async def _closed_loop(self, end_ns: int) -> None:
        async def caller() -> None:
            while time.monotonic_ns() < end_ns:
                await self._call(scheduled_ns=None)

        async with asyncio.TaskGroup() as callers:
            for _ in range(self._plan.concurrency):
                callers.create_task(caller())

    async def _open_loop(self, start_ns: int, end_ns: int) -> None:
        slots = asyncio.Semaphore(self._plan.max_in_flight)
        async with asyncio.TaskGroup() as calls:
            for scheduled_ns in arrival_times(start_ns, self._plan.rate, self._arrivals_rng):
                if scheduled_ns >= end_ns:
                    break
                await asyncio.sleep(max(0, scheduled_ns - _WAKE_EARLY_NS - time.monotonic_ns()) / _NS_PER_S)
                await slots.acquire()  # at the cap the call starts late; its latency still counts from schedule
                calls.create_task(self._call(scheduled_ns)).add_done_callback(lambda _task: slots.release())

    async def _call(self, scheduled_ns: int | None) -> None:
        call = self._calls.next_call()
        sent_ns = time.monotonic_ns()
        try:
            response = await self._method(call.request, timeout=self._config.deadline_s, metadata=call.metadata)
        except grpc.aio.AioRpcError as exc:
            code, arm, fallback = exc.code().name, NO_ROUTE, False
        else:
            code, (arm, fallback) = "OK", self._calls.route_of(response)
        done_ns = time.monotonic_ns()
        due_ns = sent_ns if scheduled_ns is None else scheduled_ns
        if due_ns < self._measure_start_ns:
            self._interval.warmup_calls += 1
            return
        self._interval.record_call(code, arm, done_ns - min(due_ns, sent_ns), fallback=fallback)
        if scheduled_ns is not None:
            lag_ns = max(0, sent_ns - scheduled_ns)
            self._interval.record_start_lag(lag_ns, late=lag_ns > self._late_after_ns)
        self._last_completion_ns = max(self._last_completion_ns, done_ns)

    async def _report_progress(self) -> None:
        while True:
            await asyncio.sleep(self._config.progress_interval_s)
            self._flush_progress()

    def _flush_progress(self) -> None:
        delta, self._interval = self._interval, Tally()
        self._total.merge(delta)
        self._on_progress(delta)


async def run_plan(plan: WorkerPlan, *, ready: Callable[[], Awaitable[None]],
                   on_progress: Callable[[Tally], None]) -> WorkerResult:
    """Connect, await `ready()` (it returns when the load is to begin), run the plan, close."""
    channel = await connect(plan.config)
    try:
        await ready()
        return await Worker(plan, channel, on_progress).run()
    finally:
        await channel.close()
