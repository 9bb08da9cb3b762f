"""Test doubles shipped with the package (as `structlog.testing` is): the clocks that tests and benchmarks
hand to time-driven code.

Time-driven code takes a `clock: Callable[[], float]` (monotonic seconds, see docs/architecture.md), so a
test moves time itself instead of sleeping. Both the test suite and `bench/` import these, which is why
they live in the package rather than under `tests/`.
"""

from __future__ import annotations

import time

__all__ = ["ManualClock", "SteppableClock", "WALL_OFFSET"]

#: What `ManualClock.wall()` adds to the monotonic reading: a plausible Unix time (November 2023).
WALL_OFFSET = 1_700_000_000.0


class ManualClock:
    """Monotonic seconds that move only when a test says so; `wall()` is the matching Unix time."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def wall(self) -> float:
        return WALL_OFFSET + self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class SteppableClock:
    """time.monotonic() plus an offset a test can move forward (an answer "takes" that long)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds
