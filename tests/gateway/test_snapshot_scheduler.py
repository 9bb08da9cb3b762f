"""The snapshot scheduler: snapshots every interval per collection, prunes after each, and one
collection's failure never stops the others. Driven by an injected wall clock and sleep: no test sleeps."""

from __future__ import annotations

import asyncio
import logging

import pytest

from searchgw.errors import NotFound, Unavailable
from searchgw.gateway.backends import SnapshotInfo
from searchgw.gateway.settings import GatewaySettings, parse_snapshot_schedule
from searchgw.gateway.snapshotting import Pruning, RetentionPolicy, SnapshotScheduler, plan_pruning
from searchgw.settings import SettingsError

HOUR = 3600.0
START = 1_700_000_000.0


class Clock:
    def __init__(self, now: float = START) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)  # a turn of the loop, as a real sleep gives


class FakeAdmin:
    """Snapshots in memory, stamped by the clock; `failing` collections fail as an engine would."""

    def __init__(self, clock: Clock, existing: dict[str, list[float]] | None = None) -> None:
        self.clock = clock
        self.snapshots: dict[str, list[SnapshotInfo]] = {
            c: [self._info(c, t) for t in times] for c, times in (existing or {}).items()}
        self.failing: set[str] = set()

    @staticmethod
    def _info(collection: str, at: float) -> SnapshotInfo:
        return SnapshotInfo(name=f"{collection}-{at}.snapshot", collection=collection, size_bytes=10,
                            create_time=at, checksum="")

    async def create_snapshot(self, name: str) -> SnapshotInfo:
        if name in self.failing:
            raise Unavailable(f"the engine failed on {name}")
        if name == "gone":
            raise NotFound("collection 'gone' does not exist")
        info = self._info(name, self.clock())
        self.snapshots.setdefault(name, []).append(info)
        return info

    async def all_snapshots(self, collection: str) -> list[SnapshotInfo]:
        if collection == "gone":
            raise NotFound("collection 'gone' does not exist")
        return list(self.snapshots.get(collection, []))

    async def prune_snapshots(self, collection: str, keep_last: int, max_age_s: float, now: float) -> Pruning:
        plan = plan_pruning(self.snapshots.get(collection, []), RetentionPolicy(keep_last, max_age_s), now)
        self.snapshots[collection] = list(plan.keep)
        return plan


def times(admin: FakeAdmin, collection: str) -> list[float]:
    return [s.create_time for s in admin.snapshots.get(collection, [])]


async def run_for(scheduler: SnapshotScheduler, clock: Clock, seconds: float) -> None:
    """Run the scheduler's loop until the clock has moved `seconds` on."""
    end = clock.now + seconds
    while True:
        next_due = await scheduler.run_due()
        if next_due > end:
            return
        await clock.sleep(max(0.0, next_due - clock()))


async def test_each_collection_is_snapshotted_on_its_own_interval():
    clock = Clock()
    admin = FakeAdmin(clock)
    outcomes: list[tuple[str, str]] = []
    scheduler = SnapshotScheduler(admin, {"docs": 6 * HOUR, "news": 24 * HOUR}, wall_clock=clock,
                                  sleep=clock.sleep, observer=lambda c, r: outcomes.append((c, r)))
    await run_for(scheduler, clock, 24 * HOUR)
    assert times(admin, "docs") == [START + h * HOUR for h in (0, 6, 12, 18, 24)]
    assert times(admin, "news") == [START, START + 24 * HOUR]
    assert outcomes.count(("docs", "ok")) == 5 and outcomes.count(("news", "ok")) == 2


async def test_the_loop_sleeps_until_the_next_due_snapshot_and_never_for_real():
    clock = Clock()
    admin = FakeAdmin(clock)
    scheduler = SnapshotScheduler(admin, {"docs": 6 * HOUR, "news": 4 * HOUR}, wall_clock=clock, sleep=clock.sleep)
    task = asyncio.ensure_future(scheduler.run())
    for _ in range(50):
        await asyncio.sleep(0)
        if len(clock.slept) >= 4:
            break
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert clock.slept[:4] == [4 * HOUR, 2 * HOUR, 2 * HOUR, 4 * HOUR]  # due at 4h, 6h, 8h, 12h


async def test_after_a_restart_the_first_snapshot_is_due_an_interval_after_the_newest_one():
    clock = Clock()
    admin = FakeAdmin(clock, existing={"docs": [START - 10 * HOUR, START - 2 * HOUR], "news": [START - 30 * HOUR]})
    scheduler = SnapshotScheduler(admin, {"docs": 6 * HOUR, "news": 24 * HOUR}, wall_clock=clock, sleep=clock.sleep)
    next_due = await scheduler.run_due()
    assert times(admin, "news")[-1] == START  # overdue: taken at once
    assert times(admin, "docs")[-1] == START - 2 * HOUR and next_due == START + 4 * HOUR


async def test_each_snapshot_is_followed_by_the_retention_policy_and_the_newest_stays(caplog):
    clock = Clock()
    admin = FakeAdmin(clock)
    outcomes: list[tuple[str, str]] = []
    scheduler = SnapshotScheduler(admin, {"docs": HOUR}, keep_last=3, wall_clock=clock, sleep=clock.sleep,
                                  observer=lambda c, r: outcomes.append((c, r)))
    with caplog.at_level(logging.INFO, logger="searchgw.gateway.snapshotting"):
        await run_for(scheduler, clock, 5 * HOUR)
    assert times(admin, "docs") == [START + 3 * HOUR, START + 4 * HOUR, START + 5 * HOUR]
    assert outcomes.count(("docs", "ok")) == 6 and outcomes.count(("docs", "pruned")) == 3
    assert "pruned the snapshots of docs: deleted 1, kept 3" in caplog.text
    assert "scheduled snapshot of docs taken: docs-" in caplog.text and "10 bytes" in caplog.text


async def test_with_no_retention_setting_nothing_is_pruned():
    clock = Clock()
    admin = FakeAdmin(clock)
    scheduler = SnapshotScheduler(admin, {"docs": HOUR}, wall_clock=clock, sleep=clock.sleep)
    await run_for(scheduler, clock, 4 * HOUR)
    assert len(times(admin, "docs")) == 5


async def test_one_collections_failure_does_not_stop_the_others_and_it_tries_again_an_interval_later(caplog):
    clock = Clock()
    admin = FakeAdmin(clock)
    admin.failing.add("broken")
    outcomes: list[tuple[str, str]] = []
    scheduler = SnapshotScheduler(admin, {"broken": HOUR, "gone": HOUR, "docs": HOUR}, wall_clock=clock,
                                  sleep=clock.sleep, observer=lambda c, r: outcomes.append((c, r)))
    with caplog.at_level(logging.INFO, logger="searchgw.gateway.snapshotting"):
        await run_for(scheduler, clock, 2 * HOUR)
        admin.failing.clear()
        await run_for(scheduler, clock, HOUR)
    assert len(times(admin, "docs")) == 4
    assert times(admin, "broken") == [START + 3 * HOUR]
    assert outcomes.count(("broken", "error")) == 3 and outcomes.count(("gone", "error")) == 4
    assert "scheduled snapshot of broken failed: Unavailable" in caplog.text


async def test_a_failed_pruning_is_counted_and_the_snapshot_stands():
    clock = Clock()
    admin = FakeAdmin(clock)

    async def failing_prune(*args: object) -> Pruning:
        raise Unavailable("the engine failed")

    admin.prune_snapshots = failing_prune  # type: ignore[method-assign]
    outcomes: list[tuple[str, str]] = []
    scheduler = SnapshotScheduler(admin, {"docs": HOUR}, max_age_s=HOUR, wall_clock=clock, sleep=clock.sleep,
                                  observer=lambda c, r: outcomes.append((c, r)))
    await scheduler.run_due()
    assert outcomes == [("docs", "ok"), ("docs", "prune_error")] and len(times(admin, "docs")) == 1


async def test_a_clock_jump_does_not_cause_a_burst_of_snapshots():
    clock = Clock()
    admin = FakeAdmin(clock)
    scheduler = SnapshotScheduler(admin, {"docs": HOUR}, wall_clock=clock, sleep=clock.sleep)
    await scheduler.run_due()
    clock.now += 10 * HOUR  # the machine slept
    assert await scheduler.run_due() == clock.now + HOUR
    assert await scheduler.run_due() == clock.now + HOUR  # not due again at once
    assert len(times(admin, "docs")) == 2


async def test_the_scheduler_over_the_embedded_backend_snapshots_and_prunes(tmp_path):
    from searchgw.gateway.backends import EdgeBackend
    from tests.gateway.backend_helpers import filled
    from tests.gateway.test_snapshot_retention import make_admin

    clock = Clock()
    backend = EdgeBackend(tmp_path, wall_clock=clock)
    try:
        await filled(backend, count=3)
        await backend.update_alias("docs", "c")
        scheduler = SnapshotScheduler(make_admin(backend), {"docs": HOUR}, keep_last=2, wall_clock=clock,
                                      sleep=clock.sleep)
        await run_for(scheduler, clock, 3 * HOUR)
        assert [s.create_time for s in await backend.list_snapshots("c")] == [START + 2 * HOUR, START + 3 * HOUR]
    finally:
        await backend.close()


# -- the settings --------------------------------------------------------------------------------
def test_the_schedule_setting_reads_collections_and_intervals():
    assert parse_snapshot_schedule("docs=6h, news=24h,logs=90m,raw=3600,week=7d") == {
        "docs": 6 * HOUR, "news": 24 * HOUR, "logs": 1.5 * HOUR, "raw": HOUR, "week": 7 * 24 * HOUR}
    assert parse_snapshot_schedule("") == {}
    assert GatewaySettings(snapshot_schedule="docs=6h").snapshot_intervals() == {"docs": 6 * HOUR}


@pytest.mark.parametrize("text", ["docs", "docs=", "docs=6x", "docs=0", "docs=-1h", "a/b=6h", "=6h",
                                  "docs=6h,docs=1h"])
def test_a_bad_schedule_is_refused_at_start_up_naming_the_setting(text):
    with pytest.raises(SettingsError, match="--snapshot-schedule"):
        GatewaySettings(snapshot_schedule=text)


@pytest.mark.parametrize(("field", "value", "flag"), [("snapshot_keep_last", -1, "--snapshot-keep-last"),
                                                      ("snapshot_max_age_s", -1.0, "--snapshot-max-age-s"),
                                                      ("snapshot_max_age_s", float("inf"), "--snapshot-max-age-s")])
def test_bad_retention_settings_are_refused_naming_the_setting(field, value, flag):
    with pytest.raises(SettingsError, match=flag):
        GatewaySettings(**{field: value})


# -- in the gateway ------------------------------------------------------------------------------
async def test_the_gateway_runs_its_schedule_counts_each_outcome_and_stops_it(rig):
    server, client = await rig.start("edge", snapshot_schedule="missing=1h", snapshot_keep_last=2)
    assert server.snapshot_task is not None and not server.snapshot_task.done()
    for _ in range(200):  # the first pass runs at start-up: 'missing' has no snapshot, so it is due now
        if server.metrics.registry.get_sample_value("searchgw_snapshots_total",
                                                    {"collection": "missing", "result": "error"}):
            break
        await asyncio.sleep(0.01)
    assert server.metrics.registry.get_sample_value("searchgw_snapshots_total",
                                                    {"collection": "missing", "result": "error"}) == 1
    await client.create_collection("still-serving")  # the failure stopped nothing
    task = server.snapshot_task
    await server.stop(0)
    assert task.cancelled()
