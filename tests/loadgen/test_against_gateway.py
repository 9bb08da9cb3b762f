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


async def test_loadgen_recall_mode_reports_recall_and_latency_per_setting(rig):
    import numpy as np

    server, client = await rig.start()
    vectors = np.random.default_rng(3).standard_normal((200, 8)).astype(np.float32)
    await client.create_collection("vecs", dimension=8)
    await client.upsert("vecs", [{"id": i, "vector": v.tolist()} for i, v in enumerate(vectors)])
    config = LoadConfig(target=server.address, rpc="search", vector=True, dimension=8, collection="vecs",
                        mode="closed", concurrency=2, duration_s=0.3, warmup_s=0.0, seed=5, hnsw_ef=32,
                        recall=True, recall_queries=25, recall_ef=(4, 128), progress_interval_s=0.2)
    report = await run_load(config)
    data = json.loads(report.to_json())
    assert [row["setting"] for row in data["recall"]] == ["exact", "configured", "hnsw_ef=4", "hnsw_ef=128"]
    assert all(row["queries"] == 25 and row["latency_ms"]["p99"] > 0 for row in data["recall"])
    # an unindexed collection is searched exhaustively: every setting finds the exact top-k
    assert [row["recall"] for row in data["recall"]] == [1.0, 1.0, 1.0, 1.0]
    assert "recall@10" in report.format_table()
    assert set(data["codes"]) == {"OK"}  # the load itself ran with params.hnsw_ef=32, accepted


async def test_loadgen_recall_mode_fails_clearly_on_knobs_the_gateway_refuses(rig):
    import pytest

    from searchgw.loadgen import LoadgenError

    server, client = await rig.start()
    await client.create_collection("vecs", dimension=8)
    config = LoadConfig(target=server.address, rpc="search", vector=True, dimension=8, collection="vecs",
                        duration_s=0.2, warmup_s=0.0, seed=5, recall=True, recall_queries=3, recall_ef=(5000,))
    with pytest.raises(LoadgenError, match="hnsw_ef=5000.*INVALID_ARGUMENT"):
        await run_load(config)
