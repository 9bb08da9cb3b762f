"""Routing keys keep their arm whichever gateway replica Envoy picks.

Three `searchgw serve --backend qdrant --state redis://…` processes share one Qdrant-protocol server
(the data) and one real redis-server (the rollout); a real Envoy balances them. The rollout runs at
50 %. Each key's calls land on several replicas — Envoy balances round robin here, the worst case
for stickiness (the mesh's ring hash on x-routing-key would keep a key on one replica until that
replica goes) — and then one replica is SIGKILLed so the keys it served move to the others: every
key gets the same arm from every replica, before and after. The arm is the gateway's decision
(bucket = hash(rollout salt ‖ key)), the same on every replica because the rollout is shared.
"""

from __future__ import annotations


import pytest

from searchgw.gateway.client import GatewayClient, stage
from searchgw.v1 import common_pb2
from tests.envoy.rig import (
    GATEWAY_CLUSTER,
    EnvoyProxy,
    GatewayReplicas,
    envoy_bootstrap,
    mesh_policy,
    mesh_routes,
    upstream_cluster,
)
from tests.redis_rig import RedisServer

pytestmark = pytest.mark.slow

REPLICAS = 3
KEYS = [f"user-{n}" for n in range(24)]
#: Calls per key in each phase: more than the replicas, so round robin takes every key to several.
CALLS_PER_KEY = 2 * REPLICAS


async def _arms(client: GatewayClient, arms: dict[str, set[int]]) -> None:
    """CALLS_PER_KEY searches per key, interleaved, each with the key in the request; the arm each got."""
    for _ in range(CALLS_PER_KEY):
        for key in KEYS:
            hits = await client.search("kv", vector=[1.0, 3.0, 0.0, 0.0], limit=1, routing_key=key, timeout=30)
            assert hits.route.rollout == "r1" and not hits.route.fallback
            arms.setdefault(key, set()).add(hits.route.arm)


async def test_every_key_keeps_its_arm_on_whichever_replica_envoy_picks(tmp_path):
    redis = await RedisServer(tmp_path / "redis").start()
    replicas = proxy = None
    try:
        replicas = await GatewayReplicas.start(tmp_path, REPLICAS, "--state", redis.url, "--state-lease-s", "2")
        policy = mesh_policy().scaled(0.1)
        bootstrap = envoy_bootstrap([upstream_cluster(GATEWAY_CLUSTER, replicas.addresses, policy, lb_policy="ROUND_ROBIN")],
                                    mesh_routes(policy, {"cluster": GATEWAY_CLUSTER}))
        proxy = await EnvoyProxy.start(bootstrap, tmp_path)
        async with GatewayClient(proxy.address) as client:
            for name in ("kv-a", "kv-b"):  # set up through Envoy too: any replica takes admin calls
                await client.create_collection(name, dimension=4, timeout=30)
                await client.upsert(name, [{"id": i, "vector": [1.0, float(i), 0.0, 0.0]} for i in range(1, 11)],
                                    timeout=30)
            await client.update_alias("kv", "kv-a", timeout=30)
            await client.create_rollout("r1", "kv", "kv-b", stages=[stage(50, 3600), stage(100)], timeout=30)

            before = await proxy.host_stats("rq_success")
            arms: dict[str, set[int]] = {}
            await _arms(client, arms)
            served = {host: count - before.get(host, 0) for host, count in (await proxy.host_stats("rq_success")).items()}
            assert sorted(served) == sorted(replicas.addresses) and all(
                count >= len(KEYS) for count in served.values()), served  # every replica served many keys
            assert all(len(seen) == 1 for seen in arms.values()), arms
            assert {arm for (arm,) in arms.values()} == {common_pb2.ARM_PRIMARY, common_pb2.ARM_CANARY}

            await replicas.kill(0)  # its keys move to the two others (Envoy retries and ejects it)
            after: dict[str, set[int]] = {}
            await _arms(client, after)
            assert after == arms
        canary = sum(1 for (arm,) in arms.values() if arm == common_pb2.ARM_CANARY)
        print(f"\n{len(KEYS)} keys × {2 * CALLS_PER_KEY} calls over {REPLICAS} replicas (then 2): "
              f"{canary} keys on canary, every key on one arm; per replica {served}")
    finally:
        if proxy is not None:
            await proxy.stop()
        if replicas is not None:
            await replicas.stop()
        await redis.stop()
