"""Snapshots as operators run them: a retention policy, and which snapshots it keeps. Free of gRPC.

A retention policy keeps the last `keep_last` snapshots of a collection and/or those younger than
`max_age_s`: a snapshot either rule keeps stays (so "last 3, and a week's" keeps at least three, and
every one of the past week). The newest snapshot always stays, whatever the policy. A policy with
neither rule would delete everything but the newest, so it is refused (InvalidArgument), never read
as "delete all".

`plan_pruning` is the decision: a pure function of the snapshots, the policy and the time, so a test
(or an operator) can replay it. `CollectionAdmin.prune_snapshots` lists, plans and deletes.

`SnapshotScheduler` takes each scheduled collection's snapshot every interval (the gateway's
`--snapshot-schedule "docs=6h,news=24h"`) and then prunes that collection with the retention
settings, when any is set. Its first snapshot of a collection is due one interval after the newest
it already has (now, when it has none), so a restart neither skips nor doubles one. It takes a wall
clock and a sleep function (tests never sleep), logs each snapshot and pruning with its numbers,
and tells its observer each outcome (`searchgw_snapshots_total{collection,result}`). A failure
(a collection that is gone, an engine error) is logged and counted, that collection tries again one
interval later, and the other collections go on.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from searchgw.gateway.backends import SnapshotInfo
from searchgw.errors import InvalidArgument

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetentionPolicy:
    """Keep the last `keep_last` snapshots (0: no count rule) and/or those younger than `max_age_s`
    seconds (0: no age rule); at least one rule must be set. Bad values are InvalidArgument naming
    `keep_last` or `max_age`."""

    keep_last: int = 0
    max_age_s: float = 0.0

    def __post_init__(self) -> None:
        if self.keep_last < 0:
            raise InvalidArgument("keep_last", f"{self.keep_last}; must not be negative (0: no count rule)")
        if not math.isfinite(self.max_age_s) or self.max_age_s < 0:
            raise InvalidArgument("max_age", f"{self.max_age_s} seconds; must be a finite duration, 0 or more "
                                             "(0: no age rule)")
        if not self.keep_last and not self.max_age_s:
            raise InvalidArgument("keep_last", "set keep_last or max_age (or both): a policy with neither would "
                                               "delete every snapshot but the newest")


@dataclass(frozen=True)
class Pruning:
    """What a policy keeps and deletes of one collection's snapshots, each oldest first."""

    keep: tuple[SnapshotInfo, ...]
    delete: tuple[SnapshotInfo, ...]


def plan_pruning(snapshots: Iterable[SnapshotInfo], policy: RetentionPolicy, now: float) -> Pruning:
    """Which of `snapshots` (one collection's) `policy` keeps at time `now` (epoch seconds)."""
    ordered = sorted(snapshots, key=lambda s: (s.create_time, s.name))
    keep: list[SnapshotInfo] = []
    delete: list[SnapshotInfo] = []
    for index, snapshot in enumerate(ordered):
        newer = len(ordered) - 1 - index  # how many are newer than this one
        kept = (newer == 0
                or (policy.keep_last > 0 and newer < policy.keep_last)
                or (policy.max_age_s > 0 and now - snapshot.create_time < policy.max_age_s))
        (keep if kept else delete).append(snapshot)
    return Pruning(keep=tuple(keep), delete=tuple(delete))


class SnapshotAdmin(Protocol):
    """What the scheduler asks of CollectionAdmin."""

    async def create_snapshot(self, name: str) -> SnapshotInfo: ...

    async def all_snapshots(self, collection: str) -> Sequence[SnapshotInfo]: ...

    async def prune_snapshots(self, collection: str, keep_last: int, max_age_s: float, now: float) -> Pruning: ...


#: An outcome the scheduler reports: (collection, result), result one of `SCHEDULE_RESULTS`.
ScheduleObserver = Callable[[str, str], None]
#: "ok": a snapshot taken; "error": one failed; "pruned": a snapshot deleted by the retention policy;
#: "prune_error": a pruning failed.
SCHEDULE_RESULTS = ("ok", "error", "pruned", "prune_error")


class SnapshotScheduler:
    """Takes each collection's snapshot every `schedule[collection]` seconds and prunes after it."""

    def __init__(self, admin: SnapshotAdmin, schedule: Mapping[str, float], *, keep_last: int = 0,
                 max_age_s: float = 0.0, wall_clock: Callable[[], float],
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 observer: ScheduleObserver | None = None) -> None:
        """`keep_last` and `max_age_s` both 0: no pruning (never "delete all"); else checked as a
        RetentionPolicy (InvalidArgument naming the field)."""
        self._admin = admin
        self._schedule = dict(schedule)
        self._policy = RetentionPolicy(keep_last, max_age_s) if keep_last or max_age_s else None
        self._wall_clock = wall_clock
        self._sleep = sleep
        self._observer = observer or (lambda collection, result: None)
        #: When each collection's next snapshot is due (epoch seconds); filled by the first pass.
        self._due: dict[str, float] = {}

    async def _first_due(self, collection: str, now: float) -> float:
        try:
            snapshots = await self._admin.all_snapshots(collection)
        except Exception as exc:  # noqa: BLE001 - it is tried now, and fails or succeeds visibly then
            log.warning("scheduled snapshots: cannot list the snapshots of %s: %s", collection, exc,
                        extra={"collection": collection})
            return now
        newest = max((s.create_time for s in snapshots), default=None)
        return now if newest is None else min(now + self._schedule[collection], newest + self._schedule[collection])

    async def run_due(self) -> float:
        """Snapshot (and prune) every collection that is due now; when the next one is due."""
        now = self._wall_clock()
        for collection in self._schedule:
            if collection not in self._due:
                self._due[collection] = await self._first_due(collection, now)
        for collection, interval in self._schedule.items():
            if self._due[collection] > now:
                continue
            await self._snapshot_and_prune(collection)
            after = self._wall_clock()
            following = self._due[collection] + interval
            # Behind by a whole interval (a long snapshot, a clock jump): one interval from now, no burst.
            self._due[collection] = following if following > after else after + interval
        return min(self._due.values())

    async def _snapshot_and_prune(self, collection: str) -> None:
        try:
            snapshot = await self._admin.create_snapshot(collection)
        except Exception as exc:  # noqa: BLE001 - one collection's failure must not stop the others
            self._observer(collection, "error")
            log.error("scheduled snapshot of %s failed: %s: %s", collection, type(exc).__name__, exc,
                      extra={"collection": collection})
            return
        self._observer(collection, "ok")
        log.info("scheduled snapshot of %s taken: %s, %d bytes", collection, snapshot.name, snapshot.size_bytes,
                 extra={"collection": collection, "snapshot": snapshot.name, "size_bytes": snapshot.size_bytes})
        if self._policy is None:
            return
        try:
            pruning = await self._admin.prune_snapshots(snapshot.collection, self._policy.keep_last,
                                                        self._policy.max_age_s, self._wall_clock())
        except Exception as exc:  # noqa: BLE001
            self._observer(collection, "prune_error")
            log.error("pruning the snapshots of %s failed: %s: %s", collection, type(exc).__name__, exc,
                      extra={"collection": collection})
            return
        for _ in pruning.delete:
            self._observer(collection, "pruned")
        log.info("pruned the snapshots of %s: deleted %d, kept %d", collection, len(pruning.delete),
                 len(pruning.keep), extra={"collection": collection, "deleted": [s.name for s in pruning.delete],
                                           "kept": len(pruning.keep)})

    async def run(self) -> None:
        """Forever (until cancelled): run what is due, sleep until the next is."""
        while True:
            next_due = await self.run_due()
            await self._sleep(max(0.0, next_due - self._wall_clock()))


__all__ = ["SCHEDULE_RESULTS", "Pruning", "RetentionPolicy", "ScheduleObserver", "SnapshotAdmin",
           "SnapshotScheduler", "plan_pruning"]
