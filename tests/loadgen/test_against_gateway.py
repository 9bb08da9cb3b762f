"""A short loadgen run against a real in-process gateway with an active rollout and a broken canary."""

from __future__ import annotations

import json

from searchgw.gateway.backends import FaultKind
from searchgw.gateway.client import stage
from searchgw.loadgen import LoadConfig, run_load
from tests.gateway.test_gateway import policy, two_arms


async def test_loadgen_counts_agree_with_the_gateway_per_arm_and_code(rig):
    server, client = await rig.start()
    await two_arms(client)
    await client.create_rollout("r1", "docs", "docs-v2", analysis=policy(), stages=[stage(50, 3600, 0), stage(100)])
    # The canary's engine fails every search (injected: an engine outage we cannot cause on demand),
    # so each canary-routed call falls back to primary.
    server.backend.inject("docs-v2", error=FaultKind.UNAVAILABLE, operations={"search"})
    report = await run_load(LoadConfig(target=server.address, rpc="search", vector=True, collection="docs",
                                       mode="closed", concurrency=4, duration_s=1.0, warmup_s=0.2,
                                       keys="uniform", key_count=200, seed=7, progress_interval_s=0.2))
    data = json.loads(report.to_json())
    assert data["calls"] == sum(code["calls"] for code in data["codes"].values())
    assert data["calls"] == sum(arm["calls"] for arm in data["arms"].values())
    assert set(data["codes"]) == {"OK"}  # the broken canary is invisible to clients
    assert data["fallbacks"] > 0 and set(data["arms"]) == {"primary"}
    fallbacks = server.metrics.registry.get_sample_value("searchgw_canary_fallbacks_total", {"collection": "docs"})
    assert fallbacks >= data["fallbacks"]  # the gateway saw them too (warm-up calls included)

    server.backend.clear()
    server.backend.inject("docs-v1", error=FaultKind.UNAVAILABLE, operations={"search"})
    broken = await run_load(LoadConfig(target=server.address, rpc="search", vector=True, collection="docs",
                                       mode="closed", concurrency=4, duration_s=0.5, warmup_s=0.1,
                                       keys="uniform", key_count=200, seed=8, progress_interval_s=0.2))
    codes = json.loads(broken.to_json())["codes"]
    assert set(codes) == {"OK", "UNAVAILABLE"}  # primary's failures reach clients, the canary's answer
