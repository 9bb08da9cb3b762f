"""The experiment model: arms, policy, state, counts, decisions, and the checks of a new experiment.

An experiment splits the keyed searches to one logical collection (an alias) between its control (the
collection the alias points at) and N ≥ 1 variant collections, each arm `split_bps` of the 10 000
buckets. It holds the alias from creation until it ends: no rollout may start on it meanwhile, and
writes to the alias reach every arm.

States (AIP-216: output only, changed by the transition RPCs):
    CREATED   holds the alias, writes reach every arm, searches go to control (the alias target)
    RUNNING   searches are split by the routing key; outcomes are counted; the tests run
    PAUSED    as CREATED, and outcomes of earlier searches are still accepted; Start continues
    STOPPED   ended without a conclusion (the alias is untouched)
    CONCLUDED ended with a chosen arm; with `promote` the alias now points at it
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from searchgw.errors import InvalidArgument
from searchgw.gateway.rollout.model import DEFAULT_ERROR_CODES
from searchgw.gateway.rollout.quality import QualityPolicy
from searchgw.gateway.routing.buckets import BUCKETS
from searchgw.gateway.rules import MAX_ROLLOUT_NAME_LENGTH, check_name, check_rollout_name

#: The control arm's name (a variant may not take it).
CONTROL = "control"
MAX_VARIANTS = 16
MAX_OUTCOME_KINDS = 16
#: How many transitions an experiment keeps in its history.
MAX_DECISIONS = 100
DEFAULT_OUTCOME_KINDS = ("click", "conversion")
DEFAULT_GOAL = "conversion"
DEFAULT_ALPHA = 0.05
DEFAULT_LATENCY_THRESHOLD_S = 0.1
DEFAULT_INTERVAL_S = 5.0


class ExperimentState(enum.Enum):
    UNSPECIFIED = 0
    CREATED = 1
    RUNNING = 2
    PAUSED = 3
    STOPPED = 4
    CONCLUDED = 5

    @property
    def holds_alias(self) -> bool:
        return self in HOLDING_STATES


#: States in which an experiment holds its alias (writes reach every arm; no rollout may start on it).
HOLDING_STATES = frozenset({ExperimentState.CREATED, ExperimentState.RUNNING, ExperimentState.PAUSED})


@dataclass(frozen=True, slots=True)
class ArmSpec:
    """One arm: its name, the physical collection that serves it, and its share in basis points."""

    name: str
    collection: str
    split_bps: int = 0


@dataclass(frozen=True, slots=True)
class ExperimentPolicy:
    """How the experiment is judged (zero values take defaults in `validate_new_experiment`)."""

    #: The chance, over the whole experiment however often it is read, of naming a winner when no
    #: variant is better than control (split α / N across the N variants).
    alpha: float = DEFAULT_ALPHA
    #: The outcome kind whose rate per search decides the winner.
    goal: str = DEFAULT_GOAL
    #: The outcome kinds clients may report (bounded: they are metric labels).
    outcome_kinds: tuple[str, ...] = DEFAULT_OUTCOME_KINDS
    #: A search slower than this counts as slow in the latency comparison.
    latency_threshold_s: float = DEFAULT_LATENCY_THRESHOLD_S
    #: How often counts are folded into the tests and the experiment saved.
    interval_s: float = DEFAULT_INTERVAL_S
    #: Status codes (by name) that count as a variant's errors.
    error_codes: tuple[str, ...] = DEFAULT_ERROR_CODES
    #: Shadow quality: the share of a variant's searches also run on control (off the request path) and
    #: how the two top k are compared (`experiments.quality`). A zero sample rate (the default): none.
    quality: QualityPolicy = QualityPolicy()
    #: Whether a variant whose results differ from control's (the quality guard rejected) cannot win.
    #: Off by default: a variant is usually meant to rank differently.
    quality_guard: bool = False


@dataclass(frozen=True, slots=True)
class OutcomeTotals:
    count: int = 0
    value_sum: float = 0.0


@dataclass(frozen=True, slots=True)
class ArmCounts:
    """One arm's totals while the experiment ran: searches in the analysis (by routing key), their
    errors and slow ones, the sum of their latencies, and the outcomes reported per kind."""

    searches: int = 0
    errors: int = 0
    slow: int = 0
    latency_sum_s: float = 0.0
    outcomes: Mapping[str, OutcomeTotals] = field(default_factory=dict)

    @property
    def mean_latency_s(self) -> float:
        return self.latency_sum_s / self.searches if self.searches else math.nan

    def outcome_rate(self, kind: str) -> float:
        totals = self.outcomes.get(kind)
        return (totals.count if totals else 0) / self.searches if self.searches else math.nan


@dataclass(frozen=True, slots=True)
class ExperimentDecision:
    """A transition or a verdict change, with who and why."""

    time: float
    kind: str
    reason: str
    actor: str = ""


@dataclass(frozen=True, slots=True)
class Experiment:
    name: str
    collection: str
    control: ArmSpec
    variants: tuple[ArmSpec, ...]
    policy: ExperimentPolicy = ExperimentPolicy()
    state: ExperimentState = ExperimentState.UNSPECIFIED
    #: The hash salt of this experiment's split (its own, so other experiments' users differ).
    salt: str = ""
    create_time: float = 0.0
    update_time: float = 0.0
    start_time: float = 0.0
    end_time: float = 0.0
    #: The arm named by the last verdict ("" for none yet) and the verdict's sentence.
    winner: str = ""
    summary: str = ""
    #: The arm the experiment was concluded with, and whether the alias was switched to it.
    concluded_arm: str = ""
    promoted: bool = False
    counts: Mapping[str, ArmCounts] = field(default_factory=dict)
    #: The tests' state (significance.ExperimentEvidence.to_json), so a restart continues them.
    evidence: Mapping[str, object] = field(default_factory=dict)
    decisions: tuple[ExperimentDecision, ...] = ()

    @property
    def arms(self) -> tuple[ArmSpec, ...]:
        return (self.control, *self.variants)

    def arm(self, name: str) -> ArmSpec | None:
        return next((arm for arm in self.arms if arm.name == name), None)

    def with_decision(self, decision: ExperimentDecision, **changes: object) -> Experiment:
        kept = (*self.decisions, decision)[-MAX_DECISIONS:]
        return dataclasses.replace(self, decisions=kept, update_time=decision.time, **changes)  # type: ignore[arg-type]


def validate_new_experiment(spec: Experiment) -> Experiment:
    """The spec with defaults filled in; InvalidArgument naming the proto field path otherwise."""
    check_rollout_name("experiment.name", spec.name)
    check_name("experiment.collection", spec.collection)
    if spec.control.collection:
        check_name("experiment.control_collection", spec.control.collection)
    if not spec.variants:
        raise InvalidArgument("experiment.variants", "at least one variant is required")
    if len(spec.variants) > MAX_VARIANTS:
        raise InvalidArgument("experiment.variants", f"{len(spec.variants)} variants; at most {MAX_VARIANTS}")
    variants: list[ArmSpec] = []
    names = {CONTROL}
    for index, variant in enumerate(spec.variants):
        name = variant.name or f"v{index + 1}"
        check_rollout_name(f"experiment.variants[{index}].name", name)
        if name in names:
            raise InvalidArgument(f"experiment.variants[{index}].name",
                                  f"{name!r} is taken (arm names are unique; {CONTROL!r} is control's)")
        names.add(name)
        check_name(f"experiment.variants[{index}].collection", variant.collection)
        if variant.collection in (spec.collection, spec.control.collection):
            raise InvalidArgument(f"experiment.variants[{index}].collection",
                                  f"{variant.collection!r} is the experiment's alias or control")
        if variant.collection in {v.collection for v in variants}:
            raise InvalidArgument(f"experiment.variants[{index}].collection",
                                  f"{variant.collection!r} serves another variant already")
        if not 0 <= variant.split_bps <= BUCKETS:
            raise InvalidArgument(f"experiment.variants[{index}].split_bps", f"{variant.split_bps}; must lie in "
                                                                             f"0..{BUCKETS}")
        variants.append(ArmSpec(name, variant.collection, variant.split_bps))
    control_bps = spec.control.split_bps
    if not 0 <= control_bps <= BUCKETS:
        raise InvalidArgument("experiment.control_split_bps", f"{control_bps}; must lie in 0..{BUCKETS}")
    if control_bps == 0 and all(v.split_bps == 0 for v in variants):
        # an even split; the remainder goes to control
        share = BUCKETS // (len(variants) + 1)
        variants = [dataclasses.replace(v, split_bps=share) for v in variants]
        control_bps = BUCKETS - share * len(variants)
    total = control_bps + sum(v.split_bps for v in variants)
    if total != BUCKETS:
        raise InvalidArgument("experiment.control_split_bps",
                              f"control {control_bps} + variants {sum(v.split_bps for v in variants)} = {total} "
                              f"basis points; the arms must add up to {BUCKETS} (or leave every split 0 for an "
                              f"even split)")
    if control_bps == 0 or any(v.split_bps == 0 for v in variants):
        raise InvalidArgument("experiment.control_split_bps" if control_bps == 0 else
                              f"experiment.variants[{next(i for i, v in enumerate(variants) if not v.split_bps)}]"
                              ".split_bps", "every arm needs a share of the traffic (at least 1 basis point)")
    policy = _validated_policy(spec.policy)
    return dataclasses.replace(spec, control=ArmSpec(CONTROL, spec.control.collection, control_bps),
                               variants=tuple(variants), policy=policy)


def _validated_policy(policy: ExperimentPolicy) -> ExperimentPolicy:
    alpha = policy.alpha or DEFAULT_ALPHA
    if not 0.0 < alpha < 0.5:
        raise InvalidArgument("experiment.policy.alpha", f"{alpha}; must lie in (0, 0.5)")
    kinds = tuple(policy.outcome_kinds) or DEFAULT_OUTCOME_KINDS
    if len(kinds) > MAX_OUTCOME_KINDS:
        raise InvalidArgument("experiment.policy.outcome_kinds", f"{len(kinds)} kinds; at most {MAX_OUTCOME_KINDS}")
    for index, kind in enumerate(kinds):
        check_rollout_name(f"experiment.policy.outcome_kinds[{index}]", kind)
    if len(set(kinds)) != len(kinds):
        raise InvalidArgument("experiment.policy.outcome_kinds", "kinds must be unique")
    goal = policy.goal or (DEFAULT_GOAL if DEFAULT_GOAL in kinds else kinds[0])
    if goal not in kinds:
        raise InvalidArgument("experiment.policy.goal", f"{goal!r} is not among the outcome kinds {list(kinds)}")
    threshold = policy.latency_threshold_s or DEFAULT_LATENCY_THRESHOLD_S
    if not (math.isfinite(threshold) and 0 < threshold <= 60):
        raise InvalidArgument("experiment.policy.latency_threshold", f"{threshold} s; must lie in (0, 60]")
    interval = policy.interval_s or DEFAULT_INTERVAL_S
    if not (math.isfinite(interval) and 0.1 <= interval <= 3600):
        raise InvalidArgument("experiment.policy.interval", f"{interval} s; must lie in [0.1, 3600]")
    quality = policy.quality.with_defaults()
    quality.validate("experiment.policy.quality")
    if policy.quality_guard and not quality.enabled:
        raise InvalidArgument("experiment.policy.quality_guard", "the quality guard judges shadow comparisons: set "
                                                                 "quality.shadow_sample_rate > 0 (e.g. 0.05)")
    return ExperimentPolicy(alpha=alpha, goal=goal, outcome_kinds=kinds, latency_threshold_s=threshold,
                            interval_s=interval, error_codes=tuple(policy.error_codes) or DEFAULT_ERROR_CODES,
                            quality=quality, quality_guard=policy.quality_guard)


__all__ = [
    "ArmCounts", "ArmSpec", "CONTROL", "Experiment", "ExperimentDecision", "ExperimentPolicy", "ExperimentState",
    "HOLDING_STATES", "MAX_ROLLOUT_NAME_LENGTH", "OutcomeTotals", "validate_new_experiment",
]
