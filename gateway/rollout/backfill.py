"""The canary's creation from primary's spec, and its backfill from primary.

`canary_spec(primary, overrides)` is primary's spec with the fields an operator overrode.

`Backfill.run(rollout, save)` copies primary into the canary page by page in id order (the
backend's `scroll`), from `rollout.backfill.cursor`:

1. read a page of primary (up to `batch_size` points with vectors and payloads);
2. outside any lock, make each point's canary vector: primary's own when both collections have the
   same model and dimension, else the point's stored text (`rules.TEXT_PAYLOAD_KEY`) embedded with
   the canary's model. A point with no stored text cannot be re-embedded: it is counted as failed
   (with its id), never copied with a vector from the other model's space;
3. take the write stripes of the page's ids (`WriteOrder.points`, the ones SearchCore's dual writes
   hold across both arms), re-read those ids from primary, and write to the canary only the points
   that are unchanged since step 1. A point that changed or vanished was written or deleted by a
   dual write after step 1; that write reached the canary too, in order, so the backfill leaves it
   (`superseded`). Under the stripes no dual write of these ids is half-done, so the copy can
   never overwrite a newer write or bring back a deleted point (docs/durability.md);
4. hand the progress (counts, the next page's first id as `cursor`) to `save`, which persists it
   with the rollout before the next page. A gateway that stops between 3 and 4 copies that one page
   again after a restart (the copy is idempotent), and nothing is missed.

Backend calls run off the event loop (the backends' executors), the embedding in the embedder. The
caller (the rollout controller) runs `run` as a background task and cancels it to stop.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import numpy as np

from searchgw.gateway.backends import CollectionSpec, Filter, HasId, Point, PointId, StoredPoint, VectorBackend
from searchgw.gateway.embedding import TextEmbedder
from searchgw.gateway.rollout.model import Rollout
from searchgw.gateway.rollout.preparation import BackfillProgress, CanaryOverrides
from searchgw.gateway.routing.writes import WriteOrder
from searchgw.gateway.rules import TEXT_PAYLOAD_KEY
from searchgw.errors import FailedPrecondition, InvalidArgument, NotFound, SearchgwError

log = logging.getLogger("searchgw.gateway.rollout")

#: Texts per embedding call (within the embedder's per-request limit).
EMBED_CHUNK = 256
#: Failed ids kept on the progress for an operator to look at.
MAX_FAILED_IDS = 10

SaveProgress = Callable[[BackfillProgress], Awaitable[None]]


class BackfillObserver(Protocol):
    """Told how many points of a page ended how (`result`: copied, reembedded, failed, superseded)."""

    def observe_backfill(self, rollout: str, result: str, points: int) -> None: ...


def canary_spec(primary: CollectionSpec, name: str, overrides: CanaryOverrides) -> CollectionSpec:
    """Primary's spec under the canary's name, with every override applied. An overridden model with
    no dimension gets dimension 0 here: `create_canary` asks the embedder for the model's."""
    changes: dict[str, Any] = {"name": name}
    for field in dataclasses.fields(overrides):
        value = getattr(overrides, field.name)
        if value:
            changes[field.name] = value
    if overrides.embedding_model and not overrides.dimension:
        changes["dimension"] = 0
    return dataclasses.replace(primary, **changes)


async def create_canary(backend: VectorBackend, embedder: TextEmbedder | None, primary: str, name: str,
                        overrides: CanaryOverrides) -> CollectionSpec:
    """Create the canary collection `name` from the spec of the collection `primary`; its spec.

    InvalidArgument naming `canary.<field>` for an override the embedder contradicts; AlreadyExists
    when `name` is taken (a backfill never writes into a collection it did not create).
    """
    spec = canary_spec((await backend.get_collection(primary)).spec, name, overrides)
    if overrides.embedding_model:
        if embedder is None:
            raise InvalidArgument("canary.embedding_model", "this gateway has no embedder to re-embed texts with")
        dimension = await embedder.dimension_of(overrides.embedding_model)
        if spec.dimension and spec.dimension != dimension:
            raise InvalidArgument("canary.dimension", f"{spec.dimension}, but model {overrides.embedding_model!r} "
                                                      f"makes {dimension}-d vectors")
        spec = dataclasses.replace(spec, dimension=dimension)
    elif overrides.dimension and spec.embedding_model and embedder is not None:
        dimension = await embedder.dimension_of(spec.embedding_model)
        if dimension != overrides.dimension:
            raise InvalidArgument("canary.dimension", f"{overrides.dimension}, but primary's model "
                                                      f"{spec.embedding_model!r} makes {dimension}-d vectors; "
                                                      "name the canary's model too")
    return (await backend.create_collection(spec)).spec


def needs_reembedding(primary: CollectionSpec, canary: CollectionSpec) -> bool:
    """Whether primary's vectors are useless to the canary (another model or dimension)."""
    return primary.embedding_model != canary.embedding_model or primary.dimension != canary.dimension


class Backfill:
    """Copies primary into the canary; see the module docstring."""

    def __init__(self, backend: VectorBackend, embedder: TextEmbedder | None, write_order: WriteOrder, *,
                 wall_clock: Callable[[], float], observer: BackfillObserver | None = None) -> None:
        self._backend = backend
        self._embedder = embedder
        self._write_order = write_order
        self._wall_clock = wall_clock
        self._observer = observer

    async def exists(self, name: str) -> bool:
        """Whether a collection or alias is named `name`."""
        try:
            await self._backend.resolve(name)
        except NotFound:
            return False
        return True

    async def create_canary(self, primary: str, name: str, overrides: CanaryOverrides) -> CollectionSpec:
        """See `create_canary`."""
        return await create_canary(self._backend, self._embedder, primary, name, overrides)

    async def discard_canary(self, name: str) -> None:
        """Delete a canary this backfill created for a rollout that never came to be (best effort)."""
        try:
            await self._backend.delete_collection(name)
        except SearchgwError:
            log.warning("could not delete the canary collection %r of a rollout that was not created", name,
                        exc_info=True)

    async def count(self, name: str) -> int:
        return await self._backend.count(name)

    async def spec_of(self, name: str) -> CollectionSpec:
        return (await self._backend.get_collection(name)).spec

    async def run(self, rollout: Rollout, save: SaveProgress) -> BackfillProgress:
        """Copy from `rollout.backfill.cursor` to the end; `save` each page's progress. Returns the last."""
        progress = rollout.backfill or BackfillProgress(start_time=self._wall_clock())
        primary = (await self._backend.get_collection(rollout.primary_collection)).spec
        canary = (await self._backend.get_collection(rollout.canary_collection)).spec
        reembed = needs_reembedding(primary, canary)
        if reembed and self._embedder is None:
            raise FailedPrecondition(f"canary {canary.name!r} uses another model than primary, and this gateway "
                                     "has no embedder to re-embed the stored texts with")
        while not progress.done:
            page = await self._backend.scroll(rollout.primary_collection, offset=progress.cursor,
                                              limit=progress.batch_size)
            progress = await self._copy_page(rollout, canary, reembed, page.points, progress)
            progress = dataclasses.replace(progress, cursor=page.next_offset, done=page.next_offset is None,
                                           update_time=self._wall_clock(), last_error="")
            await save(progress)
        return progress

    async def _copy_page(self, rollout: Rollout, canary: CollectionSpec, reembed: bool,
                         points: Sequence[StoredPoint], progress: BackfillProgress) -> BackfillProgress:
        if not points:
            return progress
        vectors: dict[PointId, np.ndarray] = {}
        if reembed:
            with_text = [p for p in points if isinstance(p.payload.get(TEXT_PAYLOAD_KEY), str)]
            embedded = await self._embed([p.payload[TEXT_PAYLOAD_KEY] for p in with_text], canary.embedding_model)
            vectors = {p.id: vector for p, vector in zip(with_text, embedded, strict=True)}
        else:
            vectors = {p.id: p.vector for p in points}
        ids = [p.id for p in points]
        superseded = 0
        failed_now: list[PointId] = []  # no stored text to embed with the canary's model
        async with self._write_order.points(rollout.collection, ids):
            current = await self._backend.scroll(rollout.primary_collection, limit=len(ids),
                                                 filter=Filter(must=(HasId(tuple(ids)),)))
            now = {p.id: p for p in current.points}
            batch = []
            for point in points:
                latest = now.get(point.id)
                if latest is None or not _same(latest, point):
                    superseded += 1  # a dual write changed or deleted it since the page was read
                    continue
                vector = vectors.get(point.id)
                if vector is None:
                    failed_now.append(point.id)
                else:
                    batch.append(Point(id=point.id, vector=vector, payload=point.payload))
            if batch:
                await self._backend.upsert(rollout.canary_collection, batch)
            copied = len(batch)
        reembedded = copied if reembed else 0
        self._observe(rollout.name, copied=copied - reembedded, reembedded=reembedded, failed=len(failed_now),
                      superseded=superseded)
        if failed_now:
            log.warning("backfill of rollout %s: %d points have no stored text to embed with %r (e.g. id %s)",
                        rollout.name, len(failed_now), canary.embedding_model, failed_now[0],
                        extra={"rollout": rollout.name, "failed": len(failed_now)})
        return dataclasses.replace(
            progress, copied=progress.copied + copied, reembedded=progress.reembedded + reembedded,
            failed=progress.failed + len(failed_now), superseded=progress.superseded + superseded,
            failed_ids=(*progress.failed_ids, *failed_now)[:MAX_FAILED_IDS])

    async def _embed(self, texts: Sequence[str], model: str) -> list[np.ndarray]:
        assert self._embedder is not None
        if not texts:
            return []
        vectors: list[np.ndarray] = []
        for start in range(0, len(texts), EMBED_CHUNK):
            try:
                vectors.extend(await self._embedder.embed(texts[start:start + EMBED_CHUNK], model=model,
                                                          field="backfill", deadline=None))
            except InvalidArgument as exc:  # a stored text the embedder refuses: the page cannot be copied
                raise FailedPrecondition(f"the embedder refused a stored text of this page: {exc.message}") from exc
        return vectors

    def _observe(self, rollout: str, **counts: int) -> None:
        if self._observer is None:
            return
        for result, points in counts.items():
            if points:
                self._observer.observe_backfill(rollout, result, points)


def _same(first: StoredPoint, second: StoredPoint) -> bool:
    return first.payload == second.payload and np.array_equal(first.vector, second.vector)
