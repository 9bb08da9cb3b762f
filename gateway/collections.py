"""CollectionAdmin: creating, describing and deleting collections and aliases, free of gRPC.

A collection remembers the embedding model its vectors come from; text queries and text writes
use it. Creating one with an embedding model and no dimension takes the model's dimension; a
collection with neither a model nor a matching default model holds vectors only. Nothing that a
search depends on can be deleted from under it: a collection an alias or an active rollout points
at is refused with FAILED_PRECONDITION.

Snapshots: a snapshot is of a physical collection (an alias is resolved first); restoring one makes
a NEW collection with the snapshot's spec, embedding model included, and never overwrites a name.
Retention: `prune_snapshots` deletes what a `RetentionPolicy` does not keep (see
`searchgw.gateway.snapshotting`; the newest always stays). Deleting one names its collection too (an alias, or on the embedded backend a deleted collection's
old name, works as for listing), so a name typed for one collection never removes another's.

Dependencies are explicit (the server gives them once): the instrumented backend — every call here
goes through it, so an engine failure is UNAVAILABLE on every administration RPC as on a search —,
the collection specs it shares with SearchCore (forgotten when a name is deleted or made), the
router (which collections an active rollout holds), the embedder, and the default embedding model.
Names are checked with `searchgw.gateway.rules`.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace

from searchgw.gateway.backends import (
    CollectionInfo,
    CollectionSpec,
    IndexBuild,
    PayloadIndex,
    SnapshotInfo,
    VectorBackend,
)
from searchgw.gateway.core import CollectionSpecs
from searchgw.gateway.embedding import TextEmbedder
from searchgw.gateway.paging import Page, PageTokens
from searchgw.gateway.routing import Router
from searchgw.gateway.rules import (
    check_key,
    check_name,
    check_snapshot_name,
    checked_payload_index,
    with_payload_index,
    without_payload_index,
)
from searchgw.gateway.snapshotting import Pruning, RetentionPolicy, plan_pruning
from searchgw.errors import FailedPrecondition, InvalidArgument, NotFound

log = logging.getLogger(__name__)

#: Hears index builds: started (collection), then finished (collection, what it did; None: it failed).
IndexBuildObserver = Callable[[str, IndexBuild | None], None]


class CollectionAdmin:
    def __init__(self, backend: VectorBackend, specs: CollectionSpecs, router: Router,
                 embedder: TextEmbedder | None, page_tokens: PageTokens, *,
                 default_embedding_model: str = "",
                 experiment_on: Callable[[str], str | None] | None = None,
                 experiment_arms: Callable[[str], Sequence[str]] | None = None,
                 on_build_start: Callable[[str], None] | None = None,
                 on_build_end: IndexBuildObserver | None = None) -> None:
        """`default_embedding_model` ("": the embedder's own default) is what a collection created
        without a model or dimension holds. `experiment_on(name)` names the experiment that holds `name`
        (its alias or one of its arms' collections), if any: such a name is not deleted or repointed."""
        self._experiment_on = experiment_on
        #: The collections of every arm of the experiment holding a name (its alias or an arm), or ().
        self._experiment_arms = experiment_arms
        self._backend = backend
        self._specs = specs
        self._router = router
        self._embedder = embedder
        self._pages = page_tokens
        self._default_embedding_model = default_embedding_model
        self._on_build_start = on_build_start
        self._on_build_end = on_build_end
        #: Builds run in the background (OptimizeCollection with background set), kept until they end.
        self._background: set[asyncio.Task[IndexBuild | None]] = set()

    async def create(self, spec: CollectionSpec) -> CollectionInfo:
        check_name("collection.name", spec.name)
        model = spec.embedding_model
        if self._embedder is not None:
            if model:
                dimension = await self._embedder.dimension_of(model)
                if spec.dimension and spec.dimension != dimension:
                    raise InvalidArgument("collection.dimension", f"{spec.dimension}, but model {model!r} makes "
                                                                  f"{dimension}-d vectors")
                spec = replace(spec, dimension=dimension)
            else:
                default = self._default_embedding_model or await self._embedder.default_model()
                default_dimension = await self._embedder.dimension_of(default)
                if spec.dimension in (0, default_dimension):
                    spec = replace(spec, dimension=default_dimension, embedding_model=default)
        if not spec.dimension:
            raise InvalidArgument("collection.dimension", "is required when no embedding model is set")
        info = await self._backend.create_collection(spec)
        self._specs.forget(spec.name)
        return info

    async def get(self, name: str) -> CollectionInfo:
        check_name("name", name)
        physical = await self._backend.resolve(name)
        return await self._backend.get_collection(physical)

    async def list(self, page_size: int, page_token: str) -> Page[CollectionInfo]:
        """A page of collections by name (see `PageTokens.paginate`)."""
        return self._pages.paginate(await self._backend.list_collections(), key=lambda info: info.spec.name,
                                    page_size=page_size, page_token=page_token, listing="collections")

    async def delete(self, name: str) -> None:
        """FailedPrecondition while an alias (the backend's rule) or an active rollout points at it."""
        check_name("name", name)
        self._refuse_if_in_rollout(name, "delete")
        await self._backend.delete_collection(name)
        self._specs.forget(name)

    async def update_alias(self, alias: str, collection: str) -> str | None:
        check_name("alias", alias)
        check_name("collection", collection)
        self._refuse_if_in_rollout(alias, "repoint")
        return await self._backend.update_alias(alias, collection)

    async def delete_alias(self, alias: str) -> None:
        check_name("alias", alias)
        self._refuse_if_in_rollout(alias, "delete")
        await self._backend.delete_alias(alias)

    async def optimize(self, name: str, *, background: bool = False) -> tuple[CollectionInfo, IndexBuild | None]:
        """Build the collection's index; the collection after it and what the build did. `background`:
        start it and return at once (the collection as it is now, no report); the build is logged and
        counted when it ends either way."""
        check_name("name", name)
        physical = await self._backend.resolve(name)
        if background:
            task = asyncio.ensure_future(self._build(physical))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
            return await self._backend.get_collection(physical), None
        build = await self._build(physical, raise_errors=True)
        return await self._backend.get_collection(physical), build

    async def _build(self, physical: str, *, raise_errors: bool = False) -> IndexBuild | None:
        if self._on_build_start is not None:
            self._on_build_start(physical)
        build: IndexBuild | None = None
        try:
            build = await self._backend.optimize(physical)
        except Exception:
            log.exception("index build of %r failed", physical)
            if raise_errors:
                raise
        finally:
            if self._on_build_end is not None:
                self._on_build_end(physical, build)
        if build is not None:
            log.info("index build of %r: %s in %.2f s (build %.2f s in its own process; writes paused %.3f s, "
                     "searches paused %.3f s; %d writes replayed)", physical,
                     "optimized" if build.optimized else "already optimal", build.seconds, build.build_seconds,
                     build.writes_paused_seconds, build.searches_paused_seconds, build.replayed_writes)
        return build

    async def create_snapshot(self, name: str) -> SnapshotInfo:
        check_name("name", name)
        physical = await self._backend.resolve(name)
        return await self._backend.create_snapshot(physical)

    async def list_snapshots(self, collection: str, page_size: int = 0,
                             page_token: str = "") -> Page[SnapshotInfo]:
        """A page of the collection's snapshots, oldest first (see `PageTokens.paginate`)."""
        check_name("collection", collection)
        everything = await self._backend.list_snapshots(collection)
        return self._pages.paginate(everything, key=lambda info: (info.create_time, info.name), page_size=page_size,
                                    page_token=page_token, listing="snapshots", query=(collection,))

    async def all_snapshots(self, collection: str) -> Sequence[SnapshotInfo]:
        """Every snapshot of the collection, oldest first, unpaged (the snapshot scheduler's view)."""
        check_name("collection", collection)
        return await self._backend.list_snapshots(collection)

    async def restore_snapshot(self, snapshot: str, collection: str) -> CollectionInfo:
        check_snapshot_name("snapshot", snapshot)
        check_name("collection", collection)
        info = await self._backend.restore_snapshot(snapshot, collection)
        self._specs.forget(collection)
        return info

    async def delete_snapshot(self, collection: str, snapshot: str) -> None:
        """NotFound when the collection has no snapshot of that name; FailedPrecondition while it is restored."""
        check_name("collection", collection)
        check_snapshot_name("snapshot", snapshot)
        await self._backend.delete_snapshot(collection, snapshot)

    async def prune_snapshots(self, collection: str, keep_last: int, max_age_s: float, now: float) -> Pruning:
        """Delete the collection's snapshots the policy (keep the last `keep_last` and/or those younger
        than `max_age_s` at `now`, epoch seconds) does not keep; what was kept and deleted.

        InvalidArgument (naming the field) for a policy with neither rule. A snapshot deleted
        meanwhile counts as deleted; one being restored (FailedPrecondition) is kept.
        """
        check_name("collection", collection)
        policy = RetentionPolicy(keep_last=keep_last, max_age_s=max_age_s)
        plan = plan_pruning(await self._backend.list_snapshots(collection), policy, now)
        kept, deleted = list(plan.keep), []
        for snapshot in plan.delete:
            try:
                await self._backend.delete_snapshot(collection, snapshot.name)
            except NotFound:
                pass  # gone already: as good as deleted
            except FailedPrecondition:
                kept.append(snapshot)  # being restored: the next pruning takes it
                continue
            deleted.append(snapshot)
        return Pruning(keep=tuple(sorted(kept, key=lambda s: (s.create_time, s.name))), delete=tuple(deleted))

    async def aliases(self, page_size: int = 0, page_token: str = "") -> Page[tuple[str, str]]:
        """A page of (alias, collection) pairs by alias (see `PageTokens.paginate`)."""
        return self._pages.paginate((await self._backend.list_aliases()).items(), key=lambda pair: pair[0],
                                    page_size=page_size, page_token=page_token, listing="aliases")

    # -- payload indexes ---------------------------------------------------------------------
    async def _index_targets(self, name: str) -> Sequence[str]:
        """The physical collections an index change on `name` reaches: both arms while a rollout is
        active on it (named by its logical name or either arm), so that filters select the same
        points on both and the analysis compares like with like; otherwise the collection it means."""
        for collection, table in self._router.tables().items():
            if name in (collection, table.primary, table.canary):
                return [table.primary, table.canary]
        if self._experiment_arms is not None and (arms := self._experiment_arms(name)):
            return list(arms)  # every arm of an experiment holding `name`, control first
        return [await self._backend.resolve(name)]

    async def create_payload_index(self, name: str, index: PayloadIndex) -> CollectionInfo:
        """Index a payload field (replacing the key's index); on every target or none (see `_index_targets`).
        The collection (primary's during a rollout) with its indexes."""
        check_name("collection", name)
        index = checked_payload_index("index", index)
        targets = await self._index_targets(name)
        specs = [(await self._backend.get_collection(target)).spec for target in targets]
        for spec in specs:
            with_payload_index(spec, index)  # the limit on indexes, on every arm, before any change
        return await self._change_indexes(name, targets, specs, lambda target: self._backend.create_payload_index(
            target, index), f"create index {index.key!r} ({index.type.value})")

    async def delete_payload_index(self, name: str, key: str) -> CollectionInfo:
        """Remove a payload field's index from every target (NotFound, and nothing removed, when one has none)."""
        check_name("collection", name)
        check_key("key", key)
        targets = await self._index_targets(name)
        specs = [(await self._backend.get_collection(target)).spec for target in targets]
        for spec in specs:
            without_payload_index(spec, key)
        return await self._change_indexes(name, targets, specs, lambda target: self._backend.delete_payload_index(
            target, key), f"delete index {key!r}")

    async def _change_indexes(self, name: str, targets: Sequence[str], specs: Sequence[CollectionSpec],
                              change: Callable[[str], Awaitable[CollectionInfo]], what: str) -> CollectionInfo:
        """Apply `change` to each target in order; when one fails, the ones done are put back as they were."""
        done: builtins.list[CollectionSpec] = []
        infos: builtins.list[CollectionInfo] = []
        try:
            for target, spec in zip(targets, specs, strict=True):
                infos.append(await change(target))
                done.append(spec)
                self._specs.forget(target)
        except BaseException:
            for spec in done:
                await self._restore_indexes(spec)
            raise
        log.info("payload index changed", extra={"collection": name, "targets": targets, "change": what,
                                                 "indexes": len(infos[0].spec.payload_indexes)})
        return infos[0]

    async def _restore_indexes(self, spec: CollectionSpec) -> None:
        """Put `spec`'s payload indexes back on its collection (after a change that failed on another arm)."""
        try:
            current = (await self._backend.get_collection(spec.name)).spec.payload_indexes
            for index in current:
                if index not in spec.payload_indexes:
                    await self._backend.delete_payload_index(spec.name, index.key)
            for index in spec.payload_indexes:
                if index not in current:
                    await self._backend.create_payload_index(spec.name, index)
        except Exception:  # the original failure is what the caller sees; this one is logged
            log.exception("could not put back the payload indexes of %r", spec.name)
        self._specs.forget(spec.name)

    def _refuse_if_in_rollout(self, name: str, action: str) -> None:
        experiment = self._experiment_on(name) if self._experiment_on is not None else None
        if experiment is not None:
            raise FailedPrecondition(f"cannot {action} {name!r}: experiment {experiment!r} holds it; stop or "
                                     "conclude it first", reason="EXPERIMENT_ACTIVE",
                                     metadata={"experiment": experiment})
        for collection, table in self._router.tables().items():
            if name in (collection, table.primary, table.canary):
                raise FailedPrecondition(f"cannot {action} {name!r}: rollout {table.rollout!r} is active on it; "
                                         "promote or abort it first")
