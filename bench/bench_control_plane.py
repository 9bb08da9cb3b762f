"""The shared control plane on Redis (a script, not a test).

    .venv/bin/python -m bench.bench_control_plane [--changes 200] [--replicas 3]

Starts a real redis-server (AOF on, appendfsync always, like the tests) and prints:

1. Propagation: the time from a state change at one replica (pause, resume) until every other
   replica has applied it (its controller's state changed), p50/p99/max over `--changes` changes —
   with pub/sub plus the version poll (what runs), and with the poll alone (0.5 s) as the baseline
   that bounds it when pub/sub drops a message.
2. Controller overhead per replica: per analysed call, `record()` plus a tick every 1 000 calls (one
   simulated second), on a follower sharing its counts with Redis (one pipelined HINCRBY batch per
   tick) and on the leader (gathering the counts, checking, saving to Redis) vs the SQLite
   single-replica controller checking every second (an fsync per check) — ratios, same run.
The replicas are controllers in this process, each with its own Redis connection (no gRPC between).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

from searchgw.gateway.rollout import (
    AnalysisPolicy,
    Rollout,
    RolloutController,
    RolloutState,
    SqliteRolloutStore,
    Stage,
)
from searchgw.gateway.rollout.redis_store import (
    RedisCounts,
    RedisLeadership,
    RedisRolloutStore,
    RedisStateFeed,
    connect,
)
from searchgw.gateway.routing import Arm, Router
from searchgw.testing import ManualClock
from tests.redis_rig import RedisServer

POLICY = AnalysisPolicy(interval_s=1.0, window_s=60.0, min_requests_per_arm=20, latency_threshold_s=0.05)
SPEC = Rollout(name="r1", collection="docs", canary_collection="docs-v2",
               stages=(Stage(10.0, 3600.0, 0), Stage(100.0, 3600.0, 0)), analysis=POLICY)


async def _resolve(name: str) -> str:
    return "docs-v1" if name == "docs" else name


async def _switch(logical: str, physical: str) -> None:
    return None


class _Seen:
    """An observer that timestamps every state a replica applies."""

    def __init__(self) -> None:
        self.states: list[tuple[float, RolloutState]] = []
        self.changed = asyncio.Event()

    def on_decision(self, rollout: Rollout, decision: object) -> None:
        return None

    def on_change(self, rollout: Rollout) -> None:
        self.states.append((time.perf_counter(), rollout.state))
        self.changed.set()


async def _replica(url: str, *, lead: bool, listen: bool) -> tuple[RolloutController, _Seen, list[asyncio.Task[None]]]:
    client = connect(url)
    leadership = RedisLeadership(client, lease_s=30.0)
    store = RedisRolloutStore(client, fencing_epoch=lambda: leadership.epoch)
    counts = RedisCounts(client, store)
    seen = _Seen()
    controller = RolloutController(store, Router(), switch_alias=_switch, resolve_alias=_resolve,
                                   clock=time.monotonic, wall_clock=time.time, observer=seen,
                                   leadership=leadership, counts=counts)
    if lead:
        await leadership.step()
    await controller.start(run_loop=False)
    feed = RedisStateFeed(store, controller.adopt, poll_s=0.5)
    tasks = [asyncio.create_task(feed.poll())]
    if listen:
        tasks.append(asyncio.create_task(feed.listen()))
    return controller, seen, tasks


async def propagation(url: str, replicas: int, changes: int, *, listen: bool) -> list[float]:
    """Seconds from each change's call to the last replica applying it."""
    members = [await _replica(url, lead=index == 0, listen=listen) for index in range(replicas)]
    acting, _, _ = members[0]
    others = [seen for _, seen, _ in members[1:]]
    name = f"r-{'pubsub' if listen else 'poll'}"
    await acting.create(dataclasses.replace(SPEC, name=name), actor="bench")
    await asyncio.sleep(1.0)  # every replica has the rollout
    delays = []
    for index in range(changes):
        for seen in others:
            seen.states.clear()
            seen.changed.clear()
        started = time.perf_counter()
        target = RolloutState.PAUSED if index % 2 == 0 else RolloutState.RUNNING
        if target is RolloutState.PAUSED:
            await acting.pause(name, actor="bench")
        else:
            await acting.resume(name, actor="bench")
        for seen in others:
            while not any(state is target for _, state in seen.states):
                seen.changed.clear()
                await asyncio.wait_for(seen.changed.wait(), 5.0)
        delays.append(max(next(t for t, s in seen.states if s is target) for seen in others) - started)
    await acting.abort(name, actor="bench")
    for controller, _, tasks in members:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await controller.stop()
    return delays


async def record_cost(url: str, calls: int) -> tuple[float, float, float]:
    """Nanoseconds per analysed call: a Redis follower (record + sharing each second), the Redis leader
    (record + gathering the others' counts + the check saved to Redis each second), SQLite (record +
    the check each second)."""
    results = []
    with tempfile.TemporaryDirectory() as directory:
        for kind in ("follower", "leader", "sqlite"):
            clock = ManualClock()
            if kind != "sqlite":
                client = connect(url)
                await client.flushdb()
                if kind == "follower":  # another replica holds the lease: this one follows
                    await RedisLeadership(connect(url), lease_s=60).step()
                leadership = RedisLeadership(client, lease_s=60, clock=clock)
                store = RedisRolloutStore(client, fencing_epoch=lambda: leadership.epoch)
                controller = RolloutController(store, Router(), switch_alias=_switch, resolve_alias=_resolve,
                                               clock=clock, wall_clock=clock.wall, leadership=leadership,
                                               counts=RedisCounts(client, store, clock=clock, wall_clock=clock.wall))
                await leadership.step()
                await controller.start(run_loop=False)
                await controller.create(dataclasses.replace(SPEC, name="cost"))
            else:
                sqlite = SqliteRolloutStore(Path(directory) / "rollouts.sqlite3")
                controller = RolloutController(sqlite, Router(), switch_alias=_switch, resolve_alias=_resolve,
                                               clock=clock, wall_clock=clock.wall)
                await controller.start(run_loop=False)
                await controller.create(dataclasses.replace(SPEC, name="cost"))
            started = time.perf_counter_ns()
            for second in range(calls // 1000):
                for index in range(1000):
                    controller.record("cost", Arm.CANARY if index % 10 == 0 else Arm.PRIMARY, "OK", 0.004,
                                      f"k{index}")
                clock.advance(1.0)
                if kind == "leader":
                    await leadership.step()
                await controller.tick()
            results.append((time.perf_counter_ns() - started) / calls)
            await controller.stop()
    return results[0], results[1], results[2]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=200)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--calls", type=int, default=200_000)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        server = await RedisServer(Path(directory) / "redis").start()
        try:
            print(f"propagation to {arguments.replicas - 1} other replicas, {arguments.changes} changes each:")
            rows = {}
            for listen in (True, False):
                delays = sorted(await propagation(server.url, arguments.replicas, arguments.changes, listen=listen))
                p50 = statistics.median(delays)
                p99 = delays[min(len(delays) - 1, int(0.99 * len(delays)))]
                rows[listen] = p50
                print(f"  {'pub/sub + poll' if listen else 'poll only (0.5 s)'}: p50 {_ms(p50)}, p99 {_ms(p99)}, "
                      f"max {_ms(delays[-1])}")
            print(f"  pub/sub + poll p50 is {rows[True] / rows[False]:.3f}x the poll-only p50")
            follower_ns, leader_ns, sqlite_ns = await record_cost(server.url, arguments.calls)
            print(f"controller cost per analysed call (record + one tick per 1 000 calls, i.e. per second):\n"
                  f"  SQLite single replica {sqlite_ns:.0f} ns (baseline)\n"
                  f"  Redis follower        {follower_ns:.0f} ns: {follower_ns / sqlite_ns:.2f}x\n"
                  f"  Redis leader          {leader_ns:.0f} ns: {leader_ns / sqlite_ns:.2f}x")
        finally:
            await server.stop()


if __name__ == "__main__":
    asyncio.run(main())
