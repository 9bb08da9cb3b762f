"""After promotion: the bake, undo, and the grace period (issue 12, seed steps 7–9).

The controller with its real analysis and real SQLite store on a manual clock (monotonic and wall
move together), no sleeping. The only stand-ins are the backend's alias callables (`AliasTable`) and
`Collections`, the backend's delete and alias listing (a set and the alias dict; it refuses to delete
an aliased collection as the backends do). The same moves over a real gateway, real backend and gRPC
are in test_rollout_bake_e2e.py.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3

import pytest

from searchgw.errors import FailedPrecondition, InvalidArgument, NotFound
from searchgw.gateway.rollout import (
    DecisionKind,
    OldCollectionAction,
    PromotionPolicy,
    RolloutState,
    TestKind,
    TestOutcome,
    validate_new_rollout,
)
from searchgw.gateway.rollout.model import DEFAULT_BAKE_DURATION_S, DEFAULT_GRACE_PERIOD_S
from searchgw.gateway.services.convert import promotion_from_proto, promotion_to_proto, rollout_from_proto
from searchgw.testing import ManualClock
from searchgw.v1 import rollout_service_pb2 as roll_pb
from tests.gateway.test_rollout import AliasTable, interval, kinds, make_env, spec

BAKE_S = 60.0
GRACE_S = 3_600.0
BAKE = PromotionPolicy(bake_duration_s=BAKE_S, grace_period_s=GRACE_S)
BAKE_THEN_DELETE = dataclasses.replace(BAKE, old_collection_action=OldCollectionAction.DELETE)


class Collections:
    """The backend's delete_collection and list_aliases over the alias table."""

    def __init__(self, aliases: AliasTable) -> None:
        self.aliases = aliases
        self.deleted: list[str] = []

    async def delete(self, name: str) -> None:
        if name in self.deleted:
            raise NotFound(f"no collection named {name!r}")
        pointing = [alias for alias, target in self.aliases.aliases.items() if target == name]
        if pointing:
            raise FailedPrecondition(f"collection {name!r} is the target of alias(es) {', '.join(pointing)}")
        self.deleted.append(name)

    async def list_aliases(self) -> dict[str, str]:
        return dict(self.aliases.aliases)


@pytest.fixture
async def env(tmp_path):
    aliases = AliasTable({"docs": "docs-v1", "news": "news-v1"})
    collections = Collections(aliases)
    environment = await make_env(str(tmp_path / "rollouts.sqlite3"), ManualClock(), aliases,
                                 delete_collection=collections.delete, list_aliases=collections.list_aliases)
    environment.collections = collections
    yield environment
    await environment.controller.stop()
    await environment.store.close()


async def restart(env):
    collections = env.collections
    restarted = await env.restart(delete_collection=collections.delete, list_aliases=collections.list_aliases)
    restarted.collections = collections
    return restarted


async def baking(env, policy: PromotionPolicy = BAKE, name: str = "r1"):
    """A rollout promoted at its first stage after one clean interval (primary's 100 calls: the baseline)."""
    await env.controller.create(spec(name, promotion=policy))
    await interval(env, name)
    return await env.controller.promote(name, reason="looks good", actor="bob")


def assert_consistent(env, rollout) -> None:
    """Routing and the alias agree with the state."""
    table = env.router.table(rollout.collection)
    alias = env.aliases.aliases[rollout.collection]
    if rollout.state is RolloutState.BAKING:
        assert alias == rollout.canary_collection
        assert (table.weight_bps, table.primary, table.canary) == (10_000, rollout.primary_collection,
                                                                   rollout.canary_collection)
        assert env.router.write_targets(rollout.collection) == (rollout.primary_collection, rollout.canary_collection)
    elif rollout.state is RolloutState.PROMOTED:
        assert alias == rollout.canary_collection and table is None
    elif rollout.state in (RolloutState.UNDONE, RolloutState.ABORTED, RolloutState.ROLLED_BACK):
        assert alias == rollout.primary_collection and table is None
    else:
        assert alias == rollout.primary_collection and table.weight_bps == rollout.weight_bps


# -- promote → BAKING → PROMOTED ------------------------------------------------------------------------

async def test_promotion_switches_the_alias_and_bakes_with_writes_still_reaching_both(env):
    rollout = await baking(env)

    assert rollout.state is RolloutState.BAKING and rollout.weight_percent == 100.0
    assert kinds(rollout)[-1] == "BAKE_STARTED" and rollout.decisions[-1].actor == "bob"
    assert rollout.decisions[-1].reason.endswith("UndoRollout switches back: looks good")
    assert rollout.bake_start_time == env.clock.wall() and rollout.bake_end_time == 0.0
    assert_consistent(env, rollout)  # alias on the canary, both arms still take writes
    assert (await env.store.get("r1")).state is RolloutState.BAKING


async def test_the_bake_ends_after_its_duration_and_writes_stop_reaching_the_old_collection(env):
    await baking(env)
    for _ in range(5):  # 50 of 60 s: still baking, judged against the baseline
        rollout = await interval(env, primary=0)
        assert rollout.state is RolloutState.BAKING
    check = rollout.decisions[-1]
    assert check.kind is DecisionKind.CHECK_PASSED and "baking: 50/60 s" in check.reason
    assert {t.kind for t in check.tests} >= {TestKind.ERROR_BASELINE, TestKind.LATENCY_BASELINE}
    assert all(t.outcome is TestOutcome.NOT_REJECTED for t in check.tests if t.kind is TestKind.ERROR_BASELINE)

    rollout = await interval(env, primary=0)

    assert rollout.state is RolloutState.PROMOTED and kinds(rollout)[-1] == "BAKE_COMPLETED"
    assert "writes now reach only 'docs-v2'" in rollout.decisions[-1].reason
    assert rollout.bake_end_time == env.clock.wall()
    assert_consistent(env, rollout)
    assert env.router.write_targets("docs") == ()  # the alias's target, docs-v2, alone


async def test_a_check_rejected_during_the_bake_undoes_the_promotion_with_its_numbers(env):
    await baking(env)

    rollout = await interval(env, primary=0, canary_errors=60)

    assert rollout.state is RolloutState.UNDONE and kinds(rollout)[-2:] == ["CHECK_FAILED", "UNDONE"]
    undone = rollout.decisions[-1]
    assert undone.actor == "controller" and undone.canary.errors == 60 and undone.canary.requests == 100
    assert any(t.outcome is TestOutcome.REJECTED for t in undone.tests)
    assert "'docs' points back at 'docs-v1', which received every write of the bake" in undone.reason
    assert_consistent(env, rollout)
    assert (await env.store.get("r1")).state is RolloutState.UNDONE


async def test_a_bake_whose_undo_cannot_switch_the_alias_stays_baking_and_tries_again(env):
    await baking(env)
    env.aliases.fail_with = FailedPrecondition("the backend refuses")
    rollout = await interval(env, primary=0, canary_errors=60)
    assert rollout.state is RolloutState.BAKING and "the undo is tried again" in rollout.decisions[-1].reason
    assert_consistent(env, rollout)

    env.aliases.fail_with = None
    rollout = await interval(env, primary=0, canary_errors=60)
    assert rollout.state is RolloutState.UNDONE
    assert_consistent(env, rollout)


async def test_promoting_a_baking_rollout_ends_its_bake_now(env):
    await baking(env)
    rollout = await env.controller.promote("r1", reason="confident", actor="carol")
    assert rollout.state is RolloutState.PROMOTED and kinds(rollout)[-1] == "BAKE_COMPLETED"
    assert rollout.decisions[-1].actor == "carol" and "bake ended early" in rollout.decisions[-1].reason
    assert_consistent(env, rollout)


async def test_a_zero_bake_promotes_at_once_as_before(env):
    await env.controller.create(spec(promotion=PromotionPolicy(bake_duration_s=0.0)))
    rollout = await env.controller.promote("r1")
    assert rollout.state is RolloutState.PROMOTED and kinds(rollout)[-1] == "PROMOTED"
    assert rollout.bake_start_time == 0.0 and rollout.bake_end_time == env.clock.wall()  # the grace counts from it
    assert_consistent(env, rollout)


async def test_auto_promotion_bakes_too(env):
    await env.controller.create(spec(auto_promote=True, promotion=BAKE))
    for _ in range(9):
        rollout = await interval(env, primary=100 if rollout_weight(env) < 100 else 0)
        if rollout.state is not RolloutState.RUNNING:
            break
    assert rollout.state is RolloutState.BAKING and kinds(rollout)[-2:] == ["CHECK_PASSED", "BAKE_STARTED"]
    assert_consistent(env, rollout)


def rollout_weight(env) -> float:
    table = env.router.table("docs")
    return 0.0 if table is None else table.weight_bps / 100


# -- undo -------------------------------------------------------------------------------------------------

async def test_undo_switches_the_alias_back_and_ends_the_rollout(env):
    await baking(env)
    env.clock.advance(20.0)

    rollout = await env.controller.undo("r1", reason="recall dropped", actor="dave")

    assert rollout.state is RolloutState.UNDONE and kinds(rollout)[-1] == "UNDONE"
    assert rollout.decisions[-1].reason.startswith("undone after 20/60 s of the bake")
    assert rollout.decisions[-1].reason.endswith("recall dropped") and rollout.decisions[-1].actor == "dave"
    assert env.aliases.switches[-1] == ("docs", "docs-v1")
    assert_consistent(env, rollout)
    assert rollout.bake_end_time == env.clock.wall()


async def test_undo_after_the_bake_is_refused_and_says_why(env):
    await baking(env)
    await env.controller.promote("r1")  # the bake ends

    with pytest.raises(FailedPrecondition) as info:
        await env.controller.undo("r1")

    assert info.value.reason == "BAKE_OVER"
    assert "writes since then reached only 'docs-v2', not 'docs-v1'" in info.value.message
    assert env.aliases.aliases["docs"] == "docs-v2"


async def test_undo_before_promotion_and_abort_during_the_bake_are_illegal(env):
    await env.controller.create(spec(promotion=BAKE))
    with pytest.raises(FailedPrecondition, match="it is RUNNING; undo needs BAKING"):
        await env.controller.undo("r1")
    await env.controller.promote("r1")
    with pytest.raises(FailedPrecondition, match="it is BAKING .* undo it to switch back"):
        await env.controller.abort("r1")
    with pytest.raises(FailedPrecondition, match="pause needs RUNNING"):
        await env.controller.pause("r1")
    assert (await env.controller.get("r1")).state is RolloutState.BAKING


# -- restart ----------------------------------------------------------------------------------------------

async def test_the_bake_survives_a_restart_with_its_clock_and_start_time(env):
    promoted = await baking(env)
    await interval(env, primary=0)
    await interval(env, primary=0)  # 20 s of the bake, saved with the check

    env = await restart(env)
    rollout = await env.controller.get("r1")
    assert rollout.state is RolloutState.BAKING and rollout.bake_start_time == promoted.bake_start_time
    assert rollout.stage_elapsed_s == pytest.approx(20.0)
    assert_consistent(env, rollout)
    for _ in range(4):
        rollout = await interval(env, primary=0)
    assert rollout.state is RolloutState.PROMOTED and kinds(rollout)[-1] == "BAKE_COMPLETED"
    await env.controller.stop()


async def test_the_grace_period_survives_a_restart(env):
    await baking(env, BAKE_THEN_DELETE)
    promoted = await env.controller.promote("r1")
    env = await restart(env)
    env.clock.advance(GRACE_S - 1)
    await env.controller.tick()
    assert env.collections.deleted == []
    env.clock.advance(1)
    await env.controller.tick()
    rollout = await env.controller.get("r1")
    assert env.collections.deleted == ["docs-v1"] and kinds(rollout)[-1] == "OLD_COLLECTION_DELETED"
    assert rollout.bake_end_time == promoted.bake_end_time
    await env.controller.stop()


# -- the grace period -------------------------------------------------------------------------------------

async def test_after_the_grace_period_the_old_collection_is_kept_by_default_as_a_decision(env):
    await baking(env)
    await env.controller.promote("r1")
    env.clock.advance(GRACE_S)

    await env.controller.tick()

    rollout = await env.controller.get("r1")
    assert kinds(rollout)[-1] == "OLD_COLLECTION_KEPT" and "old_collection_action KEEP" in rollout.decisions[-1].reason
    assert rollout.state is RolloutState.PROMOTED and rollout.old_collection_time == env.clock.wall()
    assert env.collections.deleted == []
    assert kinds(await env.store.get("r1"))[-1] == "OLD_COLLECTION_KEPT"
    await env.controller.tick()
    assert kinds(await env.controller.get("r1")).count("OLD_COLLECTION_KEPT") == 1  # once


async def test_delete_policy_deletes_the_old_collection_after_the_grace_period(env):
    await baking(env, BAKE_THEN_DELETE)
    await env.controller.promote("r1")
    env.clock.advance(GRACE_S / 2)
    await env.controller.tick()
    assert env.collections.deleted == []

    env.clock.advance(GRACE_S / 2)
    await env.controller.tick()

    rollout = await env.controller.get("r1")
    assert env.collections.deleted == ["docs-v1"] and kinds(rollout)[-1] == "OLD_COLLECTION_DELETED"
    assert env.aliases.aliases["docs"] == "docs-v2"


async def test_the_old_collection_is_not_deleted_while_an_alias_points_at_it(env):
    await baking(env, BAKE_THEN_DELETE)
    await env.controller.promote("r1")
    env.aliases.aliases["docs-previous"] = "docs-v1"  # an operator kept a handle on it
    env.clock.advance(GRACE_S)

    await env.controller.tick()

    rollout = await env.controller.get("r1")
    assert env.collections.deleted == [] and kinds(rollout)[-1] == "OLD_COLLECTION_KEPT"
    assert "alias(es) docs-previous point at it" in rollout.decisions[-1].reason


async def test_the_old_collection_is_not_deleted_while_another_rollout_uses_it(env):
    await baking(env, BAKE_THEN_DELETE)
    await env.controller.promote("r1")
    env.aliases.aliases["blog"] = "docs-v1"  # another logical collection serves from it, in a rollout
    await env.controller.create(spec("r2", collection="blog", canary="news-v2"))
    env.clock.advance(GRACE_S)

    await env.controller.tick()

    rollout = await env.controller.get("r1")
    assert env.collections.deleted == [] and "active rollout(s) r2 use it" in rollout.decisions[-1].reason


async def test_a_failing_delete_is_tried_again_on_the_next_tick(env):
    await baking(env, BAKE_THEN_DELETE)
    await env.controller.promote("r1")
    real_delete = env.collections.delete
    attempts = []

    async def flaky_delete(name):
        attempts.append(name)
        if len(attempts) == 1:
            from searchgw.errors import Unavailable
            raise Unavailable("the engine is restarting")
        await real_delete(name)

    env.controller._delete_collection = flaky_delete
    env.clock.advance(GRACE_S)
    await env.controller.tick()
    assert kinds(await env.controller.get("r1"))[-1] == "BAKE_COMPLETED"  # no decision yet
    await env.controller.tick()
    assert attempts == ["docs-v1", "docs-v1"] and env.collections.deleted == ["docs-v1"]
    assert kinds(await env.controller.get("r1"))[-1] == "OLD_COLLECTION_DELETED"


# -- the policy -------------------------------------------------------------------------------------------

def test_the_policy_defaults_bake_ten_minutes_keep_the_old_collection_a_day():
    rollout = validate_new_rollout(spec(promotion=PromotionPolicy()))
    assert rollout.promotion == PromotionPolicy(DEFAULT_BAKE_DURATION_S, DEFAULT_GRACE_PERIOD_S,
                                                OldCollectionAction.KEEP)
    assert (DEFAULT_BAKE_DURATION_S, DEFAULT_GRACE_PERIOD_S) == (600.0, 86_400.0)


@pytest.mark.parametrize("field, policy", [
    ("rollout.promotion.bake_duration", PromotionPolicy(bake_duration_s=-1.0)),
    ("rollout.promotion.bake_duration", PromotionPolicy(bake_duration_s=float("nan"))),
    ("rollout.promotion.grace_period", PromotionPolicy(grace_period_s=400 * 86_400.0)),
])
def test_a_bad_policy_is_invalid_argument_naming_the_field(field, policy):
    with pytest.raises(InvalidArgument) as info:
        validate_new_rollout(spec(promotion=policy))
    assert info.value.field == field


def test_on_the_wire_an_unset_duration_is_the_default_and_zero_is_none():
    unset = promotion_from_proto(roll_pb.PromotionPolicy())
    assert unset == PromotionPolicy() and unset.with_defaults().bake_s == 600.0
    zero = roll_pb.PromotionPolicy(old_collection_action=roll_pb.PromotionPolicy.OLD_COLLECTION_ACTION_DELETE)
    zero.bake_duration.FromSeconds(0)
    policy = promotion_from_proto(zero)
    assert policy == PromotionPolicy(bake_duration_s=0.0, old_collection_action=OldCollectionAction.DELETE)
    assert promotion_from_proto(promotion_to_proto(policy)) == policy
    with pytest.raises(InvalidArgument) as info:
        rollout_from_proto(roll_pb.Rollout(promotion=roll_pb.PromotionPolicy(old_collection_action=7)))
    assert info.value.field == "rollout.promotion.old_collection_action"


async def test_rows_stored_before_promotion_policies_load_with_no_bake(env, tmp_path):
    await env.controller.create(spec())
    await env.controller.stop()
    db = sqlite3.connect(env.path)
    body = json.loads(db.execute("SELECT body FROM rollouts WHERE name = 'r1'").fetchone()[0])
    for key in ("promotion", "bake_start_time", "bake_end_time", "old_collection_time"):
        del body[key]
    db.execute("UPDATE rollouts SET body = ? WHERE name = 'r1'", (json.dumps(body),))
    db.commit()
    db.close()

    env = await restart(env)
    rollout = await env.controller.promote("r1")
    assert rollout.state is RolloutState.PROMOTED  # as it would have been when it was created
    assert rollout.promotion.bake_s == 0.0 and rollout.promotion.old_collection_action is OldCollectionAction.KEEP
    await env.controller.stop()
