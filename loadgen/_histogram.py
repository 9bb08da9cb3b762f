"""LatencyHistogram: a mergeable log-linear histogram of latencies in nanoseconds.

The buckets follow HdrHistogram's layout. Values below 256 ns each have a bucket of their own;
above that, every power of two [2^k, 2^(k+1)) is cut into 128 equal sub-buckets, so a bucket is
never wider than 1/128 (0.79 %) of its lowest value:

    index:   0 1 2 … 255 | 256 … 383   | 384 … 511   | …
    values:  0 1 2 … 255 | 256 … 511   | 512 … 1023  | …
    width:   1           | 2           | 4           | doubling with each power of two

A percentile is reported as the highest value of its bucket (capped at the recorded maximum), so
it is never below the true value and at most 0.79 % above it.

Counts are plain integers in a sparse mapping, so histograms recorded by different workers merge
exactly by adding counts: the merged percentiles equal those of one histogram fed every value.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

__all__ = ["LatencyHistogram", "bucket_bounds", "bucket_index"]

#: log2 of the sub-buckets per power of two; 7 gives 128 and a relative bucket width of at most 1/128.
SUB_BUCKET_BITS = 7


def bucket_index(value: int) -> int:
    """The bucket that holds `value` (an integer >= 0)."""
    shift = max(0, value.bit_length() - (SUB_BUCKET_BITS + 1))
    return (shift << SUB_BUCKET_BITS) + (value >> shift)


def bucket_bounds(index: int) -> tuple[int, int]:
    """The lowest and highest value (inclusive) that fall into bucket `index`."""
    shift = max(0, (index >> SUB_BUCKET_BITS) - 1)
    mantissa = index - (shift << SUB_BUCKET_BITS)
    return mantissa << shift, ((mantissa + 1) << shift) - 1


class LatencyHistogram:
    """Latencies in integer nanoseconds; `record` one, `merge` another, read `percentiles`."""

    __slots__ = ("_counts", "count", "max_ns", "min_ns", "total_ns")

    def __init__(self) -> None:
        self._counts: dict[int, int] = {}
        self.count = 0
        self.total_ns = 0
        self.min_ns = 0
        self.max_ns = 0

    def record(self, value_ns: int) -> None:
        if value_ns < 0:
            raise ValueError(f"a latency cannot be negative ({value_ns} ns)")
        index = bucket_index(value_ns)
        self._counts[index] = self._counts.get(index, 0) + 1
        self.min_ns = value_ns if self.count == 0 else min(self.min_ns, value_ns)
        self.max_ns = max(self.max_ns, value_ns)
        self.count += 1
        self.total_ns += value_ns

    def merge(self, other: LatencyHistogram) -> None:
        """Add `other`'s counts to this histogram (exact: nothing is interpolated)."""
        if other.count == 0:
            return
        for index, count in other._counts.items():
            self._counts[index] = self._counts.get(index, 0) + count
        self.min_ns = other.min_ns if self.count == 0 else min(self.min_ns, other.min_ns)
        self.max_ns = max(self.max_ns, other.max_ns)
        self.count += other.count
        self.total_ns += other.total_ns

    @classmethod
    def merged(cls, histograms: Iterable[LatencyHistogram]) -> LatencyHistogram:
        result = cls()
        for histogram in histograms:
            result.merge(histogram)
        return result

    @property
    def mean_ns(self) -> float:
        return self.total_ns / self.count if self.count else 0.0

    def percentiles(self, quantiles: Sequence[float]) -> list[int]:
        """The value at each quantile (0..1): the smallest recorded value with at least that share
        of values at or below it, as the top of its bucket. Raises ValueError when empty."""
        if self.count == 0:
            raise ValueError("no values recorded")
        if any(not 0.0 <= q <= 1.0 for q in quantiles):
            raise ValueError(f"quantiles must lie in [0, 1]: {list(quantiles)}")
        ranks = [max(1, math.ceil(q * self.count)) for q in quantiles]
        values: dict[int, int] = {}
        pending = sorted(set(ranks))
        seen = 0
        for index in sorted(self._counts):
            seen += self._counts[index]
            while pending and pending[0] <= seen:
                values[pending.pop(0)] = min(self.max_ns, bucket_bounds(index)[1])
            if not pending:
                break
        return [values[rank] for rank in ranks]

    def value_at(self, quantile: float) -> int:
        return self.percentiles([quantile])[0]

    def buckets(self) -> Iterator[tuple[int, int, int]]:
        """(lowest value, highest value, count) of every non-empty bucket, in value order."""
        for index in sorted(self._counts):
            low, high = bucket_bounds(index)
            yield low, high, self._counts[index]

    def to_dict(self) -> dict[str, Any]:
        return {"unit": "ns", "count": self.count, "total": self.total_ns, "min": self.min_ns,
                "max": self.max_ns, "buckets": [list(bucket) for bucket in self.buckets()]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LatencyHistogram:
        if data.get("unit") != "ns":
            raise ValueError(f"unsupported histogram unit {data.get('unit')!r}")
        histogram = cls()
        for low, _high, count in data["buckets"]:
            histogram._counts[bucket_index(low)] = count
        histogram.count, histogram.total_ns = data["count"], data["total"]
        histogram.min_ns, histogram.max_ns = data["min"], data["max"]
        return histogram

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LatencyHistogram):
            return NotImplemented
        return (self._counts, self.count, self.total_ns, self.min_ns, self.max_ns) == (
            other._counts, other.count, other.total_ns, other.min_ns, other.max_ns)

    def __repr__(self) -> str:
        return f"LatencyHistogram(count={self.count}, min_ns={self.min_ns}, max_ns={self.max_ns})"
