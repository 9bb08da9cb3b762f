"""PointReader: reading points of a logical collection — count, scroll, get by id — free of gRPC.

Which collection answers: the one the logical name resolves to (an alias's target). During a rollout
reads go to primary, the collection the logical name still means for everyone, unless the request
names an arm (`arm=CANARY`: the canary, e.g. to compare the two collections point by point). A read is
not a routing decision: it is never counted in the rollout analysis, and a failing canary read fails
(no fallback), like a forced-arm search. Naming the canary while no rollout is active is
FAILED_PRECONDITION.

Scroll pages through the points that match a filter, by id (integers before UUIDs) or by a payload
field with an integer, float or datetime index (`OrderBy`; points without the field are left out, as
the engines do). Its page token is signed and bound to the query (collection, filter, order, payload
and vector options, arm) through `PageTokens`, and names the physical collection that served the
first page: a later page comes from that collection only, and a token whose collection no longer
serves the logical name is FAILED_PRECONDITION (`PAGE_TOKEN_STALE`), as for a search. By id the token
holds the id the next page starts at. Ordered, it holds the last page's last value and the ids that
had it (the engines start an ordered page at a value, inclusive): the next page starts at that value
and leaves those ids out, so ties spanning pages are neither repeated nor skipped. A run of more than
`MAX_TIED_IDS` points with one value cannot be paged that way (FAILED_PRECONDITION: order by a more
selective field, or by id). A write between pages may move a point across the page boundary (no
snapshot isolation), as in Qdrant.

Get returns the points with the ids asked for, in that order, each once; ids the collection does not
hold are simply left out (the response's ids say which were found).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from searchgw.errors import FailedPrecondition, InvalidArgument
from searchgw.gateway.backends import Filter, HasId, OrderBy, PointId, StoredPoint, VectorBackend
from searchgw.gateway.core import RouteInfo
from searchgw.gateway.paging import PageTokens, fingerprint, page_size_of
from searchgw.gateway.routing import Arm, Router
from searchgw.gateway.rules import FilterLimits, check_name, checked_filter, checked_ids
from searchgw.gateway.settings import GatewaySettings

#: Most points with one order value a scroll token can carry across a page boundary.
MAX_TIED_IDS = 1000


@dataclass(frozen=True)
class ScrollParams:
    collection: str
    filter: Filter | None = None
    page_size: int = 0
    page_token: str = ""
    order_by: OrderBy | None = None
    with_payload: bool = False
    with_vector: bool = False
    arm: Arm | None = None


@dataclass(frozen=True)
class ReadOutcome:
    """Points read, the collection that answered, and the next page's token ("" on the last page)."""

    points: list[StoredPoint]
    route: RouteInfo
    next_page_token: str = ""


class PointReader:
    def __init__(self, backend: VectorBackend, router: Router, settings: GatewaySettings,
                 page_tokens: PageTokens) -> None:
        self._backend = backend
        self._router = router
        self._settings = settings
        self._pages = page_tokens
        self._filter_limits = FilterLimits(max_values=settings.max_filter_values,
                                           max_value_bytes=settings.max_payload_bytes)

    async def _target(self, collection: str, arm: Arm | None) -> RouteInfo:
        """The physical collection a read of `collection` goes to: primary during a rollout unless `arm` says."""
        check_name("collection", collection)
        table = self._router.table(collection)
        if table is None:
            if arm is Arm.CANARY:
                raise FailedPrecondition(f"arm: collection {collection!r} has no active rollout, so no canary")
            return RouteInfo(Arm.PRIMARY, await self._backend.resolve(collection))
        if arm is Arm.CANARY:
            return RouteInfo(Arm.CANARY, table.canary, table.rollout)
        return RouteInfo(Arm.PRIMARY, table.primary, table.rollout)

    def _filter(self, filter: Filter | None) -> Filter | None:
        return None if filter is None else checked_filter("filter", filter, self._filter_limits)

    async def count(self, collection: str, filter: Filter | None = None,
                    arm: Arm | None = None) -> tuple[int, RouteInfo]:
        """How many points of `collection` match `filter` (every point without one), exactly."""
        checked = self._filter(filter)
        route = await self._target(collection, arm)
        return await self._backend.count(route.collection, checked), route

    async def get(self, collection: str, ids: Sequence[PointId], *, with_payload: bool = False,
                  with_vector: bool = False, arm: Arm | None = None) -> ReadOutcome:
        """The points with these ids, in the order asked, each once; missing ids are left out."""
        if not ids:
            raise InvalidArgument("ids", "at least one id is required")
        if len(ids) > self._settings.max_filter_values:
            raise InvalidArgument("ids", f"{len(ids)} ids; at most {self._settings.max_filter_values} per request "
                                         "(--max-filter-values)")
        checked = checked_ids("ids", ids)
        route = await self._target(collection, arm)
        points = await self._backend.retrieve(route.collection, checked, with_payload=with_payload,
                                              with_vector=with_vector)
        return ReadOutcome(points, route)

    async def scroll(self, params: ScrollParams) -> ReadOutcome:
        """One page of the points that match the filter (see the module docstring for order and tokens)."""
        size = page_size_of(params.page_size)
        checked = self._filter(params.filter)
        if params.order_by is not None and not params.order_by.key:
            raise InvalidArgument("order_by.key", "is required to order a scroll")
        order = None if params.order_by is None else (params.order_by.key, params.order_by.descending)
        bound_to = fingerprint("scroll", params.collection, params.filter, order, params.with_payload,
                               params.with_vector, params.arm)
        position = None if not params.page_token else self._pages.read_value(params.page_token, bound_to)
        route = await self._target(params.collection, params.arm)
        if position is not None:
            if not isinstance(position, dict) or not isinstance(position.get("c"), str):
                raise InvalidArgument("page_token", "is not a token this server issued")
            if position["c"] != route.collection:
                raise FailedPrecondition(
                    f"page_token: the earlier pages came from collection {position['c']!r}, which no longer serves "
                    f"{params.collection!r}; start over without it", reason="PAGE_TOKEN_STALE",
                    metadata={"field": "page_token", "collection": position["c"]})
        if params.order_by is None:
            return await self._scroll_by_id(params, route, checked, size, position, bound_to)
        return await self._scroll_ordered(params, params.order_by, route, checked, size, position, bound_to)

    async def _scroll_by_id(self, params: ScrollParams, route: RouteInfo, filter: Filter | None, size: int,
                            position: dict[str, object] | None, bound_to: str) -> ReadOutcome:
        offset = None
        if position is not None:
            raw = position.get("o")
            if not isinstance(raw, int | str) or isinstance(raw, bool):
                raise InvalidArgument("page_token", "is not a token this server issued")
            offset = raw
        page = await self._backend.scroll(route.collection, offset=offset, limit=size, filter=filter,
                                          with_payload=params.with_payload, with_vector=params.with_vector)
        token = "" if page.next_offset is None else self._pages.issue_value(
            {"c": route.collection, "o": page.next_offset}, bound_to)
        return ReadOutcome(list(page.points), route, token)

    async def _scroll_ordered(self, params: ScrollParams, order_by: OrderBy, route: RouteInfo,
                              filter: Filter | None, size: int, position: dict[str, object] | None,
                              bound_to: str) -> ReadOutcome:
        start: int | float | None = None
        tied: list[PointId] = []
        if position is not None:
            value, ids = position.get("v"), position.get("x")
            if (not isinstance(value, int | float) or isinstance(value, bool) or not isinstance(ids, list)
                    or not all(isinstance(i, int | str) and not isinstance(i, bool) for i in ids)):
                raise InvalidArgument("page_token", "is not a token this server issued")
            start, tied = value, list(ids)
        if tied:  # the points already served at the start value stay out
            base = filter or Filter()
            filter = replace(base, must_not=(*base.must_not, HasId(tuple(tied))))
        page = await self._backend.scroll(route.collection, limit=size, filter=filter,
                                          order_by=replace(order_by, start_from=start),
                                          with_payload=params.with_payload, with_vector=params.with_vector)
        token = ""
        if len(page.points) == size and len(page.order_values) == size:
            last = page.order_values[-1]
            ties = [point.id for point, value in zip(page.points, page.order_values, strict=True) if value == last]
            if last == start:
                ties = tied + ties
            if len(ties) > MAX_TIED_IDS:
                raise FailedPrecondition(
                    f"order_by: more than {MAX_TIED_IDS} points share the value {last!r} of {order_by.key!r}; "
                    "page by a more selective field, or by id")
            token = self._pages.issue_value({"c": route.collection, "v": last, "x": ties}, bound_to)
        return ReadOutcome(list(page.points), route, token)


__all__ = ["MAX_TIED_IDS", "PointReader", "ReadOutcome", "ScrollParams"]
