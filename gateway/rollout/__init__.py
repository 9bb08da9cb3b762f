"""Rollouts: the model, per-arm analysis windows and checks, the controller, and its store.

    model       Stage, AnalysisPolicy, Rollout, Decision, ArmStats, the state and decision enums,
                validate_new_rollout (InvalidArgument naming the proto field path)
    sequential  the anytime-valid tests: RateRatioTest, RateLimitTest, SampleRatioTest (pure math)
    analysis    ArmSlice (per-second counts), StageEvidence, judge(evidence) -> Verdict
    controller  RolloutController: create/get/list/pause/resume/promote/abort/undo/watch, record (hot
                path), tick/run/start/stop
    store       RolloutStore (protocol), SqliteRolloutStore, MemoryRolloutStore
    cluster     Leadership, CountsExchange: what the controller needs to be one of several replicas
    redis_store the shared control plane on Redis (imported by name: RedisRolloutStore, RedisLeadership,
                RedisCounts, RedisStateFeed)

No grpc here; time comes from injected clocks.
"""

from searchgw.gateway.rollout.analysis import ArmSlice, CheckOutcome, StageEvidence, Verdict, judge
from searchgw.gateway.rollout.controller import ANONYMOUS_ACTOR, RolloutController, RolloutObserver, WatchEvent
from searchgw.gateway.rollout.model import (
    ACTIVE_STATES,
    CONTROLLER_ACTOR,
    DEFAULT_ERROR_CODES,
    DEFAULT_STAGES,
    GRPC_CODE_NAMES,
    AnalysisPolicy,
    OldCollectionAction,
    PromotionPolicy,
    ArmStats,
    Decision,
    DecisionKind,
    Rollout,
    RolloutState,
    Stage,
    TestKind,
    TestOutcome,
    TestReport,
    validate_new_rollout,
)
from searchgw.gateway.rollout.store import MemoryRolloutStore, RolloutStore, SqliteRolloutStore

__all__ = [
    "ACTIVE_STATES",
    "ANONYMOUS_ACTOR",
    "CONTROLLER_ACTOR",
    "DEFAULT_ERROR_CODES",
    "DEFAULT_STAGES",
    "GRPC_CODE_NAMES",
    "AnalysisPolicy",
    "ArmSlice",
    "ArmStats",
    "CheckOutcome",
    "Decision",
    "DecisionKind",
    "MemoryRolloutStore",
    "OldCollectionAction",
    "PromotionPolicy",
    "Rollout",
    "RolloutController",
    "RolloutObserver",
    "RolloutState",
    "RolloutStore",
    "SqliteRolloutStore",
    "Stage",
    "StageEvidence",
    "TestKind",
    "TestOutcome",
    "TestReport",
    "Verdict",
    "WatchEvent",
    "judge",
    "validate_new_rollout",
]
