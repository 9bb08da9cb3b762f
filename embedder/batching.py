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
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import numpy as np
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


class DynamicBatcher(Generic[ItemT]):
    """Queues inputs for one model and feeds them to `run_batch` in dynamic batches.

    `run_batch(items) -> np.ndarray[len(items), dim]` is blocking and runs on `executor`.
    `clock` is monotonic seconds; deadlines are on the same clock.
    After `failure_threshold` model runs fail in a row the worker counts as dead (health listeners
    hear False) until a run succeeds again.
    """

    def __init__(
        self,
        run_batch: Callable[[list[ItemT]], np.ndarray],
        executor: Executor | None,
        *,
        max_batch_tokens: int,
        max_batch_size: int,
        max_queue_size: int,
        clock: Callable[[], float] = time.monotonic,
        on_batch: Callable[[BatchStats], None] | None = None,
        failure_threshold: int = 3,
    ) -> None:
        self._run_batch = run_batch
        self._executor = executor
        self.max_batch_tokens = max_batch_tokens
        self.max_batch_size = max_batch_size
        self.max_queue_size = max_queue_size
        self._clock = clock
        self._on_batch = on_batch
        self._failure_threshold = failure_threshold
        self._pending: list[PendingInput[ItemT]] = []
        self._seq = 0
        self._wakeup = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._stopping = False
        self._health = _WorkerHealth()

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._work(), name="embed-batcher")
            self._worker.add_done_callback(self._worker_ended)

    async def stop(self) -> None:
        self._stopping = True
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
        self._fail_pending(Unavailable("the embedder is shutting down"))

    def add_health_listener(self, listener: Callable[[bool], Any]) -> None:
        self._health.listeners.append(listener)

    @property
    def healthy(self) -> bool:
        return self._worker is not None and not self._worker.done() and not self._health.dead

    @property
    def queue_depth(self) -> int:
        return len(self._pending)

    # -- submitting ------------------------------------------------------------------------
    async def submit(self, items: Sequence[ItemT], *, deadline: float | None = None) -> list[InputResult]:
        """Queue the inputs of one request and wait for their vectors (request order)."""
        if self._worker is None or self._worker.done():
            raise Unavailable("the inference worker is not running")
        if len(self._pending) + len(items) > self.max_queue_size:
            raise ResourceExhausted(
                f"the embedding queue is full ({len(self._pending)} of {self.max_queue_size} inputs waiting); "
                "retry with backoff",
                retry_after=0.05,
            )
        loop = asyncio.get_running_loop()
        now = self._clock()
        caller_span = trace.get_current_span().get_span_context()
        entries = []
        for item in items:
            self._seq += 1
            entry = PendingInput(item=item, future=loop.create_future(), enqueued_at=now, deadline=deadline,
                                 seq=self._seq, span_context=caller_span)
            entries.append(entry)
        self._pending.extend(entries)
        self._wakeup.set()
        try:
            if len(entries) == 1:
                return [await entries[0].future]
            return list(await asyncio.gather(*(e.future for e in entries)))
        except BaseException:
            for entry in entries:  # the caller left or one input failed: drop the rest
                if not entry.future.done():
                    entry.future.cancel()
            raise

    # -- the worker ------------------------------------------------------------------------
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
        batch = plan_batch(live, max_batch_tokens=self.max_batch_tokens, max_batch_size=self.max_batch_size)
        chosen = set(map(id, batch))
        self._pending = [entry for entry in live if id(entry) not in chosen]
        return batch

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
            batch = self._take_batch()
            if not batch:
                continue
            started = self._clock()
            items = [entry.item for entry in batch]
            links = [trace.Link(e.span_context) for e in batch if e.span_context is not None and e.span_context.is_valid]
            try:
                with _tracer.start_as_current_span(
                    "embed.batch", links=links,
                    attributes={"batch.size": len(batch), "batch.padded_tokens": max(e.n_tokens for e in batch) * len(batch)},
                ):
                    vectors = await loop.run_in_executor(self._executor, self._run_batch, items)
            except Exception as exc:  # the model run failed: fail this batch, keep serving
                log.error("model run failed for a batch of %d", len(batch), exc_info=exc)
                for entry in batch:
                    if not entry.future.done():
                        entry.future.set_exception(Unavailable("the model run failed; retry"))
                self._note_run(ok=False)
                continue
            finished = self._clock()
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

    def _worker_ended(self, task: asyncio.Task[None]) -> None:
        if self._stopping:
            return
        exc = task.exception() if not task.cancelled() else None
        log.error("the inference worker stopped", exc_info=exc)
        self._health.dead = True
        self._fail_pending(Unavailable("the inference worker stopped"))
        self._announce(False)

    def _fail_pending(self, exc: Exception) -> None:
        for entry in self._pending:
            if not entry.future.done():
                entry.future.set_exception(exc)
        self._pending.clear()
