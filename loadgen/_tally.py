"""Tally: what the calls of a run came back with, in a form that merges exactly across workers.

Every measured call lands in one cell keyed by (status code name, arm) that holds a latency
histogram. Totals per code, per arm and overall are merges of cells, so
`calls == sum over codes == sum over arms` holds by construction.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from searchgw.loadgen._histogram import LatencyHistogram

__all__ = ["NO_ROUTE", "Tally"]

#: The arm of a call whose answer names no route: a failed call, or an RPC other than Search.
NO_ROUTE = "none"


class Tally:
    """Counts and latencies of measured calls by (code, arm), plus warm-up and late-start counts."""

    def __init__(self) -> None:
        self.cells: dict[tuple[str, str], LatencyHistogram] = {}
        #: Calls answered by primary because the canary failed, by the arm the route named.
        self.fallbacks: Counter[str] = Counter()
        #: Calls scheduled (open loop) or started (closed loop) during the warm-up; not in `cells`.
        self.warmup_calls = 0
        #: Open loop: measured calls that started more than the configured slack after their schedule.
        self.late_starts = 0
        self.max_start_lag_ns = 0

    def record_call(self, code: str, arm: str, latency_ns: int, *, fallback: bool = False) -> None:
        cell = self.cells.get((code, arm))
        if cell is None:
            cell = self.cells[(code, arm)] = LatencyHistogram()
        cell.record(latency_ns)
        if fallback:
            self.fallbacks[arm] += 1

    def record_start_lag(self, lag_ns: int, *, late: bool) -> None:
        self.max_start_lag_ns = max(self.max_start_lag_ns, lag_ns)
        if late:
            self.late_starts += 1

    def merge(self, other: Tally) -> None:
        for key, histogram in other.cells.items():
            self.cells.setdefault(key, LatencyHistogram()).merge(histogram)
        self.fallbacks.update(other.fallbacks)
        self.warmup_calls += other.warmup_calls
        self.late_starts += other.late_starts
        self.max_start_lag_ns = max(self.max_start_lag_ns, other.max_start_lag_ns)

    @property
    def calls(self) -> int:
        return sum(histogram.count for histogram in self.cells.values())

    def calls_with(self, code: str) -> int:
        return sum(histogram.count for (cell_code, _arm), histogram in self.cells.items() if cell_code == code)

    def latency(self) -> LatencyHistogram:
        """Every measured call."""
        return LatencyHistogram.merged(self.cells.values())

    def by_code(self) -> dict[str, LatencyHistogram]:
        return self._grouped(lambda key: key[0])

    def by_arm(self) -> dict[str, LatencyHistogram]:
        return self._grouped(lambda key: key[1])

    def _grouped(self, group_of: Callable[[tuple[str, str]], str]) -> dict[str, LatencyHistogram]:
        groups: dict[str, LatencyHistogram] = {}
        for key, histogram in sorted(self.cells.items()):
            groups.setdefault(group_of(key), LatencyHistogram()).merge(histogram)
        return groups
