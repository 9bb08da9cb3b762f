"""Micro-batching: requests that arrive while a batch runs go together as the next batch.

There is no timer. An idle batcher runs a request at once, alone, in the caller's own task, so a
request that finds the engine free pays nothing for batching. Requests that arrive while a batch
runs queue; when it finishes, one drain task sends everything queued (up to `max_batch_size`) as the
next batch, and so on until the queue is empty. A queued request whose caller went away is skipped.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

RequestT = TypeVar("RequestT")
ResultT = TypeVar("ResultT")


class MicroBatcher(Generic[RequestT, ResultT]):
    """Runs `run_batch(requests) -> results` (same order) on batches of concurrent requests."""

    def __init__(self, run_batch: Callable[[Sequence[RequestT]], Awaitable[Sequence[ResultT]]], *,
                 max_batch_size: int) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        self._run_batch = run_batch
        self._max_batch_size = max_batch_size
        self._queue: deque[tuple[RequestT, asyncio.Future[ResultT]]] = deque()
        self._running = False
        self._drainer: asyncio.Task[None] | None = None
        #: How many batches ran and how many requests they held (for tests and benchmarks).
        self.batches = 0
        self.requests = 0

    async def submit(self, request: RequestT) -> ResultT:
        if self._running:
            future: asyncio.Future[ResultT] = asyncio.get_running_loop().create_future()
            self._queue.append((request, future))
            return await future
        self._running = True
        try:
            self._count(1)
            (result,) = await self._run_batch([request])
        finally:
            self._hand_over()
        return result

    def _count(self, size: int) -> None:
        self.batches += 1
        self.requests += size

    def _hand_over(self) -> None:
        """After a batch: start draining what queued meanwhile, or go idle."""
        if self._queue:
            self._drainer = asyncio.get_running_loop().create_task(self._drain())
        else:
            self._running = False

    def _next_batch(self) -> list[tuple[RequestT, asyncio.Future[ResultT]]]:
        batch: list[tuple[RequestT, asyncio.Future[ResultT]]] = []
        while self._queue and len(batch) < self._max_batch_size:
            request, future = self._queue.popleft()
            if not future.done():  # its caller was cancelled: skip it
                batch.append((request, future))
        return batch

    async def _drain(self) -> None:
        batch: list[tuple[RequestT, asyncio.Future[ResultT]]] = []
        try:
            while self._queue:
                batch = self._next_batch()
                if not batch:
                    continue
                self._count(len(batch))
                try:
                    results = await self._run_batch([request for request, _ in batch])
                except Exception as exc:  # every request of the batch gets the batch's error
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                else:
                    for (_, future), result in zip(batch, results, strict=True):
                        if not future.done():
                            future.set_result(result)
        finally:
            # Only reached with requests left when the drainer itself is cancelled (loop shutdown).
            for _, future in [*batch, *self._queue]:
                if not future.done():
                    future.cancel()
            self._queue.clear()
            self._running = False
            self._drainer = None
