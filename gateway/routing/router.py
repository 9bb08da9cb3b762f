"""The router: which physical collection answers a request to a logical collection.

The rollout controller publishes an immutable snapshot (logical collection → `RouteTable`) with
`Router.replace`; the request path reads it without locks (swapping one attribute is atomic).
A decision is a dict lookup, one hash and one bisect, and returns a prebuilt `RouteDecision`, so
it allocates nothing but the hashed bytes.
"""

from __future__ import annotations

import enum
from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import xxhash

from searchgw.gateway.routing.buckets import BUCKETS, BucketLayout, salt_prefix


class Arm(enum.StrEnum):
    """The side of a rollout that serves a request (values as in the `x-canary-arm` header)."""

    PRIMARY = "primary"
    CANARY = "canary"


@dataclass(frozen=True, slots=True)
class RouteTable:
    """How one logical collection splits while a rollout is active."""

    rollout: str
    salt: str
    primary: str
    canary: str
    weight_bps: int

    def layout(self) -> BucketLayout[Arm]:
        return BucketLayout.canary(Arm.CANARY, Arm.PRIMARY, self.weight_bps)


@dataclass(frozen=True, slots=True)
class RouteDecision:
    """Where a request goes.

    `collection` is the physical collection of `arm`, or None when no rollout is active (the caller
    then uses the alias target). `primary` is the rollout's primary collection (for falling back
    from a failed canary). `in_analysis` is False for forced arms and unrouted requests: such
    requests are served and counted, but never feed the rollout analysis. `canary_share` is the
    rollout's weight: the fraction (0..1) of its keyed traffic that goes to the canary.
    """

    arm: Arm
    collection: str | None
    rollout: str
    in_analysis: bool
    primary: str | None
    canary_share: float = 0.0


_CANARY = Arm.CANARY  # module constant: looking a member up on an Enum class costs ~100 ns

#: The decision for a collection without an active rollout.
UNROUTED = RouteDecision(arm=Arm.PRIMARY, collection=None, rollout="", in_analysis=False, primary=None)


class _CompiledRoute:
    """A RouteTable prepared for the hot path: salt bytes, bucket bounds and prebuilt decisions."""

    __slots__ = ("table", "prefix", "ends", "decisions", "forced_primary", "forced_canary")

    def __init__(self, table: RouteTable) -> None:
        self.table = table
        self.prefix = salt_prefix(table.salt)
        layout = table.layout()
        self.ends = layout.ends
        physical = {Arm.PRIMARY: table.primary, Arm.CANARY: table.canary}
        share = table.weight_bps / BUCKETS
        self.decisions = tuple(
            RouteDecision(arm_range.arm, physical[arm_range.arm], table.rollout, True, table.primary, share)
            for arm_range in layout.ranges
        )
        self.forced_primary = RouteDecision(Arm.PRIMARY, table.primary, table.rollout, False, table.primary, share)
        self.forced_canary = RouteDecision(Arm.CANARY, table.canary, table.rollout, False, table.primary, share)


class Router:
    """Routes requests by key with the snapshot the controller published last."""

    __slots__ = ("_routes",)

    def __init__(self, tables: Mapping[str, RouteTable] | None = None) -> None:
        self._routes: Mapping[str, _CompiledRoute] = MappingProxyType({})
        self.replace(tables or {})

    def replace(self, tables: Mapping[str, RouteTable]) -> None:
        """Publish a new snapshot (logical collection → table); requests in flight keep the old one."""
        self._routes = MappingProxyType({collection: _CompiledRoute(table) for collection, table in tables.items()})

    def tables(self) -> dict[str, RouteTable]:
        """The current snapshot's tables."""
        return {collection: route.table for collection, route in self._routes.items()}

    def table(self, collection: str) -> RouteTable | None:
        """The table of `collection`, or None when no rollout is active on it."""
        route = self._routes.get(collection)
        return None if route is None else route.table

    def write_targets(self, collection: str) -> tuple[str, ...]:
        """Both arms' physical collections while a rollout is active (writes go to both); else ()."""
        route = self._routes.get(collection)
        return () if route is None else (route.table.primary, route.table.canary)

    def route(self, collection: str, key: str, forced_arm: Arm | None = None) -> RouteDecision:
        """The decision for one request to the logical `collection` with routing key `key`."""
        route = self._routes.get(collection)
        if route is None:
            return UNROUTED
        if forced_arm is not None:  # identity tests: hashing an Enum member runs Python code
            return route.forced_canary if forced_arm is _CANARY else route.forced_primary
        bucket_number = xxhash.xxh3_64_intdigest(route.prefix + key.encode()) % BUCKETS
        return route.decisions[bisect_right(route.ends, bucket_number)]
