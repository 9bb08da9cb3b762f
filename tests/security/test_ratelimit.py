"""The per-principal token bucket, driven by an injected clock."""

from __future__ import annotations

import pytest

from searchgw.errors import ResourceExhausted
from searchgw.security import RateLimiter
from searchgw.testing import ManualClock


def test_burst_is_admitted_then_refused_with_the_wait_until_the_next_token():
    clock = ManualClock()
    limiter = RateLimiter(2.0, 3, clock=clock)
    for _ in range(3):
        limiter.acquire("alice")
    with pytest.raises(ResourceExhausted) as caught:
        limiter.acquire("alice")
    assert caught.value.retry_after == pytest.approx(0.5)
    assert caught.value.reason == "RATE_LIMITED"
    assert caught.value.metadata["principal"] == "alice"


def test_retry_after_shrinks_as_the_bucket_refills():
    clock = ManualClock()
    limiter = RateLimiter(4.0, 1, clock=clock)
    limiter.acquire("alice")
    clock.advance(0.1)
    with pytest.raises(ResourceExhausted) as caught:
        limiter.acquire("alice")
    assert caught.value.retry_after == pytest.approx(0.15)


def test_waiting_retry_after_is_enough_to_be_admitted():
    clock = ManualClock()
    limiter = RateLimiter(3.0, 2, clock=clock)
    limiter.acquire("alice")
    limiter.acquire("alice")
    with pytest.raises(ResourceExhausted) as caught:
        limiter.acquire("alice")
    clock.advance(caught.value.retry_after)
    limiter.acquire("alice")
    with pytest.raises(ResourceExhausted):
        limiter.acquire("alice")


def test_refill_is_capped_at_the_burst():
    clock = ManualClock()
    limiter = RateLimiter(10.0, 2, clock=clock)
    limiter.acquire("alice")
    clock.advance(3600)
    assert limiter.available("alice") == 2
    limiter.acquire("alice")
    limiter.acquire("alice")
    with pytest.raises(ResourceExhausted):
        limiter.acquire("alice")


def test_refused_calls_do_not_consume_tokens():
    clock = ManualClock()
    limiter = RateLimiter(1.0, 1, clock=clock)
    limiter.acquire("alice")
    for _ in range(5):
        with pytest.raises(ResourceExhausted):
            limiter.acquire("alice")
    clock.advance(1.0)
    limiter.acquire("alice")


def test_principals_have_separate_buckets():
    clock = ManualClock()
    limiter = RateLimiter(1.0, 1, clock=clock)
    limiter.acquire("alice")
    limiter.acquire("bob")
    with pytest.raises(ResourceExhausted):
        limiter.acquire("alice")


def test_full_buckets_are_forgotten_so_memory_stays_bounded():
    clock = ManualClock()
    limiter = RateLimiter(1.0, 1, clock=clock)
    for i in range(3000):
        limiter.acquire(f"peer-{i}")
        clock.advance(0.01)  # each bucket is full again 1s after its call
    assert len(limiter) < 1200


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (1, 0)])
def test_nonsense_limits_are_refused(rate, burst):
    with pytest.raises(ValueError):
        RateLimiter(rate, burst)
