"""The gateway is SIGKILLed mid-rollout, in the middle of a stream of upserts, and started again on the
same data directory.

The rollout resumes at the stage and weight it had (the store commits every transition before it
takes effect), and every upsert the gateway acknowledged before the kill is in both arms: the
embedded engine appends each write to its write-ahead log before answering (docs/durability.md).
Vector-only collections, so no embedder is involved.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time

import pytest

from searchgw.gateway.client import GatewayClient, stage
from searchgw.errors import SearchgwError
from searchgw.v1 import common_pb2
from searchgw.v1 import rollout_service_pb2 as roll_pb
from tests.faults.processes import start_gateway

RUNNING = roll_pb.Rollout.STATE_RUNNING
BATCH = 50
ARMS = ("kv-a", "kv-b")


def vector(rng: random.Random) -> list[float]:
    return [rng.uniform(-1, 1) for _ in range(4)]


async def writer(client: GatewayClient, first_id: int, acknowledged: list[int], enough: asyncio.Event) -> None:
    """Upsert batches of fresh ids until the gateway dies; record what was acknowledged, and set `enough`
    once 20 batches were."""
    rng = random.Random(first_id)
    for start in itertools.count(first_id, BATCH):
        ids = list(range(start, start + BATCH))
        try:
            await client.upsert("kv", [{"id": i, "vector": vector(rng), "payload": {"i": i}} for i in ids], timeout=10)
        except SearchgwError:
            return  # the kill: this batch was never acknowledged
        acknowledged.extend(ids)
        if len(acknowledged) >= 20 * BATCH:
            enough.set()


async def advance_to_second_stage(client: GatewayClient) -> roll_pb.Rollout:
    """Send keyed traffic until the controller (real clock) passes the first stage."""
    deadline = time.monotonic() + 60
    for round_ in itertools.count():
        rollout = await client.get_rollout("r1")
        if rollout.current_stage == 1:
            return rollout
        assert time.monotonic() < deadline, f"still at stage {rollout.current_stage}: {rollout.decisions[-1].reason}"
        await asyncio.gather(*(client.search("kv", vector=[1, 0, 0, 0], limit=1, routing_key=f"u{round_}-{i}")
                               for i in range(60)))


async def present(client: GatewayClient, collection: str, ids: list[int]) -> set[int]:
    found: set[int] = set()
    for at in range(0, len(ids), 500):
        chunk = ids[at:at + 500]
        only = common_pb2.Filter(must=[common_pb2.Condition(has_id=common_pb2.PointIdList(
            ids=[common_pb2.PointId(num=i) for i in chunk]))])
        response = await client.search(collection, vector=[1, 0, 0, 0], limit=len(chunk), filter=only, timeout=30)
        found.update(p.id.num for p in response.points)
    return found


@pytest.mark.slow
async def test_after_a_sigkill_mid_rollout_the_rollout_resumes_and_no_acknowledged_upsert_is_lost(tmp_path):
    data_dir = tmp_path / "data"
    gateway = await start_gateway(data_dir, tmp_path / "gateway-1.log", "--controller-tick-s", "0.2")
    client = GatewayClient(gateway.address)
    acknowledged: list[int] = []
    try:
        for name in ARMS:
            await client.create_collection(name, dimension=4)
        await client.update_alias("kv", "kv-a")
        policy = roll_pb.AnalysisPolicy(min_requests_per_arm=5, max_latency_ratio=100)
        policy.interval.FromSeconds(1)
        policy.window.FromSeconds(5)
        policy.latency_slack.FromSeconds(1)
        await client.create_rollout("r1", "kv", "kv-b", analysis=policy,
                                    stages=[stage(20, 0, 0), stage(50, 3600, 0), stage(100)])
        before = await advance_to_second_stage(client)

        enough = asyncio.Event()
        writers = [asyncio.create_task(writer(client, 1 + n * 10**6, acknowledged, enough)) for n in range(2)]
        await asyncio.wait_for(enough.wait(), 60)
        assert not any(w.done() for w in writers), "a writer failed before the kill"
        await gateway.kill()  # with upserts in flight
        await asyncio.wait_for(asyncio.gather(*writers), 30)
    finally:
        await client.close()
        await gateway.stop()

    gateway = await start_gateway(data_dir, tmp_path / "gateway-2.log")
    try:
        async with GatewayClient(gateway.address) as client:
            after = await client.get_rollout("r1")
            assert (after.state, after.current_stage, after.weight_percent) == (RUNNING, 1, 50.0)
            assert (after.current_stage, after.weight_percent) == (before.current_stage, before.weight_percent)
            for arm in ARMS:
                missing = set(acknowledged) - await present(client, arm, acknowledged)
                assert not missing, f"{len(missing)} acknowledged points missing from {arm}: {sorted(missing)[:10]}"
                assert (await client.get_collection(arm)).points_count >= len(acknowledged)
    finally:
        await gateway.stop()
    print(f"\n{len(acknowledged)} acknowledged points survived the SIGKILL in both arms; "
          f"rollout r1 resumed at stage {after.current_stage + 1} ({after.weight_percent:g}%)")
