"""Where experiments persist: the same store as rollouts.

`ExperimentStore` is the protocol (save one, load all, get one). `SqliteExperimentStore` keeps one row per
experiment (its fields as JSON) in the rollouts' SQLite file (`experiments` table, created if missing;
the rollouts' tables and schema version are untouched), in WAL mode with synchronous=FULL, each save
one transaction, all work in a worker thread. `RedisExperimentStore` keeps the same JSON in
`searchgw:experiment:{name}` with the names in `searchgw:experiments` (one MULTI per save). With
Redis, every replica can read and change experiments, but each replica counts and judges only the
searches it served (see docs/experiments.md, "Several replicas").
"""

from __future__ import annotations

import json
import pathlib
import sqlite3
from typing import Any, Protocol

from searchgw.errors import FailedPrecondition, Unavailable
from searchgw.gateway.experiments.model import (
    ArmCounts,
    ArmSpec,
    Experiment,
    ExperimentDecision,
    ExperimentPolicy,
    ExperimentState,
    OutcomeTotals,
)
from searchgw.gateway.rollout.quality import QualityPolicy
from searchgw.gateway.rollout.store import SqliteFile


_SCHEMA = """
CREATE TABLE IF NOT EXISTS experiments (
    name        TEXT PRIMARY KEY,
    collection  TEXT NOT NULL,
    state       TEXT NOT NULL,
    create_time REAL NOT NULL,
    body        TEXT NOT NULL
);
"""


class ExperimentStore(Protocol):
    async def save(self, experiment: Experiment) -> None:
        """Store `experiment` as it is, atomically."""
        ...

    async def load_all(self) -> list[Experiment]:
        """Every stored experiment, oldest first."""
        ...

    async def get(self, name: str) -> Experiment | None:
        ...

    async def close(self) -> None:
        ...


class MemoryExperimentStore:
    def __init__(self) -> None:
        self._experiments: dict[str, Experiment] = {}

    async def save(self, experiment: Experiment) -> None:
        self._experiments[experiment.name] = experiment

    async def load_all(self) -> list[Experiment]:
        return sorted(self._experiments.values(), key=lambda e: (e.create_time, e.name))

    async def get(self, name: str) -> Experiment | None:
        return self._experiments.get(name)

    async def close(self) -> None:
        return None


def _make_schema(db: sqlite3.Connection) -> None:
    db.executescript(_SCHEMA)


class SqliteExperimentStore:
    """Experiments in a SQLite file (normally the rollouts' file)."""

    def __init__(self, path: str | pathlib.Path) -> None:
        self._file = SqliteFile(path, "the experiment store", _make_schema, busy_timeout_s=10.0)
        self.path = self._file.path

    async def save(self, experiment: Experiment) -> None:
        await self._file.run(self._save, experiment)

    async def load_all(self) -> list[Experiment]:
        return await self._file.run(self._load, None)

    async def get(self, name: str) -> Experiment | None:
        found = await self._file.run(self._load, name)
        return found[0] if found else None

    async def close(self) -> None:
        await self._file.close()

    @staticmethod
    def _save(db: sqlite3.Connection, experiment: Experiment) -> None:
        db.execute(
            "INSERT INTO experiments (name, collection, state, create_time, body) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET collection = excluded.collection, state = excluded.state, "
            "create_time = excluded.create_time, body = excluded.body",
            (experiment.name, experiment.collection, experiment.state.name, experiment.create_time,
             json.dumps(experiment_to_json(experiment))))

    @staticmethod
    def _load(db: sqlite3.Connection, name: str | None) -> list[Experiment]:
        where, arguments = ("WHERE name = ?", (name,)) if name is not None else ("", ())
        rows = db.execute(f"SELECT body FROM experiments {where} ORDER BY create_time, name", arguments).fetchall()
        return [experiment_from_json(json.loads(body)) for (body,) in rows]


class ExperimentChanged(FailedPrecondition):
    """A save lost a race: another replica saved the experiment since this one last read it."""


#: Saves an experiment only if its stored version is the one this replica knows (0: none stored yet):
#: SET body, bump the version in the `experiment-versions` hash, add the name. Returns the new version,
#: or -1 and the stored version when another replica saved first.
_SAVE_SCRIPT = """
local stored = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if stored ~= tonumber(ARGV[3]) then return {-1, stored} end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('SADD', KEYS[3], ARGV[1])
return {redis.call('HINCRBY', KEYS[2], ARGV[1], 1), 0}
"""


class RedisExperimentStore:
    """Experiments in Redis (the `--state redis://…` control plane), beside the rollouts.

    Shared by the replicas: every experiment has a version (hash `experiment-versions`), raised by each
    save; a save is compare-and-set on the version this replica last read or wrote (`ExperimentChanged`
    otherwise), and `versions()` (one HGETALL) is what the replicas poll to adopt each other's saves."""

    def __init__(self, client: Any, prefix: str = "searchgw:") -> None:
        self.client = client
        self._prefix = prefix
        self._versions: dict[str, int] = {}
        self._save_script = client.register_script(_SAVE_SCRIPT)

    def _key(self, name: str) -> str:
        return f"{self._prefix}experiment:{name}"

    async def save(self, experiment: Experiment) -> None:
        name = experiment.name
        expected = self._versions.get(name, 0)
        try:
            version, stored = await self._save_script(
                keys=[self._key(name), f"{self._prefix}experiment-versions", f"{self._prefix}experiments"],
                args=[name, json.dumps(experiment_to_json(experiment)), expected])
        except Exception as exc:  # redis errors and connection failures alike
            raise Unavailable(f"the experiment store (Redis) failed: {exc}") from exc
        if int(version) < 0:
            raise ExperimentChanged(f"experiment {name!r} was changed at another replica (version {stored}, this "
                                    f"replica had {expected}); read it again and retry", reason="EXPERIMENT_CHANGED",
                                    metadata={"experiment": name})
        self._versions[name] = int(version)

    async def versions(self) -> dict[str, int]:
        """Every experiment's stored version."""
        try:
            found = await self.client.hgetall(f"{self._prefix}experiment-versions")
        except Exception as exc:
            raise Unavailable(f"the experiment store (Redis) failed: {exc}") from exc
        return {_text(k): int(v) for k, v in found.items()}

    def known_version(self, name: str) -> int:
        return self._versions.get(name, 0)

    async def read(self, name: str) -> Experiment | None:
        """The stored experiment, its version now known to this replica (the next save is against it)."""
        try:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.get(self._key(name))
                pipe.hget(f"{self._prefix}experiment-versions", name)
                body, version = await pipe.execute()
        except Exception as exc:
            raise Unavailable(f"the experiment store (Redis) failed: {exc}") from exc
        if body is None:
            return None
        self._versions[name] = int(version or 0)
        return experiment_from_json(json.loads(body))

    async def load_all(self) -> list[Experiment]:
        try:
            names = sorted(_text(n) for n in await self.client.smembers(f"{self._prefix}experiments"))
        except Exception as exc:
            raise Unavailable(f"the experiment store (Redis) failed: {exc}") from exc
        found = [e for name in names if (e := await self.read(name)) is not None]
        return sorted(found, key=lambda e: (e.create_time, e.name))

    async def get(self, name: str) -> Experiment | None:
        try:
            body = await self.client.get(self._key(name))
        except Exception as exc:
            raise Unavailable(f"the experiment store (Redis) failed: {exc}") from exc
        return None if body is None else experiment_from_json(json.loads(body))

    async def close(self) -> None:
        return None  # the client belongs to the rollout store


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


# -- JSON forms -------------------------------------------------------------------------------------


def experiment_to_json(experiment: Experiment) -> dict[str, Any]:
    policy = experiment.policy
    return {
        "name": experiment.name, "collection": experiment.collection,
        "arms": [[arm.name, arm.collection, arm.split_bps] for arm in experiment.arms],
        "policy": {"alpha": policy.alpha, "goal": policy.goal, "outcome_kinds": list(policy.outcome_kinds),
                   "latency_threshold_s": policy.latency_threshold_s, "interval_s": policy.interval_s,
                   "error_codes": list(policy.error_codes), "quality": policy.quality.to_json(),
                   "quality_guard": policy.quality_guard},
        "state": experiment.state.name, "salt": experiment.salt, "create_time": experiment.create_time,
        "update_time": experiment.update_time, "start_time": experiment.start_time,
        "end_time": experiment.end_time, "winner": experiment.winner, "summary": experiment.summary,
        "concluded_arm": experiment.concluded_arm, "promoted": experiment.promoted,
        "counts": {name: {"searches": c.searches, "errors": c.errors, "slow": c.slow,
                          "latency_sum_s": c.latency_sum_s,
                          "outcomes": {kind: [t.count, t.value_sum] for kind, t in c.outcomes.items()}}
                   for name, c in experiment.counts.items()},
        "evidence": dict(experiment.evidence),
        "decisions": [[d.time, d.kind, d.reason, d.actor] for d in experiment.decisions],
    }


def experiment_from_json(data: dict[str, Any]) -> Experiment:
    arms = [ArmSpec(name, collection, bps) for name, collection, bps in data["arms"]]
    policy = data["policy"]
    return Experiment(
        name=data["name"], collection=data["collection"], control=arms[0], variants=tuple(arms[1:]),
        policy=ExperimentPolicy(alpha=policy["alpha"], goal=policy["goal"],
                                outcome_kinds=tuple(policy["outcome_kinds"]),
                                latency_threshold_s=policy["latency_threshold_s"], interval_s=policy["interval_s"],
                                error_codes=tuple(policy["error_codes"]),
                                quality=QualityPolicy.from_json(policy.get("quality")),
                                quality_guard=bool(policy.get("quality_guard", False))),
        state=ExperimentState[data["state"]], salt=data["salt"], create_time=data["create_time"],
        update_time=data["update_time"], start_time=data["start_time"], end_time=data["end_time"],
        winner=data["winner"], summary=data["summary"], concluded_arm=data["concluded_arm"],
        promoted=data["promoted"],
        counts={name: ArmCounts(searches=c["searches"], errors=c["errors"], slow=c["slow"],
                                latency_sum_s=c["latency_sum_s"],
                                outcomes={kind: OutcomeTotals(count, value) for kind, (count, value)
                                          in c["outcomes"].items()})
                for name, c in data["counts"].items()},
        evidence=data.get("evidence") or {},
        decisions=tuple(ExperimentDecision(time, kind, reason, actor) for time, kind, reason, actor
                        in data.get("decisions", ())),
    )
