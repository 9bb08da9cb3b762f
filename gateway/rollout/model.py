"""Rollout domain types: stages, the analysis policy, the rollout and its decisions.

They mirror `searchgw.v1.Rollout` and its neighbours field by field so the converters in the
services stay mechanical: durations are float seconds (`*_s`), times are wall-clock epoch seconds,
enum members carry the proto's names without their prefix (`RolloutState.RUNNING` ⇄
`Rollout.STATE_RUNNING`, `DecisionKind.CHECK_FAILED` ⇄ `Decision.KIND_CHECK_FAILED`).

Every type here is immutable. The controller derives a new `Rollout` for every change, so any
snapshot it hands out stays valid.

`validate_new_rollout` checks a rollout a client asked for and fills the defaults; every error is
`InvalidArgument` naming the proto field path, e.g. `rollout.stages[1].weight_percent`. Names follow
`searchgw.gateway.rules`, the rule collections are created under: any collection can be rolled out.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from dataclasses import dataclass
from typing import Any

from searchgw.gateway.rollout.preparation import BackfillProgress, PreflightPolicy, PreflightResult
from searchgw.gateway.rollout.quality import QualityPolicy, QualitySummary
from searchgw.gateway.routing import weight_to_bps
from searchgw.gateway.rules import check_name, check_rollout_name
from searchgw.errors import FailedPrecondition, InvalidArgument

#: Who made a decision that no operator made.
CONTROLLER_ACTOR = "controller"

#: The canonical gRPC status code names (grpc is not imported here).
GRPC_CODE_NAMES = frozenset({
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
    "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
    "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
})

#: The codes that count as errors unless a policy names others: the server's fault, not the client's.
#: CANCELLED (the caller went away before its deadline) is not among them; a policy may add it.
DEFAULT_ERROR_CODES = ("UNAVAILABLE", "INTERNAL", "DEADLINE_EXCEEDED", "UNKNOWN", "RESOURCE_EXHAUSTED")

MAX_STAGES = 20
MAX_REASON_LENGTH = 1000
#: The longest analysis window and stage duration accepted.
MAX_WINDOW_S = 24 * 3600.0
MAX_STAGE_DURATION_S = 30 * 24 * 3600.0


class RolloutState(enum.Enum):
    """Where a rollout is in its life (`Rollout.State`)."""

    UNSPECIFIED = 0
    RUNNING = 1
    PAUSED = 2
    AWAITING_PROMOTION = 3
    PROMOTED = 4
    ROLLED_BACK = 5
    ABORTED = 6
    #: PrepareRollout: the canary is created and being backfilled; writes reach both arms, searches primary.
    PREPARING = 7
    #: The canary is complete (or CreateRollout asked for a pre-flight); StartRollout needs a passed pre-flight.
    PREPARED = 8
    #: Promoted (the alias points at the canary) and watched for the bake period: writes still reach
    #: both collections, so an undo loses nothing.
    BAKING = 9
    #: Undone during the bake: the alias points back at the old collection, which had every write.
    UNDONE = 10

    @property
    def is_active(self) -> bool:
        """True while the rollout routes traffic and holds its collection."""
        return self in ACTIVE_STATES


#: States in which a rollout routes traffic; at most one such rollout per logical collection.
ACTIVE_STATES = frozenset({RolloutState.RUNNING, RolloutState.PAUSED, RolloutState.AWAITING_PROMOTION,
                           RolloutState.PREPARING, RolloutState.PREPARED, RolloutState.BAKING})

#: Active states before traffic: the rollout holds its collections and takes dual writes, but routes
#: no search to the canary (weight 0), runs no checks, and cannot be promoted.
PREPARATION_STATES = frozenset({RolloutState.PREPARING, RolloutState.PREPARED})


class DecisionKind(enum.Enum):
    """What was decided (`Decision.Kind`)."""

    UNSPECIFIED = 0
    STARTED = 1
    CHECK_PASSED = 2
    INCONCLUSIVE = 3
    CHECK_FAILED = 4
    ADVANCED = 5
    AWAITING_PROMOTION = 6
    PROMOTED = 7
    ROLLED_BACK = 8
    PAUSED = 9
    RESUMED = 10
    ABORTED = 11
    BACKFILL_STARTED = 12
    BACKFILL_COMPLETED = 13
    PREFLIGHT_PASSED = 14
    PREFLIGHT_FAILED = 15
    BACKFILL_FAILED = 16
    BAKE_STARTED = 17
    BAKE_COMPLETED = 18
    UNDONE = 19
    OLD_COLLECTION_DELETED = 20
    OLD_COLLECTION_KEPT = 21


#: Decisions that change nothing; a run of the same one is folded into one entry (count and time
#: range, newest numbers), and only the newest `max_routine_decisions` entries are kept.
ROUTINE_DECISIONS = frozenset({DecisionKind.CHECK_PASSED, DecisionKind.INCONCLUSIVE})


class TestKind(enum.Enum):
    """Which sequential test (`StatisticalTest.Kind`); see `gateway.rollout.analysis`."""

    __test__ = False  # not a pytest test class, whatever its name

    UNSPECIFIED = 0
    #: Canary errors vs primary errors, second by second (rate ratio; canary no worse is the null).
    ERROR_RATIO = 1
    #: Canary calls slower than the stage's threshold (or failed) vs primary's, the same way.
    LATENCY_RATIO = 2
    #: The canary's error rate against the stage's absolute limit (the guard that acts at once).
    ERROR_LIMIT = 3
    #: New routing keys per arm against the configured weight (sample-ratio mismatch).
    SAMPLE_RATIO = 4
    #: At 100 % weight: the canary's error rate against primary's captured before its share reached 0.
    ERROR_BASELINE = 5
    #: At 100 % weight: the canary's slow share against primary's captured before its share reached 0.
    LATENCY_BASELINE = 6
    #: Shadow comparisons: the share of searches whose overlap@k with primary is below the policy's
    #: minimum, against its limit (the quality guard; see `quality`).
    QUALITY_OVERLAP = 7


class TestOutcome(enum.Enum):
    """What a test says now (`StatisticalTest.Outcome`)."""

    __test__ = False  # not a pytest test class, whatever its name

    UNSPECIFIED = 0
    #: Its null hypothesis (the canary is no worse; the split is as configured) stands so far.
    NOT_REJECTED = 1
    #: The null hypothesis is rejected at the test's α: the canary is worse (or the split is off).
    REJECTED = 2
    #: It cannot run yet (no latency threshold yet, no traffic on an arm).
    WAITING = 3
    #: It does not apply at this weight (e.g. the comparison with primary at 100 %).
    NOT_APPLICABLE = 4


@dataclass(frozen=True, slots=True)
class TestReport:
    """One sequential test at one check, with every number behind it."""

    __test__ = False  # not a pytest test class, whatever its name

    kind: TestKind
    outcome: TestOutcome
    #: The test's false-alarm bound over the whole stage, however often it is checked.
    alpha: float
    #: The events and calls counted on each arm this stage (events: errors, or slow-or-failed calls;
    #: for SAMPLE_RATIO, new routing keys; the primary side of a baseline test is the baseline).
    canary_events: int
    canary_calls: int
    primary_events: int
    primary_calls: int
    #: The effect: rate ratio canary/primary (ratio tests), the canary's rate (limit and baseline
    #: tests), the canary's share of new keys (SAMPLE_RATIO). None when there is nothing to estimate.
    estimate: float | None
    #: The (1 − α) confidence sequence of the effect, valid at every check (None: no bound yet).
    lower: float | None
    upper: float | None
    #: The value the null hypothesis puts the effect at (1 for ratios, the limit, the baseline's upper
    #: bound, the weight); None when the test does not apply.
    null_value: float | None
    #: The e-value now, and the always-valid p-value (1 / the largest e-value seen this stage).
    e_value: float
    p_value: float
    #: The latency threshold in seconds (latency tests; 0 otherwise).
    threshold_s: float
    #: The result in one sentence with its numbers.
    summary: str


@dataclass(frozen=True, slots=True)
class Stage:
    """One step of a rollout: the canary's share, and what the stage must see before it may pass."""

    weight_percent: float
    min_duration_s: float = 0.0
    min_requests: int = 0
    #: The stage's absolute limit on the canary's error rate (0: the policy's `max_error_rate`).
    #: Seed practice tightens it as the weight grows, e.g. 5 % → 2 % → 1 %.
    max_error_rate: float = 0.0

    @property
    def weight_bps(self) -> int:
        return weight_to_bps(self.weight_percent)


#: Stages of a rollout that names none.
DEFAULT_STAGES = (
    Stage(5.0, min_duration_s=300.0, min_requests=100),
    Stage(25.0, min_duration_s=300.0, min_requests=100),
    Stage(50.0, min_duration_s=300.0, min_requests=100),
    Stage(100.0, min_duration_s=300.0, min_requests=100),
)


@dataclass(frozen=True, slots=True)
class AnalysisPolicy:
    """How the canary is judged. Zero (or empty) fields take the defaults below.

    The α of the tests that can roll back (errors, latency, guard) add up to 0.05: at most a 5 %
    chance per stage that a canary as good as primary is rolled back, however long the stage and
    however often it is checked. The sample-ratio test only pauses, so it gets a small α of its own.
    `max_error_rate_delta`, `max_consecutive_failures` and `max_total_failures` belonged to the
    threshold rule that the sequential tests replaced; they are kept for old clients and ignored.
    """

    #: How often the tests are read and a decision is recorded.
    interval_s: float = 10.0
    #: The latency threshold of a stage comes from primary's last `window_s` seconds of traffic.
    window_s: float = 60.0
    error_codes: tuple[str, ...] = DEFAULT_ERROR_CODES
    #: The canary's absolute error-rate limit (stages may set their own).
    max_error_rate: float = 0.05
    max_error_rate_delta: float = 0.01
    #: A call is slow above primary's `latency_quantile` × `max_latency_ratio` + `latency_slack_s`.
    max_latency_ratio: float = 1.2
    latency_slack_s: float = 0.0
    #: A stage passes only with this many calls on each compared arm (rejections need no minimum).
    min_requests_per_arm: int = 50
    max_consecutive_failures: int = 3
    max_total_failures: int = 5
    latency_quantile: float = 0.95
    #: α of the error comparison with primary.
    error_alpha: float = 0.02
    #: α of the latency comparison with primary.
    latency_alpha: float = 0.02
    #: α of the absolute error-rate guard.
    guard_alpha: float = 0.01
    #: α of the sample-ratio test (a mismatch pauses the rollout: the numbers cannot be trusted).
    sample_ratio_alpha: float = 0.001
    #: A fixed latency SLO in seconds: when set, a call is slow above it (instead of primary's quantile).
    latency_threshold_s: float = 0.0
    #: Shadow comparisons with primary and the quality guard (off unless its sample rate is set).
    quality: QualityPolicy = QualityPolicy()

    def with_defaults(self) -> AnalysisPolicy:
        """This policy with every zero or empty field replaced by its default (proto3 semantics)."""
        changes: dict[str, Any] = {
            field.name: field.default
            for field in dataclasses.fields(self)
            if not getattr(self, field.name)
        }
        quality = self.quality.with_defaults()
        if quality != self.quality:
            changes["quality"] = quality
        return dataclasses.replace(self, **changes) if changes else self

    def validate(self, path: str) -> None:
        """Raise InvalidArgument naming `path.<field>` for the first unusable value."""

        def fail(name: str, message: str) -> None:
            raise InvalidArgument(f"{path}.{name}", message)

        if not _finite(self.interval_s) or self.interval_s < 1.0:
            fail("interval", f"{self.interval_s}s; must be at least 1s")
        if not _finite(self.window_s) or not self.interval_s <= self.window_s <= MAX_WINDOW_S:
            fail("window", f"{self.window_s}s; must lie between the interval ({self.interval_s}s) and "
                           f"{MAX_WINDOW_S:.0f}s")
        for index, code in enumerate(self.error_codes):
            if code not in GRPC_CODE_NAMES:
                fail(f"error_codes[{index}]", f"{code!r} is not a gRPC status code name (e.g. UNAVAILABLE)")
            if code == "OK":
                fail(f"error_codes[{index}]", "OK cannot count as an error")
        if not _finite(self.max_error_rate) or not 0 < self.max_error_rate <= 1:
            fail("max_error_rate", f"{self.max_error_rate}; must lie in (0, 1]")
        if not _finite(self.max_error_rate_delta) or not 0 < self.max_error_rate_delta <= 1:
            fail("max_error_rate_delta", f"{self.max_error_rate_delta}; must lie in (0, 1]")
        if not _finite(self.max_latency_ratio) or self.max_latency_ratio < 1:
            fail("max_latency_ratio", f"{self.max_latency_ratio}; must be at least 1")
        if not _finite(self.latency_slack_s) or self.latency_slack_s < 0:
            fail("latency_slack", f"{self.latency_slack_s}s; must not be negative")
        if not _whole(self.min_requests_per_arm) or self.min_requests_per_arm < 1:
            fail("min_requests_per_arm", f"{self.min_requests_per_arm}; must be a positive whole number")
        if not _whole(self.max_consecutive_failures) or self.max_consecutive_failures < 1:
            fail("max_consecutive_failures", f"{self.max_consecutive_failures}; must be a positive whole number")
        if not _whole(self.max_total_failures) or self.max_total_failures < self.max_consecutive_failures:
            fail("max_total_failures", f"{self.max_total_failures}; must be a whole number no smaller than "
                                       f"max_consecutive_failures ({self.max_consecutive_failures})")
        if not _finite(self.latency_quantile) or not 0 < self.latency_quantile < 1:
            fail("latency_quantile", f"{self.latency_quantile}; must lie in (0, 1), e.g. 0.95")
        for name in ("error_alpha", "latency_alpha", "guard_alpha", "sample_ratio_alpha"):
            value = getattr(self, name)
            if not _finite(value) or not 0 < value <= 0.5:
                fail(name, f"{value}; must lie in (0, 0.5], e.g. 0.02")
        if not _finite(self.latency_threshold_s) or not 0 <= self.latency_threshold_s <= MAX_WINDOW_S:
            fail("latency_threshold", f"{self.latency_threshold_s}s; must lie in [0, {MAX_WINDOW_S:.0f}s] "
                                      "(0: primary's quantile sets it)")
        self.quality.validate(f"{path}.quality")

    def error_limit(self, stage: Stage) -> float:
        """The absolute error-rate limit of `stage`."""
        return stage.max_error_rate or self.max_error_rate


class OldCollectionAction(enum.Enum):
    """What happens to the old collection when the grace period after promotion ends
    (`PromotionPolicy.OldCollectionAction`)."""

    UNSPECIFIED = 0
    #: Keep it (the default): deleting data is the one step that cannot be undone, so it needs an
    #: explicit policy; the kept collection is recorded as a decision, to delete by hand.
    KEEP = 1
    #: Delete it, unless an alias points at it or another active rollout uses it (then it is kept,
    #: and the decision says why).
    DELETE = 2


#: How long a promotion is watched with the old collection kept in step, unless the policy says.
DEFAULT_BAKE_DURATION_S = 600.0
#: How long the old collection is kept after the bake before the policy's action, unless it says.
DEFAULT_GRACE_PERIOD_S = 24 * 3600.0
MAX_BAKE_DURATION_S = 7 * 24 * 3600.0
MAX_GRACE_PERIOD_S = 365 * 24 * 3600.0


@dataclass(frozen=True, slots=True)
class PromotionPolicy:
    """What happens after the alias switches to the canary (seed steps 7–9).

    `bake_duration_s`: BAKING lasts this long — writes still reach both collections, the analysis
    keeps watching the new primary against the old primary's baseline, UndoRollout switches back
    with no write lost; 0 promotes at once (no bake, no undo). `grace_period_s`: counted from the
    end of the bake; then `old_collection_action` is applied to the old collection. None means the
    default (the proto's unset Duration), so 0 can mean "none".
    """

    bake_duration_s: float | None = None
    grace_period_s: float | None = None
    old_collection_action: OldCollectionAction = OldCollectionAction.UNSPECIFIED

    def with_defaults(self) -> PromotionPolicy:
        return PromotionPolicy(
            bake_duration_s=DEFAULT_BAKE_DURATION_S if self.bake_duration_s is None else self.bake_duration_s,
            grace_period_s=DEFAULT_GRACE_PERIOD_S if self.grace_period_s is None else self.grace_period_s,
            old_collection_action=(OldCollectionAction.KEEP if self.old_collection_action is
                                   OldCollectionAction.UNSPECIFIED else self.old_collection_action))

    def validate(self, path: str) -> None:
        """Raise InvalidArgument naming `path.<field>` for the first unusable value."""
        for name, limit in (("bake_duration", MAX_BAKE_DURATION_S), ("grace_period", MAX_GRACE_PERIOD_S)):
            value = getattr(self, f"{name}_s")
            if value is not None and (not _finite(value) or not 0 <= value <= limit):
                raise InvalidArgument(f"{path}.{name}", f"{value}s; must lie in [0, {limit:.0f}s]")

    @property
    def bake_s(self) -> float:
        return DEFAULT_BAKE_DURATION_S if self.bake_duration_s is None else self.bake_duration_s

    @property
    def grace_s(self) -> float:
        return DEFAULT_GRACE_PERIOD_S if self.grace_period_s is None else self.grace_period_s


#: The policy of rollouts stored before promotion policies existed: promoted at once, old collection kept.
LEGACY_PROMOTION_POLICY = PromotionPolicy(bake_duration_s=0.0, grace_period_s=0.0,
                                          old_collection_action=OldCollectionAction.KEEP)


@dataclass(frozen=True, slots=True)
class ArmStats:
    """One arm's numbers in the current stage (all analysed calls since the stage began)."""

    requests: int
    errors: int
    error_rate: float
    #: The policy's latency quantile in seconds, failed calls ranked slower than any success (so it
    #: is ∞ when more than 1 − quantile of the calls failed); None when there were no requests.
    latency_s: float | None


@dataclass(frozen=True, slots=True)
class Decision:
    """One thing the controller or an operator decided, with the numbers behind it."""

    #: Wall-clock epoch seconds.
    time: float
    kind: DecisionKind
    #: Why, in words a person can act on, with the numbers.
    reason: str
    #: The stage index at the time (0-based, as on the wire).
    stage: int
    #: The canary weight after the decision, in percent.
    weight_percent: float
    #: The arms' numbers over the window (checks, and the decisions they caused).
    primary: ArmStats | None
    canary: ArmStats | None
    #: "controller" or the operator's principal.
    actor: str
    #: The decision's number within its rollout, from 1, never reused (not on the wire; the store's key).
    seq: int
    #: The sequential tests behind a check, with their numbers.
    tests: tuple[TestReport, ...] = ()
    #: How many decisions of this kind in a row this entry stands for (routine ones are folded).
    repeats: int = 1
    #: When the first of them was made (wall-clock epoch seconds; `time` is the newest).
    first_time: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Rollout:
    """A progressive move of a logical collection's traffic to a canary collection.

    The first group of fields is the spec a client sends; the rest is output only (ignored on
    create). `decisions` keeps every decision except routine ones (CHECK_PASSED, INCONCLUSIVE), of
    which only the newest `max_routine_decisions` (controller setting) are kept, so history stays bounded.
    """

    name: str
    collection: str
    canary_collection: str
    #: Empty on create means "the alias's current target".
    primary_collection: str = ""
    #: Empty on create means `DEFAULT_STAGES`.
    stages: tuple[Stage, ...] = ()
    analysis: AnalysisPolicy = AnalysisPolicy()
    auto_promote: bool = False
    promotion: PromotionPolicy = PromotionPolicy()

    state: RolloutState = RolloutState.UNSPECIFIED
    current_stage: int = 0
    weight_percent: float = 0.0
    decisions: tuple[Decision, ...] = ()
    create_time: float = 0.0
    update_time: float = 0.0
    #: Time spent in the current stage while RUNNING (pauses and gateway downtime excluded).
    stage_elapsed_s: float = 0.0
    consecutive_failures: int = 0
    total_failures: int = 0
    #: Wall-clock epoch seconds: when the bake began (the alias switched to the canary), when it ended
    #: (BAKE_COMPLETED, UNDONE; for a promotion without a bake, the promotion), and when the grace
    #: period's action on the old collection was taken (0: not yet). Persisted: they survive restarts.
    bake_start_time: float = 0.0
    bake_end_time: float = 0.0
    old_collection_time: float = 0.0

    # Internal (persisted, not on the wire).
    #: The routing salt; fresh per rollout, so each rollout's canary carries different users.
    salt: str = ""
    #: `stage_elapsed_s` when the stage's clean period began (stage start, or the last failed check).
    stage_clean_since_s: float = 0.0
    #: Canary requests analysed in the clean period of the current stage while RUNNING.
    stage_canary_requests: int = 0
    #: The state of the current stage's sequential tests (`analysis.StageEvidence.to_json`), saved
    #: with every decision so a restarted gateway continues them.
    evidence: dict[str, Any] | None = None
    #: Primary's analysed calls over the stages before this one (`analysis.ArmTotals.to_json`): the
    #: baseline that a canary at 100 % weight is compared with.
    baseline: dict[str, Any] | None = None

    # Preparation (PrepareRollout / ValidateRollout / StartRollout; see `preparation`).
    #: The backfill's progress (None for a rollout CreateRollout made).
    backfill: BackfillProgress | None = None
    #: Set on create: the rollout waits PREPARED for a passed pre-flight under this policy.
    preflight_policy: PreflightPolicy | None = None
    #: The last pre-flight.
    preflight: PreflightResult | None = None
    #: Output only, not stored: the current stage's shadow comparisons (None unless the policy samples).
    quality: QualitySummary | None = None

    @property
    def weight_bps(self) -> int:
        return weight_to_bps(self.weight_percent)

    @property
    def stage(self) -> Stage:
        return self.stages[self.current_stage]

    @property
    def stage_label(self) -> str:
        """"stage 2/4 (25%)": 1-based, for people."""
        return f"stage {self.current_stage + 1}/{len(self.stages)} ({self.stage.weight_percent:g}%)"


def validate_new_rollout(rollout: Rollout) -> Rollout:
    """Check the spec of a rollout to create; return it with defaults filled in.

    What depends on other state (the alias target, other rollouts) is the controller's to check.
    """
    check_rollout_name("rollout.name", rollout.name)
    check_name("rollout.collection", rollout.collection)
    check_name("rollout.canary_collection", rollout.canary_collection)
    if rollout.canary_collection == rollout.collection:
        raise InvalidArgument("rollout.canary_collection", "must be a physical collection, not the logical "
                                                           f"name {rollout.collection!r} itself")
    if rollout.primary_collection:
        check_name("rollout.primary_collection", rollout.primary_collection)
        if rollout.primary_collection == rollout.canary_collection:
            raise InvalidArgument("rollout.canary_collection",
                                  f"must differ from the primary collection {rollout.primary_collection!r}")
    stages = rollout.stages or DEFAULT_STAGES
    _check_stages(stages)
    analysis = rollout.analysis.with_defaults()
    analysis.validate("rollout.analysis")
    preflight_policy = rollout.preflight_policy
    if preflight_policy is not None:
        preflight_policy = preflight_policy.with_defaults()
        preflight_policy.validate("rollout.preflight_policy")
    rollout.promotion.validate("rollout.promotion")
    return dataclasses.replace(rollout, stages=tuple(stages), analysis=analysis,
                               promotion=rollout.promotion.with_defaults(), preflight_policy=preflight_policy)


#: A collection's vector space: (dimension, embedding model; "" when it names none).
VectorSpace = tuple[int, str]


def describe_space(space: VectorSpace) -> str:
    dimension, model = space
    return f"{dimension}-d vectors of model {model!r}" if model else f"{dimension}-d vectors with no embedding model"


def check_arm_spaces(primary: str, primary_space: VectorSpace, canary: str, canary_space: VectorSpace) -> bool:
    """Whether the arms hold different vector spaces (a model canary); FailedPrecondition when they may not.

    Arms in one space (same dimension and model) are always compatible. Arms in different spaces (another
    model, or another dimension) make a model canary, which needs both collections to name their model:
    then a text is embedded for each arm with its own, so every write reaches both and every text query
    is answered in the arm's own space (raw vectors belong to one space: see SearchCore).
    """
    if primary_space == canary_space:
        return False
    if not (primary_space[1] and canary_space[1]):
        raise FailedPrecondition(
            f"rollout.canary_collection: {canary!r} holds {describe_space(canary_space)} and {primary!r} holds "
            f"{describe_space(primary_space)}; arms in different vector spaces are a model canary, which needs "
            f"both collections to name their embedding model (texts are embedded for each arm with its own) — "
            f"create the canary with the primary's dimension and model, or with --embedding-model",
            reason="INCOMPATIBLE_ARMS",
            metadata={"field": "rollout.canary_collection", "primary": describe_space(primary_space),
                      "canary": describe_space(canary_space)})
    return True


def check_arm_bm25(primary: str, primary_has: bool, canary: str, canary_has: bool) -> None:
    """FailedPrecondition when primary has a BM25 index and the canary does not: the canary could not
    serve the sparse and hybrid searches primary serves, so every one routed to it would fail."""
    if primary_has and not canary_has:
        raise FailedPrecondition(
            f"rollout.canary_collection: {primary!r} has a BM25 index (sparse and hybrid searches) and "
            f"{canary!r} has none, so the canary could not serve those searches; create the canary with the "
            f"primary's bm25 config (PrepareRollout copies it)",
            reason="INCOMPATIBLE_ARMS",
            metadata={"field": "rollout.canary_collection", "primary": "bm25", "canary": "no bm25"})


def check_reason(reason: str) -> None:
    """An operator's reason must fit the decision history."""
    if len(reason) > MAX_REASON_LENGTH:
        raise InvalidArgument("reason", f"{len(reason)} characters; at most {MAX_REASON_LENGTH}")


def _check_stages(stages: tuple[Stage, ...]) -> None:
    if len(stages) > MAX_STAGES:
        raise InvalidArgument("rollout.stages", f"{len(stages)} stages; at most {MAX_STAGES}")
    previous = 0.0
    for index, stage in enumerate(stages):
        path = f"rollout.stages[{index}]"
        weight = stage.weight_percent
        if not _finite(weight) or not 0 < weight <= 100:
            raise InvalidArgument(f"{path}.weight_percent", f"{weight}; must lie in (0, 100]")
        if abs(weight * 100 - round(weight * 100)) > 1e-6:
            raise InvalidArgument(f"{path}.weight_percent", f"{weight}; must be a multiple of 0.01")
        if weight <= previous:
            raise InvalidArgument(f"{path}.weight_percent",
                                  f"{weight}; weights must ascend (the stage before has {previous:g})")
        previous = weight
        if not _finite(stage.min_duration_s) or not 0 <= stage.min_duration_s <= MAX_STAGE_DURATION_S:
            raise InvalidArgument(f"{path}.min_duration", f"{stage.min_duration_s}s; must lie in "
                                                           f"[0, {MAX_STAGE_DURATION_S:.0f}s]")
        if not _whole(stage.min_requests) or stage.min_requests < 0:
            raise InvalidArgument(f"{path}.min_requests", f"{stage.min_requests}; must be a whole number, at least 0")
        if not _finite(stage.max_error_rate) or not 0 <= stage.max_error_rate < 1:
            raise InvalidArgument(f"{path}.max_error_rate", f"{stage.max_error_rate}; must lie in [0, 1) "
                                                             "(0: the policy's max_error_rate)")


def _finite(value: float) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _whole(value: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
