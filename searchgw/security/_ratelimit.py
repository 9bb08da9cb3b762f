"""A token bucket per principal.

Each principal's bucket holds up to `burst` calls and refills at `rate_per_s`. A call takes one; an
empty bucket refuses with `ResourceExhausted(retry_after=…)`, the seconds until the next call will
be admitted. Full buckets are forgotten (a new bucket starts full, so this changes nothing), which
keeps memory bounded by the principals active in the last `burst / rate_per_s` seconds.

Not thread-safe: it is called from the event loop only, and `acquire` never awaits.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from searchgw.errors import ResourceExhausted

_MIN_SWEEP = 1024
#: Float slack, so a bucket refilled to 0.999999999… by rounding still admits the call.
_EPSILON = 1e-9


class RateLimiter:
    """Token buckets keyed by principal name; `clock` returns monotonic seconds."""

    def __init__(self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        if not rate_per_s > 0:
            raise ValueError(f"rate_per_s must be positive, got {rate_per_s!r}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst!r}")
        self.rate_per_s = float(rate_per_s)
        self.burst = int(burst)
        self._clock = clock
        # principal -> (tokens left, clock reading of that count)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._sweep_at = _MIN_SWEEP

    def __len__(self) -> int:
        """How many principals have a bucket that is not full (or was not full when last seen)."""
        return len(self._buckets)

    def _level(self, principal: str, now: float) -> float:
        state = self._buckets.get(principal)
        if state is None:
            return float(self.burst)
        tokens, since = state
        return min(float(self.burst), tokens + max(0.0, now - since) * self.rate_per_s)

    def available(self, principal: str) -> float:
        """Calls `principal` could make right now (fractional while refilling)."""
        return self._level(principal, self._clock())

    def acquire(self, principal: str) -> None:
        """Take one call from `principal`'s bucket, or raise `ResourceExhausted` with the wait."""
        now = self._clock()
        tokens = self._level(principal, now)
        if tokens < 1.0 - _EPSILON:
            self._buckets[principal] = (tokens, now)
            retry_after = (1.0 - tokens) / self.rate_per_s
            raise ResourceExhausted(
                f"rate limit exceeded for {principal!r} ({self.rate_per_s:g} calls/s, burst {self.burst}); "
                f"retry in {retry_after:.3g}s",
                retry_after=retry_after,
                reason="RATE_LIMITED",
                metadata={"principal": principal, "rate_per_s": f"{self.rate_per_s:g}", "burst": str(self.burst)},
            )
        self._buckets[principal] = (max(0.0, tokens - 1.0), now)
        if len(self._buckets) >= self._sweep_at:
            self._sweep(now)

    def _sweep(self, now: float) -> None:
        """Forget full buckets; amortised O(1) per call."""
        full = [name for name in self._buckets if self._level(name, now) >= self.burst]
        for name in full:
            del self._buckets[name]
        self._sweep_at = max(_MIN_SWEEP, 2 * len(self._buckets))
