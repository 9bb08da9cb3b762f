"""Anytime-valid sequential tests on counts: the statistics behind every rollout decision.

Each test here is an *e-process*: a non-negative number that, while its null hypothesis holds, has
expectation at most 1 at every moment, however the moments are chosen. By Ville's inequality the
chance that it *ever* reaches 1/α is at most α, so it may be looked at after every second, every
check, for as long as a stage lasts, without the false-alarm inflation of re-running a fixed-sample
test on overlapping windows. The always-valid p-value is 1 / (the largest e-value seen so far).

All three tests are mixtures of likelihood ratios over a fixed grid of alternatives (a discrete
prior chosen before any data). A mixture of martingales with weights summing to 1 is a martingale,
so validity needs no asymptotics; the grid only limits how finely the effect is located.

RateRatioTest — canary events vs primary events (errors; calls slower than a threshold)
    Lindon & Malek (NeurIPS 2022, "Anytime-valid inference for multinomial count data") model each
    arm's events as a Poisson process and test the arms' rates through the share of events that falls
    on each arm. We condition on the traffic each arm actually received, second by second, instead
    of on the configured weight, so keys that send more traffic than others cannot bias the test:
    in a second where the canary served n_c calls and primary n_p, an event comes from the canary
    with probability ρθ / (ρθ + 1 − θ), θ = n_c / (n_c + n_p), where ρ is the ratio of the canary's
    per-call event rate to primary's. The log-likelihood of ρ gains
        e_c · log ρ − (e_c + e_p) · log(ρθ + 1 − θ)
    per second, which is 0 at ρ = 1. Under the null (ρ ≤ 1: the canary no worse) the e-value
    Σ_g w_g · exp(ℓ(ρ_g)), over grid points ρ_g > 1, is a supermartingale. (With per-call Bernoulli
    events the exact conditional law is hypergeometric, which is dominated in convex order by the
    binomial used here — Hoeffding 1963 — so the test stays valid; the ratio is then an odds-like
    effect, exact as a rate ratio for rare events.) The confidence sequence for ρ is the set of
    grid points ρ0 against which a fixed two-sided mixture (centred at 1) stays below 1/α.

RateLimitTest — one arm's event rate against a fixed limit (the absolute guard; a captured baseline)
    Calls are Bernoulli(p); H0: p ≤ p0. The mixture of (p/p0)^s ((1−p)/(1−p0))^f over p > p0 (a
    half-normal prior on the log-odds distance) is a supermartingale for every p ≤ p0. A canary that
    fails every call against a 5 % limit is rejected at α = 0.01 after 3 calls.

SampleRatioTest — does the split of routing keys match the configured weight?
    Each new routing key lands on the canary with probability w (the bucket hash is uniform), so the
    canary's count of new keys is binomial. The Bayes factor of a Beta(c·w, c·(1−w)) mixture against
    the point null w (the two-arm case of Lindon & Malek's Dirichlet-multinomial test) is a
    martingale under the null.

Everything here is a pure function of counts: no clock, no I/O, no globals that change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

#: The ratio grid: 1/64 … 64, log-spaced, with ρ = 1 exactly at the centre.
_LOG_RATIO_GRID = np.linspace(-math.log(64.0), math.log(64.0), 97)
RATIO_GRID = np.exp(_LOG_RATIO_GRID)
_ONE = 48
assert abs(RATIO_GRID[_ONE] - 1.0) < 1e-12
#: The prior scale on log ρ (a canary 10× worse sits at 1.5 prior standard deviations).
RATIO_PRIOR_SCALE = 1.5
_TWO_SIDED = np.exp(-0.5 * (_LOG_RATIO_GRID / RATIO_PRIOR_SCALE) ** 2)
_TWO_SIDED /= _TWO_SIDED.sum()
_ONE_SIDED = np.where(_LOG_RATIO_GRID > 0, _TWO_SIDED, 0.0)
_ONE_SIDED /= _ONE_SIDED.sum()
_LOG_ONE_SIDED = np.log(np.where(_ONE_SIDED > 0, _ONE_SIDED, 1e-300))
_LOG_TWO_SIDED = np.log(_TWO_SIDED)

#: The log-odds distances above the limit that RateLimitTest mixes over, and their prior weights.
_LIMIT_GRID = np.linspace(0.05, 10.0, 80)
LIMIT_PRIOR_SCALE = 3.0
_LIMIT_WEIGHTS = np.exp(-0.5 * (_LIMIT_GRID / LIMIT_PRIOR_SCALE) ** 2)
_LIMIT_WEIGHTS /= _LIMIT_WEIGHTS.sum()
_LOG_LIMIT_WEIGHTS = np.log(_LIMIT_WEIGHTS)

#: The concentration of the SampleRatioTest's Beta prior (Lindon & Malek use a few hundred).
SAMPLE_RATIO_CONCENTRATION = 100.0


def _logsumexp(values: np.ndarray) -> float:
    top = float(values.max())
    if top == -math.inf:
        return -math.inf
    return top + math.log(float(np.exp(values - top).sum()))


def _e_value(log_e: float) -> float:
    """exp(log_e), saturating instead of overflowing."""
    return math.exp(min(log_e, 700.0))


@dataclass(frozen=True, slots=True)
class TestResult:
    """What a test says now: its e-value, the always-valid p-value, and the effect with its bounds."""

    e_value: float
    #: min(1, 1 / the largest e-value seen so far).
    p_value: float
    rejected: bool
    #: The effect's point estimate (a ratio for RateRatioTest, a rate for the others).
    estimate: float
    #: The confidence sequence at level 1 − α: [lower, upper].
    lower: float
    upper: float


class RateRatioTest:
    """H0: the canary's per-call event rate is at most primary's. Feed it one second at a time."""

    __slots__ = ("alpha", "log_likelihood", "max_log_e", "canary_events", "canary_calls", "primary_events",
                 "primary_calls")

    def __init__(self, alpha: float) -> None:
        self.alpha = alpha
        #: ℓ(ρ) at every grid point (ℓ(1) = 0 always).
        self.log_likelihood = np.zeros_like(RATIO_GRID)
        self.max_log_e = -math.inf
        self.canary_events = self.canary_calls = self.primary_events = self.primary_calls = 0

    def add(self, canary_events: int, canary_calls: int, primary_events: int, primary_calls: int) -> None:
        """Add one second's counts (events are a subset of calls on each arm)."""
        self.canary_events += canary_events
        self.canary_calls += canary_calls
        self.primary_events += primary_events
        self.primary_calls += primary_calls
        events = canary_events + primary_events
        if events and canary_calls and primary_calls:
            share = canary_calls / (canary_calls + primary_calls)
            self.log_likelihood += (canary_events * _LOG_RATIO_GRID
                                    - events * np.log(RATIO_GRID * share + (1.0 - share)))
            if canary_events:  # a second without canary events can only lower the e-value
                self.max_log_e = max(self.max_log_e, self.log_e())

    def log_e(self) -> float:
        return _logsumexp(_LOG_ONE_SIDED + self.log_likelihood)

    def result(self) -> TestResult:
        log_e = self.log_e()
        best = max(self.max_log_e, log_e)
        threshold = math.log(1.0 / self.alpha)
        # The confidence sequence: ρ_g survives while a two-sided mixture centred on it stays < 1/α.
        mixture = _logsumexp(_LOG_TWO_SIDED + self.log_likelihood)
        inside = np.nonzero(mixture - self.log_likelihood < threshold)[0]
        lower = float(RATIO_GRID[inside[0]]) if inside.size else math.nan
        upper = float(RATIO_GRID[inside[-1]]) if inside.size else math.nan
        if inside.size and inside[0] == 0:
            lower = 0.0
        if inside.size and inside[-1] == RATIO_GRID.size - 1:
            upper = math.inf
        return TestResult(e_value=_e_value(log_e), p_value=min(1.0, math.exp(-best)), rejected=best >= threshold,
                          estimate=rate_ratio(self.canary_events, self.canary_calls, self.primary_events,
                                              self.primary_calls),
                          lower=lower, upper=upper)

    def to_json(self) -> dict[str, Any]:
        return {"ll": self.log_likelihood.tolist(), "max": finite_or_none(self.max_log_e),
                "counts": [self.canary_events, self.canary_calls, self.primary_events, self.primary_calls]}

    @classmethod
    def from_json(cls, alpha: float, data: dict[str, Any]) -> RateRatioTest:
        test = cls(alpha)
        test.log_likelihood = np.asarray(data["ll"], dtype=float)
        test.max_log_e = -math.inf if data["max"] is None else float(data["max"])
        test.canary_events, test.canary_calls, test.primary_events, test.primary_calls = data["counts"]
        return test


def finite_or_none(value: float) -> float | None:
    """The value, or None for ±∞ and NaN (for JSON that other tools read)."""
    return value if math.isfinite(value) else None


def rate_ratio(canary_events: int, canary_calls: int, primary_events: int, primary_calls: int) -> float:
    """(canary events / calls) ÷ (primary events / calls); NaN without calls, ∞ when primary had none."""
    if not canary_calls or not primary_calls:
        return math.nan
    canary_rate = canary_events / canary_calls
    primary_rate = primary_events / primary_calls
    if primary_rate == 0:
        return math.nan if canary_rate == 0 else math.inf
    return canary_rate / primary_rate


class RateLimitTest:
    """H0: the per-call event rate is at most `limit`. Counts are cumulative; feed totals."""

    __slots__ = ("alpha", "limit", "max_log_e", "events", "calls", "_log_ratio_event", "_log_ratio_calm")

    def __init__(self, alpha: float, limit: float) -> None:
        if not 0.0 < limit < 1.0:
            raise ValueError(f"limit must lie in (0, 1); got {limit}")
        self.alpha = alpha
        self.limit = limit
        self.max_log_e = -math.inf
        self.events = self.calls = 0
        alternatives = 1.0 / (1.0 + math.exp(-math.log(limit / (1.0 - limit))) * np.exp(-_LIMIT_GRID))
        self._log_ratio_event = np.log(alternatives / limit)
        self._log_ratio_calm = np.log((1.0 - alternatives) / (1.0 - limit))

    def update(self, events: int, calls: int) -> None:
        """Set the cumulative totals (they only grow) and track the largest e-value."""
        grew = events > self.events or not self.calls  # calls without events only lower the e-value
        self.events, self.calls = events, calls
        if grew:
            self.max_log_e = max(self.max_log_e, self.log_e())

    def log_e(self) -> float:
        if not self.calls:
            return -math.inf
        return _logsumexp(_LOG_LIMIT_WEIGHTS + self.events * self._log_ratio_event
                          + (self.calls - self.events) * self._log_ratio_calm)

    def result(self) -> TestResult:
        log_e = self.log_e()
        best = max(self.max_log_e, log_e)
        rate = self.events / self.calls if self.calls else math.nan
        lower, upper = rate_bounds(self.events, self.calls, self.alpha)
        return TestResult(e_value=_e_value(log_e) if self.calls else 0.0, p_value=min(1.0, math.exp(-best)),
                          rejected=best >= math.log(1.0 / self.alpha), estimate=rate, lower=lower, upper=upper)


class SampleRatioTest:
    """H0: each new routing key lands on the canary with probability `weight` (the configured split)."""

    __slots__ = ("alpha", "weight", "max_log_e", "canary_units", "units")

    def __init__(self, alpha: float, weight: float) -> None:
        self.alpha = alpha
        self.weight = weight
        self.max_log_e = -math.inf
        self.canary_units = self.units = 0

    @property
    def applicable(self) -> bool:
        return 0.0 < self.weight < 1.0

    def update(self, canary_units: int, units: int) -> None:
        self.canary_units, self.units = canary_units, units
        if self.applicable:
            self.max_log_e = max(self.max_log_e, self.log_e())

    def log_e(self) -> float:
        if not self.applicable or not self.units:
            return -math.inf
        a = SAMPLE_RATIO_CONCENTRATION * self.weight
        b = SAMPLE_RATIO_CONCENTRATION * (1.0 - self.weight)
        y, n = self.canary_units, self.units
        return (_log_beta(a + y, b + n - y) - _log_beta(a, b)
                - y * math.log(self.weight) - (n - y) * math.log1p(-self.weight))

    def result(self) -> TestResult:
        log_e = self.log_e()
        best = max(self.max_log_e, log_e)
        share = self.canary_units / self.units if self.units else math.nan
        lower, upper = rate_bounds(self.canary_units, self.units, self.alpha)
        return TestResult(e_value=_e_value(log_e) if self.units else 0.0, p_value=min(1.0, math.exp(-best)),
                          rejected=self.applicable and best >= math.log(1.0 / self.alpha), estimate=share,
                          lower=lower, upper=upper)


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def _log_binomial_bayes_factor(events: int, calls: int, rate: float) -> float:
    """log of the Beta(½, ½) mixture's Bayes factor against the point rate (for confidence bounds)."""
    if rate <= 0.0:
        return math.inf if events else -math.inf
    if rate >= 1.0:
        return math.inf if events < calls else -math.inf
    return (_log_beta(0.5 + events, 0.5 + calls - events) - _log_beta(0.5, 0.5)
            - events * math.log(rate) - (calls - events) * math.log1p(-rate))


def rate_bounds(events: int, calls: int, alpha: float) -> tuple[float, float]:
    """A (1 − α) confidence sequence for a Bernoulli rate after `events` of `calls`: [lower, upper].

    The set of rates whose Beta(½, ½)-mixture Bayes factor stays below 1/α; valid at every n, so
    also as a fixed-sample interval. (0, 1) without calls.
    """
    if not calls:
        return 0.0, 1.0
    threshold = math.log(1.0 / alpha)
    centre = events / calls

    def outside(rate: float) -> bool:
        return _log_binomial_bayes_factor(events, calls, rate) >= threshold

    def search(inside: float, out: float) -> float:
        for _ in range(60):
            middle = 0.5 * (inside + out)
            if outside(middle):
                out = middle
            else:
                inside = middle
        return inside

    lower = 0.0 if not outside(0.0) else search(centre, 0.0)
    upper = 1.0 if not outside(1.0) else search(centre, 1.0)
    return lower, upper
