"""Where rollouts and their decisions persist.

`RolloutStore` is deliberately small — save one rollout, load them all, get one — so a store shared
by several gateway replicas can replace the SQLite one later.

`SqliteRolloutStore` keeps one row per rollout (its fields as JSON) and one row per kept decision.
`save(rollout)` makes the stored rollout equal to the given one in one transaction: the row is
upserted, decisions not yet stored are inserted, the newest decision is rewritten (routine
decisions are folded into it), and decisions no longer kept (pruned routine checks) are deleted. The database runs in WAL mode with synchronous=FULL: every transaction is on
disk when `save` returns, so a transition survives a killed process and a power cut alike. Writes
are a few per analysis interval, so the fsync costs nothing that matters. All SQLite work runs in a
worker thread (`asyncio.to_thread`), never on the event loop; failures become `Unavailable`.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from searchgw.gateway.rollout.model import (
    AnalysisPolicy,
    ArmStats,
    LEGACY_PROMOTION_POLICY,
    Decision,
    DecisionKind,
    OldCollectionAction,
    PromotionPolicy,
    Rollout,
    RolloutState,
    Stage,
    TestKind,
    TestOutcome,
    TestReport,
)
from searchgw.gateway.rollout.preparation import BackfillProgress, PreflightPolicy, PreflightResult
from searchgw.gateway.rollout.quality import QualityPolicy
from searchgw.errors import Unavailable

ResultT = TypeVar("ResultT")

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS rollouts (
    name        TEXT PRIMARY KEY,
    collection  TEXT NOT NULL,
    state       TEXT NOT NULL,
    create_time REAL NOT NULL,
    body        TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS decisions (
    rollout TEXT NOT NULL REFERENCES rollouts (name) ON DELETE CASCADE,
    seq     INTEGER NOT NULL,
    body    TEXT NOT NULL,
    PRIMARY KEY (rollout, seq)
) WITHOUT ROWID;
"""


class RolloutStore(Protocol):
    """Persistence of rollouts with their kept decisions."""

    async def save(self, rollout: Rollout) -> None:
        """Store `rollout` and exactly its `decisions`, atomically."""
        ...

    async def load_all(self) -> list[Rollout]:
        """Every stored rollout with its decisions (oldest first)."""
        ...

    async def get(self, name: str) -> Rollout | None:
        """One rollout with its decisions, or None."""
        ...


class MemoryRolloutStore:
    """A RolloutStore in a dict (rollouts are immutable, so it keeps them as they are)."""

    def __init__(self) -> None:
        self._rollouts: dict[str, Rollout] = {}

    async def save(self, rollout: Rollout) -> None:
        self._rollouts[rollout.name] = rollout

    async def load_all(self) -> list[Rollout]:
        return list(self._rollouts.values())

    async def get(self, name: str) -> Rollout | None:
        return self._rollouts.get(name)


class SqliteFile:
    """One SQLite file, used one call at a time from worker threads (never on the event loop).

    Opened on first use (WAL journal, `synchronous=FULL`, then `prepare(db)` makes or checks the schema);
    a failing SQLite or file system is Unavailable naming `what` (e.g. "the rollout store") and the path.
    The rollout store and the experiment store each hold one, on the same file by default."""

    def __init__(self, path: str | pathlib.Path, what: str, prepare: Callable[[sqlite3.Connection], None], *,
                 busy_timeout_s: float = 5.0) -> None:
        self.path = pathlib.Path(path)
        self._what = what
        self._prepare = prepare
        self._busy_timeout_s = busy_timeout_s
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None  # opened in the worker thread on first use

    async def run(self, work: Callable[[sqlite3.Connection, Any], ResultT], argument: Any) -> ResultT:
        """`work(db, argument)` in a worker thread, alone on the connection."""
        def locked() -> ResultT:
            with self._lock:
                if self._db is None:
                    self._db = self._open()
                return work(self._db, argument)

        try:
            return await asyncio.to_thread(locked)
        except (sqlite3.Error, OSError) as exc:
            raise Unavailable(f"{self._what} {self.path} failed: {exc}") from exc

    async def close(self) -> None:
        await asyncio.to_thread(self._close)

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=self._busy_timeout_s)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            self._prepare(db)
        except BaseException:
            db.close()
            raise
        return db

    def _close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


class SqliteRolloutStore:
    """A RolloutStore in one SQLite file (see the module docstring for the durability rules)."""

    def __init__(self, path: str | pathlib.Path) -> None:
        self._file = SqliteFile(path, "the rollout store", self._prepare)
        self.path = self._file.path

    async def save(self, rollout: Rollout) -> None:
        await self._file.run(self._save, rollout)

    async def load_all(self) -> list[Rollout]:
        return await self._file.run(self._load, None)

    async def get(self, name: str) -> Rollout | None:
        found = await self._file.run(self._load, name)
        return found[0] if found else None

    async def close(self) -> None:
        await self._file.close()

    def _prepare(self, db: sqlite3.Connection) -> None:
        db.execute("PRAGMA foreign_keys=ON")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise Unavailable(f"the rollout store {self.path} has schema version {version}; this gateway "
                              f"knows up to {SCHEMA_VERSION} (a newer gateway wrote it)")
        db.executescript(_SCHEMA)
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    @staticmethod
    def _save(db: sqlite3.Connection, rollout: Rollout) -> None:
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                "INSERT INTO rollouts (name, collection, state, create_time, body) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET collection = excluded.collection, state = excluded.state, "
                "create_time = excluded.create_time, body = excluded.body",
                (rollout.name, rollout.collection, rollout.state.name, rollout.create_time,
                 json.dumps(_rollout_to_json(rollout))),
            )
            stored = {seq for (seq,) in db.execute("SELECT seq FROM decisions WHERE rollout = ?", (rollout.name,))}
            kept = {decision.seq: decision for decision in rollout.decisions}
            db.executemany("DELETE FROM decisions WHERE rollout = ? AND seq = ?",
                           [(rollout.name, seq) for seq in stored - kept.keys()])
            # New decisions, and the newest stored one: a routine decision folded into it keeps its seq.
            newest_stored = max(stored, default=0)
            written = {seq for seq in kept if seq >= newest_stored}
            db.executemany("INSERT OR REPLACE INTO decisions (rollout, seq, body) VALUES (?, ?, ?)",
                           [(rollout.name, seq, json.dumps(_decision_to_json(kept[seq]))) for seq in sorted(written)])
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    @staticmethod
    def _load(db: sqlite3.Connection, name: str | None) -> list[Rollout]:
        where, arguments = ("WHERE name = ?", (name,)) if name is not None else ("", ())
        rows = db.execute(f"SELECT name, body FROM rollouts {where} ORDER BY create_time, name",
                                arguments).fetchall()
        decisions: dict[str, list[Decision]] = {row_name: [] for row_name, _ in rows}
        where = "WHERE rollout = ?" if name is not None else ""
        for rollout_name, body in db.execute(
            f"SELECT rollout, body FROM decisions {where} ORDER BY rollout, seq", arguments
        ):
            decisions[rollout_name].append(_decision_from_json(json.loads(body)))
        return [_rollout_from_json(json.loads(body), tuple(decisions[row_name])) for row_name, body in rows]


# -- JSON forms: explicit, so stored rows stay readable when the dataclasses grow ---------------


def _stats_to_json(stats: ArmStats | None) -> dict[str, Any] | None:
    if stats is None:
        return None
    return {"requests": stats.requests, "errors": stats.errors, "error_rate": stats.error_rate,
            "latency_s": stats.latency_s}


def _stats_from_json(data: dict[str, Any] | None) -> ArmStats | None:
    if data is None:
        return None
    return ArmStats(requests=data["requests"], errors=data["errors"], error_rate=data["error_rate"],
                    latency_s=data["latency_s"])


def _test_to_json(test: TestReport) -> dict[str, Any]:
    # NaN and ∞ are valid effect bounds; json writes them as NaN/Infinity and reads them back.
    return {**{name: getattr(test, name) for name in TestReport.__slots__}, "kind": test.kind.name,
            "outcome": test.outcome.name}


def _test_from_json(data: dict[str, Any]) -> TestReport:
    return TestReport(**{**data, "kind": TestKind[data["kind"]], "outcome": TestOutcome[data["outcome"]]})


def _decision_to_json(decision: Decision) -> dict[str, Any]:
    return {
        "time": decision.time, "kind": decision.kind.name, "reason": decision.reason, "stage": decision.stage,
        "weight_percent": decision.weight_percent, "primary": _stats_to_json(decision.primary),
        "canary": _stats_to_json(decision.canary), "actor": decision.actor, "seq": decision.seq,
        "tests": [_test_to_json(test) for test in decision.tests], "repeats": decision.repeats,
        "first_time": decision.first_time,
    }


def _decision_from_json(data: dict[str, Any]) -> Decision:
    return Decision(
        time=data["time"], kind=DecisionKind[data["kind"]], reason=data["reason"], stage=data["stage"],
        weight_percent=data["weight_percent"], primary=_stats_from_json(data["primary"]),
        canary=_stats_from_json(data["canary"]), actor=data["actor"], seq=data["seq"],
        tests=tuple(_test_from_json(test) for test in data.get("tests", ())), repeats=data.get("repeats", 1),
        first_time=data.get("first_time", data["time"]),
    )


def _policy_to_json(policy: AnalysisPolicy) -> dict[str, Any]:
    return {
        "interval_s": policy.interval_s, "window_s": policy.window_s, "error_codes": list(policy.error_codes),
        "max_error_rate": policy.max_error_rate, "max_error_rate_delta": policy.max_error_rate_delta,
        "max_latency_ratio": policy.max_latency_ratio, "latency_slack_s": policy.latency_slack_s,
        "min_requests_per_arm": policy.min_requests_per_arm,
        "max_consecutive_failures": policy.max_consecutive_failures,
        "max_total_failures": policy.max_total_failures, "latency_quantile": policy.latency_quantile,
        "error_alpha": policy.error_alpha, "latency_alpha": policy.latency_alpha, "guard_alpha": policy.guard_alpha,
        "sample_ratio_alpha": policy.sample_ratio_alpha, "latency_threshold_s": policy.latency_threshold_s,
        "quality": policy.quality.to_json(),
    }


def _policy_from_json(data: dict[str, Any]) -> AnalysisPolicy:
    return AnalysisPolicy(**{**data, "error_codes": tuple(data["error_codes"]),
                             "quality": QualityPolicy.from_json(data.get("quality"))})


def _promotion_to_json(policy: PromotionPolicy) -> dict[str, Any]:
    return {"bake_duration_s": policy.bake_duration_s, "grace_period_s": policy.grace_period_s,
            "old_collection_action": policy.old_collection_action.name}


def _promotion_from_json(data: dict[str, Any] | None) -> PromotionPolicy:
    """A row written before promotion policies existed gets the behaviour it was created with:
    promoted at once, old collection kept."""
    if data is None:
        return LEGACY_PROMOTION_POLICY
    return PromotionPolicy(bake_duration_s=data["bake_duration_s"], grace_period_s=data["grace_period_s"],
                           old_collection_action=OldCollectionAction[data["old_collection_action"]])


def _rollout_to_json(rollout: Rollout) -> dict[str, Any]:
    return {
        "name": rollout.name, "collection": rollout.collection,
        "primary_collection": rollout.primary_collection, "canary_collection": rollout.canary_collection,
        "stages": [{"weight_percent": s.weight_percent, "min_duration_s": s.min_duration_s,
                    "min_requests": s.min_requests, "max_error_rate": s.max_error_rate} for s in rollout.stages],
        "analysis": _policy_to_json(rollout.analysis), "auto_promote": rollout.auto_promote,
        "state": rollout.state.name, "current_stage": rollout.current_stage,
        "weight_percent": rollout.weight_percent, "create_time": rollout.create_time,
        "update_time": rollout.update_time, "stage_elapsed_s": rollout.stage_elapsed_s,
        "consecutive_failures": rollout.consecutive_failures, "total_failures": rollout.total_failures,
        "salt": rollout.salt, "stage_clean_since_s": rollout.stage_clean_since_s,
        "stage_canary_requests": rollout.stage_canary_requests, "evidence": rollout.evidence,
        "baseline": rollout.baseline,
        "backfill": None if rollout.backfill is None else rollout.backfill.to_json(),
        "preflight_policy": None if rollout.preflight_policy is None else rollout.preflight_policy.to_json(),
        "preflight": None if rollout.preflight is None else rollout.preflight.to_json(),
        "promotion": _promotion_to_json(rollout.promotion), "bake_start_time": rollout.bake_start_time,
        "bake_end_time": rollout.bake_end_time, "old_collection_time": rollout.old_collection_time,
    }


def _rollout_from_json(data: dict[str, Any], decisions: tuple[Decision, ...]) -> Rollout:
    return Rollout(
        **{**data, "stages": tuple(Stage(**stage) for stage in data["stages"]),
           "analysis": _policy_from_json(data["analysis"]), "state": RolloutState[data["state"]],
           "promotion": _promotion_from_json(data.get("promotion")),
           "decisions": decisions, **_preparation_from_json(data)},
    )


def _preparation_from_json(data: dict[str, Any]) -> dict[str, Any]:
    """The preparation fields; rows written before they existed have none (None each)."""
    backfill, policy, preflight = data.get("backfill"), data.get("preflight_policy"), data.get("preflight")
    return {"backfill": None if backfill is None else BackfillProgress.from_json(backfill),
            "preflight_policy": None if policy is None else PreflightPolicy.from_json(policy),
            "preflight": None if preflight is None else PreflightResult.from_json(preflight)}
