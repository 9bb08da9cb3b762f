"""Snapshot retention: which snapshots a policy keeps, as a pure function of the snapshots, the policy
and the time (an injected `now`), and CollectionAdmin.prune_snapshots on the embedded backend."""

from __future__ import annotations

import math

import pytest

from searchgw.errors import InvalidArgument
from searchgw.gateway.backends import SnapshotInfo
from searchgw.gateway.snapshotting import RetentionPolicy, plan_pruning

HOUR = 3600.0
NOW = 1_700_000_000.0


def taken(*hours_ago: float) -> list[SnapshotInfo]:
    """Snapshots of collection c taken that many hours before NOW."""
    return [SnapshotInfo(name=f"c-{h}.snapshot", collection="c", size_bytes=1, create_time=NOW - h * HOUR,
                         checksum="") for h in hours_ago]


def names(snapshots) -> list[str]:
    return [s.name for s in snapshots]


def test_keep_last_keeps_the_newest_n_and_deletes_the_rest_oldest_first():
    plan = plan_pruning(taken(1, 5, 2, 4, 3), RetentionPolicy(keep_last=2), NOW)
    assert names(plan.keep) == ["c-2.snapshot", "c-1.snapshot"]
    assert names(plan.delete) == ["c-5.snapshot", "c-4.snapshot", "c-3.snapshot"]


def test_max_age_keeps_those_younger_than_it():
    plan = plan_pruning(taken(30, 20, 10, 1), RetentionPolicy(max_age_s=24 * HOUR), NOW)
    assert names(plan.keep) == ["c-20.snapshot", "c-10.snapshot", "c-1.snapshot"]
    assert names(plan.delete) == ["c-30.snapshot"]


def test_a_snapshot_exactly_max_age_old_is_deleted():
    assert names(plan_pruning(taken(24, 1), RetentionPolicy(max_age_s=24 * HOUR), NOW).delete) == ["c-24.snapshot"]


def test_with_both_rules_a_snapshot_either_rule_keeps_stays():
    snapshots = taken(100, 50, 30, 20, 10)
    assert names(plan_pruning(snapshots, RetentionPolicy(keep_last=4, max_age_s=24 * HOUR), NOW).delete) == [
        "c-100.snapshot"]  # the last four, though three are older than a day
    assert names(plan_pruning(snapshots, RetentionPolicy(keep_last=1, max_age_s=40 * HOUR), NOW).delete) == [
        "c-100.snapshot", "c-50.snapshot"]  # all of the past 40 hours, though more than one


def test_the_newest_snapshot_always_stays_however_old():
    plan = plan_pruning(taken(900, 700, 500), RetentionPolicy(max_age_s=HOUR), NOW)
    assert names(plan.keep) == ["c-500.snapshot"]
    assert names(plan.delete) == ["c-900.snapshot", "c-700.snapshot"]


def test_the_decision_moves_with_the_clock_not_the_machines_time():
    snapshots = taken(10, 5, 1)
    policy = RetentionPolicy(max_age_s=6 * HOUR)
    assert names(plan_pruning(snapshots, policy, NOW).delete) == ["c-10.snapshot"]
    assert names(plan_pruning(snapshots, policy, NOW + 2 * HOUR).delete) == ["c-10.snapshot", "c-5.snapshot"]
    assert names(plan_pruning(snapshots, policy, NOW - 5 * HOUR).delete) == []


def test_nothing_to_prune_is_an_empty_plan():
    plan = plan_pruning([], RetentionPolicy(keep_last=1), NOW)
    assert (plan.keep, plan.delete) == ((), ())


@pytest.mark.parametrize(("keep_last", "max_age_s", "field"), [
    (0, 0.0, "keep_last"),  # neither rule: never "delete all"
    (-1, 0.0, "keep_last"),
    (0, -1.0, "max_age"),
    (1, math.inf, "max_age"),
    (1, math.nan, "max_age"),
])
def test_a_policy_that_would_delete_everything_or_makes_no_sense_is_refused_naming_the_field(keep_last, max_age_s,
                                                                                             field):
    with pytest.raises(InvalidArgument) as info:
        RetentionPolicy(keep_last=keep_last, max_age_s=max_age_s)
    assert info.value.field == field


# -- CollectionAdmin.prune_snapshots over the embedded backend --------------------------------------
def make_admin(backend):
    from searchgw.gateway.collections import CollectionAdmin
    from searchgw.gateway.core import CollectionSpecs
    from searchgw.gateway.paging import PageTokens
    from searchgw.gateway.routing.router import Router

    return CollectionAdmin(backend, CollectionSpecs(backend), Router(), None, PageTokens())


@pytest.fixture
async def clocked(tmp_path):
    """An embedded backend whose snapshots are stamped by `clock[0]`, with one collection `c`."""
    from searchgw.gateway.backends import EdgeBackend
    from tests.gateway.backend_helpers import filled

    clock = [NOW]
    backend = EdgeBackend(tmp_path, wall_clock=lambda: clock[0])
    await filled(backend, count=3)
    yield backend, clock
    await backend.close()


async def test_prune_deletes_what_the_policy_does_not_keep_and_says_so(clocked):
    backend, clock = clocked
    for hours in range(5):  # taken at NOW, NOW+1h, ... NOW+4h
        clock[0] = NOW + hours * HOUR
        await backend.create_snapshot("c")
    admin = make_admin(backend)
    pruning = await admin.prune_snapshots("c", keep_last=2, max_age_s=0, now=NOW + 4 * HOUR)
    assert [s.create_time for s in pruning.delete] == [NOW, NOW + HOUR, NOW + 2 * HOUR]
    assert [s.create_time for s in pruning.keep] == [NOW + 3 * HOUR, NOW + 4 * HOUR]
    assert await backend.list_snapshots("c") == list(pruning.keep)
    again = await admin.prune_snapshots("c", keep_last=2, max_age_s=0, now=NOW + 4 * HOUR)
    assert (again.delete, again.keep) == ((), pruning.keep)


async def test_prune_keeps_a_snapshot_being_restored_for_a_later_pruning(clocked):
    import asyncio

    backend, clock = clocked
    old = await backend.create_snapshot("c")
    clock[0] = NOW + HOUR
    new = await backend.create_snapshot("c")
    restoring = asyncio.ensure_future(backend.restore_snapshot(old.name, "r"))
    await asyncio.sleep(0)
    pruning = await make_admin(backend).prune_snapshots("c", keep_last=1, max_age_s=0, now=NOW + HOUR)
    assert (pruning.delete, pruning.keep) == ((), (old, new))
    await restoring


async def test_prune_refuses_a_policy_with_neither_rule_and_deletes_nothing(clocked):
    backend, _ = clocked
    await backend.create_snapshot("c")
    with pytest.raises(InvalidArgument) as info:
        await make_admin(backend).prune_snapshots("c", keep_last=0, max_age_s=0, now=NOW)
    assert info.value.field == "keep_last"
    assert len(await backend.list_snapshots("c")) == 1
