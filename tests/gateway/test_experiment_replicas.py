"""Experiments across replicas: two ExperimentManagers in one process sharing a real redis-server (the
`--state redis` control plane: RedisExperimentStore, RedisExperimentCounts, RedisLeadership). Searches,
outcomes and shadow comparisons counted at either replica are summed exactly in the leader's verdict;
only the leader saves verdicts; transitions made at a follower are adopted; a change of leader neither
loses nor double-counts anything. Clocks are ManualClocks (folds happen when the test advances them)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import pytest

from searchgw.gateway.experiments import (
    ArmSpec,
    Experiment,
    ExperimentManager,
    ExperimentPolicy,
    ExperimentState,
    OutcomeStatus,
    RedisExperimentStore,
    SearchIds,
)
from searchgw.gateway.experiments.cluster import RedisExperimentCounts
from searchgw.gateway.rollout.quality import QualityPolicy
from searchgw.gateway.rollout.redis_store import RedisLeadership, connect
from searchgw.testing import ManualClock
from tests.redis_rig import RedisServer

SPEC = Experiment(name="e", collection="docs", control=ArmSpec("control", "", 0),
                  variants=(ArmSpec("a", "docs-a"), ArmSpec("b", "docs-b")),
                  policy=ExperimentPolicy(interval_s=10.0, quality=QualityPolicy(shadow_sample_rate=0.05)))


class Replica:
    def __init__(self, name: str, url: str, clock: ManualClock, aliases: dict[str, str]) -> None:
        self.client = connect(url)
        self.leadership = RedisLeadership(self.client, holder=name, lease_s=30.0, clock=clock)
        self.store = RedisExperimentStore(self.client)

        async def resolve(alias: str) -> str:
            return aliases.get(alias, alias)

        async def switch(alias: str, collection: str) -> None:
            aliases[alias] = collection

        self.manager = ExperimentManager(self.store, switch_alias=switch, resolve_alias=resolve, clock=clock,
                                         wall_clock=clock.wall, search_ids=SearchIds(b"shared-secret"),
                                         leadership=self.leadership, shared_counts=RedisExperimentCounts(self.client))


@pytest.fixture
async def replicas(tmp_path) -> AsyncIterator[tuple[ManualClock, Replica, Replica]]:
    server = await RedisServer(tmp_path / "redis").start()
    clock, aliases = ManualClock(), {"docs": "docs-c"}
    first, second = Replica("r1", server.url, clock, aliases), Replica("r2", server.url, clock, aliases)
    assert await first.leadership.step() and not await second.leadership.step()
    await first.manager.restore()
    await second.manager.restore()
    yield clock, first, second
    for replica in (first, second):
        await replica.client.aclose()
    await server.stop()


class Traffic:
    """Searches and conversions through the request path's calls, with the exact totals kept by arm."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.searches: dict[str, int] = {}
        self.conversions: dict[str, int] = {}
        self.ids: list[tuple[str, str]] = []

    def search(self, manager: ExperimentManager, count: int) -> None:
        held = manager.held("docs")
        assert held is not None and held.running
        for _ in range(count):
            route = held.assign(f"user-{self.rng.random()}")
            manager.record_search(route, "OK", 0.01)
            self.searches[route.arm] = self.searches.get(route.arm, 0) + 1
            if self.rng.random() < {"control": 0.05, "a": 0.05, "b": 0.25}[route.arm]:
                self.ids.append((route.arm, manager.issue_search_id(route)))

    def report(self, manager: ExperimentManager) -> None:
        """Every conversion so far reported at `manager` (whichever replica served its search)."""
        for arm, search_id in self.ids:
            assert manager.report_outcomes([(search_id, "conversion", 2.0)]) == [OutcomeStatus.ACCEPTED]
            self.conversions[arm] = self.conversions.get(arm, 0) + 1
        self.ids.clear()


def totals(experiment: Experiment) -> tuple[dict[str, int], dict[str, int]]:
    searches = {arm: c.searches for arm, c in experiment.counts.items() if c.searches}
    conversions = {arm: c.outcomes["conversion"].count for arm, c in experiment.counts.items()
                   if "conversion" in c.outcomes and c.outcomes["conversion"].count}
    return searches, conversions


async def fold(clock: ManualClock, *replicas: Replica) -> None:
    clock.advance(10.0)
    for replica in replicas:
        await replica.leadership.step()  # what its `rollout-leadership` task does every lease / 3
        await replica.manager.tick()


async def test_counts_of_both_replicas_are_summed_exactly_in_the_leaders_verdict(replicas):
    clock, leader, follower = replicas
    # created and started at the follower: the leader adopts both
    await follower.manager.create(SPEC)
    await follower.manager.start("e", "go")
    await leader.manager.tick()
    assert leader.manager.get("e").state is ExperimentState.RUNNING and leader.manager.held("docs").running

    traffic = Traffic(7)
    for round_ in range(3):
        traffic.search(leader.manager, 400)
        follower_ids_before = len(traffic.ids)
        traffic.search(follower.manager, 500)
        assert len(traffic.ids) >= follower_ids_before
        traffic.report(follower.manager if round_ % 2 else leader.manager)  # outcomes at either replica
        # shadow comparisons at the follower count for the leader's quality numbers too
        follower.manager.record_comparison("e", "a", 0.9, 0.95)
        leader.manager.record_comparison("e", "a", 1.0, 1.0)
        await fold(clock, follower, leader)  # the follower shares, then the leader gathers and folds

    judged = leader.manager.get("e")
    stored = await leader.store.get("e")
    assert totals(judged) == totals(stored) == (traffic.searches, traffic.conversions)
    assert sum(traffic.searches.values()) == 2700
    verdict = leader.manager.verdict("e")
    assert verdict.quality["a"].samples == 6
    assert judged.winner == "b", judged.summary  # b converts 5x: named on the summed evidence
    assert [d.actor for d in judged.decisions if d.kind == "verdict"] == ["controller"]

    # only the leader saves: the follower's ticks change no stored version
    before = await follower.store.versions()
    traffic.search(follower.manager, 50)
    await fold(clock, follower)
    assert await follower.store.versions() == before
    # the follower adopts the leader's analysis at its next tick
    await fold(clock, leader, follower)
    assert totals(follower.manager.get("e")) == totals(leader.manager.get("e")) == (traffic.searches,
                                                                                    traffic.conversions)
    assert follower.manager.get("e").winner == "b" and follower.manager.verdict("e").winner == "b"


async def test_a_change_of_leader_loses_and_double_counts_nothing_and_a_follower_can_conclude(replicas):
    clock, first, second = replicas
    await first.manager.create(SPEC)
    await first.manager.start("e")
    await second.manager.tick()
    traffic = Traffic(11)
    traffic.search(first.manager, 300)
    traffic.search(second.manager, 300)
    traffic.report(second.manager)
    await fold(clock, second, first)
    # the leader counts more, then hands the lease over before saving them
    traffic.search(first.manager, 200)
    traffic.search(second.manager, 100)
    traffic.report(first.manager)
    await first.leadership.resign()
    assert await second.leadership.step() and not first.manager.judges and second.manager.judges
    await fold(clock, first, second)  # the old leader shares what it had not saved; the new one gathers
    assert totals(second.manager.get("e")) == totals(await second.store.get("e")) == (traffic.searches,
                                                                                      traffic.conversions)
    # a transition at the follower (the old leader) after more traffic: the leader adopts it and saves the
    # final counts, the follower's last ones included
    traffic.search(first.manager, 70)
    await first.manager.pause("e", "done")
    traffic.search(second.manager, 30)
    await second.manager.tick()
    assert second.manager.get("e").state is ExperimentState.PAUSED
    await first.manager.conclude("e", arm="b")
    await second.manager.tick()
    final = await second.store.get("e")
    assert final.state is ExperimentState.CONCLUDED and final.concluded_arm == "b"
    assert totals(final) == (traffic.searches, traffic.conversions)
