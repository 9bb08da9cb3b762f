"""SqliteRolloutStore: exact round trips, kept decisions only, durable across reopening."""

from __future__ import annotations

import sqlite3
from dataclasses import replace

import pytest

from searchgw.gateway.rollout import (
    AnalysisPolicy,
    ArmStats,
    Decision,
    DecisionKind,
    Rollout,
    RolloutState,
    SqliteRolloutStore,
    Stage,
)
from searchgw.errors import Unavailable


def decision(seq: int, kind: DecisionKind = DecisionKind.CHECK_PASSED) -> Decision:
    return Decision(time=1_700_000_000.25 + seq, kind=kind, reason=f"reason {seq} — with “unicode”", stage=1,
                    weight_percent=12.34, primary=ArmStats(412, 0, 0.0, 0.0123456789),
                    canary=ArmStats(50, 6, 0.12, None) if seq % 2 else None, actor="controller", seq=seq)


ROLLOUT = Rollout(
    name="r1", collection="docs", primary_collection="docs-v1", canary_collection="docs-v2",
    stages=(Stage(12.34, 30.0, 50), Stage(100.0, 60.5, 0)),
    analysis=AnalysisPolicy(interval_s=5.0, error_codes=("UNAVAILABLE", "NOT_FOUND"), latency_quantile=0.99),
    auto_promote=True, state=RolloutState.PAUSED, current_stage=1, weight_percent=12.34,
    decisions=(decision(1, DecisionKind.STARTED), decision(2), decision(3)), create_time=1_700_000_000.5,
    update_time=1_700_000_100.75, stage_elapsed_s=17.125, consecutive_failures=1, total_failures=2,
    salt="0123456789abcdef", stage_clean_since_s=3.5, stage_canary_requests=321,
)


@pytest.fixture
async def store(tmp_path):
    opened = SqliteRolloutStore(tmp_path / "state" / "rollouts.sqlite3")
    yield opened
    await opened.close()


async def test_a_rollout_round_trips_exactly(store):
    await store.save(ROLLOUT)
    assert await store.get("r1") == ROLLOUT
    assert await store.load_all() == [ROLLOUT]
    assert await store.get("other") is None


async def test_save_keeps_exactly_the_rollouts_decisions(store):
    await store.save(ROLLOUT)
    pruned = replace(ROLLOUT, decisions=(ROLLOUT.decisions[0], ROLLOUT.decisions[2], decision(4)))
    await store.save(pruned)
    assert (await store.get("r1")).decisions == pruned.decisions


async def test_saved_state_survives_reopening(store, tmp_path):
    await store.save(ROLLOUT)
    second = replace(ROLLOUT, name="r2", collection="news", create_time=ROLLOUT.create_time + 1)
    await store.save(second)
    await store.close()
    reopened = SqliteRolloutStore(store.path)
    try:
        assert await reopened.load_all() == [ROLLOUT, second]
    finally:
        await reopened.close()


async def test_the_database_is_in_wal_mode(store):
    await store.save(ROLLOUT)
    with sqlite3.connect(store.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_a_store_written_by_a_newer_gateway_is_refused(tmp_path):
    path = tmp_path / "rollouts.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version=99")
    store = SqliteRolloutStore(path)
    with pytest.raises(Unavailable, match="schema version 99"):
        await store.load_all()
    await store.close()


async def test_preparation_fields_round_trip_and_rows_written_before_them_load_without(store, tmp_path):
    import json

    from searchgw.gateway.rollout.preparation import BackfillProgress, PreflightPolicy, PreflightResult

    policy = PreflightPolicy(k=5, sample_size=7, min_overlap_at_k=0.5, min_rbo=0.4, rbo_p=0.8, count_tolerance=2)
    preparing = replace(
        ROLLOUT, state=RolloutState.PREPARED, weight_percent=0.0, preflight_policy=policy,
        backfill=BackfillProgress(total=20_000, copied=19_990, reembedded=19_990, failed=2, superseded=8,
                                  cursor="6a2f41a3-c54c-fce8-32d2-0324e1c32e22", done=True, batch_size=128,
                                  start_time=1_700_000_000.5, update_time=1_700_000_300.25, failed_ids=(7, 9)),
        preflight=PreflightResult(passed=False, time=1_700_000_400.0, policy=policy, primary_count=20_000,
                                  canary_count=19_998, queries=7, errors=0, mean_overlap_at_k=0.9,
                                  min_overlap_at_k=0.6, mean_rbo=0.85, summary="pre-flight failed: counts"))
    await store.save(preparing)
    assert await store.get("r1") == preparing
    # A row as a gateway before PrepareRollout wrote it: no preparation keys at all.
    await store.save(ROLLOUT)
    await store.close()
    path = tmp_path / "state" / "rollouts.sqlite3"
    with sqlite3.connect(path) as db:
        body = json.loads(db.execute("SELECT body FROM rollouts").fetchone()[0])
        for key in ("backfill", "preflight_policy", "preflight"):
            del body[key]
        db.execute("UPDATE rollouts SET body = ?", (json.dumps(body),))
    reopened = SqliteRolloutStore(path)
    try:
        assert await reopened.get("r1") == ROLLOUT
    finally:
        await reopened.close()
