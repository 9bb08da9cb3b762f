"""What a rollout carries before it takes traffic: the backfill's progress and the pre-flight.

`PrepareRollout` creates the canary collection from primary's spec and backfills it
(`gateway.rollout.backfill`); its progress is a `BackfillProgress`, saved with the rollout after
every page so a restarted gateway continues at `cursor`. `ValidateRollout` runs a pre-flight
(`gateway.rollout.preflight`) under a `PreflightPolicy` and records a `PreflightResult`;
`StartRollout` needs a passed one. Plain immutable values; no I/O.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from searchgw.gateway.backends import Bm25Config, Distance, PointId, ScalarQuantization
from searchgw.errors import InvalidArgument

#: Points per backfill page (one scroll of primary, one embedding call, one canary upsert, one save).
DEFAULT_BACKFILL_BATCH = 256
MAX_BACKFILL_BATCH = 2048
MAX_PREFLIGHT_K = 100
MAX_PREFLIGHT_SAMPLE = 1000


@dataclass(frozen=True, slots=True)
class CanaryOverrides:
    """What the canary changes from primary's spec; zero (None, "") fields keep primary's."""

    dimension: int = 0
    distance: Distance | None = None
    hnsw_m: int = 0
    hnsw_ef_construct: int = 0
    full_scan_threshold: int = 0
    scalar_quantization: ScalarQuantization | None = None
    embedding_model: str = ""
    #: Another BM25 config for the canary (None keeps primary's; a canary cannot drop primary's BM25).
    bm25: Bm25Config | None = None


@dataclass(frozen=True, slots=True)
class BackfillProgress:
    """How far the copy of primary into the canary has come. Counts are points."""

    #: Points in primary when the backfill began (writes during it change the real number).
    total: int = 0
    #: Points written to the canary by the backfill (re-embedded ones included).
    copied: int = 0
    #: Of `copied`, those whose stored text was embedded again with the canary's model.
    reembedded: int = 0
    #: Points that could not be copied: another model and no stored text (never a silent copy).
    failed: int = 0
    #: Points a write of the same id changed (or deleted) after the page was read: that write already
    #: reached both arms, so the backfill leaves it (see docs/durability.md).
    superseded: int = 0
    #: The id the next page starts at (None: from the first; with `done`, nothing left).
    cursor: PointId | None = None
    done: bool = False
    #: Points per page.
    batch_size: int = DEFAULT_BACKFILL_BATCH
    #: Wall-clock epoch seconds: when it began, and when the last page was written (its last write batch).
    start_time: float = 0.0
    update_time: float = 0.0
    #: Some ids that failed (at most 10), and the last error that made the backfill retry ("" if none).
    failed_ids: tuple[PointId, ...] = ()
    last_error: str = ""

    @property
    def ratio(self) -> float:
        """Progress in 0..1 (1 once done)."""
        if self.done:
            return 1.0
        handled = self.copied + self.failed + self.superseded
        return min(1.0, handled / self.total) if self.total else 0.0

    def to_json(self) -> dict[str, Any]:
        return {**{f.name: getattr(self, f.name) for f in dataclasses.fields(self)},
                "failed_ids": list(self.failed_ids)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BackfillProgress:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        values["failed_ids"] = tuple(values.get("failed_ids", ()))
        return cls(**values)


@dataclass(frozen=True, slots=True)
class PreflightPolicy:
    """What a pre-flight requires before traffic. Zero fields take the defaults (proto3 semantics),
    except `count_tolerance`, whose default is 0."""

    #: Results compared per query.
    k: int = 10
    #: Queries sampled from primary's stored texts when the request names none.
    sample_size: int = 20
    #: The mean overlap@k (shared ids / k) over the queries must reach this.
    min_overlap_at_k: float = 0.6
    #: The mean rank-biased overlap (extrapolated, with persistence `rbo_p`) must reach this.
    min_rbo: float = 0.6
    #: RBO's persistence: the weight of rank d is proportional to p^(d-1); 0.9 puts ~86 % on the top 10.
    rbo_p: float = 0.9
    #: Point counts may differ by this much (writes in flight while counting).
    count_tolerance: int = 0

    def with_defaults(self) -> PreflightPolicy:
        changes: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(self)
                   if f.name != "count_tolerance" and not getattr(self, f.name)}
        return dataclasses.replace(self, **changes) if changes else self

    def validate(self, path: str) -> None:
        """InvalidArgument naming `path.<field>` for the first unusable value."""
        if not _whole(self.k) or not 1 <= self.k <= MAX_PREFLIGHT_K:
            raise InvalidArgument(f"{path}.k", f"{self.k}; must lie in [1, {MAX_PREFLIGHT_K}]")
        if not _whole(self.sample_size) or not 1 <= self.sample_size <= MAX_PREFLIGHT_SAMPLE:
            raise InvalidArgument(f"{path}.sample_size", f"{self.sample_size}; must lie in [1, {MAX_PREFLIGHT_SAMPLE}]")
        for name in ("min_overlap_at_k", "min_rbo"):
            value = getattr(self, name)
            if not _finite(value) or not 0 <= value <= 1:
                raise InvalidArgument(f"{path}.{name}", f"{value}; must lie in [0, 1]")
        if not _finite(self.rbo_p) or not 0 < self.rbo_p < 1:
            raise InvalidArgument(f"{path}.rbo_p", f"{self.rbo_p}; must lie in (0, 1), e.g. 0.9")
        if not _whole(self.count_tolerance) or self.count_tolerance < 0:
            raise InvalidArgument(f"{path}.count_tolerance", f"{self.count_tolerance}; must be a whole number, "
                                                             "at least 0")

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PreflightPolicy:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


@dataclass(frozen=True, slots=True)
class PreflightResult:
    """One pre-flight with every number behind its verdict."""

    passed: bool
    #: Wall-clock epoch seconds.
    time: float
    policy: PreflightPolicy
    primary_count: int
    canary_count: int
    #: Queries run on each arm, and the calls that failed (either arm).
    queries: int
    errors: int
    mean_overlap_at_k: float
    min_overlap_at_k: float
    mean_rbo: float
    #: The verdict in one sentence with its numbers (also the decision's reason).
    summary: str

    def to_json(self) -> dict[str, Any]:
        return {**{f.name: getattr(self, f.name) for f in dataclasses.fields(self)},
                "policy": self.policy.to_json()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PreflightResult:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        values["policy"] = PreflightPolicy.from_json(values["policy"])
        return cls(**values)


def _finite(value: float) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _whole(value: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
