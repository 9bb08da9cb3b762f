"""What the controller needs to share one rollout among several gateway replicas. Free of I/O.

Two small interfaces the `RolloutController` takes as collaborators; without them (the default, and
the SQLite store) the controller is alone and does everything itself.

    Leadership      whether this replica runs the analysis now (`is_leader`). Exactly one replica
                    does at a time: the others count calls and follow the stored state.
    CountsExchange  the per-second per-arm counts of every replica. A follower `share`s its complete
                    seconds; the leader `gather`s everyone's before each check, merged into its own
                    (the slices sum exactly, see `analysis.ArmSlice`) and tells the controller up to
                    which second the evidence may be folded (the others' seconds need time to arrive).

`SoleLeadership` and `LocalCounts` are the single-replica versions (always leader, nothing to share).
"""

from __future__ import annotations

from typing import Protocol

from searchgw.gateway.rollout.analysis import ArmSlice

#: Counts of one rollout's unfolded seconds: controller-clock second → [primary, canary].
Seconds = dict[int, list[ArmSlice]]


class Leadership(Protocol):
    @property
    def is_leader(self) -> bool:
        """True while this replica may take decisions (its lease is valid by its own clock)."""
        ...


class CountsExchange(Protocol):
    async def share(self, rollout: str, seconds: Seconds, now: float) -> None:
        """A follower: hand over the complete seconds (before `now`'s) of `seconds`, removing them."""
        ...

    async def gather(self, rollout: str, seconds: Seconds, now: float, *, canary_running: bool) -> tuple[float, int]:
        """The leader: merge the other replicas' complete seconds into `seconds`. Returns the fold
        horizon (fold the seconds before it) and how many canary calls of the others were merged (they
        count toward the stage's canary requests while `canary_running`)."""
        ...


class SoleLeadership:
    """One replica: always the leader."""

    @property
    def is_leader(self) -> bool:
        return True


class LocalCounts:
    """One replica: its own counts are all the counts."""

    async def share(self, rollout: str, seconds: Seconds, now: float) -> None:
        return None

    async def gather(self, rollout: str, seconds: Seconds, now: float, *, canary_running: bool) -> tuple[float, int]:
        return now, 0
