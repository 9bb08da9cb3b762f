"""Snapshots as operators run them: a retention policy, and which snapshots it keeps. Free of gRPC.

A retention policy keeps the last `keep_last` snapshots of a collection and/or those younger than
`max_age_s`: a snapshot either rule keeps stays (so "last 3, and a week's" keeps at least three, and
every one of the past week). The newest snapshot always stays, whatever the policy. A policy with
neither rule would delete everything but the newest, so it is refused (InvalidArgument), never read
as "delete all".

`plan_pruning` is the decision: a pure function of the snapshots, the policy and the time, so a test
(or an operator) can replay it. `CollectionAdmin.prune_snapshots` lists, plans and deletes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from searchgw.gateway.backends import SnapshotInfo
from searchgw.errors import InvalidArgument


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


__all__ = ["Pruning", "RetentionPolicy", "plan_pruning"]
