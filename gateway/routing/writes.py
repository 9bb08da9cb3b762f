"""Write ordering for a logical collection's two arms (issue 12: transitions that cannot strand traffic).

- Per point id: a dual write (both arms of a rollout) holds the striped locks of its points' ids
  across both arms' writes, so two writes of one id reach primary and canary in the same order. A
  delete by filter (no ids to stripe) holds every stripe. A write to one collection takes no stripe:
  the engine orders it, and there is no second copy to disagree with.
- Per collection, around rollout creation: `publishing(collection)` closes the collection's gate (new
  writes wait at it), waits for the writes in flight on it to finish, and opens it again once the
  caller has published its routes. So a write either finished before the rollout existed, or reads the
  route table after the routes are published and goes to both arms; none reaches primary only while
  the rollout is live. Writes read the route table once, inside the gate (`writing`).

Event-loop thread only (asyncio primitives, no thread locks).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Hashable, Iterable

__all__ = ["STRIPES", "WriteOrder"]

#: Lock stripes for point ids (shared by every collection: (collection, id) hashes onto them).
STRIPES = 256


class WriteOrder:
    def __init__(self, stripes: int = STRIPES) -> None:
        self._stripes = tuple(asyncio.Lock() for _ in range(stripes))
        self._in_flight: dict[str, int] = {}
        self._drained: dict[str, asyncio.Event] = {}
        self._closed: dict[str, asyncio.Event] = {}
        #: Writes waiting now, at a closed gate or for a point's stripe (tests and metrics read it).
        self.waiting = 0

    def in_flight(self, collection: str) -> int:
        """Writes to `collection` in flight now."""
        return self._in_flight.get(collection, 0)

    def held(self, collection: str) -> bool:
        """Whether new writes to `collection` are held (a rollout on it is being created)."""
        return collection in self._closed

    @contextlib.asynccontextmanager
    async def writing(self, collection: str) -> AsyncIterator[None]:
        """One write to `collection` (logical name as the caller gave it): waits while a rollout is
        being created on it, and counts as in flight until the block ends."""
        while (closed := self._closed.get(collection)) is not None:
            self.waiting += 1
            try:
                await closed.wait()
            finally:
                self.waiting -= 1
        self._in_flight[collection] = self._in_flight.get(collection, 0) + 1
        try:
            yield
        finally:
            left = self._in_flight[collection] - 1
            if left:
                self._in_flight[collection] = left
            else:
                del self._in_flight[collection]
                drained = self._drained.pop(collection, None)
                if drained is not None:
                    drained.set()

    @contextlib.asynccontextmanager
    async def publishing(self, collection: str) -> AsyncIterator[None]:
        """Hold new writes to `collection` and wait for those in flight; the block publishes routes."""
        while (closed := self._closed.get(collection)) is not None:  # one publisher at a time
            await closed.wait()
        gate = self._closed[collection] = asyncio.Event()
        try:
            if self._in_flight.get(collection):
                drained = self._drained.setdefault(collection, asyncio.Event())
                await drained.wait()
            yield
        finally:
            del self._closed[collection]
            gate.set()

    @contextlib.asynccontextmanager
    async def points(self, collection: str, ids: Iterable[Hashable] | None) -> AsyncIterator[None]:
        """Hold the stripes of `ids` in `collection` (None: every stripe), taken in one order (no deadlock)."""
        count = len(self._stripes)
        numbers = range(count) if ids is None else sorted({hash((collection, i)) % count for i in ids})
        held: list[asyncio.Lock] = []
        try:
            for number in numbers:
                lock = self._stripes[number]
                if lock.locked():
                    self.waiting += 1
                    try:
                        await lock.acquire()
                    finally:
                        self.waiting -= 1
                else:
                    await lock.acquire()
                held.append(lock)
            yield
        finally:
            for lock in reversed(held):
                lock.release()
