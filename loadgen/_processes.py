"""Running workers in spawned processes, one asyncio loop each, so one core is not the ceiling.

    parent                                   worker process i
    ──────                                   ────────────────
    start processes (spawn)  ──────────────► connect the channel
                             ◄── ready ────  wait for the start event
    all ready: set start     ──────────────► run the plan
                             ◄── progress ─  a Tally delta every progress interval
                             ◄── done ─────  its WorkerResult (or `failed` with the reason)

A worker that fails or dies ends the run with LoadgenError; the parent then terminates the others.
Workers ignore SIGINT: Ctrl-C reaches the parent, which ends them.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.process
import queue
import signal
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from searchgw.loadgen._errors import LoadgenError
from searchgw.loadgen._tally import Tally
from searchgw.loadgen._worker import WorkerPlan, WorkerResult, run_plan

__all__ = ["run_in_processes"]

_POLL_S = 0.2


async def run_in_processes(plans: Sequence[WorkerPlan], *, on_start: Callable[[], None],
                           on_progress: Callable[[Tally], None]) -> tuple[list[WorkerResult], float]:
    """Run every plan in its own process; return the results in plan order and the CPU seconds of
    the workers and of this process during the load."""
    context = multiprocessing.get_context("spawn")
    messages = context.Queue()
    start = context.Event()
    processes = [context.Process(target=_process_main, args=(plan, messages, start),
                                 name=f"loadgen-worker-{plan.index}", daemon=True) for plan in plans]
    for process in processes:
        process.start()
    try:
        inbox = _Inbox(messages, processes)
        await inbox.wait_until_ready()
        cpu_before = time.process_time()
        start.set()
        on_start()
        results = await inbox.collect_results(on_progress)
        cpu_seconds = sum(result.cpu_seconds for result in results) + time.process_time() - cpu_before
    except BaseException:
        for process in processes:
            if process.is_alive():
                process.terminate()
        raise
    finally:
        for process in processes:
            process.join()
    return results, cpu_seconds


class _Inbox:
    """The parent's side of the message queue."""

    def __init__(self, messages: Any, processes: Sequence[multiprocessing.process.BaseProcess]) -> None:
        self._messages = messages
        self._processes = processes

    async def wait_until_ready(self) -> None:
        waiting = set(range(len(self._processes)))
        while waiting:
            kind, index, _payload = await self._receive()
            if kind == "ready":
                waiting.discard(index)

    async def collect_results(self, on_progress: Callable[[Tally], None]) -> list[WorkerResult]:
        results: dict[int, WorkerResult] = {}
        while len(results) < len(self._processes):
            kind, index, payload = await self._receive()
            if kind == "progress":
                on_progress(payload)
            elif kind == "done":
                results[index] = payload
        return [results[index] for index in range(len(self._processes))]

    async def _receive(self) -> tuple[str, int, Any]:
        """The next message; a `failed` message or a worker that died raises LoadgenError."""
        while True:
            try:
                kind, index, payload = await asyncio.to_thread(self._messages.get, timeout=_POLL_S)
            except queue.Empty:
                for process in self._processes:
                    if process.exitcode not in (None, 0):
                        raise LoadgenError(f"{process.name} died (exit code {process.exitcode})") from None
                continue
            if kind == "failed":
                raise LoadgenError(f"loadgen-worker-{index}: {payload}")
            return kind, index, payload


def _process_main(plan: WorkerPlan, messages: Any, start: Any) -> None:
    """The worker process: run the plan, report through `messages`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    async def ready() -> None:
        messages.put(("ready", plan.index, None))
        await asyncio.to_thread(_wait_for_start, start)

    try:
        result = asyncio.run(run_plan(plan, ready=ready,
                                      on_progress=lambda delta: messages.put(("progress", plan.index, delta))))
    except LoadgenError as exc:
        messages.put(("failed", plan.index, str(exc)))
    except Exception as exc:  # a bug: hand the parent the whole story
        messages.put(("failed", plan.index, "".join(traceback.format_exception(exc))))
    else:
        messages.put(("done", plan.index, result))


def _wait_for_start(start: Any) -> None:
    parent = multiprocessing.parent_process()
    while not start.wait(_POLL_S):
        if parent is not None and not parent.is_alive():
            raise LoadgenError("the parent process is gone")
