"""Experiments across gateway replicas: one leader judges, every replica counts. The interfaces are pure;
`RedisExperimentCounts` is the Redis side (the rollouts' `--state redis://…` control plane).

Every replica counts the searches it routes, the outcomes reported to it and its shadow comparisons.
The replica that holds the rollouts' leadership lease (`rollout.cluster.Leadership`, the same
`RedisLeadership`) is the only one that folds counts into the tests and saves verdicts; the others
*share* what they counted since they last shared (`ExperimentCounts.share`: HINCRBY / HINCRBYFLOAT into
one hash per experiment), and the leader *gathers* them before each fold (HGETALL and DEL in one
MULTI, so every shared count is taken exactly once) and adds them to its own. Counts are sums, and the
tests fold per-interval differences of cumulative counts, so the sum over replicas is exact.

State changes travel through the versioned store (`store.RedisExperimentStore`: compare-and-set saves,
a version per experiment): every replica polls the versions at each tick and adopts a newer save — a
creation, a transition made at another replica, or the leader's latest analysis (counts and verdict).
Adopting keeps what this replica counted and has not yet handed over (neither in the store nor in the
shared hash), so nothing is counted twice or lost when the leader changes: see `ExperimentManager`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from searchgw.errors import Unavailable
from searchgw.gateway.experiments.model import ArmCounts, Experiment, OutcomeTotals

#: One arm's shadow comparisons since they were last handed over: (overlap bins, RBO bins).
QualityBins = tuple[dict[int, int], dict[int, int]]


@dataclass(slots=True)
class CountsDelta:
    """What one replica counted for one experiment since it last handed it over."""

    arms: dict[str, ArmCounts] = field(default_factory=dict)
    quality: dict[str, QualityBins] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not any(_nonzero(c) for c in self.arms.values()) and not any(o for o, _ in self.quality.values())


class ExperimentCounts(Protocol):
    async def share(self, experiment: str, delta: CountsDelta) -> None:
        """A follower: add `delta` to the experiment's shared counts."""
        ...

    async def gather(self, experiment: str) -> CountsDelta:
        """The leader: take (and remove) everything the followers shared for the experiment."""
        ...


class VersionedExperimentStore(Protocol):
    """The store side of sharing (`RedisExperimentStore`)."""

    async def versions(self) -> dict[str, int]: ...

    def known_version(self, name: str) -> int: ...

    async def read(self, name: str) -> Experiment | None: ...


def add_counts(first: ArmCounts, second: ArmCounts, sign: int = 1) -> ArmCounts:
    """first + second (sign 1) or first − second (sign −1), outcome kind by kind."""
    kinds = set(first.outcomes) | set(second.outcomes)
    outcomes = {}
    for kind in sorted(kinds):
        a, b = first.outcomes.get(kind, OutcomeTotals()), second.outcomes.get(kind, OutcomeTotals())
        outcomes[kind] = OutcomeTotals(a.count + sign * b.count, a.value_sum + sign * b.value_sum)
    return ArmCounts(first.searches + sign * second.searches, first.errors + sign * second.errors,
                     first.slow + sign * second.slow, first.latency_sum_s + sign * second.latency_sum_s, outcomes)


def _nonzero(counts: ArmCounts) -> bool:
    return bool(counts.searches or counts.errors or counts.slow or counts.latency_sum_s
                or any(t.count or t.value_sum for t in counts.outcomes.values()))


class RedisExperimentCounts:
    """Shared counts in Redis: hash `{prefix}experiment-counts:{name}`, fields `{arm}|s` (searches), `|e`
    (errors), `|w` (slow), `|l` (latency sum, float), `|o|{kind}` (outcomes), `|v|{kind}` (their value sum,
    float), `|qo|{bin}` and `|qr|{bin}` (shadow comparisons' overlap and RBO bins)."""

    def __init__(self, client: Any, prefix: str = "searchgw:") -> None:
        self.client = client
        self._prefix = prefix

    def _key(self, experiment: str) -> str:
        return f"{self._prefix}experiment-counts:{experiment}"

    async def share(self, experiment: str, delta: CountsDelta) -> None:
        key = self._key(experiment)
        try:
            async with self.client.pipeline(transaction=True) as pipe:
                for arm, counts in delta.arms.items():
                    for name, value in (("s", counts.searches), ("e", counts.errors), ("w", counts.slow)):
                        if value:
                            pipe.hincrby(key, f"{arm}|{name}", value)
                    if counts.latency_sum_s:
                        pipe.hincrbyfloat(key, f"{arm}|l", counts.latency_sum_s)
                    for kind, totals in counts.outcomes.items():
                        if totals.count:
                            pipe.hincrby(key, f"{arm}|o|{kind}", totals.count)
                        if totals.value_sum:
                            pipe.hincrbyfloat(key, f"{arm}|v|{kind}", totals.value_sum)
                for arm, (overlaps, rbos) in delta.quality.items():
                    for index, count in overlaps.items():
                        pipe.hincrby(key, f"{arm}|qo|{index}", count)
                    for index, count in rbos.items():
                        pipe.hincrby(key, f"{arm}|qr|{index}", count)
                await pipe.execute()
        except Exception as exc:
            raise Unavailable(f"sharing the counts of experiment {experiment!r} (Redis) failed: {exc}") from exc

    async def gather(self, experiment: str) -> CountsDelta:
        key = self._key(experiment)
        try:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.hgetall(key)
                pipe.delete(key)
                found, _ = await pipe.execute()
        except Exception as exc:
            raise Unavailable(f"gathering the counts of experiment {experiment!r} (Redis) failed: {exc}") from exc
        return parse_counts(found)


def parse_counts(fields: Mapping[Any, Any]) -> CountsDelta:
    arms: dict[str, dict[str, Any]] = {}
    delta = CountsDelta()
    for raw_field, raw_value in fields.items():
        name = raw_field.decode() if isinstance(raw_field, bytes) else str(raw_field)
        value = raw_value.decode() if isinstance(raw_value, bytes) else str(raw_value)
        arm, _, rest = name.partition("|")
        kind, _, label = rest.partition("|")
        values = arms.setdefault(arm, {"s": 0, "e": 0, "w": 0, "l": 0.0, "o": {}, "v": {}})
        if kind in ("s", "e", "w"):
            values[kind] += int(value)
        elif kind == "l":
            values["l"] += float(value)
        elif kind == "o":
            values["o"][label] = int(value)
        elif kind == "v":
            values["v"][label] = float(value)
        elif kind in ("qo", "qr"):
            bins = delta.quality.setdefault(arm, ({}, {}))[0 if kind == "qo" else 1]
            bins[int(label)] = bins.get(int(label), 0) + int(value)
    for arm, values in arms.items():
        kinds = set(values["o"]) | set(values["v"])
        delta.arms[arm] = ArmCounts(values["s"], values["e"], values["w"], values["l"],
                                    {k: OutcomeTotals(values["o"].get(k, 0), values["v"].get(k, 0.0)) for k in kinds})
    return delta
