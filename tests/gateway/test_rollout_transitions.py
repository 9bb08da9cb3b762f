"""Transitions that cannot strand traffic: a failing store, a cancelled caller, a rollout with no alias.

Routing and the alias must agree with the rollout's state after every fault: an abort or a rollback
sends all traffic back to primary at once, whatever the store does; a promotion is either switched and
recorded, or neither, even when its caller's deadline ends half-way.

The store stand-in is `FailingStore`: a real SQLite store behind a switch that makes `save` fail the way
the SQLite store fails on a full disk (Unavailable) or wait on a gate. A full disk cannot be caused
portably inside a test; everything else (controller, router, SQLite, analysis) is real.
"""

from __future__ import annotations

import asyncio

import pytest

from searchgw.errors import FailedPrecondition, Unavailable
from searchgw.gateway.rollout import Rollout, RolloutController, RolloutState, SqliteRolloutStore
from searchgw.gateway.routing import Router
from searchgw.testing import ManualClock
from tests.gateway.test_rollout import AliasTable, Recorder, feed, interval, kinds, spec


class FailingStore(SqliteRolloutStore):
    """A SQLite rollout store whose saves can be made to fail (`down`) or to wait (`gate`)."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.down = False
        self.gate: asyncio.Event | None = None
        self.saving = asyncio.Event()

    async def save(self, rollout: Rollout) -> None:
        self.saving.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.down:
            raise Unavailable(f"the rollout store {self.path} failed: database or disk is full")
        await super().save(rollout)


class Rig:
    def __init__(self, path: str) -> None:
        self.path = path
        self.clock = ManualClock()
        self.aliases = AliasTable({"docs": "docs-v1"})
        self.router = Router()
        self.store = FailingStore(path)
        self.controller = self._controller(self.store, self.router)

    def _controller(self, store: SqliteRolloutStore, router: Router) -> RolloutController:
        return RolloutController(store, router, switch_alias=self.aliases.switch, resolve_alias=self.aliases.resolve,
                                 clock=self.clock, wall_clock=self.clock.wall, observer=Recorder())

    async def stored(self, name: str = "r1") -> Rollout | None:
        reader = SqliteRolloutStore(self.path)
        try:
            return await reader.get(name)
        finally:
            await reader.close()

    async def restarted(self) -> tuple[RolloutController, Router]:
        """A new gateway process on the same database."""
        router = Router()
        controller = self._controller(SqliteRolloutStore(self.path), router)
        await controller.start(run_loop=False)
        return controller, router


@pytest.fixture
async def rig(tmp_path):
    rig = Rig(str(tmp_path / "rollouts.sqlite3"))
    await rig.controller.start(run_loop=False)
    yield rig
    rig.store.down, rig.store.gate = False, None
    await rig.controller.stop()
    await rig.store.close()


async def test_abort_stops_canary_traffic_while_the_store_is_down_and_is_saved_when_it_recovers(rig):
    await rig.controller.create(spec())
    assert rig.router.table("docs").weight_bps == 1_000
    rig.store.down = True

    aborted = await rig.controller.abort("r1", reason="canary looks wrong")

    assert aborted.state is RolloutState.ABORTED
    assert rig.router.table("docs") is None  # all traffic to primary at once
    assert (await rig.controller.get("r1")).state is RolloutState.ABORTED
    assert (await rig.stored()).state is RolloutState.RUNNING  # the store has not taken it yet
    await rig.controller.tick()  # still down: still unsaved, still aborted in routing
    assert (await rig.stored()).state is RolloutState.RUNNING and rig.router.table("docs") is None

    rig.store.down = False
    await rig.controller.tick()
    stored = await rig.stored()
    assert stored.state is RolloutState.ABORTED and kinds(stored)[-1] == "ABORTED"
    controller, router = await rig.restarted()
    assert (await controller.get("r1")).state is RolloutState.ABORTED and router.table("docs") is None
    await controller.stop()


async def test_rollback_stops_canary_traffic_while_the_store_is_down(rig):
    await rig.controller.create(spec())
    rig.store.down = True

    rolled_back = await interval(rig, canary_errors=50)  # the check rejects the canary

    assert rolled_back.state is RolloutState.ROLLED_BACK and kinds(rolled_back)[-2:] == ["CHECK_FAILED",
                                                                                          "ROLLED_BACK"]
    assert rig.router.table("docs") is None
    assert (await rig.stored()).state is RolloutState.RUNNING
    rig.store.down = False
    await rig.controller.tick()
    assert (await rig.stored()).state is RolloutState.ROLLED_BACK


async def test_a_promotion_whose_save_fails_keeps_routing_and_alias_in_agreement(rig):
    await rig.controller.create(spec())
    rig.store.down = True

    promoted = await rig.controller.promote("r1")

    assert promoted.state is RolloutState.PROMOTED
    assert rig.aliases.aliases["docs"] == "docs-v2" and rig.router.table("docs") is None
    rig.store.down = False
    await rig.controller.tick()
    assert (await rig.stored()).state is RolloutState.PROMOTED


async def test_a_pause_whose_save_fails_changes_nothing(rig):
    await rig.controller.create(spec())
    rig.store.down = True
    with pytest.raises(Unavailable):
        await rig.controller.pause("r1")
    assert (await rig.controller.get("r1")).state is RolloutState.RUNNING
    assert rig.router.table("docs").weight_bps == 1_000


async def test_a_promotion_cancelled_between_its_alias_switch_and_its_save_still_completes(rig):
    await rig.controller.create(spec())
    rig.store.gate, rig.store.saving = asyncio.Event(), asyncio.Event()
    caller = asyncio.ensure_future(rig.controller.promote("r1"))
    await rig.store.saving.wait()  # the alias has switched; the save waits
    assert rig.aliases.aliases["docs"] == "docs-v2"

    caller.cancel()  # the caller's deadline ends here
    with pytest.raises(asyncio.CancelledError):
        await caller
    rig.store.gate.set()
    await asyncio.gather(*rig.controller._detached)

    assert (await rig.controller.get("r1")).state is RolloutState.PROMOTED
    assert (await rig.stored()).state is RolloutState.PROMOTED
    assert rig.router.table("docs") is None and rig.aliases.aliases["docs"] == "docs-v2"


async def test_a_promotion_cancelled_during_its_alias_switch_still_completes(rig):
    await rig.controller.create(spec())
    rig.aliases.gate = asyncio.Event()
    caller = asyncio.ensure_future(rig.controller.promote("r1"))
    await rig.aliases.entered.wait()
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    rig.aliases.gate.set()
    await asyncio.gather(*rig.controller._detached)

    assert rig.aliases.aliases["docs"] == "docs-v2"
    assert (await rig.stored()).state is RolloutState.PROMOTED and rig.router.table("docs") is None


async def test_stop_waits_for_a_transition_whose_caller_went_away(rig):
    await rig.controller.create(spec())
    rig.store.gate, rig.store.saving = asyncio.Event(), asyncio.Event()
    caller = asyncio.ensure_future(rig.controller.abort("r1"))
    await rig.store.saving.wait()
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    asyncio.get_running_loop().call_soon(rig.store.gate.set)

    await rig.controller.stop()

    assert (await rig.stored()).state is RolloutState.ABORTED


async def test_a_rollout_needs_an_alias_to_switch(rig):
    with pytest.raises(FailedPrecondition, match=r"rollout.collection 'docs-v1' is a collection, not an alias"):
        await rig.controller.create(spec(collection="docs-v1", canary="docs-v2"))
    assert await rig.stored() is None and rig.router.table("docs-v1") is None


async def test_a_failed_check_while_the_store_is_down_is_not_lost_to_a_restart_after_recovery(rig):
    await rig.controller.create(spec())
    feed(rig.controller, canary_errors=50)
    rig.store.down = True
    rig.clock.advance(10.0)
    await rig.controller.tick()
    rig.store.down = False
    await rig.controller.stop()  # saves what is unsaved

    controller, router = await rig.restarted()
    rollout = await controller.get("r1")
    assert rollout.state is RolloutState.ROLLED_BACK and router.table("docs") is None
    await controller.stop()
