"""Progress while a run goes on: the hub that gathers workers' deltas, and the live stderr line."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Callable, TextIO

from searchgw.loadgen._config import LoadConfig
from searchgw.loadgen._tally import Tally

__all__ = ["Progress", "ProgressCallback", "ProgressHub", "ProgressLine", "format_progress"]


@dataclass(frozen=True)
class Progress:
    """A snapshot of a run in progress."""

    config: LoadConfig
    elapsed_s: float  # since the load began, warm-up included
    interval: Tally  # measured calls reported since the previous snapshot
    total: Tally  # every measured call reported so far

    @property
    def warming_up(self) -> bool:
        return self.elapsed_s < self.config.warmup_s

    @property
    def measured_s(self) -> float:
        return max(0.0, self.elapsed_s - self.config.warmup_s)


ProgressCallback = Callable[[Progress], None]


class ProgressHub:
    """Gathers the deltas workers report; `snapshot()` hands out what arrived since the last one."""

    def __init__(self, config: LoadConfig) -> None:
        self._config = config
        self._started: float | None = None
        self._pending = Tally()
        self._total = Tally()

    def start(self) -> None:
        """The load begins now."""
        self._started = time.monotonic()

    @property
    def started(self) -> bool:
        return self._started is not None

    def add(self, delta: Tally) -> None:
        self._pending.merge(delta)

    def snapshot(self) -> Progress:
        if self._started is None:
            raise RuntimeError("snapshot() before start()")
        interval, self._pending = self._pending, Tally()
        self._total.merge(interval)
        return Progress(config=self._config, elapsed_s=time.monotonic() - self._started,
                        interval=interval, total=self._total)


def format_progress(progress: Progress) -> str:
    config = progress.config
    total = progress.total
    if progress.warming_up:
        return (f"loadgen: warm-up {progress.elapsed_s:.1f}/{config.warmup_s:g} s, "
                f"{total.warmup_calls} calls")
    measured_s = min(progress.measured_s, config.duration_s)
    calls = total.calls
    parts = [f"loadgen: {measured_s:.1f}/{config.duration_s:g} s", f"{calls} calls"]
    if progress.measured_s > 0:
        parts.append(f"{calls / progress.measured_s:.1f}/s")
    if calls:
        p50, p99 = total.latency().percentiles([0.5, 0.99])
        errors = calls - total.calls_with("OK")
        parts += [f"p50 {p50 / 1e6:.2f} ms", f"p99 {p99 / 1e6:.2f} ms",
                  f"errors {errors} ({100 * errors / calls:.1f} %)"]
    if config.mode == "open":
        parts.append(f"late {total.late_starts}")
    return "  ".join(parts)


class ProgressLine:
    """Writes each snapshot to `stream`: one line rewritten in place on a terminal, else a line each."""

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        self._stream = stream
        self._in_place = stream.isatty()
        self._written = False

    def __call__(self, progress: Progress) -> None:
        text = format_progress(progress)
        self._stream.write(f"\r\x1b[K{text}" if self._in_place else f"{text}\n")
        self._stream.flush()
        self._written = True

    def close(self) -> None:
        """End the in-place line so what follows starts on a line of its own."""
        if self._in_place and self._written:
            self._stream.write("\n")
            self._stream.flush()
