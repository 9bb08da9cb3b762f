"""What the benchmarks share: the machine's description, load averages, a load generator that runs
in a process of its own, and small formatting helpers (the manual clock is `searchgw.testing.ManualClock`).

The servers under test run in the benchmark's own process (so a benchmark can reach into them:
rollouts, fault injection); the load always comes from `LoadRunner`, a spawned child process that
runs `loadgen.run_load` for each configuration it is handed. The child is spawned once and reused,
so a benchmark pays the start-up of a Python process (grpc, numpy, protobuf) once, not per run.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import platform
import queue
import signal
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from searchgw.loadgen import LoadConfig, LoadgenError, Progress, Report, run_load_sync

_POLL_S = 0.2


# -- the machine ---------------------------------------------------------------------------------
def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo ("unknown CPU" elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as lines:
            for line in lines:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def load_average() -> tuple[float, float, float]:
    try:
        return os.getloadavg()
    except OSError:
        return (float("nan"),) * 3


def loadavg_text() -> str:
    one, five, fifteen = load_average()
    return f"load {one:.2f} {five:.2f} {fifteen:.2f}"


@dataclass(frozen=True)
class Machine:
    cores: int
    cpu: str
    date: str  # ISO 8601, UTC, to the minute
    python: str
    load_at_start: tuple[float, float, float]

    @classmethod
    def now(cls) -> Machine:
        return cls(cores=os.cpu_count() or 1, cpu=cpu_model(),
                   date=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                   python=platform.python_version(), load_at_start=load_average())

    def line(self) -> str:
        """One line for a table or a figure: cores, CPU, date."""
        return f"{self.cores} cores, {self.cpu}, {self.date}"


def configure_like_production(log_level: str = "error") -> None:
    """Tracing as the CLI sets it up (an SDK TracerProvider: spans are made, none exported), so the
    servers pay what a deployed one pays; logs to stderr from `log_level` up (the fallback warnings
    of a failing canary would otherwise drown the output)."""
    from searchgw.telemetry import configure_logging, configure_tracing  # noqa: PLC0415

    configure_logging(log_level, "text")
    configure_tracing("searchgw-bench", "none")


# -- load from another process ---------------------------------------------------------------------
ProgressHandler = Callable[[float, Progress], None]
"""Called with (wall-clock time the snapshot was taken, the snapshot)."""


def _runner_main(requests: Any, replies: Any) -> None:
    """The child: run each LoadConfig it is sent; reply with progress, then the report."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while (item := requests.get()) is not None:
        config, want_progress = item

        def forward(progress: Progress) -> None:
            replies.put(("progress", (time.time(), progress)))

        try:
            report = run_load_sync(config, on_progress=forward if want_progress else None)
        except LoadgenError as exc:
            replies.put(("failed", str(exc)))
        except Exception as exc:  # a bug: hand the parent the whole story
            replies.put(("failed", "".join(traceback.format_exception(exc))))
        else:
            replies.put(("done", report))


class LoadRunner:
    """loadgen in a child process of its own, reused for every run of a benchmark.

    `await runner.run(config)` hands `config` to the child and returns its Report. With
    `processes=1` the load runs in the child itself (its CPU is what the report counts); with more,
    the child spawns loadgen's worker processes as usual.
    """

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._requests = context.Queue()
        self._replies = context.Queue()
        # Not a daemon: a daemonic process may not start loadgen's own worker processes.
        self._process = context.Process(target=_runner_main, args=(self._requests, self._replies),
                                        name="bench-loadgen")
        self._process.start()

    async def run(self, config: LoadConfig, on_progress: ProgressHandler | None = None) -> Report:
        self._requests.put((config, on_progress is not None))
        while True:
            try:
                kind, payload = await asyncio.to_thread(self._replies.get, timeout=_POLL_S)
            except queue.Empty:
                if not self._process.is_alive():
                    raise LoadgenError(f"the load generator process died (exit code {self._process.exitcode})") \
                        from None
                continue
            if kind == "progress":
                if on_progress is not None:
                    on_progress(*payload)
            elif kind == "done":
                return payload
            else:
                raise LoadgenError(f"load generator: {payload}")

    def close(self) -> None:
        if self._process.is_alive():
            self._requests.put(None)
            self._process.join(10)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(5)

    def __enter__(self) -> LoadRunner:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# -- small things ----------------------------------------------------------------------------------
def ms(ns: float) -> float:
    return ns / 1e6


def percentile_ms(report: Report, quantile: float) -> float:
    latency = report.latency
    return latency.value_at(quantile) / 1e6 if latency.count else float("nan")


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def print_table(rows: list[list[str]], header: list[str]) -> None:
    """A plain aligned text table (first column left-aligned, the rest right-aligned)."""
    table = [header, *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for index, row in enumerate(table):
        cells = [row[0].ljust(widths[0])] + [cell.rjust(width) for cell, width in zip(row[1:], widths[1:])]
        print("  " + "  ".join(cells))
        if index == 0:
            print("  " + "  ".join("-" * width for width in widths))
