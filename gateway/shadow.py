"""Shadow searches: a sampled share of live searches also runs elsewhere, off the request path.

`ShadowSampler` is the generic part, free of rollouts and of gRPC: it decides whether a search is
sampled (`sampled(rate)`), and runs a comparison job as a background task that nobody waits for, at
most `max_in_flight` at a time; a job offered while that many run is dropped and counted
(`dropped_busy`), never queued behind the caller. A job's failure is counted (`failed`) and logged at
debug level; it never reaches the caller, whose answer was computed before the job was offered.

A job is any coroutine function; `shadow_comparison(first, second, k, rbo_p)` builds the usual one from
two "run this query on arm X" callables and compares their top k (`rollout.quality.compare_rankings`:
overlap@k and rank-biased overlap, the pre-flight's implementations, and the ids that differ).
SearchCore uses it for rollouts (the served arm's answer against the other arm's, see
`SearchCore._offer_shadow`) and for experiments (control's answer against the serving variant's,
`SearchCore._offer_experiment_shadow`, counted under the experiment's own metrics through `observe=`);
both share the one sampler, so `max_in_flight` bounds all shadow work together:

    sampler = ShadowSampler(4, observe=count_outcome)
    if sampler.sampled(0.05):
        sampler.submit("exp1", shadow_comparison(run_on_control, run_on_variant, 10, 0.9), record)

Outcomes passed to `observe(label, outcome)`: `compared`, `failed`, `dropped_busy`, and whatever the
caller reports with `skip(label, outcome)` (e.g. `skipped_vector`, `skipped_fallback`).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import random
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import TypeVar

from searchgw.gateway.rollout.quality import ShadowComparison, compare_rankings

log = logging.getLogger(__name__)

COMPARED = "compared"
FAILED = "failed"
DROPPED_BUSY = "dropped_busy"
#: A raw-vector query of a model canary: it belongs to one arm's space, so there is nothing to compare.
SKIPPED_VECTOR = "skipped_vector"
#: The canary failed and primary answered: the served answer is not the canary's.
SKIPPED_FALLBACK = "skipped_fallback"

ResultT = TypeVar("ResultT")
#: "Run this query on arm X": the ids it returns, best first.
RunArm = Callable[[], Awaitable[Sequence[Hashable]]]
Observe = Callable[[str, str], None]


def shadow_comparison(first: RunArm, second: RunArm, k: int,
                      rbo_p: float) -> Callable[[], Awaitable[ShadowComparison]]:
    """A job that runs both arms (one after the other: a shadow job holds one slot) and compares them."""

    async def compare() -> ShadowComparison:
        first_ids = await first()
        second_ids = await second()
        return compare_rankings(first_ids, second_ids, k, rbo_p)

    return compare


def _ignore(label: str, outcome: str) -> None:
    return None


class ShadowSampler:
    """Samples searches and runs their shadow jobs in the background, bounded. Event-loop thread only.

    `max_in_flight` 0 samples nothing. `random` is injectable so tests decide what is sampled.
    """

    def __init__(self, max_in_flight: int, *, observe: Observe = _ignore,
                 random: Callable[[], float] = random.random) -> None:
        if max_in_flight < 0:
            raise ValueError("max_in_flight must not be negative")
        self.max_in_flight = max_in_flight
        self._observe = observe
        self._random = random
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def sampled(self, rate: float) -> bool:
        """Whether this search is in the sample (probability `rate`)."""
        return rate > 0 and self.max_in_flight > 0 and self._random() < rate

    def skip(self, label: str, outcome: str, *, observe: Observe | None = None) -> None:
        """Count a sampled search that has nothing to compare (`outcome` says why)."""
        (observe or self._observe)(label, outcome)

    def submit(self, label: str, job: Callable[[], Awaitable[ResultT]],
               on_result: Callable[[ResultT], None], *, observe: Observe | None = None) -> bool:
        """Run `job` in the background and hand its result to `on_result`; False (counted as
        `dropped_busy`) when `max_in_flight` jobs are running already. Call from the event loop.
        `observe` counts this job's outcome instead of the sampler's own (an experiment's metrics)."""
        observe = observe or self._observe
        if len(self._tasks) >= self.max_in_flight:
            observe(label, DROPPED_BUSY)
            return False
        # A context of its own: the job is no part of the request that offered it (its trace and log
        # context end with the answer).
        task = asyncio.get_running_loop().create_task(self._run(label, job, on_result, observe), name=f"shadow-{label}",
                                                      context=contextvars.Context())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _run(self, label: str, job: Callable[[], Awaitable[ResultT]],
                   on_result: Callable[[ResultT], None], observe: Observe) -> None:
        try:
            result = await job()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a shadow job never fails anyone: count it and go on
            log.debug("shadow search failed", extra={"label": label, "error": repr(exc)})
            observe(label, FAILED)
            return
        try:
            on_result(result)
        except Exception:
            log.exception("recording a shadow comparison failed", extra={"label": label})
            observe(label, FAILED)
            return
        observe(label, COMPARED)

    async def drain(self) -> None:
        """Wait for the jobs running now (tests, and a clean stop)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        """Cancel the jobs still running."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
