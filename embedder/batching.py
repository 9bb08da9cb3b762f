"""Dynamic batching: concurrent requests share one model run, with no timer.

The approach of text-embeddings-inference: when the model is idle a request runs at once; while a
batch runs, arrivals queue, and the next batch forms from them the moment the model is free. A batch
is bounded by a padded-token budget (the longest input x the number of inputs, since inputs are
padded to the longest) and by a count. Within those bounds the oldest waiting input always goes
first, and the rest of the batch is filled with the inputs closest to it in length, so short and
long texts are not padded together when enough of both are waiting.

Inputs whose caller has gone (future cancelled) or whose deadline has passed are dropped before
the model sees them. The queue is bounded in inputs: a request that would overflow it is refused
whole with ResourceExhausted.

The model run itself is blocking; it happens in an executor thread so the event loop stays free.
There is no worker task between the callers and the model: an idle model is handed the requests
of a loop turn by one callback at the end of that turn, and a finished run's loop callback starts
the next batch before it answers the finished batch's callers, so the model never waits for the
callers' Python work. Several runners (one onnxruntime session each) may run batches at once.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import numpy as np
from opentelemetry import context as otel_context
from opentelemetry import trace

from searchgw.errors import DeadlineExceeded, ResourceExhausted, Unavailable

log = logging.getLogger(__name__)
_tracer = trace.get_tracer("searchgw.embedder.batching")


class Sized(Protocol):
    @property
    def n_tokens(self) -> int: ...


ItemT = TypeVar("ItemT", bound=Sized)


@dataclass(eq=False)
class PendingInput(Generic[ItemT]):
    """One input waiting for the model."""

    item: ItemT
    future: asyncio.Future[InputResult]
    enqueued_at: float
    deadline: float | None
    seq: int
    span_context: trace.SpanContext | None = None

    @property
    def n_tokens(self) -> int:
        return self.item.n_tokens


def plan_batch(pending: Sequence[PendingInput[ItemT]], *, max_batch_tokens: int,
               max_batch_size: int) -> list[PendingInput[ItemT]]:
    """Choose the next batch from waiting inputs (pure; no clock, no I/O).

    The oldest input is always taken. Then inputs are added in order of closeness in length to the
    batch so far, alternately shorter and longer neighbours, while the padded cost
    (longest x count) stays within `max_batch_tokens` and the count within `max_batch_size`.
    """
    if not pending:
        return []
    oldest = min(pending, key=lambda p: p.seq)
    by_length = sorted(pending, key=lambda p: (p.n_tokens, p.seq))
    start = by_length.index(oldest)
    batch = [oldest]
    longest = oldest.n_tokens
    lo, hi = start - 1, start + 1
    while len(batch) < max_batch_size and (lo >= 0 or hi < len(by_length)):
        # Prefer the neighbour that adds less padding; ties go to the older input.
        candidates = []
        if lo >= 0:
            candidates.append((0, by_length[lo].seq, lo))
        if hi < len(by_length):
            extra = by_length[hi].n_tokens - longest
            candidates.append((max(extra, 0), by_length[hi].seq, hi))
        _, _, index = min(candidates)
        chosen = by_length[index]
        new_longest = max(longest, chosen.n_tokens)
        if new_longest * (len(batch) + 1) > max_batch_tokens:
            if index == lo:
                lo = -1  # shorter inputs fit no better than this one; stop looking down
            else:
                hi = len(by_length)
            continue
        batch.append(chosen)
        longest = new_longest
        if index == lo:
            lo -= 1
        else:
            hi += 1
    return batch


@dataclass
class BatchStats:
    """What one model run did, for metrics."""

    size: int
    padded_tokens: int
    real_tokens: int
    queue_seconds: list[float]
    run_seconds: float


@dataclass
class InputResult:
    """One input's vector and where its time went."""

    vector: np.ndarray
    queue_seconds: float
    run_seconds: float


@dataclass
class _WorkerHealth:
    consecutive_failures: int = 0
    dead: bool = False
    listeners: list[Callable[[bool], Any]] = field(default_factory=list)


#: The context a batch's span starts in: none of its callers' (they are linked to it instead).
_NO_PARENT = otel_context.Context()


class DynamicBatcher(Generic[ItemT]):
    """Queues inputs for one model and feeds them to its runners in dynamic batches.

    `run_batch(items) -> np.ndarray[len(items), dim]` is blocking and runs on `executor`; pass a
    sequence of them (one per onnxruntime session, say) to let that many batches run at once, each
    on a runner of its own (`executor` then needs as many threads).
    `clock` is monotonic seconds; deadlines are on the same clock.
    After `failure_threshold` model runs fail in a row the worker counts as dead (health listeners
    hear False) until a run succeeds again.

    There is no worker task: a batch is planned and handed to the executor when a runner is free and
    an input waits, i.e. at the end of the loop turn in which a request arrived to an idle runner (so
    the requests of that turn share the batch), and inside the loop callback that receives a
    finished run (the next batch starts before the finished batch's callers are resumed).
    """

    def __init__(
        self,
        run_batch: Callable[[list[ItemT]], np.ndarray] | Sequence[Callable[[list[ItemT]], np.ndarray]],
        executor: Executor | None,
        *,
        max_batch_tokens: int,
        max_batch_size: int,
        max_queue_size: int,
        clock: Callable[[], float] = time.monotonic,
        on_batch: Callable[[BatchStats], None] | None = None,
        failure_threshold: int = 3,
    ) -> None:
        runners = list(run_batch) if isinstance(run_batch, Sequence) else [run_batch]
        if not runners:
            raise ValueError("at least one runner is required")
        self._idle_runners = runners
        self.runners = len(runners)
        self._executor = executor
        self.max_batch_tokens = max_batch_tokens
        self.max_batch_size = max_batch_size
        self.max_queue_size = max_queue_size
        self._clock = clock
        self._on_batch = on_batch
        self._failure_threshold = failure_threshold
        self._pending: list[PendingInput[ItemT]] = []
        self._seq = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._dispatch_scheduled = False
        self._stopping = False
        self._health = _WorkerHealth()

    # -- lifecycle -------------------------------------------------------------------------
    def add_runner(self, run_batch: Callable[[list[ItemT]], np.ndarray]) -> None:
        """One more runner: one more batch may run at once (the executor needs a thread for it)."""
        self._idle_runners.append(run_batch)
        self.runners += 1

    def start(self) -> None:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()

    async def stop(self) -> None:
        self._stopping = True
        self._fail_pending(Unavailable("the embedder is shutting down"))

    def add_health_listener(self, listener: Callable[[bool], Any]) -> None:
        self._health.listeners.append(listener)

    @property
    def healthy(self) -> bool:
        return self._loop is not None and not self._stopping and not self._health.dead

    @property
    def queue_depth(self) -> int:
        return len(self._pending)

    @property
    def running(self) -> int:
        """Model runs under way now."""
        return self.runners - len(self._idle_runners)

    # -- submitting ------------------------------------------------------------------------
    async def submit(self, items: Sequence[ItemT], *, deadline: float | None = None) -> list[InputResult]:
        """Queue the inputs of one request and wait for their vectors (request order)."""
        loop = self._loop
        if loop is None or self._stopping:
            raise Unavailable("the inference worker is not running")
        if len(self._pending) + len(items) > self.max_queue_size:
            raise ResourceExhausted(
                f"the embedding queue is full ({len(self._pending)} of {self.max_queue_size} inputs waiting); "
                "retry with backoff",
                retry_after=0.05,
            )
        now = self._clock()
        caller_span = trace.get_current_span().get_span_context()
        entries = []
        for item in items:
            self._seq += 1
            entries.append(PendingInput(item=item, future=loop.create_future(), enqueued_at=now, deadline=deadline,
                                        seq=self._seq, span_context=caller_span))
        self._pending.extend(entries)
        if self._idle_runners and not self._dispatch_scheduled:
            # At the end of this loop turn, not now: the other requests that arrived in the same turn join
            # the batch instead of waiting for a lone first one to finish.
            self._dispatch_scheduled = True
            loop.call_soon(self._scheduled_dispatch)
        try:
            if len(entries) == 1:
                return [await entries[0].future]
            return list(await asyncio.gather(*(e.future for e in entries)))
        except BaseException:
            for entry in entries:  # the caller left or one input failed: drop the rest
                if not entry.future.done():
                    entry.future.cancel()
            raise

    # -- running batches -------------------------------------------------------------------
    def _take_batch(self) -> list[PendingInput[ItemT]]:
        now = self._clock()
        live = []
        for entry in self._pending:
            if entry.future.done():
                continue  # cancelled by its caller
            if entry.deadline is not None and now >= entry.deadline:
                entry.future.set_exception(DeadlineExceeded("the deadline passed while the input was queued"))
                continue
            live.append(entry)
        if len(live) == 1:  # the common case when the model keeps up: no planning
            self._pending = []
            return live
        batch = plan_batch(live, max_batch_tokens=self.max_batch_tokens, max_batch_size=self.max_batch_size)
        chosen = set(map(id, batch))
        self._pending = [entry for entry in live if id(entry) not in chosen]
        return batch

    def _scheduled_dispatch(self) -> None:
        self._dispatch_scheduled = False
        self._dispatch()

    def _dispatch(self) -> None:
        """Start batches on the idle runners while inputs wait (on the event loop's thread)."""
        while self._idle_runners and self._pending and not self._stopping:
            batch = self._take_batch()
            if not batch:
                return
            runner = self._idle_runners.pop()
            links = [trace.Link(e.span_context) for e in batch if e.span_context is not None and e.span_context.is_valid]
            span = _tracer.start_span(
                "embed.batch", context=_NO_PARENT, links=links,
                attributes={"batch.size": len(batch), "batch.padded_tokens": max(e.n_tokens for e in batch) * len(batch)},
            )
            started = self._clock()
            try:
                items = [e.item for e in batch]
                if self._executor is None:
                    running = self._loop_or_raise().run_in_executor(None, runner, items)
                    running.add_done_callback(functools.partial(self._finished, batch, runner, span, started))
                else:
                    future = self._executor.submit(runner, items)
                    future.add_done_callback(functools.partial(self._from_thread, batch, runner, span, started))
            except Exception as exc:  # e.g. the executor is shut down: this run failed before it began
                span.end()
                self._idle_runners.append(runner)
                self._fail_batch(batch, exc)

    def _loop_or_raise(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise Unavailable("the inference worker is not running")
        return self._loop

    def _from_thread(self, batch: list[PendingInput[ItemT]], runner: Callable[[list[ItemT]], np.ndarray],
                     span: trace.Span, started: float, done: Future[np.ndarray]) -> None:
        """The executor's done callback (on its thread): hand the result to the event loop."""
        try:
            self._loop_or_raise().call_soon_threadsafe(self._finished, batch, runner, span, started, done)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass

    def _finished(self, batch: list[PendingInput[ItemT]], runner: Callable[[list[ItemT]], np.ndarray],
                  span: trace.Span, started: float, done: Future[np.ndarray] | asyncio.Future[np.ndarray] | None,
                  error: BaseException | None = None) -> None:
        """A run ended (on the event loop): start the next batch, then answer this one's callers."""
        finished = self._clock()
        vectors = None
        if error is None and done is not None:
            if done.cancelled():
                error = Unavailable("the model run was cancelled")
            else:
                error = done.exception()
                vectors = done.result() if error is None else None
        span.end()
        self._idle_runners.append(runner)
        try:
            self._dispatch()
        except Exception:  # a bug in planning must not strand this batch's callers
            log.exception("could not start the next batch")
        if error is not None or vectors is None:
            self._fail_batch(batch, error)
            return
        run_seconds = finished - started
        for row, entry in enumerate(batch):
            if not entry.future.done():
                entry.future.set_result(InputResult(vectors[row], started - entry.enqueued_at, run_seconds))
        self._note_run(ok=True)
        if self._on_batch is not None:
            longest = max(entry.n_tokens for entry in batch)
            self._on_batch(BatchStats(
                size=len(batch), padded_tokens=longest * len(batch),
                real_tokens=sum(entry.n_tokens for entry in batch),
                queue_seconds=[started - entry.enqueued_at for entry in batch], run_seconds=run_seconds,
            ))

    def _fail_batch(self, batch: list[PendingInput[ItemT]], error: BaseException | None) -> None:
        """The model run failed: fail this batch's inputs, keep serving."""
        log.error("model run failed for a batch of %d", len(batch), exc_info=error)
        for entry in batch:
            if not entry.future.done():
                entry.future.set_exception(Unavailable("the model run failed; retry"))
        self._note_run(ok=False)

    def _note_run(self, *, ok: bool) -> None:
        health = self._health
        was_dead = health.dead
        health.consecutive_failures = 0 if ok else health.consecutive_failures + 1
        health.dead = health.consecutive_failures >= self._failure_threshold
        if health.dead != was_dead:
            self._announce(not health.dead)

    def _announce(self, healthy: bool) -> None:
        for listener in self._health.listeners:
            listener(healthy)

    def _fail_pending(self, exc: Exception) -> None:
        for entry in self._pending:
            if not entry.future.done():
                entry.future.set_exception(exc)
        self._pending.clear()
