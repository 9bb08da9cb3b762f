"""Every step of every ending transition, failed: routing and the alias agree afterwards, and after a restart.

Transitions: promote (into BAKING, and straight to PROMOTED with no bake), abort, rollback (a failed
check), undo (by an operator, and by a failed check during the bake), and the bake's end. Faults:

- store down, two ways: for real, the SQLite store's directory taken away (the store is closed, its
  directory moved aside and a file put in its place, so reopening it fails and the store raises
  Unavailable); and injected, `FailingStore` (test_rollout_transitions.py), the real SQLite store
  behind a switch that makes `save` raise Unavailable as it does on a full disk — a full disk cannot be
  made portably in a test, and a read-only directory does not stop root, which the tests may run as;
- backend down: the real embedded engine (EdgeBackend) behind `FaultInjectingBackend`, its alias
  switch (`update_alias`) failing with UNAVAILABLE;
- caller cancels: the caller's task is cancelled (what a gRPC deadline does to the servicer) while the
  alias switch, or the save, waits on a gate.

The invariant (`consistent`) is the one a user relies on: RUNNING → alias on primary, traffic split at
the weight; BAKING → alias on the canary, both arms still take writes; PROMOTED → alias on the canary,
no split; ABORTED, ROLLED_BACK, UNDONE → alias on primary, no split. It is checked right after the
fault, after recovery, and in a new controller on the same database and engine — both after the store
recovered and after a crash while it was still down (then the alias, which the engine keeps, decides).
"""

from __future__ import annotations

import asyncio

import pytest

from searchgw.errors import Unavailable
from searchgw.gateway.backends import CollectionSpec, EdgeBackend, FaultInjectingBackend, FaultKind
from searchgw.gateway.rollout import PromotionPolicy, Rollout, RolloutController, RolloutState, SqliteRolloutStore
from searchgw.gateway.routing import Router
from searchgw.testing import ManualClock
from tests.gateway.test_rollout import Recorder, feed, interval, spec
from tests.gateway.test_rollout_transitions import FailingStore

BAKE = PromotionPolicy(bake_duration_s=60.0)
S = RolloutState


class GatedSleep:
    """FaultInjectingBackend's sleep: waits until the test opens the gate (no real time passes)."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()

    async def __call__(self, seconds: float) -> None:
        self.entered.set()
        await self.gate.wait()


class Rig:
    def __init__(self, tmp_path) -> None:
        self.directory = tmp_path / "store"
        self.path = str(self.directory / "rollouts.sqlite3")
        self.repair = lambda: None
        self.clock = ManualClock()
        self.sleep = GatedSleep()
        self.backend = FaultInjectingBackend(EdgeBackend(tmp_path / "edge"), sleep=self.sleep)
        self.store = FailingStore(self.path)
        self.router = Router()
        self.controller = self.new_controller(self.store, self.router)

    def new_controller(self, store, router) -> RolloutController:
        return RolloutController(store, router, switch_alias=self.backend.update_alias,
                                 resolve_alias=self.backend.resolve, clock=self.clock, wall_clock=self.clock.wall,
                                 observer=Recorder())

    async def setup(self) -> None:
        for name in ("docs-v1", "docs-v2"):
            await self.backend.create_collection(CollectionSpec(name=name, dimension=4))
        await self.backend.update_alias("docs", "docs-v1")
        await self.controller.start(run_loop=False)

    async def consistent(self, controller: RolloutController, router: Router) -> Rollout:
        rollout = await controller.get("r1")
        alias = await self.backend.inner.resolve("docs")
        table = router.table("docs")
        if rollout.state is S.BAKING:
            assert alias == "docs-v2" and table is not None and table.weight_bps == 10_000
            assert router.write_targets("docs") == ("docs-v1", "docs-v2")
        elif rollout.state is S.PROMOTED:
            assert alias == "docs-v2" and table is None
        elif rollout.state in (S.ABORTED, S.ROLLED_BACK, S.UNDONE):
            assert alias == "docs-v1" and table is None
        else:
            assert rollout.state is S.RUNNING
            assert alias == "docs-v1" and table is not None and table.weight_bps == rollout.weight_bps
        return rollout

    async def restarted(self) -> tuple[RolloutController, Router, SqliteRolloutStore]:
        store, router = SqliteRolloutStore(self.path), Router()
        controller = self.new_controller(store, router)
        await controller.start(run_loop=False)
        return controller, router, store


# Each transition: (policy, setup, the move, the state it ends in, the collection its alias switch targets).

async def _running(rig):
    await interval(rig)  # one clean interval: primary's calls are the baseline a bake is judged against


async def _baking(rig):
    await interval(rig)
    await rig.controller.promote("r1")


async def _failed_check(rig):
    rig.clock.advance(5.0)
    feed(rig.controller, primary=0, canary_errors=100)
    rig.clock.advance(5.0)
    await rig.controller.tick()


async def _bake_passes(rig):
    rig.clock.advance(60.0)
    await rig.controller.tick()


TRANSITIONS = {
    "promote": (BAKE, _running, lambda rig: rig.controller.promote("r1"), S.BAKING, "docs-v2"),
    "promote_without_bake": (PromotionPolicy(bake_duration_s=0.0), _running, lambda rig: rig.controller.promote("r1"),
                             S.PROMOTED, "docs-v2"),
    "abort": (BAKE, _running, lambda rig: rig.controller.abort("r1"), S.ABORTED, None),
    "rollback": (BAKE, _running, _failed_check, S.ROLLED_BACK, None),
    "undo": (BAKE, _baking, lambda rig: rig.controller.undo("r1"), S.UNDONE, "docs-v1"),
    "undo_by_failed_check": (BAKE, _baking, _failed_check, S.UNDONE, "docs-v1"),
    "bake_end": (BAKE, _baking, _bake_passes, S.PROMOTED, None),
}


@pytest.fixture(params=sorted(TRANSITIONS))
async def case(request, tmp_path):
    policy, setup, move, end_state, switch_target = TRANSITIONS[request.param]
    rig = Rig(tmp_path)
    await rig.setup()
    await rig.controller.create(spec(promotion=policy))
    await setup(rig)
    before = await rig.consistent(rig.controller, rig.router)
    yield rig, move, before.state, end_state, switch_target
    rig.store.down, rig.store.gate = False, None
    rig.sleep.gate.set()
    await rig.controller.stop()
    await rig.store.close()
    await rig.backend.close()


async def run(move, rig) -> None:
    await move(rig)


async def take_the_store_directory_away(rig) -> None:
    """A real store fault: the directory is gone (a file stands in its place), so the store cannot reopen."""
    await rig.store.close()
    away = rig.directory.with_name("store.away")
    rig.directory.rename(away)
    rig.directory.write_text("not a directory")

    def repair() -> None:
        rig.directory.unlink()
        away.rename(rig.directory)

    rig.repair = repair


async def after_recovery_and_restart(rig, expected: RolloutState) -> None:
    rig.store.down, rig.store.gate = False, None
    rig.repair()
    rig.repair = lambda: None
    rig.backend.clear("docs-v1")
    rig.backend.clear("docs-v2")
    await rig.controller.tick()  # saves what the store refused
    assert (await rig.consistent(rig.controller, rig.router)).state is expected
    assert (await rig.store.get("r1")).state is expected
    controller, router, store = await rig.restarted()
    try:
        assert (await rig.consistent(controller, router)).state is expected
    finally:
        await controller.stop()
        await store.close()


async def test_store_directory_gone(case):
    rig, move, _, end_state, _ = case
    await take_the_store_directory_away(rig)
    with pytest.raises(Unavailable):
        await rig.store.get("r1")  # the fault is real: the store cannot open its database

    await run(move, rig)  # the move takes effect in routing (and the alias) whatever the store does

    assert (await rig.consistent(rig.controller, rig.router)).state is end_state
    await rig.controller.tick()  # still gone: still in effect, the save waits
    assert (await rig.consistent(rig.controller, rig.router)).state is end_state
    await after_recovery_and_restart(rig, end_state)


async def test_store_down(case):
    rig, move, _, end_state, switch_target = case
    rig.store.down = True

    await run(move, rig)  # the move takes effect in routing (and the alias) whatever the store does

    assert (await rig.consistent(rig.controller, rig.router)).state is end_state
    # A crash now, before the store recovers: the new process must agree with the engine's alias.
    controller, router, store = await rig.restarted()
    try:
        crashed = await rig.consistent(controller, router)
        if switch_target is not None:  # the engine's alias records the switch the store missed
            assert crashed.state is end_state
    finally:
        await controller.stop()
        await store.close()
    await after_recovery_and_restart(rig, end_state)


async def test_backend_down_on_the_alias_switch(case):
    rig, move, before, end_state, switch_target = case
    if switch_target is not None:
        rig.backend.inject(switch_target, error=FaultKind.UNAVAILABLE, operations={"update_alias"})

    try:
        await run(move, rig)  # a check that cannot undo records CHECK_FAILED and stays BAKING (no raise)
    except Unavailable:
        assert switch_target is not None  # only a move that switches the alias can fail on it

    state = (await rig.consistent(rig.controller, rig.router)).state
    assert state is (end_state if switch_target is None else before)  # switched and recorded, or neither
    await after_recovery_and_restart(rig, state)


async def test_caller_cancels_during_the_alias_switch_or_the_save(case):
    rig, move, _, end_state, switch_target = case
    if switch_target is not None:
        rig.backend.inject(switch_target, delay=1.0, operations={"update_alias"})
        reached = rig.sleep.entered
    else:
        rig.store.gate, rig.store.saving = asyncio.Event(), asyncio.Event()
        reached = rig.store.saving
    caller = asyncio.ensure_future(run(move, rig))
    await reached.wait()

    caller.cancel()  # the caller's deadline ends here
    with pytest.raises(asyncio.CancelledError):
        await caller
    rig.sleep.gate.set()
    if rig.store.gate is not None:
        rig.store.gate.set()
    await asyncio.gather(*rig.controller._detached)

    assert (await rig.consistent(rig.controller, rig.router)).state is end_state  # it ran to its end
    await after_recovery_and_restart(rig, end_state)
