"""Rollouts: the model, per-arm analysis windows and checks, the controller, and its store.

    model       Stage, AnalysisPolicy, Rollout, Decision, ArmStats, the state and decision enums,
                validate_new_rollout (InvalidArgument naming the proto field path)
    analysis    ArmWindow (sliding window per arm), check(policy, primary, canary) -> CheckResult
    controller  RolloutController: create/get/list/pause/resume/promote/abort/watch, record (hot
                path), tick/run/start/stop
    store       RolloutStore (protocol), SqliteRolloutStore, MemoryRolloutStore

No grpc here; time comes from injected clocks.
"""

from gateway.rollout.analysis import ArmWindow, CheckOutcome, CheckResult, check
from gateway.rollout.controller import ANONYMOUS_ACTOR, RolloutController, RolloutObserver, WatchEvent
from gateway.rollout.model import (
    ACTIVE_STATES,
    CONTROLLER_ACTOR,
    DEFAULT_ERROR_CODES,
    DEFAULT_STAGES,
    GRPC_CODE_NAMES,
    AnalysisPolicy,
    ArmStats,
    Decision,
    DecisionKind,
    Rollout,
    RolloutState,
    Stage,
    validate_new_rollout,
)
from gateway.rollout.store import MemoryRolloutStore, RolloutStore, SqliteRolloutStore

__all__ = [
    "ACTIVE_STATES",
    "ANONYMOUS_ACTOR",
    "CONTROLLER_ACTOR",
    "DEFAULT_ERROR_CODES",
    "DEFAULT_STAGES",
    "GRPC_CODE_NAMES",
    "AnalysisPolicy",
    "ArmStats",
    "ArmWindow",
    "CheckOutcome",
    "CheckResult",
    "Decision",
    "DecisionKind",
    "MemoryRolloutStore",
    "Rollout",
    "RolloutController",
    "RolloutObserver",
    "RolloutState",
    "RolloutStore",
    "SqliteRolloutStore",
    "Stage",
    "WatchEvent",
    "check",
    "validate_new_rollout",
]
