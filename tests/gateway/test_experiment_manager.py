"""ExperimentManager without gRPC: folds follow the injected clock, transitions are saved before they take
effect, and a restart from the store continues the same tests (no sleeps: ManualClock)."""

from __future__ import annotations

import dataclasses
import math
import random

import pytest

from searchgw.errors import FailedPrecondition, Unavailable
from searchgw.gateway.experiments import (
    ArmSpec,
    Experiment,
    ExperimentManager,
    ExperimentPolicy,
    ExperimentState,
    MemoryExperimentStore,
    OutcomeStatus,
    SearchIds,
)
from searchgw.testing import ManualClock


class FlakyStore(MemoryExperimentStore):
    def __init__(self) -> None:
        super().__init__()
        self.down = False

    async def save(self, experiment: Experiment) -> None:
        if self.down:
            raise Unavailable("store down")
        await super().save(experiment)


def manager(store, clock: ManualClock, aliases: dict[str, str]) -> ExperimentManager:
    async def resolve(name: str) -> str:
        return aliases.get(name, name)

    async def switch(alias: str, collection: str) -> None:
        aliases[alias] = collection

    return ExperimentManager(store, switch_alias=switch, resolve_alias=resolve, clock=clock, wall_clock=clock.wall,
                             search_ids=SearchIds(b"k"))


SPEC = Experiment(name="e", collection="docs", control=ArmSpec("control", "", 0),
                  variants=(ArmSpec("a", "docs-a"), ArmSpec("b", "docs-b")),
                  policy=ExperimentPolicy(interval_s=10.0))


def drive(experiments: ExperimentManager, rng: random.Random, rates: dict[str, float], searches: int) -> None:
    """`searches` keyed searches through the request path's calls, each converting with its arm's rate."""
    held = experiments.held("docs")
    assert held is not None
    for _ in range(searches):
        route = held.assign(f"user-{rng.random()}")
        experiments.record_search(route, "OK", 0.01)
        if rng.random() < rates[route.arm]:
            search_id = experiments.issue_search_id(route)
            assert experiments.report_outcomes([(search_id, "conversion", 1.0)]) == [OutcomeStatus.ACCEPTED]


async def test_folds_follow_the_clock_and_a_restart_continues_the_same_tests():
    clock, store, aliases = ManualClock(), MemoryExperimentStore(), {"docs": "docs-c"}
    experiments = manager(store, clock, aliases)
    await experiments.create(SPEC)
    await experiments.start("e")
    rng = random.Random(5)
    rates = {"control": 0.05, "a": 0.05, "b": 0.20}
    drive(experiments, rng, rates, 600)
    await experiments.tick()
    # the interval has not passed: nothing folded or saved since the start
    assert all(c.searches == 0 for c in (await store.get("e")).counts.values())
    clock.advance(10.0)
    await experiments.tick()
    stored = await store.get("e")
    assert sum(c.searches for c in stored.counts.values()) == 600
    first = experiments.verdict("e")
    # a restart: a new manager on the same store continues from the stored tests and counts
    again = manager(store, clock, aliases)
    await again.restore()
    assert again.verdict("e") == first
    drive(again, rng, rates, 1500)
    clock.advance(10.0)
    await again.tick()
    assert again.get("e").winner == "b", again.get("e").summary
    assert [d.kind for d in again.get("e").decisions][-1] == "verdict"
    concluded = await again.conclude("e", promote=True)
    assert concluded.concluded_arm == "b" and aliases["docs"] == "docs-b" and again.held("docs") is None


async def test_a_transition_the_store_refuses_changes_nothing():
    clock, store = ManualClock(), FlakyStore()
    experiments = manager(store, clock, {"docs": "docs-c"})
    await experiments.create(SPEC)
    store.down = True
    with pytest.raises(Unavailable):
        await experiments.start("e")
    assert experiments.get("e").state is ExperimentState.CREATED
    assert not experiments.held("docs").running  # searches still go to control
    store.down = False
    await experiments.start("e")
    assert experiments.held("docs").running
    with pytest.raises(FailedPrecondition):
        await experiments.start("e")


async def test_aa_runs_through_the_real_manager_name_a_false_winner_at_most_alpha_of_the_time():
    """The whole decision path — routing by key, counting, outcomes by search id, folds on the injected
    clock, the verdict — in 150 A/A experiments (3 variants, 6 % conversions everywhere), each read at
    every one of 12 folds. The large simulation (4,000 runs, the same math batched) is in
    test_experiment_significance.py; this one shows the manager adds no false winners of its own."""
    rng = random.Random(20261203)
    runs, folds, per_fold = 150, 12, 160
    false_winners = 0
    for run in range(runs):
        clock = ManualClock()
        experiments = manager(MemoryExperimentStore(), clock, {"docs": "docs-c"})
        await experiments.create(dataclasses.replace(SPEC, variants=(*SPEC.variants, ArmSpec("c", "docs-x"))))
        await experiments.start("e")
        held = experiments.held("docs")
        named = False
        for fold in range(folds):
            for i in range(per_fold):
                route = held.assign(f"{run}-{fold}-{i}")
                experiments.record_search(route, "OK", 0.001)
                if rng.random() < 0.06:
                    experiments.report_outcomes([(experiments.issue_search_id(route), "conversion", 1.0)])
            clock.advance(10.0)
            await experiments.tick()
            named = named or bool(experiments.get("e").winner)
        false_winners += named
    rate = false_winners / runs
    bound = 0.05 + 3 * math.sqrt(0.05 * 0.95 / runs)
    print(f"real manager, A/A: {false_winners}/{runs} runs named a winner ({rate:.3f}); allowed ≤ {bound:.3f}")
    assert rate <= bound


async def test_shadow_quality_vetoes_a_diverging_variant_once_and_a_restart_keeps_the_evidence():
    """Comparisons as SearchCore records them: variant a's top k disagree with control's, b's agree. With the
    guard on, a is vetoed at the fold that has the evidence (one "vetoed" decision), b is not; the numbers
    survive a restart, and the restarted manager does not veto a again."""
    from searchgw.gateway.rollout.quality import QualityPolicy

    clock, store, aliases = ManualClock(), MemoryExperimentStore(), {"docs": "docs-c"}
    spec = dataclasses.replace(SPEC, policy=ExperimentPolicy(
        interval_s=10.0, quality=QualityPolicy(shadow_sample_rate=0.05, min_samples=10), quality_guard=True))
    experiments = manager(store, clock, aliases)
    await experiments.create(spec)
    assert experiments.shadow_policy("e") is None  # not running: no shadow searches
    await experiments.start("e")
    assert experiments.shadow_policy("e").shadow_sample_rate == 0.05
    for _ in range(9):
        experiments.record_comparison("e", "a", 0.1, 0.05, ("7", "9"))
        experiments.record_comparison("e", "b", 1.0, 1.0)
    clock.advance(10.0)
    await experiments.tick()
    assert "a" not in experiments.verdict("e").vetoes  # fewer than min_samples: no verdict
    for _ in range(11):
        experiments.record_comparison("e", "a", 0.2, 0.1, ("7",))
        experiments.record_comparison("e", "b", 0.9, 0.95)
    clock.advance(10.0)
    await experiments.tick()
    verdict = experiments.verdict("e")
    assert set(verdict.vetoes) == {"a"} and "the variant's results differ from control's" in verdict.vetoes["a"]
    assert verdict.quality["a"].samples == 20 and verdict.quality["a"].differing_ids[0] == ("7", 20)
    assert verdict.quality["b"].median_overlap == 0.9 and not verdict.quality["b"].rejected
    assert "a vetoed: quality: overlap@10 median 0.20" in experiments.get("e").summary
    clock.advance(10.0)
    await experiments.tick()
    assert [d.kind for d in experiments.get("e").decisions].count("vetoed") == 1
    # a restart continues with the same evidence and does not announce the veto again
    again = manager(store, clock, aliases)
    await again.restore()
    assert again.verdict("e").quality == verdict.quality and set(again.verdict("e").vetoes) == {"a"}
    again.record_comparison("e", "a", 0.0, 0.0)
    clock.advance(10.0)
    await again.tick()
    assert again.verdict("e").quality["a"].samples == 21
    assert [d.kind for d in again.get("e").decisions].count("vetoed") == 1
    # an ended experiment still answers with its quality
    await again.stop("e")
    assert again.verdict("e").quality["a"].samples == 21 and set(again.verdict("e").vetoes) == {"a"}
    again.record_comparison("e", "a", 0.0, 0.0)  # ended: dropped
