"""The shared control plane on a real redis-server: compare-and-set, fencing, the lease, summed counts,
following the stored state, and Redis killed and restarted (AOF, appendfsync always).

Replicas here are controllers in this process, each with its own Redis connection, router, lease and
counts, on one `ManualClock` (stage time and checks never wait). A lease's expiry is Redis's own
(real time): those tests use a short lease and poll with a deadline. The only stand-in is the alias
table of tests/gateway/test_rollout.py (the backend's two alias callables).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

import pytest

from searchgw.errors import Unavailable
from searchgw.gateway.rollout import DecisionKind, RolloutController, RolloutState
from searchgw.gateway.rollout.analysis import ArmSlice
from searchgw.gateway.rollout.redis_store import (
    RedisCounts,
    RedisLeadership,
    RedisRolloutStore,
    RedisStateFeed,
    RolloutChanged,
    StaleLeader,
    connect,
)
from searchgw.gateway.routing import Arm, Router
from searchgw.testing import ManualClock
from tests.gateway.test_rollout import INTERVAL, AliasTable, Recorder, kinds, spec
from tests.gateway.test_rollout_store import ROLLOUT
from tests.gateway.test_rollout_store import (  # the store contract, collected here on Redis
    test_a_rollout_round_trips_exactly,
    test_save_keeps_exactly_the_rollouts_decisions,
)
from tests.redis_rig import RedisServer

CONTRACT = (test_a_rollout_round_trips_exactly, test_save_keeps_exactly_the_rollouts_decisions)


@pytest.fixture
async def redis_server(tmp_path) -> AsyncIterator[RedisServer]:
    server = await RedisServer(tmp_path / "redis").start()
    yield server
    await server.stop()


@pytest.fixture
async def store(redis_server) -> AsyncIterator[RedisRolloutStore]:
    """The store the contract tests take: a leader's (its decisions are fenced with epoch 1)."""
    opened = RedisRolloutStore(connect(redis_server.url), fencing_epoch=lambda: 1)
    yield opened
    await opened.close()


@dataclass
class Replica:
    name: str
    store: RedisRolloutStore
    leadership: RedisLeadership
    counts: RedisCounts
    router: Router
    controller: RolloutController
    feed: RedisStateFeed
    observer: Recorder

    async def close(self) -> None:
        await self.controller.stop()
        await self.store.close()


async def replica(name: str, url: str, clock: ManualClock, aliases: AliasTable, *, lease_s: float = 30.0,
                  lead: bool = False, lease_clock: ManualClock | None = None) -> Replica:
    client = connect(url)
    leadership = RedisLeadership(client, holder=name, lease_s=lease_s, clock=lease_clock or clock)
    store = RedisRolloutStore(client, fencing_epoch=lambda: leadership.epoch)
    counts = RedisCounts(client, store, clock=clock, wall_clock=clock.wall)
    router, observer = Router(), Recorder()
    controller = RolloutController(store, router, switch_alias=aliases.switch, resolve_alias=aliases.resolve,
                                   clock=clock, wall_clock=clock.wall, observer=observer, leadership=leadership,
                                   counts=counts)
    if lead:
        assert await leadership.step()
    await controller.start(run_loop=False)
    feed = RedisStateFeed(store, controller.adopt, poll_s=3600)
    return Replica(name, store, leadership, counts, router, controller, feed, observer)


@pytest.fixture
async def cluster(redis_server) -> AsyncIterator[tuple[ManualClock, list[Replica]]]:
    clock = ManualClock()
    aliases = AliasTable({"docs": "docs-v1"})
    replicas = [await replica("a", redis_server.url, clock, aliases, lead=True),
                await replica("b", redis_server.url, clock, aliases),
                await replica("c", redis_server.url, clock, aliases)]
    yield clock, replicas
    for each in replicas:
        await each.close()


async def until(condition, *, timeout_s: float, what: str) -> float:
    """Poll `condition()` (sync or async) until true; the seconds it took. Fails after `timeout_s`."""
    started = time.monotonic()
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return time.monotonic() - started
        assert time.monotonic() - started < timeout_s, f"not within {timeout_s} s: {what}"
        await asyncio.sleep(0.01)  # polling another process's state, bounded by the deadline


def traffic(controller: RolloutController, *, primary: int, canary: int, canary_errors: int = 0) -> None:
    for _ in range(primary):
        controller.record("r1", Arm.PRIMARY, "OK", 0.005)
    for index in range(canary):
        controller.record("r1", Arm.CANARY, "UNAVAILABLE" if index < canary_errors else "OK", 0.005)


async def interval(clock: ManualClock, replicas: list[Replica], **load: int) -> None:
    """One analysis interval: every follower serves `load`, shares its counts; the leader checks;
    every replica then follows the stored state (the version poll, called directly)."""
    clock.advance(INTERVAL / 2)
    for each in replicas[1:]:
        traffic(each.controller, **load)
    clock.advance(INTERVAL / 2)
    for each in replicas[1:]:
        await each.controller.tick()  # a follower's tick shares its complete seconds
    await replicas[0].leadership.step()
    await replicas[0].controller.tick()
    for each in replicas:
        await each.feed.poll_once()


# -- the store -----------------------------------------------------------------------------------------


async def test_a_rollout_round_trips_exactly_through_redis(redis_server):
    store = RedisRolloutStore(connect(redis_server.url))
    manual = replace(ROLLOUT, decisions=tuple(replace(d, actor="alice") for d in ROLLOUT.decisions))
    await store.save(manual)
    assert await store.get("r1") == manual
    assert await RedisRolloutStore(connect(redis_server.url)).load_all() == [manual]
    assert await store.get("other") is None
    await store.close()


async def test_two_writers_from_the_same_version_one_wins(redis_server):
    first, second = RedisRolloutStore(connect(redis_server.url)), RedisRolloutStore(connect(redis_server.url))
    manual = replace(ROLLOUT, decisions=tuple(replace(d, actor="alice") for d in ROLLOUT.decisions))
    await first.save(manual)
    await first.load_all(), await second.load_all()  # both at version 1
    paused = replace(manual, state=RolloutState.PAUSED, stage_elapsed_s=1.0)
    aborted = replace(manual, state=RolloutState.ABORTED, weight_percent=0.0)
    results = await asyncio.gather(first.save(paused), second.save(aborted), return_exceptions=True)
    lost = [r for r in results if isinstance(r, Exception)]
    assert len(lost) == 1 and isinstance(lost[0], RolloutChanged), results
    winner = paused if results[0] is None else aborted
    assert await first.get("r1") == winner
    for store in (first, second):
        await store.close()


async def test_a_deposed_leaders_decision_is_refused_even_at_the_current_version(redis_server):
    clock = ManualClock()
    old = RedisLeadership(connect(redis_server.url), holder="old", lease_s=0.3, clock=clock)
    assert await old.step() and old.epoch == 1
    old_store = RedisRolloutStore(connect(redis_server.url), fencing_epoch=lambda: old.epoch)
    await old_store.save(ROLLOUT)  # the controller's decision, under epoch 1
    new = RedisLeadership(connect(redis_server.url), holder="new", lease_s=0.3, clock=clock)
    # the old leader stops renewing (paused, partitioned); Redis expires its lease, the new one takes it
    await until(new.step, timeout_s=5, what="the lease passes to the new leader")
    assert new.epoch == 2
    later = replace(ROLLOUT, stage_elapsed_s=99.0)
    with pytest.raises(StaleLeader):
        await old_store.save(later)  # the version is still current: only the epoch refuses it
    assert (await old_store.get("r1")).stage_elapsed_s == ROLLOUT.stage_elapsed_s
    new_store = RedisRolloutStore(connect(redis_server.url), fencing_epoch=lambda: new.epoch)
    await new_store.load_all()
    await new_store.save(later)
    assert (await new_store.get("r1")).stage_elapsed_s == 99.0


async def test_one_leader_at_a_time_and_the_next_only_after_the_lease(redis_server):
    clock = ManualClock()
    a = RedisLeadership(connect(redis_server.url), holder="a", lease_s=1.0, clock=clock)
    b = RedisLeadership(connect(redis_server.url), holder="b", lease_s=1.0, clock=clock)
    assert await a.step() and not await b.step()
    assert await a.step() and not await b.step()  # renewed by its holder, refused to the other
    clock.advance(0.9)  # a's own clock: past 80 % of its lease since the last renewal
    assert not a.is_leader  # it stops deciding before Redis could hand the lease on
    waited = await until(b.step, timeout_s=5, what="b leads once a's lease expires in Redis")
    assert 0.0 < waited <= 1.5 and b.epoch == a.epoch + 1
    assert not await a.step()  # a finds the lease taken: it stays a follower


async def test_resigning_hands_the_lease_over_at_once(redis_server):
    a = RedisLeadership(connect(redis_server.url), holder="a", lease_s=30.0)
    b = RedisLeadership(connect(redis_server.url), holder="b", lease_s=30.0)
    assert await a.step() and not await b.step()
    await a.resign()
    assert not a.is_leader and await b.step()


async def test_the_counts_of_every_follower_sum_exactly_for_the_leader(redis_server):
    clock = ManualClock()
    client = connect(redis_server.url)
    store = RedisRolloutStore(client)
    followers = [RedisCounts(connect(redis_server.url), store, clock=clock, wall_clock=clock.wall) for _ in range(3)]
    leader = RedisCounts(client, store, clock=clock, wall_clock=clock.wall)
    second = int(clock())
    expected = [ArmSlice(), ArmSlice()]
    await leader.gather("r1", {}, clock(), canary_running=True)  # the leader starts here
    for index, follower in enumerate(followers):
        pair = [ArmSlice(), ArmSlice()]
        for arm in pair:
            arm.record("OK", 0.001 * (index + 1), new_key=True)
            arm.record("UNAVAILABLE", 0.5, new_key=False)
        for arm, total in zip(pair, expected):
            total.add(arm)
        await follower.share("r1", {second: pair}, clock() + 1.0)
    clock.advance(3.0)
    seconds: dict[int, list[ArmSlice]] = {}
    horizon, canary_calls = await leader.gather("r1", seconds, clock(), canary_running=True)
    assert horizon > second and canary_calls == expected[1].calls == 6
    assert [arm.to_json() for arm in seconds[second]] == [arm.to_json() for arm in expected]


# -- replicas following one rollout ------------------------------------------------------------------


async def test_the_leader_rolls_back_on_the_summed_counts_and_every_replica_follows(cluster):
    clock, replicas = cluster
    leader, *followers = replicas
    await followers[0].controller.create(spec(), actor="alice")  # created at a follower
    for each in replicas:
        await each.feed.poll_once()
    assert all(each.router.table("docs") is not None for each in replicas)
    # each follower alone serves too few failing canary calls for the error limit; together they fail
    for _ in range(6):
        await interval(clock, replicas, primary=40, canary=6, canary_errors=2)
        if (await leader.controller.get("r1")).state is RolloutState.ROLLED_BACK:
            break
    rolled_back = await leader.controller.get("r1")
    assert rolled_back.state is RolloutState.ROLLED_BACK
    assert kinds(rolled_back).count("ROLLED_BACK") == 1
    decision = rolled_back.decisions[-1]
    assert decision.actor == "controller" and decision.canary.requests % 12 == 0 and decision.canary.requests > 6
    assert ("decision", "ROLLED_BACK") in leader.observer.events  # counted where it was taken
    for each in replicas:  # every replica routes everything to primary again, with the same history
        assert (await each.controller.get("r1")).decisions == rolled_back.decisions
        assert each.router.table("docs") is None
    assert all(("decision", "ROLLED_BACK") not in f.observer.events for f in followers)


async def test_a_pause_at_a_follower_holds_at_the_leader_and_every_replica(cluster):
    clock, replicas = cluster
    leader, follower, other = replicas
    await leader.controller.create(spec(), actor="alice")
    for each in replicas:
        await each.feed.poll_once()
    await follower.controller.pause("r1", reason="looking", actor="bob")
    for each in (leader, other):
        await each.feed.poll_once()
        assert (await each.controller.get("r1")).state is RolloutState.PAUSED
    for _ in range(8):  # the leader's checks go on and never undo the pause
        await interval(clock, replicas, primary=40, canary=10)
    paused = await other.controller.get("r1")
    assert paused.state is RolloutState.PAUSED and paused.current_stage == 0
    assert [d.kind for d in paused.decisions if d.kind is DecisionKind.PAUSED][0] is DecisionKind.PAUSED
    await other.controller.resume("r1", actor="bob")
    await leader.feed.poll_once()
    assert (await leader.controller.get("r1")).state is RolloutState.RUNNING


async def test_a_follower_learns_of_a_change_from_pubsub_without_polling(cluster):
    clock, replicas = cluster
    leader, follower, _ = replicas
    listening = asyncio.create_task(follower.feed.listen())
    try:
        await asyncio.sleep(0.1)  # let it subscribe (a message sent before is what the poll is for)
        await leader.controller.create(spec(), actor="alice")
        await until(lambda: follower.router.table("docs") is not None, timeout_s=1.0,
                    what="the follower routes the new rollout")
        await leader.controller.abort("r1", actor="alice")
        await until(lambda: follower.router.table("docs") is None, timeout_s=1.0,
                    what="the follower stops routing to the canary")
    finally:
        listening.cancel()


async def test_with_redis_down_routes_stay_no_decision_is_taken_and_an_abort_still_stops_the_canary(
        cluster, redis_server):
    clock, replicas = cluster
    leader, follower, other = replicas
    await leader.controller.create(spec(), actor="alice")
    for each in replicas:
        await each.feed.poll_once()
    before = await leader.controller.get("r1")
    await redis_server.kill()
    with pytest.raises(Unavailable):
        await other.feed.poll_once()
    for _ in range(3):  # traffic and ticks go on: routes stay, the leader takes no decision
        await interval_without_redis(clock, replicas)
    assert (await leader.controller.get("r1")).decisions == before.decisions
    assert all(each.router.table("docs") is not None for each in replicas)
    aborted = await follower.controller.abort("r1", reason="canary looks wrong", actor="bob")
    assert aborted.state is RolloutState.ABORTED and follower.router.table("docs") is None
    assert leader.router.table("docs") is not None  # the others learn once Redis is back
    await redis_server.start()
    await follower.controller.tick()  # the abort is saved at the next tick
    for each in (leader, other):
        await each.feed.poll_once()
        assert (await each.controller.get("r1")).state is RolloutState.ABORTED
        assert each.router.table("docs") is None
    assert kinds(await other.controller.get("r1")).count("ABORTED") == 1


async def interval_without_redis(clock: ManualClock, replicas: list[Replica]) -> None:
    clock.advance(INTERVAL)
    for each in replicas:
        traffic(each.controller, primary=40, canary=10, canary_errors=10)
        await each.leadership.step()
        await each.controller.tick()


async def test_state_survives_a_redis_sigkill_and_a_new_leader_goes_on_without_repeating_a_decision(
        cluster, redis_server):
    clock, replicas = cluster
    leader, follower, _ = replicas
    await leader.controller.create(spec(), actor="alice")
    for _ in range(4):
        await interval(clock, replicas, primary=40, canary=10)
    saved = await leader.controller.get("r1")
    await redis_server.kill()
    await redis_server.start()  # the AOF (appendfsync always) replays every acknowledged write
    fresh = RedisRolloutStore(connect(redis_server.url))
    stored = await fresh.get("r1")
    assert stored.decisions == saved.decisions and stored.state is saved.state
    await fresh.close()
    # the lease came back with the AOF too: the old leader hands it over (as it does when it stops)
    await leader.leadership.resign()
    assert await follower.leadership.step() and follower.leadership.epoch > leader.leadership.epoch
    new_order = [follower, leader, replicas[2]]
    for _ in range(6):
        await interval(clock, new_order, primary=40, canary=10)
    after = await follower.controller.get("r1")
    assert after.decisions[:len(saved.decisions) - 1] == saved.decisions[:-1]
    assert after.current_stage > saved.current_stage or after.state is not RolloutState.RUNNING
    seqs = [d.seq for d in after.decisions]
    assert seqs == sorted(set(seqs))  # no decision lost or written twice
    assert kinds(after).count("ADVANCED") == after.current_stage


async def test_an_abort_taken_while_redis_was_down_lands_on_top_of_a_pause_saved_meanwhile(cluster, redis_server):
    clock, replicas = cluster
    leader, follower, other = replicas
    await leader.controller.create(spec(), actor="alice")
    for each in replicas:
        await each.feed.poll_once()
    await redis_server.kill()
    await follower.controller.abort("r1", reason="canary looks wrong", actor="bob")  # not saved: Redis is down
    assert follower.router.table("docs") is None
    await redis_server.start()
    await other.controller.pause("r1", reason="looking", actor="carol")  # saved first, from the same version
    await follower.controller.tick()  # its save loses the compare-and-set...
    assert (await other.store.get("r1")).state is RolloutState.PAUSED
    await follower.feed.poll_once()  # ...it adopts the pause, re-applies its abort on top
    await follower.controller.tick()
    for each in replicas:
        await each.feed.poll_once()
        final = await each.controller.get("r1")
        assert final.state is RolloutState.ABORTED and each.router.table("docs") is None
        assert kinds(final) == ["STARTED", "PAUSED", "ABORTED"]
        assert [d.seq for d in final.decisions] == [1, 2, 3]


async def test_the_state_setting_takes_sqlite_or_a_redis_url_only():
    from searchgw.gateway.settings import GatewaySettings
    from searchgw.settings import SettingsError

    assert not GatewaySettings().shared_state
    assert GatewaySettings(state="rediss://:secret@redis.internal:6380/2").shared_state
    with pytest.raises(SettingsError, match="--state"):
        GatewaySettings(state="mysql://db/rollouts")
    assert "secret" not in repr(GatewaySettings(state="redis://:secret@redis:6379/0"))


async def test_a_new_leader_folds_every_second_exactly_once(cluster):
    clock, replicas = cluster
    a, b, c = replicas
    from searchgw.gateway.rollout import Stage
    await a.controller.create(spec(stages=(Stage(50.0, 3600.0, 0), Stage(100.0, 0.0, 0))), actor="alice")
    for each in replicas:
        await each.feed.poll_once()
    for _ in range(3):  # b and c serve, a leads
        await interval(clock, replicas, primary=30, canary=10)
    await a.leadership.resign()
    assert await b.leadership.step()
    for _ in range(3):  # a and c serve, b leads
        await interval(clock, [b, a, c], primary=30, canary=10)
    last_check = (await b.controller.get("r1")).decisions[-1]
    assert last_check.actor == "controller" and last_check.kind in (DecisionKind.CHECK_PASSED,
                                                                    DecisionKind.INCONCLUSIVE)
    # 6 intervals × 2 serving replicas × 10 canary calls, each counted once across the change of leader
    assert last_check.canary.requests == 120 and last_check.primary.requests == 360


async def test_a_gateway_on_redis_state_says_when_redis_is_down_and_keeps_serving(redis_server, tmp_path):
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from searchgw.gateway.client import GatewayClient
    from searchgw.gateway.server import create_server
    from searchgw.gateway.settings import GatewaySettings

    settings = GatewaySettings(port=0, metrics_port=-1, data_dir=tmp_path / "gateway", state=redis_server.url,
                               state_poll_s=0.1)
    server = await create_server(settings, probe_interval_s=None)
    value = server.metrics.registry.get_sample_value
    try:
        assert value("searchgw_state_store_up") == 1 and value("searchgw_controller_leader") == 1
        async with GatewayClient(server.address) as client:
            await client.create_collection("vecs", dimension=4)
            await client.upsert("vecs", [{"id": 1, "vector": [1.0, 0.0, 0.0, 0.0]}])
            await redis_server.kill()
            await until(lambda: value("searchgw_state_store_up") == 0, timeout_s=5, what="the gauge drops")
            await server.dependencies.probe_once()
            async with grpc.aio.insecure_channel(server.address) as channel:
                status = (await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service="searchgw.dependency.state"))).status
            assert status == health_pb2.HealthCheckResponse.NOT_SERVING
            assert value("searchgw_dependency_up", {"dependency": "state"}) == 0
            hits = await client.search("vecs", vector=[1.0, 0.0, 0.0, 0.0], limit=1, routing_key="u1")
            assert [p.id.num for p in hits.points] == [1]  # searches do not need Redis
            await redis_server.start()
            await until(lambda: value("searchgw_state_store_up") == 1, timeout_s=5, what="the gauge recovers")
    finally:
        await server.stop(0)


async def test_a_name_taken_at_another_replica_is_already_exists(cluster):
    from searchgw.errors import AlreadyExists

    _, replicas = cluster
    leader, follower, _ = replicas
    await leader.controller.create(spec(), actor="alice")
    with pytest.raises(AlreadyExists):  # before the follower has even heard of it
        await follower.controller.create(spec(collection="docs"), actor="bob")
    assert follower.router.table("docs") is None


async def test_two_replicas_cannot_both_start_a_rollout_on_one_collection(cluster):
    from searchgw.errors import AlreadyExists

    _, replicas = cluster
    leader, follower, _ = replicas
    await leader.controller.create(spec("r1"), actor="alice")
    with pytest.raises(AlreadyExists) as refused:  # another name, same collection, before the follower heard
        await follower.controller.create(spec("r2", canary="docs-v3"), actor="bob")
    assert refused.value.reason == "ACTIVE_ROLLOUT_EXISTS" and "'r1'" in refused.value.message
    assert follower.router.table("docs") is None or follower.router.table("docs").rollout == "r1"
    assert await follower.store.get("r2") is None  # nothing half-written
    await leader.controller.abort("r1", actor="alice")  # the end releases the collection
    started = await follower.controller.create(spec("r3", canary="docs-v3"), actor="bob")
    assert started.state is RolloutState.RUNNING


async def test_a_paused_old_leaders_rollback_is_refused_and_it_rejoins_the_shared_state(redis_server):
    clock, aliases = ManualClock(), AliasTable({"docs": "docs-v1"})
    paused = ManualClock()  # the old leader's view of its lease: frozen, as in a process that is paused
    old = await replica("old", redis_server.url, clock, aliases, lease_s=1.0, lead=True, lease_clock=paused)
    new = await replica("new", redis_server.url, clock, aliases, lease_s=1.0)
    try:
        await old.controller.create(spec(), actor="alice")
        await new.feed.poll_once()
        # the old leader freezes (GC pause, partition): it neither renews nor checks; its lease lapses
        frozen_at = clock()
        await until(new.leadership.step, timeout_s=5, what="the new replica takes the lease")
        clock.advance(INTERVAL)
        assert await new.leadership.step()
        await new.controller.tick()  # the new leader decides (too little traffic: inconclusive) ...
        await old.feed.poll_once()  # ... and the old one adopts it: it holds the current version
        assert old.store.known_version("r1") == new.store.known_version("r1") == 2
        # the old leader wakes up still believing in its lease (its clock has not moved past it) ...
        traffic(old.controller, primary=40, canary=40, canary_errors=40)
        clock.advance(INTERVAL)
        assert old.leadership.is_leader and clock() > frozen_at
        await old.controller.tick()  # ... and rolls back on its own, partial view: refused by the epoch
        assert old.router.table("docs") is None  # (an end takes effect locally first, as always)
        stored = await new.store.get("r1")
        assert stored.state is RolloutState.RUNNING and "ROLLED_BACK" not in kinds(stored)
        # it learns at its next renewal that it lost the lease, and with the next save rejoins
        assert not await old.leadership.step()
        await interval(clock, [new, old], primary=40, canary=10)
        assert (await old.controller.get("r1")).state is RolloutState.RUNNING
        assert old.router.table("docs") is not None
        assert (await new.controller.get("r1")).decisions == (await old.controller.get("r1")).decisions
    finally:
        await old.close()
        await new.close()
