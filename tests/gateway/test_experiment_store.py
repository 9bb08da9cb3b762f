"""One contract for every ExperimentStore: memory, SQLite (the rollouts' file) and a real redis-server."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import pytest

from searchgw.gateway.experiments import (
    ArmCounts,
    ArmSpec,
    Experiment,
    ExperimentDecision,
    ExperimentPolicy,
    ExperimentState,
    MemoryExperimentStore,
    OutcomeTotals,
    RedisExperimentStore,
    SqliteExperimentStore,
)
from searchgw.gateway.rollout import SqliteRolloutStore
from searchgw.gateway.rollout.quality import QualityPolicy
from searchgw.gateway.rollout.redis_store import connect
from tests.redis_rig import RedisServer


def experiment(name: str = "e1", create_time: float = 100.0) -> Experiment:
    return Experiment(
        name=name, collection="docs", control=ArmSpec("control", "docs-v1", 5000),
        variants=(ArmSpec("m32", "docs-m32", 2500), ArmSpec("int8", "docs-int8", 2500)),
        policy=ExperimentPolicy(alpha=0.01, goal="buy", outcome_kinds=("click", "buy"), latency_threshold_s=0.2,
                                interval_s=2.0, error_codes=("UNAVAILABLE",),
                                quality=QualityPolicy(shadow_sample_rate=0.05, k=20, min_overlap=0.7),
                                quality_guard=True),
        state=ExperimentState.RUNNING, salt="abc123", create_time=create_time, update_time=create_time + 5,
        start_time=create_time + 1, winner="m32", summary="winner m32: ...",
        counts={"control": ArmCounts(10, 1, 2, 0.5, {"buy": OutcomeTotals(3, 30.5)}),
                "m32": ArmCounts(12, 0, 1, 0.25, {"click": OutcomeTotals(4, 4.0)})},
        evidence={"variants": {}, "folded": {"": [10, 1, 2, 3]}},
        decisions=(ExperimentDecision(create_time, "created", "arms", "ops"),
                   ExperimentDecision(create_time + 1, "started", "", "ops")))


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def store(request, tmp_path) -> AsyncIterator:
    if request.param == "memory":
        yield MemoryExperimentStore()
    elif request.param == "sqlite":
        opened = SqliteExperimentStore(tmp_path / "rollouts.sqlite3")
        yield opened
        await opened.close()
    else:
        server = await RedisServer(tmp_path / "redis").start()
        client = connect(server.url)
        yield RedisExperimentStore(client)
        await client.aclose()
        await server.stop()


async def test_an_experiment_round_trips_exactly(store):
    saved = experiment()
    await store.save(saved)
    assert await store.get("e1") == saved
    assert await store.get("nope") is None


async def test_save_replaces_and_load_all_is_oldest_first(store):
    await store.save(experiment("late", 200.0))
    await store.save(experiment("early", 100.0))
    changed = dataclasses.replace(experiment("late", 200.0), state=ExperimentState.CONCLUDED, concluded_arm="m32",
                                  promoted=True)
    await store.save(changed)
    assert [e.name for e in await store.load_all()] == ["early", "late"]
    assert await store.get("late") == changed


async def test_experiments_share_the_rollouts_sqlite_file_without_touching_its_tables(tmp_path):
    path = tmp_path / "rollouts.sqlite3"
    rollouts = SqliteRolloutStore(path)
    assert await rollouts.load_all() == []  # the rollouts' schema is made first
    experiments = SqliteExperimentStore(path)
    await experiments.save(experiment())
    assert await rollouts.load_all() == []
    assert (await experiments.load_all())[0].name == "e1"
    await experiments.close()
    await rollouts.close()
    reopened = SqliteRolloutStore(path)
    assert await reopened.load_all() == []  # the schema version check still passes
    await reopened.close()


async def test_redis_saves_are_compare_and_set_on_the_version_a_replica_knows(tmp_path):
    """Two replicas' stores on one redis-server: a save made without having read the other's newer one is
    refused (FAILED_PRECONDITION EXPERIMENT_CHANGED) and changes nothing; after reading it, it succeeds."""
    from searchgw.gateway.experiments.store import ExperimentChanged

    server = await RedisServer(tmp_path / "redis").start()
    first, second = connect(server.url), connect(server.url)
    try:
        mine, theirs = RedisExperimentStore(first), RedisExperimentStore(second)
        await mine.save(experiment())
        assert await theirs.versions() == {"e1": 1}
        assert (await theirs.read("e1")) == experiment() and theirs.known_version("e1") == 1
        await theirs.save(experiment(create_time=150.0))
        with pytest.raises(ExperimentChanged) as refused:
            await mine.save(experiment(create_time=999.0))
        assert refused.value.reason == "EXPERIMENT_CHANGED"
        assert (await mine.get("e1")).create_time == 150.0 and await mine.versions() == {"e1": 2}
        await mine.read("e1")
        await mine.save(experiment(create_time=999.0))
        assert (await theirs.get("e1")).create_time == 999.0 and await theirs.versions() == {"e1": 3}
    finally:
        await first.aclose()
        await second.aclose()
        await server.stop()
