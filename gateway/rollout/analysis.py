"""Per-arm sliding windows, and the check that compares the canary with primary over the same window.

Window
    A ring of time slices, `slice_s` wide (1 s; wider for windows over 120 s, so a window never
    holds more than 120 slices). A slice holds request counts by gRPC code name and a sparse latency
    histogram. `record()` is O(1): find the slice of `now`, reset it if it holds an older slice, bump
    two counters. Memory is bounded by the number of slices times the distinct codes and latency
    buckets seen in a slice. A snapshot at `now` merges the slices of the last `window` seconds —
    the current, partial slice included, so the span is between window − slice_s and window. Both
    arms are read with the same `now`, so they are compared over the same span.

Latency histogram
    Buckets are log-spaced with growth factor 1.04 from 10 µs (bucket 0 holds everything faster)
    up to about 5 000 s (the top bucket holds everything slower). A quantile is found by nearest
    rank over the merged histogram and reported as its bucket's geometric midpoint, so it is
    within ±2 % (√1.04 − 1 ≈ 1.98 %) of the exact nearest-rank sample quantile.

Check
    Too few requests on either arm → inconclusive (the stage holds; nothing counts as failed, no
    number is invented). Otherwise the check fails when the canary's error rate exceeds the
    absolute limit, or exceeds primary's by more than the allowed delta, or the canary's latency
    quantile exceeds primary's × ratio + slack. At 100 % weight primary serves no analysed traffic,
    so there is no baseline in the window: only the canary's sample size and absolute error rate
    are checked, and the reasons say so.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Collection
from dataclasses import dataclass

from gateway.rollout.model import AnalysisPolicy, ArmStats

#: The lower edge of latency bucket 1; bucket 0 holds everything faster.
LATENCY_FLOOR_S = 1e-5
#: The ratio between neighbouring latency bucket edges.
LATENCY_GROWTH = 1.04
#: The number of latency buckets (the last one is open-ended: ≥ ~5 000 s).
LATENCY_BUCKETS = 512
#: A window never holds more slices than this; longer windows get wider slices.
MAX_SLICES = 120

_INV_LOG_GROWTH = 1.0 / math.log(LATENCY_GROWTH)


def latency_bucket(latency_s: float) -> int:
    """The histogram bucket of a latency (NaN and negatives land in bucket 0)."""
    if not latency_s >= LATENCY_FLOOR_S:
        return 0
    index = int(math.log(latency_s / LATENCY_FLOOR_S) * _INV_LOG_GROWTH) + 1
    return index if index < LATENCY_BUCKETS else LATENCY_BUCKETS - 1


def bucket_latency(index: int) -> float:
    """The latency a bucket reports: its geometric midpoint (the floor for bucket 0)."""
    if index == 0:
        return LATENCY_FLOOR_S
    return LATENCY_FLOOR_S * LATENCY_GROWTH ** (index - 0.5)


def slice_width(window_s: float) -> float:
    """The slice width of a window: 1 s, or window / MAX_SLICES for windows longer than that."""
    return max(1.0, window_s / MAX_SLICES)


class ArmWindow:
    """One arm's requests over a sliding time window. Not thread-safe: use it from the event loop."""

    __slots__ = ("window_s", "slice_s", "_count", "_epochs", "_codes", "_latencies")

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self.slice_s = slice_width(window_s)
        self._count = math.ceil(window_s / self.slice_s)
        self._epochs = [-1] * self._count
        self._codes: list[dict[str, int]] = [{} for _ in range(self._count)]
        self._latencies: list[dict[int, int]] = [{} for _ in range(self._count)]

    def record(self, now: float, code_name: str, latency_s: float) -> None:
        """Count one request that ended with `code_name` after `latency_s` seconds, at monotonic `now`."""
        epoch = int(now // self.slice_s)
        position = epoch % self._count
        codes = self._codes[position]
        latencies = self._latencies[position]
        if self._epochs[position] != epoch:
            self._epochs[position] = epoch
            codes.clear()
            latencies.clear()
        codes[code_name] = codes.get(code_name, 0) + 1
        latency_index = latency_bucket(latency_s)
        latencies[latency_index] = latencies.get(latency_index, 0) + 1

    def snapshot(self, now: float, error_codes: Collection[str], quantile: float) -> ArmStats:
        """The window's numbers at `now`: requests, errors (codes in `error_codes`), the latency quantile."""
        newest = int(now // self.slice_s)
        oldest = newest - self._count + 1
        requests = errors = 0
        histogram: dict[int, int] = {}
        for position, epoch in enumerate(self._epochs):
            if not oldest <= epoch <= newest:
                continue
            for code, count in self._codes[position].items():
                requests += count
                if code in error_codes:
                    errors += count
            for index, count in self._latencies[position].items():
                histogram[index] = histogram.get(index, 0) + count
        if requests == 0:
            return ArmStats(requests=0, errors=0, error_rate=0.0, latency_s=None)
        return ArmStats(requests=requests, errors=errors, error_rate=errors / requests,
                        latency_s=_quantile(histogram, requests, quantile))


def _quantile(histogram: dict[int, int], total: int, quantile: float) -> float:
    """Nearest-rank quantile over a bucket histogram holding `total` samples."""
    rank = max(1, math.ceil(quantile * total))
    seen = 0
    for index in sorted(histogram):
        seen += histogram[index]
        if seen >= rank:
            return bucket_latency(index)
    raise AssertionError("histogram holds fewer samples than counted")


class CheckOutcome(enum.Enum):
    PASSED = "passed"
    FAILED = "failed"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome of one check, a sentence per criterion (with the numbers), and the numbers."""

    outcome: CheckOutcome
    reasons: tuple[str, ...]
    primary: ArmStats
    canary: ArmStats

    @property
    def summary(self) -> str:
        return "; ".join(self.reasons)


def check(policy: AnalysisPolicy, primary: ArmStats, canary: ArmStats, *,
          compare_with_primary: bool = True) -> CheckResult:
    """Compare the canary with primary over one window, by `policy`.

    With `compare_with_primary` False (the canary takes all analysed traffic) only the canary's
    sample size and its absolute error-rate limit are checked.
    """
    minimum = policy.min_requests_per_arm
    short = [f"{name} {stats.requests}" for name, stats in (("primary", primary), ("canary", canary))
             if stats.requests < minimum and (name == "canary" or compare_with_primary)]
    if short:
        reason = (f"too few requests to judge: {' and '.join(short)} in the window, fewer than the "
                  f"{minimum} needed on each arm")
        return CheckResult(CheckOutcome.INCONCLUSIVE, (reason,), primary, canary)

    failures: list[str] = []
    passes: list[str] = []
    limit = policy.max_error_rate
    if canary.error_rate > limit:
        failures.append(f"canary error rate {_rate(canary)} exceeds the limit {_pct(limit)}")
    else:
        passes.append(f"canary error rate {_rate(canary)} is within the limit {_pct(limit)}")
    if not compare_with_primary:
        passes.append("primary serves no analysed traffic at 100% weight, so there is no baseline to "
                      "compare error rate and latency with")
        return CheckResult(CheckOutcome.FAILED if failures else CheckOutcome.PASSED,
                           tuple(failures or passes), primary, canary)

    delta = policy.max_error_rate_delta
    if canary.error_rate > primary.error_rate + delta:
        failures.append(f"canary error rate {_rate(canary)} exceeds primary {_rate(primary)} + "
                        f"{delta * 100:.1f} pp")
    else:
        passes.append(f"canary error rate {_rate(canary)} is within primary {_rate(primary)} + "
                      f"{delta * 100:.1f} pp")

    label = f"p{policy.latency_quantile * 100:g}"
    assert canary.latency_s is not None and primary.latency_s is not None  # both arms have requests
    ceiling = primary.latency_s * policy.max_latency_ratio + policy.latency_slack_s
    comparison = (f"primary {label} {_ms(primary.latency_s)} x {policy.max_latency_ratio:g} + "
                  f"{_ms(policy.latency_slack_s)} = {_ms(ceiling)}")
    if canary.latency_s > ceiling:
        failures.append(f"canary {label} {_ms(canary.latency_s)} exceeds {comparison}")
    else:
        passes.append(f"canary {label} {_ms(canary.latency_s)} is within {comparison}")

    if failures:
        return CheckResult(CheckOutcome.FAILED, tuple(failures), primary, canary)
    return CheckResult(CheckOutcome.PASSED, tuple(passes), primary, canary)


def _pct(rate: float) -> str:
    return f"{rate * 100:.1f}%"


def _rate(stats: ArmStats) -> str:
    return f"{_pct(stats.error_rate)} ({stats.errors}/{stats.requests})"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"
