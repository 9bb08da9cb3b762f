"""The rollout controller end to end: real analysis, real SQLite store, a fake clock, no sleeping.

Most tests fix the latency threshold with an SLO (`latency_threshold_s`), so a check can pass from
the first interval; `test_a_slow_canary_is_judged_against_primarys_own_quantile` covers the
threshold taken from primary's traffic.

The only stand-in is `AliasTable`, a dict behind the two alias callables the backend provides.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace

import pytest

from searchgw.gateway.rollout import (
    AnalysisPolicy,
    Decision,
    DecisionKind,
    PromotionPolicy,
    Rollout,
    RolloutController,
    RolloutState,
    SqliteRolloutStore,
    Stage,
    TestKind,
    TestOutcome,
)
from searchgw.gateway.routing import Arm, Router
from searchgw.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, Unavailable
from searchgw.testing import WALL_OFFSET, ManualClock

INTERVAL = 10.0
STAGES = (Stage(10.0, 30.0, 50), Stage(50.0, 30.0, 50), Stage(100.0, 30.0, 50))
POLICY = AnalysisPolicy(interval_s=INTERVAL, window_s=60.0, min_requests_per_arm=20, latency_threshold_s=0.050)
#: Promotion without a bake (the behaviour these tests were written for; the bake is in test_rollout_bake.py).
NO_BAKE = PromotionPolicy(bake_duration_s=0.0)


class AliasTable:
    """The backend's aliases: logical name → physical collection."""

    def __init__(self, aliases: dict[str, str]) -> None:
        self.aliases = dict(aliases)
        self.switches: list[tuple[str, str]] = []
        self.fail_with: Exception | None = None
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()

    def physical(self) -> set[str]:
        """The physical collections: every alias target and its `-v2`, `-v3` successors."""
        return {name for target in self.aliases.values()
                for name in (target, target.replace("-v1", "-v2"), target.replace("-v1", "-v3"))}

    async def resolve(self, name: str) -> str:
        if name in self.aliases:
            return self.aliases[name]
        if name in self.physical():
            return name
        raise NotFound(f"no collection or alias named {name!r}")

    async def switch(self, logical: str, physical: str) -> None:
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_with is not None:
            raise self.fail_with
        self.aliases[logical] = physical
        self.switches.append((logical, physical))


@dataclass
class Recorder:
    """An observer that remembers what it was told."""

    events: list[tuple[str, str]] = field(default_factory=list)

    def on_decision(self, rollout: Rollout, decision: Decision) -> None:
        self.events.append(("decision", decision.kind.name))

    def on_change(self, rollout: Rollout) -> None:
        self.events.append(("change", rollout.state.name))


@dataclass
class Env:
    path: str
    clock: ManualClock
    aliases: AliasTable
    router: Router
    store: SqliteRolloutStore
    controller: RolloutController
    observer: Recorder

    async def restart(self, **options) -> Env:
        """A new gateway process on the same database (the old one is simply dropped, as in a crash)."""
        return await make_env(self.path, self.clock, self.aliases, **options)


async def make_env(path: str, clock: ManualClock, aliases: AliasTable, *,
                   sleep: Callable[[float], Awaitable[None]] = asyncio.sleep, **options) -> Env:
    router, store, observer = Router(), SqliteRolloutStore(path), Recorder()
    controller = RolloutController(store, router, switch_alias=aliases.switch, resolve_alias=aliases.resolve,
                                   clock=clock, wall_clock=clock.wall, observer=observer, sleep=sleep, **options)
    await controller.start(run_loop=False)
    return Env(path, clock, aliases, router, store, controller, observer)


@pytest.fixture
async def env(tmp_path):
    aliases = AliasTable({"docs": "docs-v1", "news": "news-v1", "blog": "blog-v1"})
    environment = await make_env(str(tmp_path / "rollouts.sqlite3"), ManualClock(), aliases)
    yield environment
    await environment.controller.stop()
    await environment.store.close()


def spec(name: str = "r1", collection: str = "docs", canary: str | None = None, **changes) -> Rollout:
    return Rollout(**{"name": name, "collection": collection, "canary_collection": canary or f"{collection}-v2",
                      "stages": STAGES, "analysis": POLICY, "promotion": NO_BAKE, **changes})


def feed(controller: RolloutController, name: str = "r1", *, primary: int = 100, canary: int = 100,
         canary_errors: int = 0, primary_errors: int = 0, primary_latency: float = 0.010,
         canary_latency: float = 0.010) -> None:
    for index in range(primary):
        controller.record(name, Arm.PRIMARY, "UNAVAILABLE" if index < primary_errors else "OK", primary_latency)
    for index in range(canary):
        controller.record(name, Arm.CANARY, "UNAVAILABLE" if index < canary_errors else "OK", canary_latency)


async def interval(env: Env, name: str = "r1", **traffic) -> Rollout:
    """One analysis interval: traffic half-way through, then the tick at its end."""
    env.clock.advance(INTERVAL / 2)
    feed(env.controller, name, **traffic)
    env.clock.advance(INTERVAL / 2)
    await env.controller.tick()
    return await env.controller.get(name)


def kinds(rollout: Rollout) -> list[str]:
    return [decision.kind.name for decision in rollout.decisions]


async def through_last_stage(env: Env) -> Rollout:
    for _ in range(3):  # at 100 % primary serves no analysed traffic
        rollout = await interval(env, primary=0)
    return rollout


async def reach_awaiting_promotion(env: Env) -> Rollout:
    for _ in range(6):  # the stages at 10 % and 50 %: three clean intervals each
        await interval(env)
    return await through_last_stage(env)


# -- lifecycle --------------------------------------------------------------------------------------


async def test_full_lifecycle_moves_stage_by_stage_and_promotion_switches_the_alias(env):
    created = await env.controller.create(spec(), actor="alice")
    assert (created.state, created.current_stage, created.weight_percent) == (RolloutState.RUNNING, 0, 10.0)
    assert created.primary_collection == "docs-v1" and created.salt
    assert env.router.table("docs").weight_bps == 1_000

    weights = []
    for _ in range(6):
        rollout = await interval(env)
        weights.append((rollout.current_stage, env.router.table("docs").weight_bps))
    assert weights == [(0, 1_000), (0, 1_000), (1, 5_000), (1, 5_000), (1, 5_000), (2, 10_000)]

    rollout = await through_last_stage(env)
    assert rollout.state is RolloutState.AWAITING_PROMOTION and rollout.weight_percent == 100.0
    assert env.aliases.aliases["docs"] == "docs-v1"  # nothing switched before PromoteRollout

    promoted = await env.controller.promote("r1", reason="looks good", actor="bob")
    assert promoted.state is RolloutState.PROMOTED
    assert env.aliases.switches == [("docs", "docs-v2")] and env.aliases.aliases["docs"] == "docs-v2"
    assert env.router.table("docs") is None  # requests follow the alias now
    # Three passed checks per stage, folded into one entry each.
    assert kinds(promoted) == ["STARTED", "CHECK_PASSED", "ADVANCED", "CHECK_PASSED", "ADVANCED",
                               "CHECK_PASSED", "AWAITING_PROMOTION", "PROMOTED"]
    assert [d.repeats for d in promoted.decisions if d.kind is DecisionKind.CHECK_PASSED] == [3, 3, 3]
    assert promoted.decisions[0].actor == "alice" and promoted.decisions[-1].actor == "bob"
    assert promoted.decisions[-1].reason.endswith("looks good")
    assert "(the old collection 'docs-v1' is kept)" in promoted.decisions[-1].reason


async def test_auto_promote_switches_the_alias_after_the_last_stage(env):
    await env.controller.create(spec(auto_promote=True))
    rollout = await reach_awaiting_promotion(env)
    assert rollout.state is RolloutState.PROMOTED and rollout.weight_percent == 100.0
    assert env.aliases.aliases["docs"] == "docs-v2"
    assert kinds(rollout)[-2:] == ["CHECK_PASSED", "PROMOTED"]
    assert rollout.decisions[-1].actor == "controller"


async def test_a_stage_needs_its_canary_requests_as_well_as_its_time(env):
    await env.controller.create(spec(stages=(Stage(10.0, 30.0, 500), Stage(100.0, 30.0, 50))))
    stages = [(await interval(env)).current_stage for _ in range(4)]  # 100 canary requests per interval
    assert stages == [0, 0, 0, 0]
    held = (await env.controller.get("r1")).decisions[1]  # four passed checks, folded
    assert held.repeats == 4 and held.reason.endswith("stage 1/2 (10%) holds: 40/30 s, 400/500 canary requests")
    assert (await interval(env)).current_stage == 1


async def test_a_failed_automatic_promotion_is_retried_at_the_next_passed_check(env):
    await env.controller.create(spec(auto_promote=True))
    env.aliases.fail_with = Unavailable("the backend is restarting")
    rollout = await reach_awaiting_promotion(env)
    assert (rollout.state, rollout.current_stage) == (RolloutState.RUNNING, 2)
    assert "the automatic promotion failed (the backend is restarting)" in rollout.decisions[-1].reason
    env.aliases.fail_with = None
    rollout = await interval(env, primary=0)
    assert rollout.state is RolloutState.PROMOTED and env.aliases.aliases["docs"] == "docs-v2"


# -- failures and rollback --------------------------------------------------------------------------


async def test_a_rejected_test_rolls_back_at_the_first_check(env):
    await env.controller.create(spec())
    rollout = await interval(env, canary_errors=50)
    assert rollout.state is RolloutState.ROLLED_BACK and rollout.weight_percent == 0.0
    assert env.router.table("docs") is None  # weight 0 at once: every request goes to the alias target
    assert env.aliases.aliases["docs"] == "docs-v1" and env.aliases.switches == []
    assert kinds(rollout) == ["STARTED", "CHECK_FAILED", "ROLLED_BACK"]
    rolled_back = rollout.decisions[-1]
    assert rolled_back.canary.errors == 50 and rolled_back.canary.requests == 100
    assert "errors: canary 50/100 (50.0%) vs primary 0/100 (0.00%)" in rolled_back.reason
    assert "canary worse" in rolled_back.reason
    # Nothing more happens to an ended rollout.
    await interval(env, canary_errors=50)
    assert len((await env.controller.get("r1")).decisions) == 3


async def test_a_canary_failing_every_call_is_rolled_back_after_a_handful_of_calls(env):
    await env.controller.create(spec())
    rollout = await interval(env, primary=100, canary=4, canary_errors=4)  # far below the 20-call minimum
    assert rollout.state is RolloutState.ROLLED_BACK
    guard = next(t for t in rollout.decisions[-1].tests if t.kind is TestKind.ERROR_LIMIT)
    assert guard.outcome is TestOutcome.REJECTED and (guard.canary_events, guard.canary_calls) == (4, 4)
    assert guard.e_value >= 1 / guard.alpha and guard.p_value <= guard.alpha


async def test_equal_error_rates_on_both_arms_pass(env):
    await env.controller.create(spec(stages=(Stage(50.0, 60.0, 50), Stage(100.0, 30.0, 50))))
    for _ in range(6):  # 2 % errors on both arms
        rollout = await interval(env, primary=100, canary=100, primary_errors=2, canary_errors=2)
    assert rollout.state is RolloutState.RUNNING and rollout.current_stage == 1
    assert "ROLLED_BACK" not in kinds(rollout) and "CHECK_FAILED" not in kinds(rollout)


async def test_inconclusive_at_low_traffic_holds_and_never_fails(env):
    await env.controller.create(spec())
    for _ in range(12):  # 120 s, far past the stage's 30 s; the canary sees 1 request per interval
        rollout = await interval(env, primary=100, canary=1)
    assert (rollout.state, rollout.current_stage, rollout.weight_percent) == (RolloutState.RUNNING, 0, 10.0)
    assert (rollout.consecutive_failures, rollout.total_failures) == (0, 0)
    last = rollout.decisions[-1]
    assert last.kind is DecisionKind.INCONCLUSIVE and last.repeats == 12
    assert (last.canary.requests, last.primary.requests) == (12, 1200)
    assert "too few calls to pass: canary 12 this stage, fewer than the 20 needed on each compared arm" in last.reason
    assert "stage 1/3 (10%) holds" in last.reason


async def test_a_slow_canary_fails_the_latency_test(env):
    await env.controller.create(spec())
    rollout = await interval(env, canary_latency=0.100, primary_latency=0.010)
    decision = rollout.decisions[-2]
    assert decision.kind is DecisionKind.CHECK_FAILED and rollout.state is RolloutState.ROLLED_BACK
    assert decision.canary.latency_s == pytest.approx(0.100, rel=0.02)
    assert decision.primary.latency_s == pytest.approx(0.010, rel=0.02)
    latency = next(t for t in decision.tests if t.kind is TestKind.LATENCY_RATIO)
    assert latency.outcome is TestOutcome.REJECTED and latency.threshold_s == 0.050
    assert (latency.canary_events, latency.primary_events) == (100, 0)
    assert "slow or failed calls above 50.0 ms (the policy's latency threshold 50.0 ms)" in decision.reason


async def test_a_slow_canary_is_judged_against_primarys_own_quantile(env):
    policy = replace(POLICY, latency_threshold_s=0.0)
    await env.controller.create(spec(analysis=policy))
    first = await interval(env)  # primary's first calls fix the threshold: p95 10 ms x 1.2
    assert first.decisions[-1].kind is DecisionKind.INCONCLUSIVE
    rollout = await interval(env, canary_latency=0.015, primary_latency=0.010)
    decision = next(d for d in rollout.decisions if d.kind is DecisionKind.CHECK_FAILED)
    latency = next(t for t in decision.tests if t.kind is TestKind.LATENCY_RATIO)
    assert latency.outcome is TestOutcome.REJECTED
    assert latency.threshold_s == pytest.approx(0.012, rel=0.03)
    assert re.search(r"primary p95 10\.\d ms x 1\.2 over its last 100 successful calls", latency.summary)


async def test_failures_count_as_slow_so_a_fast_failing_canary_never_looks_fast(env):
    policy = replace(POLICY, error_codes=("INTERNAL",))  # UNAVAILABLE is not an error here...
    await env.controller.create(spec(analysis=policy))
    rollout = await interval(env, canary_errors=30, canary_latency=0.001)
    latency = next(t for t in rollout.decisions[-1].tests if t.kind is TestKind.LATENCY_RATIO)
    assert latency.canary_events == 30  # ...but a failed call is still a slow one
    assert rollout.decisions[-1].canary.latency_s > 0.001


async def test_decisions_carry_the_numbers_behind_them(env):
    await env.controller.create(spec())
    rollout = await interval(env, canary_errors=3)  # 3/100 vs 0/100 is not evidence of harm
    passed = rollout.decisions[-1]
    assert passed.kind is DecisionKind.CHECK_PASSED
    errors = next(t for t in passed.tests if t.kind is TestKind.ERROR_RATIO)
    assert errors.outcome is TestOutcome.NOT_REJECTED and errors.e_value < 1 / errors.alpha
    rollout = await interval(env, canary_errors=20)
    decision = rollout.decisions[-2]
    assert decision.kind is DecisionKind.CHECK_FAILED
    assert (decision.primary.requests, decision.primary.errors) == (200, 0)
    assert (decision.canary.requests, decision.canary.errors, decision.canary.error_rate) == (200, 23, 0.115)
    errors = next(t for t in decision.tests if t.kind is TestKind.ERROR_RATIO)
    assert (errors.canary_events, errors.canary_calls, errors.primary_events, errors.primary_calls) == (23, 200, 0, 200)
    assert errors.outcome is TestOutcome.REJECTED and errors.alpha == 0.02
    assert errors.e_value >= 50 and errors.p_value <= 0.02 and errors.estimate == float("inf")
    assert 1 < errors.lower < errors.upper
    assert [t.kind for t in decision.tests] == [TestKind.ERROR_RATIO, TestKind.LATENCY_RATIO, TestKind.ERROR_LIMIT,
                                                TestKind.SAMPLE_RATIO]
    assert (decision.stage, decision.weight_percent, decision.actor) == (0, 10.0, "controller")
    assert decision.time == WALL_OFFSET + env.clock.now


async def test_decisions_are_logged_with_their_numbers(env, caplog):
    caplog.set_level(logging.INFO, logger="searchgw.gateway.rollout")
    await env.controller.create(spec())
    await interval(env, canary_errors=50)
    record = next(r for r in caplog.records if getattr(r, "decision", "") == "CHECK_FAILED")
    assert record.levelno == logging.WARNING and record.name == "searchgw.gateway.rollout"
    assert (record.rollout, record.canary_requests, record.canary_errors) == ("r1", 100, 50)
    assert record.canary_error_rate == 0.5 and record.primary_error_rate == 0.0
    assert record.error_ratio_p_value <= 0.02 and record.error_ratio_outcome == "REJECTED"


async def test_decisions_are_persisted_before_they_are_announced(env):
    seen_in_store: list[bool] = []

    def on_decision(rollout: Rollout, decision: Decision) -> None:
        with sqlite3.connect(env.path) as db:
            row = db.execute("SELECT 1 FROM decisions WHERE rollout = ? AND seq = ?",
                             (rollout.name, decision.seq)).fetchone()
        seen_in_store.append(row is not None)

    env.observer.on_decision = on_decision  # type: ignore[method-assign]
    await env.controller.create(spec())
    await interval(env)
    await env.controller.pause("r1")
    assert seen_in_store == [True, True, True]


async def test_the_observer_hears_every_decision_then_the_change(env):
    await env.controller.create(spec())
    await interval(env)
    await env.controller.abort("r1", actor="carol")
    assert env.observer.events == [("decision", "STARTED"), ("change", "RUNNING"),
                                   ("decision", "CHECK_PASSED"), ("change", "RUNNING"),
                                   ("decision", "ABORTED"), ("change", "ABORTED")]


# -- operator actions -------------------------------------------------------------------------------


async def test_pause_freezes_weight_and_stage_clock_and_resume_continues_the_same_stage(env):
    await env.controller.create(spec())
    await interval(env)
    await interval(env)
    paused = await env.controller.pause("r1", reason="investigating", actor="dave")
    assert (paused.state, paused.stage_elapsed_s) == (RolloutState.PAUSED, 20.0)
    for _ in range(5):  # 50 s paused with traffic: the checks still run and are recorded
        rollout = await interval(env)
    assert (rollout.state, rollout.current_stage, rollout.weight_percent) == (RolloutState.PAUSED, 0, 10.0)
    assert rollout.stage_elapsed_s == 20.0 and env.router.table("docs").weight_bps == 1_000
    assert rollout.stage_canary_requests == 200  # canary requests while paused do not count either
    assert kinds(rollout)[-2:] == ["PAUSED", "CHECK_PASSED"] and rollout.decisions[-1].repeats == 5
    assert "paused at stage 1/3 (10%): the stage clock is frozen" in rollout.decisions[-1].reason

    resumed = await env.controller.resume("r1", actor="dave")
    assert (resumed.state, resumed.current_stage, resumed.stage_elapsed_s) == (RolloutState.RUNNING, 0, 20.0)
    advanced = await interval(env)  # 20 s + 10 s = the stage's 30 s: it passes without starting over
    assert (advanced.current_stage, advanced.weight_percent) == (1, 50.0)
    assert kinds(advanced)[-2:] == ["CHECK_PASSED", "ADVANCED"]


async def test_failed_checks_still_roll_back_a_paused_rollout(env):
    await env.controller.create(spec())
    await env.controller.pause("r1")
    rollout = await interval(env, canary_errors=50)
    assert rollout.state is RolloutState.ROLLED_BACK and env.router.table("docs") is None


async def test_abort_sends_all_traffic_back_to_primary(env):
    await env.controller.create(spec())
    await interval(env)
    aborted = await env.controller.abort("r1", reason="wrong index", actor="erin")
    assert (aborted.state, aborted.weight_percent) == (RolloutState.ABORTED, 0.0)
    assert env.router.table("docs") is None and env.aliases.aliases["docs"] == "docs-v1"
    assert aborted.decisions[-1].reason == ("aborted at stage 1/3 (10%): all traffic back to primary 'docs-v1': "
                                            "wrong index")


async def test_promote_while_awaiting_promotion(env):
    await env.controller.create(spec())
    awaiting = await reach_awaiting_promotion(env)
    assert awaiting.state is RolloutState.AWAITING_PROMOTION
    further = await interval(env, primary=0)  # checks go on while it waits
    assert further.state is RolloutState.AWAITING_PROMOTION and kinds(further)[-1] == "CHECK_PASSED"
    promoted = await env.controller.promote("r1")
    assert promoted.state is RolloutState.PROMOTED and env.aliases.aliases["docs"] == "docs-v2"


async def test_a_failed_alias_switch_leaves_the_rollout_unchanged(env):
    await env.controller.create(spec())
    before = await reach_awaiting_promotion(env)
    env.aliases.fail_with = RuntimeError("connection reset")
    with pytest.raises(Unavailable, match="connection reset"):
        await env.controller.promote("r1")
    after = await env.controller.get("r1")
    assert after.state is RolloutState.AWAITING_PROMOTION and after.decisions == before.decisions
    assert env.router.table("docs").weight_bps == 10_000
    env.aliases.fail_with = None
    assert (await env.controller.promote("r1")).state is RolloutState.PROMOTED


@pytest.mark.parametrize(
    ("action", "state_before", "expected"),
    [
        ("resume", "RUNNING", "cannot resume rollout 'r1': it is RUNNING; resume needs PAUSED"),
        ("pause", "PAUSED", "cannot pause rollout 'r1': it is PAUSED; pause needs RUNNING"),
        ("pause", "ABORTED", "cannot pause rollout 'r1': it is ABORTED; pause needs RUNNING"),
        ("abort", "ABORTED", "cannot abort rollout 'r1': it is ABORTED; abort needs AWAITING_PROMOTION or "
                             "PAUSED or PREPARED or PREPARING or RUNNING"),
        ("promote", "ABORTED", "cannot promote rollout 'r1': it is ABORTED"),
    ],
)
async def test_illegal_transitions_fail_with_the_state(env, action, state_before, expected):
    await env.controller.create(spec())
    if state_before == "PAUSED":
        await env.controller.pause("r1")
    elif state_before == "ABORTED":
        await env.controller.abort("r1")
    with pytest.raises(FailedPrecondition) as error:
        await getattr(env.controller, action)("r1")
    assert error.value.message.startswith(expected)


async def test_actions_on_an_unknown_rollout_are_not_found(env):
    with pytest.raises(NotFound):
        await env.controller.pause("nope")
    with pytest.raises(NotFound):
        await env.controller.get("nope")


async def test_a_manual_action_is_not_undone_by_the_next_tick(env):
    await env.controller.create(spec())
    await interval(env)
    await interval(env)
    await env.controller.pause("r1")
    rollout = await interval(env)  # 30 s in the stage and clean: it would advance if running
    assert (rollout.state, rollout.current_stage) == (RolloutState.PAUSED, 0)
    await env.controller.abort("r1")
    rollout = await interval(env)
    assert (rollout.state, rollout.weight_percent) == (RolloutState.ABORTED, 0.0)
    assert env.router.table("docs") is None


async def test_an_action_waits_for_a_check_in_flight_and_then_sees_its_result(env):
    await env.controller.create(spec(auto_promote=True))
    for index in range(8):  # 20 s into the last stage
        await interval(env, primary=0 if index >= 6 else 100)
    env.aliases.gate = asyncio.Event()
    env.clock.advance(INTERVAL / 2)
    feed(env.controller, primary=0)
    env.clock.advance(INTERVAL / 2)
    tick = asyncio.create_task(env.controller.tick())
    await env.aliases.entered.wait()  # the check holds the rollout's lock, half-way through promoting
    abort = asyncio.create_task(env.controller.abort("r1"))  # queued before the switch completes
    env.aliases.gate.set()
    await tick
    with pytest.raises(FailedPrecondition, match="it is PROMOTED"):
        await abort
    assert (await env.controller.get("r1")).state is RolloutState.PROMOTED


# -- create -----------------------------------------------------------------------------------------


async def test_one_active_rollout_per_collection(env):
    await env.controller.create(spec("r1"))
    with pytest.raises(AlreadyExists, match="already has an active rollout 'r1'"):
        await env.controller.create(spec("r2", canary="docs-v3"))
    with pytest.raises(AlreadyExists, match="a rollout named 'r1' already exists"):
        await env.controller.create(spec("r1", collection="news"))
    await env.controller.abort("r1")
    assert (await env.controller.create(spec("r2", canary="docs-v3"))).state is RolloutState.RUNNING


async def test_each_rollout_gets_a_fresh_salt(env):
    first = await env.controller.create(spec("r1"))
    second = await env.controller.create(spec("r2", collection="news"))
    assert first.salt != second.salt


async def test_create_needs_a_known_collection_and_its_real_primary(env):
    with pytest.raises(NotFound):
        await env.controller.create(spec(collection="missing"))
    with pytest.raises(FailedPrecondition, match="is not what 'docs' points at"):
        await env.controller.create(spec(primary_collection="docs-v0"))


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"name": ""}, "rollout.name"),
        ({"name": "has space"}, "rollout.name"),
        ({"name": "x" * 64}, "rollout.name"),
        ({"collection": "bad/name"}, "rollout.collection"),
        ({"canary_collection": "docs-v1"}, "rollout.canary_collection"),  # the alias's current target
        ({"canary_collection": "docs"}, "rollout.canary_collection"),
        ({"stages": (Stage(50.0), Stage(25.0))}, "rollout.stages[1].weight_percent"),
        ({"stages": (Stage(0.005),)}, "rollout.stages[0].weight_percent"),
        ({"stages": (Stage(10.0), Stage(100.5))}, "rollout.stages[1].weight_percent"),
        ({"stages": (Stage(12.345),)}, "rollout.stages[0].weight_percent"),
        ({"stages": (Stage(10.0, min_duration_s=-1.0),)}, "rollout.stages[0].min_duration"),
        ({"stages": (Stage(10.0, min_requests=-5),)}, "rollout.stages[0].min_requests"),
        ({"analysis": AnalysisPolicy(max_error_rate=1.5)}, "rollout.analysis.max_error_rate"),
        ({"analysis": AnalysisPolicy(error_codes=("UNAVAILABLE", "NOPE"))}, "rollout.analysis.error_codes[1]"),
        ({"analysis": AnalysisPolicy(error_codes=("OK",))}, "rollout.analysis.error_codes[0]"),
        ({"analysis": AnalysisPolicy(window_s=5.0)}, "rollout.analysis.window"),
        ({"analysis": AnalysisPolicy(latency_quantile=1.0)}, "rollout.analysis.latency_quantile"),
        ({"analysis": AnalysisPolicy(max_latency_ratio=0.5)}, "rollout.analysis.max_latency_ratio"),
        ({"analysis": AnalysisPolicy(max_consecutive_failures=9)}, "rollout.analysis.max_total_failures"),
        ({"analysis": AnalysisPolicy(error_alpha=0.9)}, "rollout.analysis.error_alpha"),
        ({"analysis": AnalysisPolicy(guard_alpha=-0.1)}, "rollout.analysis.guard_alpha"),
        ({"analysis": AnalysisPolicy(latency_threshold_s=-1.0)}, "rollout.analysis.latency_threshold"),
        ({"stages": (Stage(10.0, max_error_rate=1.0),)}, "rollout.stages[0].max_error_rate"),
    ],
)
async def test_validation_errors_name_the_field(env, changes, field):
    with pytest.raises(InvalidArgument) as error:
        await env.controller.create(replace(spec(), **changes))
    assert error.value.field == field


async def test_zero_fields_take_the_defaults(env):
    created = await env.controller.create(Rollout(name="r1", collection="docs", canary_collection="docs-v2",
                                                  analysis=AnalysisPolicy(interval_s=0, window_s=0, error_codes=(),
                                                                          max_error_rate=0)))
    assert created.analysis == AnalysisPolicy()
    assert [stage.weight_percent for stage in created.stages] == [5.0, 25.0, 50.0, 100.0]


async def test_reasons_are_checked(env):
    await env.controller.create(spec())
    with pytest.raises(InvalidArgument) as error:
        await env.controller.pause("r1", reason="x" * 1001)
    assert error.value.field == "reason"


# -- reads --------------------------------------------------------------------------------------------


async def test_list_pages_newest_first(env):
    for name, collection in (("r1", "docs"), ("r2", "news"), ("r3", "blog")):
        await env.controller.create(spec(name, collection=collection))
        env.clock.advance(1)
    page, token = await env.controller.list(page_size=2)
    assert [r.name for r in page] == ["r3", "r2"] and token
    page, token = await env.controller.list(page_size=2, page_token=token)
    assert [r.name for r in page] == ["r1"] and token == ""
    page, token = await env.controller.list(collection="news")
    assert [r.name for r in page] == ["r2"] and token == ""
    _, token = await env.controller.list(page_size=1)
    with pytest.raises(InvalidArgument, match="different query or listing"):
        await env.controller.list(collection="news", page_token=token)
    with pytest.raises(InvalidArgument) as error:
        await env.controller.list(page_token="not-a-token")
    assert error.value.field == "page_token"


async def test_watch_yields_the_rollout_then_every_decision_in_order(env):
    await env.controller.create(spec())
    events = env.controller.watch("r1")
    first, decision = await anext(events)
    assert first.state is RolloutState.RUNNING and decision is None
    await reach_awaiting_promotion(env)
    await env.controller.promote("r1")
    rest = [event async for event in events]  # ends by itself after PROMOTED
    final = await env.controller.get("r1")
    announced = [d.seq for _, d in rest]  # a folded decision is announced at every repeat
    assert list(dict.fromkeys(announced)) == [d.seq for d in final.decisions[1:]]
    assert rest[-1][1].kind is DecisionKind.PROMOTED and rest[-1][0].state is RolloutState.PROMOTED


async def test_watching_an_ended_rollout_yields_it_once(env):
    await env.controller.create(spec())
    await env.controller.abort("r1")
    assert [(r.state, d) async for r, d in env.controller.watch("r1")] == [(RolloutState.ABORTED, None)]


async def test_repeated_routine_decisions_are_folded_with_count_and_time_range(tmp_path):
    aliases = AliasTable({"docs": "docs-v1"})
    env = await make_env(str(tmp_path / "db.sqlite3"), ManualClock(), aliases)
    await env.controller.create(spec())
    for _ in range(10):
        rollout = await interval(env, primary=100, canary=1)
    await env.controller.pause("r1")
    rollout = await env.controller.get("r1")
    assert kinds(rollout) == ["STARTED", "INCONCLUSIVE", "PAUSED"]
    folded = rollout.decisions[1]
    assert folded.repeats == 10 and folded.time - folded.first_time == 90.0
    assert folded.canary.requests == 10  # the newest numbers
    assert [d.seq for d in rollout.decisions] == [1, 2, 3]
    assert (await env.store.get("r1")).decisions == rollout.decisions
    await env.store.close()


# -- restart ------------------------------------------------------------------------------------------


async def test_a_restarted_gateway_resumes_the_same_stage_weight_and_stage_time(env):
    created = await env.controller.create(spec())
    for _ in range(5):  # stage 2 (50 %) since 30 s, 20 s into it
        await interval(env)
    before = await env.controller.get("r1")
    assert (before.current_stage, before.stage_elapsed_s) == (1, 20.0)

    env.clock.advance(300)  # the gateway is down: this does not count as stage time
    restarted = await env.restart()
    try:
        after = await restarted.controller.get("r1")
        assert (after.state, after.current_stage, after.weight_percent) == (RolloutState.RUNNING, 1, 50.0)
        assert after.stage_elapsed_s == 20.0 and after.decisions == before.decisions
        table = restarted.router.table("docs")
        assert (table.salt, table.weight_bps) == (created.salt, 5_000)  # the same users stay on the canary
        advanced = await interval(restarted)  # 20 s + 10 s: the stage passes
        assert (advanced.current_stage, advanced.weight_percent) == (2, 100.0)
    finally:
        await restarted.store.close()


async def test_stop_saves_the_stage_time_since_the_last_check(env):
    await env.controller.create(spec())
    await interval(env)
    env.clock.advance(7)
    await env.controller.stop()
    restarted = await env.restart()
    try:
        assert (await restarted.controller.get("r1")).stage_elapsed_s == 17.0
    finally:
        await restarted.store.close()


async def test_stop_saves_the_evidence_so_a_restart_continues_the_tests(env):
    await env.controller.create(spec())
    await interval(env, canary_errors=1)
    env.clock.advance(INTERVAL / 2)
    feed(env.controller, canary_errors=2)  # recorded after the last check, before the stop
    await env.controller.stop()
    restarted = await env.restart()
    try:
        rollout = await interval(restarted, canary=0, primary=0)
        errors = next(t for t in rollout.decisions[-1].tests if t.kind is TestKind.ERROR_RATIO)
        assert (errors.canary_events, errors.canary_calls, errors.primary_calls) == (3, 200, 200)
    finally:
        await restarted.store.close()


async def test_a_paused_rollout_stays_paused_after_a_restart(env):
    await env.controller.create(spec())
    await interval(env)
    await env.controller.pause("r1")
    restarted = await env.restart()
    try:
        rollout = await restarted.controller.get("r1")
        assert (rollout.state, rollout.stage_elapsed_s) == (RolloutState.PAUSED, 10.0)
        assert restarted.router.table("docs").weight_bps == 1_000
    finally:
        await restarted.store.close()


async def test_a_promotion_whose_save_was_lost_is_finished_at_start_up(env):
    await env.controller.create(spec())
    env.aliases.aliases["docs"] = "docs-v2"  # the switch happened; the process died before saving
    restarted = await env.restart()
    try:
        rollout = await restarted.controller.get("r1")
        assert rollout.state is RolloutState.PROMOTED and restarted.router.table("docs") is None
        assert "already pointed at the canary 'docs-v2' at start-up" in rollout.decisions[-1].reason
    finally:
        await restarted.store.close()


# -- the loop -----------------------------------------------------------------------------------------


async def test_run_loop_checks_on_the_injected_clock(tmp_path):
    clock = ManualClock()
    aliases = AliasTable({"docs": "docs-v1"})
    holder: dict[str, Env] = {}

    class Enough(Exception):
        pass

    async def sleep(seconds: float) -> None:  # one tick's worth of traffic, then time moves on
        if clock.now >= 1_000 + 95:
            raise Enough
        rollout = await holder["env"].controller.get("r1")
        feed(holder["env"].controller, primary=0 if rollout.weight_percent == 100 else 10, canary=10)
        clock.advance(seconds)

    holder["env"] = env = await make_env(str(tmp_path / "db.sqlite3"), clock, aliases, sleep=sleep)
    await env.controller.create(spec())
    with pytest.raises(Enough):
        await env.controller.run()
    rollout = await env.controller.get("r1")
    assert rollout.state is RolloutState.AWAITING_PROMOTION
    assert kinds(rollout).count("ADVANCED") == 2
    await env.store.close()


async def test_records_of_unknown_or_ended_rollouts_are_ignored(env):
    env.controller.record("nope", Arm.CANARY, "OK", 0.01)
    await env.controller.create(spec())
    await env.controller.abort("r1")
    env.controller.record("r1", Arm.CANARY, "UNAVAILABLE", 0.01)


async def test_create_refuses_a_canary_that_does_not_exist_or_is_an_alias(env):
    with pytest.raises(NotFound):
        await env.controller.create(spec("r1", canary="docs-v9"))
    with pytest.raises(InvalidArgument) as info:
        await env.controller.create(spec("r1", canary="news"))
    assert info.value.field == "rollout.canary_collection"
