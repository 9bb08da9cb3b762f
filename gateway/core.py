"""SearchCore: the gateway's request path, free of gRPC.

Search: resolve the routing key → route (primary / canary of an active rollout, or the alias target)
→ embed a text query with the model of the collection that serves it → search the backend →
record the arm's outcome for the rollout analysis. Every routed attempt's ending is recorded for its
arm, including the ones the caller's deadline or cancellation cut short (see `_search_routed`). When
the canary fails with a retryable error (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED), the
failure is recorded and primary answers within the remaining deadline (`route.fallback`).

A search's next-page token names the physical collection (arm, rollout) that served the page; a later
page is served by that collection alone, whatever its routing key (`_pinned_decision`): not a routing
decision, so, like a forced arm, it is not recorded for the analysis and does not fall back. A token whose
collection no longer serves the logical one is FAILED_PRECONDITION ("start over without it").

A rollout's canary may have twice its share of primary's searches in flight, and at least
`canary_max_concurrency` (see `CanarySlots`); a search over the limit is the canary's
RESOURCE_EXHAUSTED, recorded and answered by primary like any retryable canary failure.
bench/bench_slow_canary.py measures what it buys: it keeps a canary that is slow while holding
nothing (waiting on I/O) from hurting primary, but not a canary whose searches hold the interpreter
lock (an unindexed collection on the embedded engine): the process stalls before its calls reach
this limit, so that needs a budget on the canary's share of engine time (not built yet).

Writes (Upsert/Delete) to a logical collection go to both arms while a rollout is active, each
embedded with its own arm's model, so the canary never falls behind. A write reads the route table once;
a dual write holds its point ids' stripes across both arms' writes, so writes of one id land in the same
order on both; rollout creation waits for the writes in flight and holds new ones until its routes are
published (`routing.writes.WriteOrder`, shared with the controller).

Model canaries (arms in different vector spaces: another embedding model or dimension; CreateRollout
admits them only when both collections name their model). A text is embedded per arm with that arm's
model, for searches and writes alike. A raw vector belongs to one space, so:
- a raw-vector search that the rollout routes is served by primary (the space clients computed their
  vectors in), whatever its routing key: not a routing decision, so kept out of the analysis (counted in
  `searchgw_model_canary_vector_queries_total`), and never sent to the canary, where it would fail or,
  at the same dimension, answer from the wrong space. `x-canary-arm: canary` (or a page token of the
  canary's) says otherwise: the canary serves it as asked, INVALID_ARGUMENT if its dimension differs;
- a raw-vector upsert is INVALID_ARGUMENT naming `points[i].vector` (both spaces in the message): the
  canary could not hold it, and writing it to primary only would leave the arms apart. Send text.
During the bake (BAKING) primary is the old collection; after it, raw vectors reach the new collection
through the alias, in the new space — clients must have moved to the new model by then.

Experiments (`searchgw.gateway.experiments`, docs/experiments.md): a search to an alias an experiment
holds is routed by it (`_search_experiment`: the arm its routing key hashes to while it RUNS, control
otherwise), its ending counted for that arm, and the answer carries a signed `search_id` for
ReportOutcome; writes to the alias reach every arm, like a rollout's dual writes. An experiment and a
rollout never hold one alias at once. When the experiment's policy samples shadow quality, a sampled
share of a variant's searches also runs on control through the same `ShadowSampler`, off the request
path (`_offer_experiment_shadow`), and the comparison is counted for that variant.

Long texts (docs/chunking.md): a text over its model's limit is refused naming its field (`text`,
`points[i].text`), never truncated. `upsert_chunked` writes each point's text as chunks cut by each
arm's model (the embedder's ChunkText), ids from the document id and chunk number
(`searchgw.gateway.chunks`), then deletes the documents' surplus chunks: write first, delete second,
under the documents' write stripes (every stripe for a dual write). A search with `group_by` returns
`limit` groups (one page), the backend's group-by.

Dependencies are explicit and given once by the server: the backend (already instrumented: timed,
traced, engine failures made UNAVAILABLE — see `backends.InstrumentedBackend`), the collection specs
it shares with CollectionAdmin, the router and controller, the embedder, settings and metrics.
Requests are checked with `searchgw.gateway.rules` before anything is looked up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from opentelemetry import trace

from searchgw.gateway.backends import (
    CollectionSpec,
    Filter,
    Fusion,
    Payload,
    Point,
    PointId,
    ScoredPoint,
    SearchMode,
    SearchQuery,
    VectorBackend,
)
from searchgw.gateway.chunks import (
    check_reserved_keys,
    chunk_id,
    chunk_payload,
    surplus_filters,
)
from searchgw.gateway.backends.types import SearchParams as EngineSearchParams
from searchgw.gateway.embedding import ChunkedText, ChunkingOptions, TextEmbedder
from searchgw.gateway.experiments import ArmRoute, ExperimentManager, HeldAlias
from searchgw.gateway.metrics import GatewayMetrics
from searchgw.gateway.paging import PageTokens, SearchPage, fingerprint
from searchgw.gateway.rollout import RolloutController
from searchgw.gateway.rollout.quality import ShadowComparison
from searchgw.gateway.routing import UNROUTED, Arm, KeySource, RouteDecision, Router, resolve_routing_key
from searchgw.gateway.routing.writes import WriteOrder
from searchgw.gateway.rules import (
    BM25_TEXT_PAYLOAD_KEY,
    TEXT_PAYLOAD_KEY,
    FilterLimits,
    check_key,
    check_name,
    check_query_length,
    check_search_mode,
    check_text,
    checked_filter,
    checked_params,
    checked_fusion,
    checked_payload,
    point_id,
)
from searchgw.gateway.settings import GatewaySettings
from searchgw.telemetry.tracing import tracing_records
from searchgw.gateway.shadow import SKIPPED_FALLBACK, SKIPPED_VECTOR, ShadowSampler, shadow_comparison
from searchgw.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    SearchgwError,
    Unavailable,
)

log = logging.getLogger(__name__)
_tracer = trace.get_tracer("searchgw.gateway.core")

#: Canary errors that primary may answer instead.
_RETRYABLE = (Unavailable, DeadlineExceeded, ResourceExhausted)
#: The code recorded for an attempt whose caller left before its deadline.
_CANCELLED = "CANCELLED"
#: A cancellation this close before the caller's deadline is the deadline's: gRPC's deadline timer runs
#: on its own clock, and the deadline the servicer computes from `time_remaining()` (wall clock) has been
#: seen up to 2.4 ms later than the cancellation on a loaded loopback.
_DEADLINE_TOLERANCE_S = 0.010
_LATE_MESSAGE = "the answer was ready after the caller's deadline"


@dataclass(frozen=True)
class SearchParams:
    collection: str
    text: str | None = None
    vector: Sequence[float] | np.ndarray | None = None
    limit: int = 0
    routing_key: str = ""
    metadata_key: str = ""
    forced_arm: Arm | None = None
    peer: str = ""
    filter: Filter | None = None
    score_threshold: float | None = None
    with_payload: bool = False
    page_token: str = ""
    #: Dense (the default), sparse (BM25 over `text`) or hybrid (both, fused as `fusion` says).
    mode: SearchMode = SearchMode.DENSE
    fusion: Fusion = field(default_factory=Fusion)
    #: The engine's knobs (ef, exact, quantization), checked against `rules.checked_params`.
    search_params: EngineSearchParams | None = None
    #: Collapse the hits by this payload key ("" : no grouping); `limit` counts groups then.
    group_by: str = ""
    #: Hits per group with `group_by` (0: 1).
    group_size: int = 0


#: Most hits per group of a grouped search.
MAX_GROUP_SIZE = 100


@dataclass(frozen=True)
class RouteInfo:
    arm: Arm
    collection: str
    rollout: str = ""
    fallback: bool = False
    #: The experiment that routed the search, and its arm ("control" or a variant); "" when none.
    experiment: str = ""
    variant: str = ""


@dataclass
class SearchOutcome:
    points: list[ScoredPoint]
    route: RouteInfo
    next_page_token: str = ""
    #: Set when a running experiment routed the search: the id clients quote in ReportOutcome.
    search_id: str = ""


@dataclass(frozen=True)
class PointInput:
    id: PointId
    text: str | None = None
    vector: Sequence[float] | None = None
    payload: Payload = field(default_factory=dict)
    #: A raw-vector point's BM25 text (kept in the payload under BM25_TEXT_PAYLOAD_KEY).
    bm25_text: str | None = None


@dataclass(frozen=True)
class ChunkedUpsert:
    """What a chunked upsert wrote: `points` documents as chunks to each of `collections`;
    `point_chunks[i]`: the chunks of point i in the first collection (primary; a model canary's arm
    counts by its own model's tokenizer)."""

    points: int
    collections: list[str]
    point_chunks: list[int]

    @property
    def chunks(self) -> int:
        return sum(self.point_chunks)


def _space(spec: CollectionSpec) -> str:
    model = f"model {spec.embedding_model!r}" if spec.embedding_model else "no embedding model"
    return f"{spec.dimension}-d, {model}"


def _code_name(exc: BaseException) -> str:
    return exc.code_name if isinstance(exc, SearchgwError) else "UNAVAILABLE"


class CanarySlots:
    """Searches in flight per rollout and arm; a canary search over its rollout's limit is refused.

    The limit follows the canary's share of the traffic. At weight w a canary as fast as primary has
    about w / (1 − w) searches in flight for each of primary's, and one that is k times slower about k
    times as many. The canary may hold `headroom` (2) times its share of primary's searches in flight,
    or `floor` searches, whichever is more. A fixed limit alone would refuse a healthy canary in every
    burst larger than the limit (at 50 % a burst of 200 searches puts ~100 on each arm) and count the
    refusals against it. At 100 % primary serves no routed searches, so there is no share to compare
    and the floor alone applies. `floor` 0 turns the limit off. Event-loop thread only (no lock needed).
    """

    def __init__(self, floor: int, headroom: float = 2.0) -> None:
        self.floor = floor
        self.headroom = headroom
        self._in_flight: dict[tuple[str, Arm], int] = {}

    def in_flight(self, rollout: str, arm: Arm = Arm.CANARY) -> int:
        return self._in_flight.get((rollout, arm), 0)

    def limit(self, rollout: str, canary_share: float) -> float:
        """How many searches the canary of `rollout` may have in flight now."""
        if canary_share >= 1.0:
            return self.floor
        fair = canary_share / (1.0 - canary_share) * self._in_flight.get((rollout, Arm.PRIMARY), 0)
        return max(self.floor, self.headroom * fair)

    @contextlib.contextmanager
    def hold(self, decision: RouteDecision) -> Iterator[None]:
        """Count the search of `decision` as in flight for the length of a `with` block; ResourceExhausted
        for a canary search over the limit."""
        key = self.take(decision)
        try:
            yield
        finally:
            self.give_back(key)

    def take(self, decision: RouteDecision) -> tuple[str, Arm]:
        """Count the search of `decision` as in flight (ResourceExhausted for a canary search over the
        limit); hand the returned key to `give_back` when it ends. `hold` without a context manager."""
        key = (decision.rollout, decision.arm)
        held = self._in_flight.get(key, 0)
        if decision.arm is Arm.CANARY and held >= self.limit(decision.rollout, decision.canary_share):
            raise ResourceExhausted(
                f"the canary of rollout {decision.rollout!r} has {held} searches in flight, its limit "
                f"(--canary-max-concurrency, or twice its share of primary's searches in flight)")
        self._in_flight[key] = held + 1
        return key

    def give_back(self, key: tuple[str, Arm]) -> None:
        left = self._in_flight[key] - 1
        if left:
            self._in_flight[key] = left
        else:
            del self._in_flight[key]


class CollectionSpecs:
    """Each physical collection's spec, read from the backend once: a collection's dimension and model
    never change while it exists. Whoever deletes, creates or restores a collection forgets its name
    (CollectionAdmin); a search that finds a rollout's collection gone forgets it too (SearchCore)."""

    def __init__(self, backend: VectorBackend) -> None:
        self._backend = backend
        self._specs: dict[str, CollectionSpec] = {}

    async def get(self, physical: str) -> CollectionSpec:
        spec = self._specs.get(physical)
        if spec is None:
            spec = self._specs[physical] = (await self._backend.get_collection(physical)).spec
        return spec

    def cached(self, physical: str) -> CollectionSpec | None:
        """The spec if it has been read already (no await)."""
        return self._specs.get(physical)

    def forget(self, physical: str) -> None:
        self._specs.pop(physical, None)


class SearchCore:
    def __init__(
        self,
        backend: VectorBackend,
        specs: CollectionSpecs,
        router: Router,
        controller: RolloutController,
        embedder: TextEmbedder | None,
        settings: GatewaySettings,
        metrics: GatewayMetrics,
        *,
        clock: Callable[[], float] = time.monotonic,
        page_tokens: PageTokens | None = None,
        write_order: WriteOrder | None = None,
        experiments: ExperimentManager | None = None,
        shadow: ShadowSampler | None = None,
    ) -> None:
        self._backend = backend
        #: Experiments: the aliases they hold are routed here (see `_search_experiment`), and written to every arm.
        self._experiments = experiments
        #: Orders dual writes per point id; holds writes while a rollout is being created (shared with
        #: the rollout controller, see `routing.writes`).
        self.write_order = write_order or WriteOrder()
        self._specs = specs
        self._router = router
        self._controller = controller
        self._embedder = embedder
        self._settings = settings
        self._metrics = metrics
        self._clock = clock
        self._pages = page_tokens or PageTokens(settings.page_token_secret)
        self._filter_limits = FilterLimits(max_values=settings.max_filter_values,
                                           max_value_bytes=settings.max_payload_bytes)
        self._mode_children: dict[tuple[str, str], Any] = {}
        #: Bounds the canary's searches in flight per rollout; the overflow is a canary failure.
        self.canary_slots = CanarySlots(settings.canary_max_concurrency)
        #: Runs a rollout's sampled searches on its other arm in the background (`_offer_shadow`).
        self.shadow = shadow or ShadowSampler(settings.shadow_max_in_flight, observe=metrics.observe_shadow)

    async def _embed(self, texts: Sequence[str], model: str, field: str, deadline: float | None,
                     fields: Sequence[str] | None = None) -> np.ndarray:
        """Vectors for `texts`, in calls of at most `embed_batch_texts` texts (run together). A text over
        the model's limit is InvalidArgument naming its entry of `fields` (when given), else `field`."""
        embedder = self._embedder
        if embedder is None:
            raise InvalidArgument(field, "this gateway has no embedder configured; send a vector instead")
        started = self._clock()
        size = self._settings.embed_batch_texts
        try:
            with _tracer.start_as_current_span("embed", attributes={"embedding.model": model,
                                                                    "embedding.texts": len(texts)}):
                if len(texts) <= size:
                    return await embedder.embed(texts, model=model, field=field, deadline=deadline, fields=fields)
                parts = await asyncio.gather(*(
                    embedder.embed(texts[i:i + size], model=model, field=field, deadline=deadline,
                                   fields=None if fields is None else fields[i:i + size])
                    for i in range(0, len(texts), size)))
                return np.concatenate(parts)
        finally:
            self._metrics.embed_duration.observe(self._clock() - started)

    # -- request rules (searchgw.gateway.rules, with this gateway's limits) ----------------------
    @staticmethod
    def _check_collection(name: str) -> None:
        check_name("collection", name)

    def _check_text(self, field: str, text: str) -> None:
        check_text(field, text, self._settings.max_text_chars)

    def _check_filter(self, field: str, filter: Filter) -> Filter:
        return checked_filter(field, filter, self._filter_limits)

    # -- search ------------------------------------------------------------------------------
    def _validate_search(self, params: SearchParams) -> tuple[int, Filter | None]:
        """The limit, and the filter in canonical form."""
        self._check_collection(params.collection)
        if params.text is not None:
            self._check_text("text", params.text)
        elif params.vector is not None:
            check_query_length("vector.values", len(params.vector))
        else:
            raise InvalidArgument("query", "set text or vector")
        if params.mode is not SearchMode.DENSE and params.text is None:
            raise InvalidArgument("mode", f"a {params.mode.value} search ranks by BM25 over a text: send `text`, "
                                          "not a vector (a vector query is dense only)")
        limit = params.limit or self._settings.default_limit
        if limit > self._settings.max_limit:
            raise InvalidArgument("limit", f"{limit} is over the maximum of {self._settings.max_limit}")
        self._check_grouping(params, limit)
        return limit, None if params.filter is None else self._check_filter("filter", params.filter)

    def _check_grouping(self, params: SearchParams, limit: int) -> None:
        if not params.group_by:
            if params.group_size:
                raise InvalidArgument("group_size", "applies only with group_by")
            return
        check_key("group_by", params.group_by)
        if params.group_size > MAX_GROUP_SIZE:
            raise InvalidArgument("group_size", f"{params.group_size} hits per group; at most {MAX_GROUP_SIZE}")
        hits = limit * max(params.group_size, 1)
        if hits > self._settings.max_limit:
            raise InvalidArgument("group_size", f"{limit} groups of {params.group_size} hits is {hits} hits; at "
                                                f"most {self._settings.max_limit} (--max-limit)")
        if params.page_token:
            raise InvalidArgument("page_token", "a grouped search (group_by) has one page; ask for more groups "
                                                "with limit")

    async def search(self, params: SearchParams, *, deadline: float | None = None,
                     on_route: Callable[[Arm], None] | None = None) -> SearchOutcome:
        """`on_route(arm)` hears the arm that serves the request as soon as it is known.

        The request is checked once, its vector converted once (`SearchParams.vector` may already be
        a float32 array: the servicer reads it off the wire as one), and one `SearchQuery` serves every
        arm a vector search reaches. The backend is asked for one hit more than the page holds, so a
        next-page token (a fingerprint of the query and an HMAC) is made only when a next page exists.
        """
        limit, checked = self._validate_search(params)
        fusion = checked_fusion("fusion", params.fusion)  # kept beside params (no dataclasses.replace)
        if params.search_params is not None:  # the knobs, canonical (a replace only for a search that sets them)
            params = replace(params, search_params=checked_params("params", params.search_params))
        self._count_mode(params.mode, fusion)
        vector = None if params.vector is None else np.asarray(params.vector, dtype=np.float32)
        query_print = ""
        page = None
        if params.page_token:
            query_print = self._fingerprint(params, vector, limit, fusion)
            page = self._pages.read_search(params.page_token, query_print)
        offset = 0 if page is None else page.offset
        if offset + limit > self._settings.max_limit:
            raise InvalidArgument("page_token", f"paging past {self._settings.max_limit} hits is not supported")
        # one more hit than asked says whether a next page exists (a grouped search has one page)
        query = self._query(params, vector, checked, limit if params.group_by else limit + 1, offset, fusion)

        key, source = resolve_routing_key(params.routing_key, params.metadata_key, params.peer,
                                          self._settings.routing_key_fallback)
        if source is not KeySource.REQUEST and source is not KeySource.METADATA:
            self._metrics.unkeyed.labels(source).inc()
        held = self._experiments.held(params.collection) if self._experiments is not None else None
        if held is not None:  # an experiment holds the alias (no rollout can, at the same time)
            return await self._search_experiment(held, key, params, query, limit, page, query_print, deadline,
                                                 on_route)
        if page is not None and page.collection:  # a later page: served where the first one was
            decision = await self._pinned_decision(params.collection, page)
        else:
            decision = self._router.route(params.collection, key, params.forced_arm)
            if decision.in_analysis and vector is not None and await self._model_canary(params.collection):
                # a raw vector belongs to primary's space: primary serves it, outside the analysis
                decision = self._router.route(params.collection, key, Arm.PRIMARY)
                self._metrics.model_canary_vector_queries.labels(params.collection).inc()
        if on_route is not None:
            on_route(decision.arm)

        if decision.collection is None:  # no rollout: the alias (or physical name) decides
            physical = await self._backend.resolve(params.collection)
            if page is not None and page.collection and physical != page.collection:
                raise self._stale_page(params.collection, page)
            points = await self._search_arm(physical, params, query, deadline)
            self._refuse_late(deadline)
            route = RouteInfo(Arm.PRIMARY, physical)
        else:
            points, route = await self._search_routed(decision, key, params, query, deadline, on_route)
        if tracing_records():
            trace.get_current_span().set_attributes({
                "searchgw.arm": route.arm.value, "searchgw.collection": route.collection,
                "searchgw.rollout": route.rollout, "searchgw.fallback": route.fallback})
        next_token = ""
        if len(points) > limit and not params.group_by:  # the extra hit: a next page exists
            del points[limit:]
            next_token = self._pages.issue_search(
                SearchPage(offset + limit, route.collection, route.arm.value, route.rollout),
                query_print or self._fingerprint(params, vector, limit, fusion))
        if route.rollout and not offset and params.forced_arm is None:
            self._offer_shadow(params, route, points, limit, query)
        return SearchOutcome(points=points, route=route, next_page_token=next_token)

    async def _search_experiment(self, held: HeldAlias, key: str, params: SearchParams, query: SearchQuery,
                                 limit: int, page: SearchPage | None, query_print: str, deadline: float | None,
                                 on_route: Callable[[Arm], None] | None) -> SearchOutcome:
        """A search to an alias an experiment holds. While it RUNS the routing key picks the arm, whose
        ending (code, latency) is counted for it, and the answer carries a search id; otherwise control
        serves, uncounted. A later page is served by the arm of its first page, uncounted, without an id.
        A forced arm (`x-canary-arm`, a rollout's smoke test) is served by control, uncounted. A raw vector
        is served by control when the arm holds another vector space (model or dimension), uncounted.
        There is no fallback: a variant's failure is the caller's, and counts against the variant."""
        experiments = self._experiments
        assert experiments is not None
        route: ArmRoute
        if page is not None and page.collection:
            found = held.by_collection.get(page.collection)
            if found is None:
                raise self._stale_page(params.collection, page)
            route = found
        elif params.forced_arm is not None:
            route = held.control
        else:
            route = held.assign(key)
            if (route.counted and not route.is_control and params.vector is not None
                    and await self._split_spaces(held.control.collection, route.collection)):
                route = held.control
        arm = Arm.PRIMARY if route.is_control else Arm.CANARY
        if on_route is not None:
            on_route(arm)
        started = self._clock()
        try:
            points = await self._search_arm(route.collection, params, query, deadline, routed=True)
        except asyncio.CancelledError:
            experiments.record_search(route, self._ending_of_cancelled(deadline), self._clock() - started)
            raise
        except Exception as exc:
            experiments.record_search(route, _code_name(exc), self._clock() - started)
            raise
        if self._is_late(deadline):
            experiments.record_search(route, DeadlineExceeded.code_name, self._clock() - started)
            raise DeadlineExceeded(_LATE_MESSAGE)
        experiments.record_search(route, "OK", self._clock() - started)
        params_vector = None if params.vector is None else np.asarray(params.vector, dtype=np.float32)
        search_id = experiments.issue_search_id(route) if route.counted else ""
        if route.counted and not route.is_control and not query.offset:
            self._offer_experiment_shadow(params, held, route, points, limit, query)
        info = RouteInfo(arm, route.collection, experiment=route.experiment, variant=route.arm)
        trace.get_current_span().set_attributes({
            "searchgw.arm": arm.value, "searchgw.collection": route.collection,
            "searchgw.experiment": route.experiment, "searchgw.variant": route.arm})
        next_token = ""
        if len(points) > limit:  # the extra hit: a next page exists
            del points[limit:]
            next_token = self._pages.issue_search(SearchPage(query.offset + limit, route.collection, arm.value, ""),
                                                  query_print or self._fingerprint(params, params_vector, limit,
                                                                                   query.fusion))
        return SearchOutcome(points=points, route=info, next_page_token=next_token, search_id=search_id)
    @staticmethod
    def _fingerprint(params: SearchParams, vector: np.ndarray | None, limit: int, fusion: Fusion) -> str:
        """What a search's page tokens are bound to: the query, not where it was served; also the mode,
        fusion and knobs (a dense query without knobs prints as it always did)."""
        ranking = () if params.mode is SearchMode.DENSE else (params.mode.value, fusion)
        knobs = () if params.search_params is None else (params.search_params,)
        return fingerprint(params.collection, params.text, b"" if vector is None else vector.tobytes(), limit,
                           params.filter, params.score_threshold, *ranking, *knobs)

    @staticmethod
    def _query(params: SearchParams, vector: np.ndarray | None, filter: Filter | None, limit: int,
               offset: int, fusion: Fusion) -> SearchQuery:
        """The backend query of a search (`vector` None for a text search until an arm embeds it)."""
        return SearchQuery(vector=vector, limit=limit, offset=offset, filter=filter,  # type: ignore[arg-type]
                           score_threshold=params.score_threshold, with_payload=params.with_payload,
                           mode=params.mode, text=params.text if params.mode is not SearchMode.DENSE else None,
                           fusion=fusion, params=params.search_params,
                           group_by=params.group_by or None, group_size=params.group_size or 1)

    def _count_mode(self, mode: SearchMode, fusion: Fusion) -> None:
        """`searchgw_search_modes_total`, its children cached per label pair."""
        labels = (mode.value, fusion.method.value if mode is SearchMode.HYBRID else "none")
        child = self._mode_children.get(labels)
        if child is None:
            child = self._mode_children[labels] = self._metrics.search_modes.labels(*labels)
        child.inc()

    # -- shadow searches (result quality; gateway/shadow.py, rollout/quality.py) ---------------------
    def _offer_shadow(self, params: SearchParams, route: RouteInfo, points: Sequence[ScoredPoint], limit: int,
                      served_query: SearchQuery) -> None:
        """With the answer computed: if the rollout samples this search, run it on the other arm in the
        background and compare the two top k. Never waits, never raises into the caller's search. The
        shadow search is not recorded for the analysis (it is no user's call); its failures are counted."""
        try:
            policy = self._controller.quality_policy(route.rollout)
            if policy is None or not self.shadow.sampled(policy.shadow_sample_rate):
                return
            rollout = route.rollout
            if route.fallback:
                self.shadow.skip(rollout, SKIPPED_FALLBACK)
                return
            table = self._router.table(params.collection)
            if table is None or table.rollout != rollout:
                return  # the rollout ended while this search ran
            if params.vector is not None and self._spaces_differ(table.primary, table.canary):
                self.shadow.skip(rollout, SKIPPED_VECTOR)
                return
            other = table.canary if route.collection == table.primary else table.primary
            depth = min(policy.k, limit)
            query = replace(served_query, limit=depth, offset=0)  # the served query (checked filter), top k
            served_ids = [point.id for point in points[:depth]]

            async def served() -> Sequence[PointId]:
                return served_ids

            async def shadow() -> Sequence[PointId]:  # embedded with the other arm's own model
                return [point.id for point in await self._search_physical(other, params, query, None)]

            first, second = (served, shadow) if route.collection == table.primary else (shadow, served)
            job = shadow_comparison(first, second, depth, policy.rbo_p)  # primary's ranking first

            def record(comparison: ShadowComparison) -> None:
                self._controller.record_comparison(rollout, comparison.overlap, comparison.rbo, comparison.differing)
                self._metrics.observe_comparison(rollout, comparison.overlap, comparison.rbo)

            self.shadow.submit(rollout, job, record)
        except Exception:
            log.exception("offering a shadow search failed", extra={"rollout": route.rollout})

    def _offer_experiment_shadow(self, params: SearchParams, held: HeldAlias, route: ArmRoute,
                                 points: Sequence[ScoredPoint], limit: int, served_query: SearchQuery) -> None:
        """With a variant's answer computed: if the experiment samples this search, run it on control in
        the background (embedded with control's own model) and compare control's top k with the variant's.
        Never waits, never raises into the caller's search; the shadow search is not counted for any arm."""
        experiments = self._experiments
        try:
            policy = None if experiments is None else experiments.shadow_policy(route.experiment)
            if experiments is None or policy is None or not self.shadow.sampled(policy.shadow_sample_rate):
                return
            observe = self._metrics.observe_experiment_shadow_query
            label = route.experiment
            if params.vector is not None and self._spaces_differ(held.control.collection, route.collection):
                self.shadow.skip(label, SKIPPED_VECTOR, observe=lambda _, outcome: observe(label, route.arm, outcome))
                return
            control = held.control.collection
            depth = min(policy.k, limit)
            query = replace(served_query, limit=depth, offset=0)  # the served query (checked filter), top k
            served_ids = [point.id for point in points[:depth]]

            async def served() -> Sequence[PointId]:
                return served_ids

            async def on_control() -> Sequence[PointId]:  # embedded with control's own model
                return [point.id for point in await self._search_physical(control, params, query, None)]

            job = shadow_comparison(on_control, served, depth, policy.rbo_p)  # control's ranking first

            def record(comparison: ShadowComparison) -> None:
                experiments.record_comparison(label, route.arm, comparison.overlap, comparison.rbo,
                                              comparison.differing)
                self._metrics.observe_experiment_comparison(label, route.arm, comparison.overlap, comparison.rbo)

            self.shadow.submit(label, job, record, observe=lambda _, outcome: observe(label, route.arm, outcome))
        except Exception:
            log.exception("offering an experiment's shadow search failed", extra={"experiment": route.experiment})

    def _spaces_differ(self, primary: str, canary: str) -> bool:
        """Whether the arms hold different vector spaces (a model canary); True when unknown."""
        first, second = self._specs.cached(primary), self._specs.cached(canary)
        return (first is None or second is None
                or (first.dimension, first.embedding_model) != (second.dimension, second.embedding_model))

    async def _model_canary(self, collection: str) -> tuple[CollectionSpec, CollectionSpec] | None:
        """Primary's and the canary's specs when a rollout on `collection` has arms in different vector spaces."""
        table = self._router.table(collection)
        if table is None:
            return None
        primary, canary = self._specs.cached(table.primary), self._specs.cached(table.canary)
        if primary is not None and canary is not None:  # the usual case: no await
            same = (primary.dimension, primary.embedding_model) == (canary.dimension, canary.embedding_model)
            return None if same else (primary, canary)
        return await self._split_spaces(table.primary, table.canary)

    async def _split_spaces(self, primary_name: str, canary_name: str) -> tuple[CollectionSpec, CollectionSpec] | None:
        """The two arms' specs when they hold different vector spaces (model or dimension); None otherwise,
        or when a spec cannot be read (the arm's own call then fails as it would)."""
        primary, canary = self._specs.cached(primary_name), self._specs.cached(canary_name)
        if primary is None or canary is None:  # read once per collection; later calls do not leave the thread
            try:
                primary, canary = await self._specs.get(primary_name), await self._specs.get(canary_name)
            except SearchgwError:
                return None
        if (primary.dimension, primary.embedding_model) == (canary.dimension, canary.embedding_model):
            return None
        return primary, canary

    async def _pinned_decision(self, collection: str, page: SearchPage) -> RouteDecision:
        """The decision for a later page: the collection that served the earlier ones, by the arm that has
        it now. Like a forced arm it is not a routing decision, so it stays out of the rollout analysis
        and never falls back to primary (whose pages are other ones)."""
        table = self._router.table(collection)
        if table is None:
            return UNROUTED  # the alias target serves, if it is still page.collection (checked in search)
        if page.collection == table.canary:
            return self._router.route(collection, "", Arm.CANARY)
        if page.collection == table.primary:
            return self._router.route(collection, "", Arm.PRIMARY)
        raise self._stale_page(collection, page)

    @staticmethod
    def _stale_page(collection: str, page: SearchPage) -> FailedPrecondition:
        """The error for a page token whose collection no longer serves `collection` (its rollout was
        aborted or promoted, or the alias moved): the token is sound, the state it depends on is gone."""
        how = f" ({page.arm} of rollout {page.rollout!r})" if page.rollout else ""
        return FailedPrecondition(
            f"page_token: the earlier pages came from collection {page.collection!r}{how}, which no longer "
            f"serves {collection!r}; start over without it",
            reason="PAGE_TOKEN_STALE",
            metadata={"field": "page_token", "collection": page.collection, "rollout": page.rollout})

    async def _search_routed(self, decision: RouteDecision, key: str, params: SearchParams, query: SearchQuery,
                             deadline: float | None,
                             on_route: Callable[[Arm], None] | None) -> tuple[list[ScoredPoint], RouteInfo]:
        """Search the arm a rollout routed the request to, recording how that arm's attempt ended.

        Every ending is recorded for the arm that made the attempt: its status code; DEADLINE_EXCEEDED
        when the caller's deadline cancelled it (the task gets CancelledError) or its answer was ready
        too late (and is then not sent); CANCELLED when the caller left before its deadline. When the
        canary fails with a retryable error (or is over its concurrency limit) primary answers; that
        answer is not recorded for primary, which did not serve the request by routing.
        """
        physical = decision.collection
        assert physical is not None  # search() routes here only the decisions of an active rollout
        started = self._clock()
        try:
            points = await self._attempt_arm(decision, physical, params, query, deadline)
        except asyncio.CancelledError:
            self._record(decision, key, self._ending_of_cancelled(deadline), started)
            raise
        except Exception as exc:
            self._record(decision, key, _code_name(exc), started)
            if not self._may_fall_back(decision, exc, deadline):
                raise
            log.debug("canary failed; primary answers", extra={"rollout": decision.rollout,
                                                                "error": _code_name(exc)})
            self._metrics.fallbacks.labels(params.collection).inc()
            if on_route is not None:
                on_route(Arm.PRIMARY)
            primary = decision.primary
            assert primary is not None  # a rollout's decision names its primary
            points = await self._search_arm(primary, params, query, deadline, routed=True)
            self._refuse_late(deadline)
            return points, RouteInfo(Arm.PRIMARY, primary, decision.rollout, fallback=True)
        if self._is_late(deadline):
            self._record(decision, key, DeadlineExceeded.code_name, started)
            raise DeadlineExceeded(_LATE_MESSAGE)
        self._record(decision, key, "OK", started)
        return points, RouteInfo(decision.arm, physical, decision.rollout)

    async def _attempt_arm(self, decision: RouteDecision, physical: str, params: SearchParams, query: SearchQuery,
                           deadline: float | None) -> list[ScoredPoint]:
        """One search on the routed arm (its collection: `physical`); a canary over its rollout's
        concurrency limit is refused at once."""
        slots = self.canary_slots
        if not slots.floor:
            return await self._search_arm(physical, params, query, deadline, routed=True)
        key = slots.take(decision)
        try:
            return await self._search_arm(physical, params, query, deadline, routed=True)
        finally:
            slots.give_back(key)

    def _record(self, decision: RouteDecision, key: str, code_name: str, started: float) -> None:
        if decision.in_analysis:
            self._controller.record(decision.rollout, decision.arm, code_name, self._clock() - started, key)

    def _is_late(self, deadline: float | None) -> bool:
        return deadline is not None and self._clock() > deadline

    def _refuse_late(self, deadline: float | None) -> None:
        """An answer ready after the caller's deadline is not sent as a success: nobody waits for it."""
        if self._is_late(deadline):
            raise DeadlineExceeded(_LATE_MESSAGE)

    def _ending_of_cancelled(self, deadline: float | None) -> str:
        """Why an attempt was cancelled: the caller's deadline passed, or the caller left before it."""
        if deadline is not None and self._clock() >= deadline - _DEADLINE_TOLERANCE_S:
            return DeadlineExceeded.code_name
        return _CANCELLED

    def _may_fall_back(self, decision: RouteDecision, exc: Exception, deadline: float | None) -> bool:
        # A forced arm (`x-canary-arm`, never in the analysis) is served by that arm or fails with its
        # error: a smoke test aimed at a dead canary must see it fail, not primary's answer.
        if decision.arm is not Arm.CANARY or not decision.in_analysis or not self._settings.canary_fallback:
            return False
        if not isinstance(exc, _RETRYABLE) and isinstance(exc, SearchgwError):
            return False  # the request itself is wrong (or not found): primary would say the same
        return deadline is None or deadline > self._clock()

    async def _search_arm(self, physical: str, params: SearchParams, query: SearchQuery,
                          deadline: float | None, *, routed: bool = False) -> list[ScoredPoint]:
        """Search one physical collection. For a rollout's arm (`routed`), the collection was chosen by
        the gateway, not the caller: if it has vanished that is our failure (UNAVAILABLE), not NOT_FOUND."""
        try:
            return await self._search_physical(physical, params, query, deadline)
        except NotFound as exc:
            if not routed:
                raise
            self._specs.forget(physical)
            raise Unavailable(f"collection {physical!r} of the rollout cannot be searched: {exc.message}") from exc

    async def _search_physical(self, physical: str, params: SearchParams, query: SearchQuery,
                               deadline: float | None) -> list[ScoredPoint]:
        spec = self._specs.cached(physical) or await self._specs.get(physical)
        if params.mode is not SearchMode.DENSE:
            # checked before anything is embedded: a collection without BM25 cannot serve it
            check_search_mode(spec, SearchQuery(vector=(), mode=params.mode, text=params.text), params.collection)
        if params.mode is SearchMode.SPARSE:
            query = replace(query, vector=())  # BM25 alone: nothing to embed
        elif params.text is not None:
            if not spec.embedding_model:
                raise InvalidArgument("text", f"collection {params.collection!r} has no embedding model; "
                                              "search it by vector")
            vector = (await self._embed([params.text], spec.embedding_model, "text", deadline))[0]
            query = replace(query, vector=vector)
        elif len(query.vector) != spec.dimension:  # a 1-d float32 array (search() made it)
            raise InvalidArgument("vector.values", f"has {len(query.vector)} values; collection "
                                                   f"{params.collection!r} holds {spec.dimension}-d vectors")
        return await self._backend.search(physical, query)

    # -- writes ------------------------------------------------------------------------------
    async def write_targets(self, collection: str) -> list[str]:
        """The physical collections a write to `collection` must reach: both arms during a rollout."""
        self._check_collection(collection)
        arms = self._router.write_targets(collection)
        if not arms and self._experiments is not None:
            arms = self._experiments.write_targets(collection)  # every arm of an experiment
        if arms:
            return list(arms)
        return [await self._backend.resolve(collection)]

    async def upsert(self, collection: str, points: Sequence[PointInput], *,
                     deadline: float | None = None) -> tuple[int, list[str]]:
        self._check_points(collection, points)
        async with self.write_order.writing(collection):
            return await self._upsert(collection, points, deadline)

    def _check_points(self, collection: str, points: Sequence[PointInput]) -> None:
        if not points:
            raise InvalidArgument("points", "at least one point is required")
        if len(points) > self._settings.max_upsert_points:
            raise InvalidArgument("points", f"{len(points)} points; at most {self._settings.max_upsert_points} "
                                            "per request")
        self._check_collection(collection)
        for index, point in enumerate(points):
            if point.text is None and point.vector is None:
                raise InvalidArgument(f"points[{index}].content", "set text or vector")
            if point.text is not None:
                self._check_text(f"points[{index}].text", point.text)
            checked_payload(f"points[{index}].payload", point.payload, self._settings.max_payload_bytes)
            check_reserved_keys(f"points[{index}].payload", point.payload)
            self._check_bm25_text(index, point)
            if point.text is None and TEXT_PAYLOAD_KEY in point.payload:
                raise InvalidArgument(
                    f"points[{index}].payload.{TEXT_PAYLOAD_KEY}",
                    "is reserved for the text the gateway embedded (a canary with another model re-embeds it); "
                    "with a raw vector it would claim a text the vector was not made from: send the text in "
                    "`text`, or leave the key out")

    def _check_bm25_text(self, index: int, point: PointInput) -> None:
        """`bm25_text` belongs to a raw-vector point (a text point is BM25-indexed by its text), and the
        payload key that keeps it is set through that field only."""
        if BM25_TEXT_PAYLOAD_KEY in point.payload:
            raise InvalidArgument(f"points[{index}].payload.{BM25_TEXT_PAYLOAD_KEY}",
                                  "is reserved for the point's BM25 text: send it in `bm25_text`")
        if point.bm25_text is None:
            return
        if point.text is not None:
            raise InvalidArgument(f"points[{index}].bm25_text", "a text point is BM25-indexed by its `text`; "
                                                                "bm25_text is for a raw-vector point")
        self._check_text(f"points[{index}].bm25_text", point.bm25_text)

    async def _upsert(self, collection: str, points: Sequence[PointInput],
                      deadline: float | None) -> tuple[int, list[str]]:
        targets = await self.write_targets(collection)  # the route table, read once for this write
        if len(targets) > 1:
            vector_rows = [i for i, p in enumerate(points) if p.text is None]
            split = await self._first_split(targets) if vector_rows else None
            if split is not None:
                primary, canary = split
                raise InvalidArgument(
                    f"points[{vector_rows[0]}].vector",
                    f"collection {collection!r} is in a model canary or an experiment across models "
                    f"({primary.name!r}: {_space(primary)}; "
                    f"{canary.name!r}: {_space(canary)}): a raw vector belongs to one model's space and would "
                    f"leave the arms apart; send text, which each arm embeds with its own model")
        # Prepare every arm's points first (embedding, dimension checks): nothing is written
        # unless every arm's batch is valid.
        prepared: list[tuple[str, list[Point]]] = []
        vectors_by_model: dict[str, np.ndarray] = {}
        text_rows = [i for i, p in enumerate(points) if p.text is not None]
        texts = [p.text for p in points if p.text is not None]  # the texts of text_rows, in order
        for physical in targets:
            spec = await self._specs.get(physical)
            model = spec.embedding_model
            if text_rows and not model:
                raise InvalidArgument(f"points[{text_rows[0]}].text", f"collection {physical!r} has no embedding "
                                                                     "model; write vectors")
            if text_rows and model not in vectors_by_model:
                field = "points[].text" if len(text_rows) > 1 else f"points[{text_rows[0]}].text"
                vectors_by_model[model] = await self._embed(texts, model, field, deadline,
                                                            [f"points[{i}].text" for i in text_rows])
            embedded = dict(zip(text_rows, vectors_by_model.get(model, ())))
            batch = []
            for index, point in enumerate(points):
                vector = embedded[index] if point.text is not None else np.asarray(point.vector, dtype=np.float32)
                if vector.shape != (spec.dimension,):
                    raise InvalidArgument(f"points[{index}].vector.values",
                                          f"has {vector.size} values; collection {physical!r} holds "
                                          f"{spec.dimension}-d vectors")
                # The source text is kept in the point (TEXT_PAYLOAD_KEY): a canary with another model is
                # backfilled by re-embedding it.
                payload = point.payload if point.text is None else {**point.payload, TEXT_PAYLOAD_KEY: point.text}
                if point.bm25_text is not None:  # what a collection with BM25 (or a canary) indexes the point by
                    payload = {**payload, BM25_TEXT_PAYLOAD_KEY: point.bm25_text}
                batch.append(Point(id=point.id, vector=vector, payload=payload))
            prepared.append((physical, batch))
        async with self._ordered(collection, targets, [point.id for point in points]):
            for physical, batch in prepared:
                await self._backend.upsert(physical, batch)
        return len(points), targets

    async def _first_split(self, targets: Sequence[str]) -> tuple[CollectionSpec, CollectionSpec] | None:
        """The first arm (of a rollout's two, or an experiment's N) in another vector space than the first."""
        for other in targets[1:]:
            split = await self._split_spaces(targets[0], other)
            if split is not None:
                return split
        return None

    # -- chunked writes (see searchgw.gateway.chunks) -----------------------------------------------
    async def upsert_chunked(self, collection: str, points: Sequence[PointInput], options: ChunkingOptions, *,
                             deadline: float | None = None) -> ChunkedUpsert:
        """Write each point's text as chunks cut by each target collection's model, then delete the
        documents' surplus chunks (numbered from the new count on) and any unchunked point with a
        document's own id. Written first, deleted second: a failure in between leaves extra old chunks
        (the next write of the document removes them), never a document missing chunks."""
        self._check_points(collection, points)
        documents: list[PointId] = []
        seen: dict[PointId, int] = {}
        for index, point in enumerate(points):
            if point.text is None:
                raise InvalidArgument(f"points[{index}].vector", "chunking cuts texts; a raw vector cannot be "
                                                                 "chunked: send text, or write vectors without chunking")
            document = point_id(f"points[{index}].id", point.id)
            if document in seen:
                raise InvalidArgument(f"points[{index}].id", f"is also the id of points[{seen[document]}]; a "
                                                             "document is written once per chunked upsert")
            seen[document] = index
            documents.append(document)
        async with self.write_order.writing(collection):
            return await self._upsert_chunked(collection, points, documents, options, deadline)

    async def _upsert_chunked(self, collection: str, points: Sequence[PointInput], documents: list[PointId],
                              options: ChunkingOptions, deadline: float | None) -> ChunkedUpsert:
        targets = await self.write_targets(collection)  # the route table, read once for this write
        texts = [point.text or "" for point in points]
        fields = [f"points[{i}].text" for i in range(len(points))]
        by_model: dict[str, tuple[list[ChunkedText], np.ndarray]] = {}
        prepared: list[tuple[str, list[Point], list[tuple[PointId, int]]]] = []
        for physical in targets:
            spec = await self._specs.get(physical)
            model = spec.embedding_model
            if not model:
                raise InvalidArgument("chunking", f"collection {physical!r} has no embedding model, whose "
                                                  "tokenizer would cut the chunks; write vectors")
            if model not in by_model:
                chunked = await self._chunk(texts, model, options, fields, deadline)
                pieces = [(index, chunk.text) for index, doc in enumerate(chunked) for chunk in doc.chunks]
                vectors = await self._embed([text for _, text in pieces], model, "points[].text", deadline,
                                            [fields[index] for index, _ in pieces])
                by_model[model] = (chunked, vectors)
            chunked, vectors = by_model[model]
            if vectors.shape[1] != spec.dimension:
                raise InvalidArgument("points[].text", f"model {model!r} gives {vectors.shape[1]}-d vectors; "
                                                       f"collection {physical!r} holds {spec.dimension}-d vectors")
            batch: list[Point] = []
            for document, point, doc in zip(documents, points, chunked):
                for number, chunk in enumerate(doc.chunks):
                    batch.append(Point(id=chunk_id(document, number), vector=vectors[len(batch)],
                                       payload=chunk_payload(point.payload, document, number, chunk.text)))
            prepared.append((physical, batch, [(d, len(doc.chunks)) for d, doc in zip(documents, chunked)]))
        # A dual write's surplus delete is by filter, so it holds every stripe (as a delete by filter does);
        # a single collection's write holds its documents' stripes, so two writes of one document do not
        # interleave their writes and deletes.
        async with self.write_order.points(collection, None if len(targets) > 1 else documents):
            for physical, batch, _ in prepared:
                await self._backend.upsert(physical, batch)
            for physical, _, counts in prepared:
                for surplus in surplus_filters(counts):
                    await self._backend.delete_points(physical, filter=surplus)
                await self._backend.delete_points(physical, ids=documents)
        point_chunks = [count for _, count in prepared[0][2]]
        self._metrics.chunks_written.labels(collection).inc(sum(len(batch) for _, batch, _ in prepared))
        log.info("chunked upsert", extra={
            "collection": collection, "targets": targets, "documents": len(documents),
            "chunks": sum(point_chunks), "max_tokens": options.max_tokens, "overlap_tokens": options.overlap_tokens})
        return ChunkedUpsert(points=len(points), collections=targets, point_chunks=point_chunks)

    async def _chunk(self, texts: Sequence[str], model: str, options: ChunkingOptions, fields: Sequence[str],
                     deadline: float | None) -> list[ChunkedText]:
        """Each text's chunks by `model`'s tokenizer, in calls of at most `embed_batch_texts` texts."""
        embedder = self._embedder
        if embedder is None:
            raise InvalidArgument("chunking", "this gateway has no embedder configured, whose tokenizer would "
                                              "cut the chunks; write vectors")
        size = self._settings.embed_batch_texts
        with _tracer.start_as_current_span("chunk", attributes={"embedding.model": model,
                                                                "embedding.texts": len(texts)}):
            parts = await asyncio.gather(*(
                embedder.chunk(texts[i:i + size], model=model, options=options, fields=fields[i:i + size],
                               options_field="chunking", deadline=deadline)
                for i in range(0, len(texts), size)))
        return [chunked for part in parts for chunked in part]

    def _ordered(self, collection: str, targets: Sequence[str],
                 ids: Sequence[PointId] | None) -> contextlib.AbstractAsyncContextManager[None]:
        """A dual write holds its ids' stripes across both arms' writes (None: every stripe); a write
        to one collection needs none."""
        if len(targets) < 2:
            return contextlib.nullcontext()
        return self.write_order.points(collection, ids)

    async def delete(self, collection: str, *, ids: Sequence[PointId] | None = None,
                     filter: Filter | None = None) -> list[str]:
        if ids is None and filter is None:
            raise InvalidArgument("selector", "set ids or filter")
        if ids is not None and not ids:
            raise InvalidArgument("ids.ids", "at least one id is required")
        self._check_collection(collection)
        if ids is not None and len(ids) > self._settings.max_filter_values:
            raise InvalidArgument("ids.ids", f"{len(ids)} ids; at most {self._settings.max_filter_values} per "
                                             "request (--max-filter-values)")
        if filter is not None:
            if not (filter.must or filter.should or filter.must_not or filter.min_should):
                raise InvalidArgument("filter", "an empty filter would delete every point; to empty a collection, "
                                                "delete and re-create it")
            filter = self._check_filter("filter", filter)
        async with self.write_order.writing(collection):
            targets = await self.write_targets(collection)  # the route table, read once for this write
            async with self._ordered(collection, targets, ids):
                for physical in targets:
                    await self._backend.delete_points(physical, ids=ids, filter=filter)
        return targets
