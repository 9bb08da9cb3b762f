"""The latency histogram: bounded relative error, and merges that are exact."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from searchgw.loadgen import LatencyHistogram, Tally
from searchgw.loadgen._histogram import bucket_bounds, bucket_index

QUANTILES = [0.0, 0.01, 0.25, 0.5, 0.9, 0.99, 0.999, 1.0]
RELATIVE_ERROR = 1 / 128

latencies = st.integers(min_value=0, max_value=10**12)  # up to ~17 minutes in ns


def histogram_of(values) -> LatencyHistogram:
    histogram = LatencyHistogram()
    for value in values:
        histogram.record(value)
    return histogram


def exact_percentile(values: list[int], quantile: float) -> int:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(quantile * len(ordered))) - 1]


@given(latencies)
def test_a_value_lies_in_its_bucket_and_buckets_are_narrow(value):
    low, high = bucket_bounds(bucket_index(value))
    assert low <= value <= high
    assert high - low <= max(0, low * RELATIVE_ERROR)


def test_buckets_are_contiguous():
    previous_high = -1
    for index in range(5000):
        low, high = bucket_bounds(index)
        assert low == previous_high + 1
        assert bucket_index(low) == bucket_index(high) == index
        previous_high = high


@given(st.lists(latencies, min_size=1, max_size=300))
def test_percentiles_are_never_low_and_at_most_one_percent_high(values):
    histogram = histogram_of(values)
    for quantile, reported in zip(QUANTILES, histogram.percentiles(QUANTILES)):
        exact = exact_percentile(values, quantile)
        assert exact <= reported <= exact * (1 + RELATIVE_ERROR)
    assert histogram.value_at(1.0) == max(values)
    assert (histogram.count, histogram.min_ns, histogram.max_ns) == (len(values), min(values), max(values))
    assert histogram.mean_ns == pytest.approx(sum(values) / len(values))


@given(st.lists(st.lists(latencies, max_size=50), min_size=1, max_size=6))
def test_merged_workers_equal_one_histogram_fed_every_value(per_worker):
    merged = LatencyHistogram.merged(histogram_of(values) for values in per_worker)
    everything = histogram_of(value for values in per_worker for value in values)
    assert merged == everything
    if everything.count:
        assert merged.percentiles(QUANTILES) == everything.percentiles(QUANTILES)


@given(st.lists(latencies, max_size=100))
def test_the_json_form_round_trips(values):
    histogram = histogram_of(values)
    assert LatencyHistogram.from_dict(json.loads(json.dumps(histogram.to_dict()))) == histogram


def test_negative_latencies_and_empty_percentiles_are_refused():
    with pytest.raises(ValueError, match="negative"):
        LatencyHistogram().record(-1)
    with pytest.raises(ValueError, match="no values"):
        LatencyHistogram().value_at(0.5)
    with pytest.raises(ValueError, match="quantiles"):
        histogram_of([1]).value_at(1.5)


calls = st.tuples(st.sampled_from(["OK", "UNAVAILABLE", "DEADLINE_EXCEEDED"]),
                  st.sampled_from(["primary", "canary", "none"]), latencies, st.booleans())


@given(st.lists(st.lists(calls, max_size=30), min_size=1, max_size=4))
def test_tallies_merge_exactly_and_totals_agree_by_code_and_by_arm(per_worker):
    merged, everything = Tally(), Tally()
    for worker_calls in per_worker:
        tally = Tally()
        for code, arm, latency, fallback in worker_calls:
            tally.record_call(code, arm, latency, fallback=fallback)
            everything.record_call(code, arm, latency, fallback=fallback)
        merged.merge(tally)
    assert merged.cells == everything.cells
    assert merged.fallbacks == everything.fallbacks
    by_code, by_arm = merged.by_code(), merged.by_arm()
    assert merged.calls == sum(h.count for h in by_code.values()) == sum(h.count for h in by_arm.values())
    assert merged.latency() == LatencyHistogram.merged(by_code.values()) == LatencyHistogram.merged(by_arm.values())
