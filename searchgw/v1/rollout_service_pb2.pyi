import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from searchgw.v1 import collection_service_pb2 as _collection_service_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Stage(_message.Message):
    __slots__ = ("weight_percent", "min_duration", "min_requests", "max_error_rate")
    WEIGHT_PERCENT_FIELD_NUMBER: _ClassVar[int]
    MIN_DURATION_FIELD_NUMBER: _ClassVar[int]
    MIN_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    MAX_ERROR_RATE_FIELD_NUMBER: _ClassVar[int]
    weight_percent: float
    min_duration: _duration_pb2.Duration
    min_requests: int
    max_error_rate: float
    def __init__(self, weight_percent: _Optional[float] = ..., min_duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., min_requests: _Optional[int] = ..., max_error_rate: _Optional[float] = ...) -> None: ...

class AnalysisPolicy(_message.Message):
    __slots__ = ("interval", "window", "error_codes", "max_error_rate", "max_error_rate_delta", "max_latency_ratio", "latency_slack", "min_requests_per_arm", "max_consecutive_failures", "max_total_failures", "latency_quantile", "error_alpha", "latency_alpha", "guard_alpha", "sample_ratio_alpha", "latency_threshold", "quality")
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODES_FIELD_NUMBER: _ClassVar[int]
    MAX_ERROR_RATE_FIELD_NUMBER: _ClassVar[int]
    MAX_ERROR_RATE_DELTA_FIELD_NUMBER: _ClassVar[int]
    MAX_LATENCY_RATIO_FIELD_NUMBER: _ClassVar[int]
    LATENCY_SLACK_FIELD_NUMBER: _ClassVar[int]
    MIN_REQUESTS_PER_ARM_FIELD_NUMBER: _ClassVar[int]
    MAX_CONSECUTIVE_FAILURES_FIELD_NUMBER: _ClassVar[int]
    MAX_TOTAL_FAILURES_FIELD_NUMBER: _ClassVar[int]
    LATENCY_QUANTILE_FIELD_NUMBER: _ClassVar[int]
    ERROR_ALPHA_FIELD_NUMBER: _ClassVar[int]
    LATENCY_ALPHA_FIELD_NUMBER: _ClassVar[int]
    GUARD_ALPHA_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATIO_ALPHA_FIELD_NUMBER: _ClassVar[int]
    LATENCY_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    interval: _duration_pb2.Duration
    window: _duration_pb2.Duration
    error_codes: _containers.RepeatedScalarFieldContainer[str]
    max_error_rate: float
    max_error_rate_delta: float
    max_latency_ratio: float
    latency_slack: _duration_pb2.Duration
    min_requests_per_arm: int
    max_consecutive_failures: int
    max_total_failures: int
    latency_quantile: float
    error_alpha: float
    latency_alpha: float
    guard_alpha: float
    sample_ratio_alpha: float
    latency_threshold: _duration_pb2.Duration
    quality: QualityPolicy
    def __init__(self, interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., window: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., error_codes: _Optional[_Iterable[str]] = ..., max_error_rate: _Optional[float] = ..., max_error_rate_delta: _Optional[float] = ..., max_latency_ratio: _Optional[float] = ..., latency_slack: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., min_requests_per_arm: _Optional[int] = ..., max_consecutive_failures: _Optional[int] = ..., max_total_failures: _Optional[int] = ..., latency_quantile: _Optional[float] = ..., error_alpha: _Optional[float] = ..., latency_alpha: _Optional[float] = ..., guard_alpha: _Optional[float] = ..., sample_ratio_alpha: _Optional[float] = ..., latency_threshold: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., quality: _Optional[_Union[QualityPolicy, _Mapping]] = ...) -> None: ...

class Rollout(_message.Message):
    __slots__ = ("name", "collection", "primary_collection", "canary_collection", "stages", "analysis", "auto_promote", "state", "current_stage", "weight_percent", "decisions", "create_time", "update_time", "stage_elapsed", "consecutive_failures", "total_failures", "backfill", "preflight", "preflight_policy", "promotion", "bake_start_time", "bake_end_time", "old_collection_time", "quality")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATE_UNSPECIFIED: _ClassVar[Rollout.State]
        STATE_RUNNING: _ClassVar[Rollout.State]
        STATE_PAUSED: _ClassVar[Rollout.State]
        STATE_AWAITING_PROMOTION: _ClassVar[Rollout.State]
        STATE_PROMOTED: _ClassVar[Rollout.State]
        STATE_ROLLED_BACK: _ClassVar[Rollout.State]
        STATE_ABORTED: _ClassVar[Rollout.State]
        STATE_PREPARING: _ClassVar[Rollout.State]
        STATE_PREPARED: _ClassVar[Rollout.State]
        STATE_BAKING: _ClassVar[Rollout.State]
        STATE_UNDONE: _ClassVar[Rollout.State]
    STATE_UNSPECIFIED: Rollout.State
    STATE_RUNNING: Rollout.State
    STATE_PAUSED: Rollout.State
    STATE_AWAITING_PROMOTION: Rollout.State
    STATE_PROMOTED: Rollout.State
    STATE_ROLLED_BACK: Rollout.State
    STATE_ABORTED: Rollout.State
    STATE_PREPARING: Rollout.State
    STATE_PREPARED: Rollout.State
    STATE_BAKING: Rollout.State
    STATE_UNDONE: Rollout.State
    NAME_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    PRIMARY_COLLECTION_FIELD_NUMBER: _ClassVar[int]
    CANARY_COLLECTION_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    ANALYSIS_FIELD_NUMBER: _ClassVar[int]
    AUTO_PROMOTE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CURRENT_STAGE_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_PERCENT_FIELD_NUMBER: _ClassVar[int]
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    STAGE_ELAPSED_FIELD_NUMBER: _ClassVar[int]
    CONSECUTIVE_FAILURES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FAILURES_FIELD_NUMBER: _ClassVar[int]
    BACKFILL_FIELD_NUMBER: _ClassVar[int]
    PREFLIGHT_FIELD_NUMBER: _ClassVar[int]
    PREFLIGHT_POLICY_FIELD_NUMBER: _ClassVar[int]
    PROMOTION_FIELD_NUMBER: _ClassVar[int]
    BAKE_START_TIME_FIELD_NUMBER: _ClassVar[int]
    BAKE_END_TIME_FIELD_NUMBER: _ClassVar[int]
    OLD_COLLECTION_TIME_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    name: str
    collection: str
    primary_collection: str
    canary_collection: str
    stages: _containers.RepeatedCompositeFieldContainer[Stage]
    analysis: AnalysisPolicy
    auto_promote: bool
    state: Rollout.State
    current_stage: int
    weight_percent: float
    decisions: _containers.RepeatedCompositeFieldContainer[Decision]
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    stage_elapsed: _duration_pb2.Duration
    consecutive_failures: int
    total_failures: int
    backfill: BackfillProgress
    preflight: PreflightResult
    preflight_policy: PreflightPolicy
    promotion: PromotionPolicy
    bake_start_time: _timestamp_pb2.Timestamp
    bake_end_time: _timestamp_pb2.Timestamp
    old_collection_time: _timestamp_pb2.Timestamp
    quality: QualityReport
    def __init__(self, name: _Optional[str] = ..., collection: _Optional[str] = ..., primary_collection: _Optional[str] = ..., canary_collection: _Optional[str] = ..., stages: _Optional[_Iterable[_Union[Stage, _Mapping]]] = ..., analysis: _Optional[_Union[AnalysisPolicy, _Mapping]] = ..., auto_promote: _Optional[bool] = ..., state: _Optional[_Union[Rollout.State, str]] = ..., current_stage: _Optional[int] = ..., weight_percent: _Optional[float] = ..., decisions: _Optional[_Iterable[_Union[Decision, _Mapping]]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., stage_elapsed: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., consecutive_failures: _Optional[int] = ..., total_failures: _Optional[int] = ..., backfill: _Optional[_Union[BackfillProgress, _Mapping]] = ..., preflight: _Optional[_Union[PreflightResult, _Mapping]] = ..., preflight_policy: _Optional[_Union[PreflightPolicy, _Mapping]] = ..., promotion: _Optional[_Union[PromotionPolicy, _Mapping]] = ..., bake_start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., bake_end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., old_collection_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., quality: _Optional[_Union[QualityReport, _Mapping]] = ...) -> None: ...

class PromotionPolicy(_message.Message):
    __slots__ = ("bake_duration", "grace_period", "old_collection_action")
    class OldCollectionAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        OLD_COLLECTION_ACTION_UNSPECIFIED: _ClassVar[PromotionPolicy.OldCollectionAction]
        OLD_COLLECTION_ACTION_KEEP: _ClassVar[PromotionPolicy.OldCollectionAction]
        OLD_COLLECTION_ACTION_DELETE: _ClassVar[PromotionPolicy.OldCollectionAction]
    OLD_COLLECTION_ACTION_UNSPECIFIED: PromotionPolicy.OldCollectionAction
    OLD_COLLECTION_ACTION_KEEP: PromotionPolicy.OldCollectionAction
    OLD_COLLECTION_ACTION_DELETE: PromotionPolicy.OldCollectionAction
    BAKE_DURATION_FIELD_NUMBER: _ClassVar[int]
    GRACE_PERIOD_FIELD_NUMBER: _ClassVar[int]
    OLD_COLLECTION_ACTION_FIELD_NUMBER: _ClassVar[int]
    bake_duration: _duration_pb2.Duration
    grace_period: _duration_pb2.Duration
    old_collection_action: PromotionPolicy.OldCollectionAction
    def __init__(self, bake_duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., grace_period: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., old_collection_action: _Optional[_Union[PromotionPolicy.OldCollectionAction, str]] = ...) -> None: ...

class BackfillProgress(_message.Message):
    __slots__ = ("total", "copied", "reembedded", "failed", "superseded", "done", "start_time", "update_time", "last_error", "batch_size")
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    COPIED_FIELD_NUMBER: _ClassVar[int]
    REEMBEDDED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    SUPERSEDED_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    total: int
    copied: int
    reembedded: int
    failed: int
    superseded: int
    done: bool
    start_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    last_error: str
    batch_size: int
    def __init__(self, total: _Optional[int] = ..., copied: _Optional[int] = ..., reembedded: _Optional[int] = ..., failed: _Optional[int] = ..., superseded: _Optional[int] = ..., done: _Optional[bool] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_error: _Optional[str] = ..., batch_size: _Optional[int] = ...) -> None: ...

class PreflightPolicy(_message.Message):
    __slots__ = ("k", "sample_size", "min_overlap_at_k", "min_rbo", "rbo_p", "count_tolerance")
    K_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_SIZE_FIELD_NUMBER: _ClassVar[int]
    MIN_OVERLAP_AT_K_FIELD_NUMBER: _ClassVar[int]
    MIN_RBO_FIELD_NUMBER: _ClassVar[int]
    RBO_P_FIELD_NUMBER: _ClassVar[int]
    COUNT_TOLERANCE_FIELD_NUMBER: _ClassVar[int]
    k: int
    sample_size: int
    min_overlap_at_k: float
    min_rbo: float
    rbo_p: float
    count_tolerance: int
    def __init__(self, k: _Optional[int] = ..., sample_size: _Optional[int] = ..., min_overlap_at_k: _Optional[float] = ..., min_rbo: _Optional[float] = ..., rbo_p: _Optional[float] = ..., count_tolerance: _Optional[int] = ...) -> None: ...

class PreflightResult(_message.Message):
    __slots__ = ("passed", "time", "policy", "primary_count", "canary_count", "queries", "errors", "mean_overlap_at_k", "min_overlap_at_k", "mean_rbo", "summary")
    PASSED_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    PRIMARY_COUNT_FIELD_NUMBER: _ClassVar[int]
    CANARY_COUNT_FIELD_NUMBER: _ClassVar[int]
    QUERIES_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    MEAN_OVERLAP_AT_K_FIELD_NUMBER: _ClassVar[int]
    MIN_OVERLAP_AT_K_FIELD_NUMBER: _ClassVar[int]
    MEAN_RBO_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    passed: bool
    time: _timestamp_pb2.Timestamp
    policy: PreflightPolicy
    primary_count: int
    canary_count: int
    queries: int
    errors: int
    mean_overlap_at_k: float
    min_overlap_at_k: float
    mean_rbo: float
    summary: str
    def __init__(self, passed: _Optional[bool] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., policy: _Optional[_Union[PreflightPolicy, _Mapping]] = ..., primary_count: _Optional[int] = ..., canary_count: _Optional[int] = ..., queries: _Optional[int] = ..., errors: _Optional[int] = ..., mean_overlap_at_k: _Optional[float] = ..., min_overlap_at_k: _Optional[float] = ..., mean_rbo: _Optional[float] = ..., summary: _Optional[str] = ...) -> None: ...

class ArmStats(_message.Message):
    __slots__ = ("requests", "errors", "error_rate", "latency_seconds")
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    ERROR_RATE_FIELD_NUMBER: _ClassVar[int]
    LATENCY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    requests: int
    errors: int
    error_rate: float
    latency_seconds: float
    def __init__(self, requests: _Optional[int] = ..., errors: _Optional[int] = ..., error_rate: _Optional[float] = ..., latency_seconds: _Optional[float] = ...) -> None: ...

class StatisticalTest(_message.Message):
    __slots__ = ("kind", "outcome", "alpha", "canary_events", "canary_calls", "primary_events", "primary_calls", "estimate", "lower", "upper", "null_value", "e_value", "p_value", "threshold", "summary")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[StatisticalTest.Kind]
        KIND_ERROR_RATIO: _ClassVar[StatisticalTest.Kind]
        KIND_LATENCY_RATIO: _ClassVar[StatisticalTest.Kind]
        KIND_ERROR_LIMIT: _ClassVar[StatisticalTest.Kind]
        KIND_SAMPLE_RATIO: _ClassVar[StatisticalTest.Kind]
        KIND_ERROR_BASELINE: _ClassVar[StatisticalTest.Kind]
        KIND_LATENCY_BASELINE: _ClassVar[StatisticalTest.Kind]
        KIND_QUALITY_OVERLAP: _ClassVar[StatisticalTest.Kind]
    KIND_UNSPECIFIED: StatisticalTest.Kind
    KIND_ERROR_RATIO: StatisticalTest.Kind
    KIND_LATENCY_RATIO: StatisticalTest.Kind
    KIND_ERROR_LIMIT: StatisticalTest.Kind
    KIND_SAMPLE_RATIO: StatisticalTest.Kind
    KIND_ERROR_BASELINE: StatisticalTest.Kind
    KIND_LATENCY_BASELINE: StatisticalTest.Kind
    KIND_QUALITY_OVERLAP: StatisticalTest.Kind
    class Outcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        OUTCOME_UNSPECIFIED: _ClassVar[StatisticalTest.Outcome]
        OUTCOME_NOT_REJECTED: _ClassVar[StatisticalTest.Outcome]
        OUTCOME_REJECTED: _ClassVar[StatisticalTest.Outcome]
        OUTCOME_WAITING: _ClassVar[StatisticalTest.Outcome]
        OUTCOME_NOT_APPLICABLE: _ClassVar[StatisticalTest.Outcome]
    OUTCOME_UNSPECIFIED: StatisticalTest.Outcome
    OUTCOME_NOT_REJECTED: StatisticalTest.Outcome
    OUTCOME_REJECTED: StatisticalTest.Outcome
    OUTCOME_WAITING: StatisticalTest.Outcome
    OUTCOME_NOT_APPLICABLE: StatisticalTest.Outcome
    KIND_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    ALPHA_FIELD_NUMBER: _ClassVar[int]
    CANARY_EVENTS_FIELD_NUMBER: _ClassVar[int]
    CANARY_CALLS_FIELD_NUMBER: _ClassVar[int]
    PRIMARY_EVENTS_FIELD_NUMBER: _ClassVar[int]
    PRIMARY_CALLS_FIELD_NUMBER: _ClassVar[int]
    ESTIMATE_FIELD_NUMBER: _ClassVar[int]
    LOWER_FIELD_NUMBER: _ClassVar[int]
    UPPER_FIELD_NUMBER: _ClassVar[int]
    NULL_VALUE_FIELD_NUMBER: _ClassVar[int]
    E_VALUE_FIELD_NUMBER: _ClassVar[int]
    P_VALUE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    kind: StatisticalTest.Kind
    outcome: StatisticalTest.Outcome
    alpha: float
    canary_events: int
    canary_calls: int
    primary_events: int
    primary_calls: int
    estimate: float
    lower: float
    upper: float
    null_value: float
    e_value: float
    p_value: float
    threshold: _duration_pb2.Duration
    summary: str
    def __init__(self, kind: _Optional[_Union[StatisticalTest.Kind, str]] = ..., outcome: _Optional[_Union[StatisticalTest.Outcome, str]] = ..., alpha: _Optional[float] = ..., canary_events: _Optional[int] = ..., canary_calls: _Optional[int] = ..., primary_events: _Optional[int] = ..., primary_calls: _Optional[int] = ..., estimate: _Optional[float] = ..., lower: _Optional[float] = ..., upper: _Optional[float] = ..., null_value: _Optional[float] = ..., e_value: _Optional[float] = ..., p_value: _Optional[float] = ..., threshold: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., summary: _Optional[str] = ...) -> None: ...

class Decision(_message.Message):
    __slots__ = ("time", "kind", "reason", "stage", "weight_percent", "primary", "canary", "actor", "tests", "repeats", "first_time")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[Decision.Kind]
        KIND_STARTED: _ClassVar[Decision.Kind]
        KIND_CHECK_PASSED: _ClassVar[Decision.Kind]
        KIND_INCONCLUSIVE: _ClassVar[Decision.Kind]
        KIND_CHECK_FAILED: _ClassVar[Decision.Kind]
        KIND_ADVANCED: _ClassVar[Decision.Kind]
        KIND_AWAITING_PROMOTION: _ClassVar[Decision.Kind]
        KIND_PROMOTED: _ClassVar[Decision.Kind]
        KIND_ROLLED_BACK: _ClassVar[Decision.Kind]
        KIND_PAUSED: _ClassVar[Decision.Kind]
        KIND_RESUMED: _ClassVar[Decision.Kind]
        KIND_ABORTED: _ClassVar[Decision.Kind]
        KIND_BACKFILL_STARTED: _ClassVar[Decision.Kind]
        KIND_BACKFILL_COMPLETED: _ClassVar[Decision.Kind]
        KIND_PREFLIGHT_PASSED: _ClassVar[Decision.Kind]
        KIND_PREFLIGHT_FAILED: _ClassVar[Decision.Kind]
        KIND_BACKFILL_FAILED: _ClassVar[Decision.Kind]
        KIND_BAKE_STARTED: _ClassVar[Decision.Kind]
        KIND_BAKE_COMPLETED: _ClassVar[Decision.Kind]
        KIND_UNDONE: _ClassVar[Decision.Kind]
        KIND_OLD_COLLECTION_DELETED: _ClassVar[Decision.Kind]
        KIND_OLD_COLLECTION_KEPT: _ClassVar[Decision.Kind]
    KIND_UNSPECIFIED: Decision.Kind
    KIND_STARTED: Decision.Kind
    KIND_CHECK_PASSED: Decision.Kind
    KIND_INCONCLUSIVE: Decision.Kind
    KIND_CHECK_FAILED: Decision.Kind
    KIND_ADVANCED: Decision.Kind
    KIND_AWAITING_PROMOTION: Decision.Kind
    KIND_PROMOTED: Decision.Kind
    KIND_ROLLED_BACK: Decision.Kind
    KIND_PAUSED: Decision.Kind
    KIND_RESUMED: Decision.Kind
    KIND_ABORTED: Decision.Kind
    KIND_BACKFILL_STARTED: Decision.Kind
    KIND_BACKFILL_COMPLETED: Decision.Kind
    KIND_PREFLIGHT_PASSED: Decision.Kind
    KIND_PREFLIGHT_FAILED: Decision.Kind
    KIND_BACKFILL_FAILED: Decision.Kind
    KIND_BAKE_STARTED: Decision.Kind
    KIND_BAKE_COMPLETED: Decision.Kind
    KIND_UNDONE: Decision.Kind
    KIND_OLD_COLLECTION_DELETED: Decision.Kind
    KIND_OLD_COLLECTION_KEPT: Decision.Kind
    TIME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_PERCENT_FIELD_NUMBER: _ClassVar[int]
    PRIMARY_FIELD_NUMBER: _ClassVar[int]
    CANARY_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    TESTS_FIELD_NUMBER: _ClassVar[int]
    REPEATS_FIELD_NUMBER: _ClassVar[int]
    FIRST_TIME_FIELD_NUMBER: _ClassVar[int]
    time: _timestamp_pb2.Timestamp
    kind: Decision.Kind
    reason: str
    stage: int
    weight_percent: float
    primary: ArmStats
    canary: ArmStats
    actor: str
    tests: _containers.RepeatedCompositeFieldContainer[StatisticalTest]
    repeats: int
    first_time: _timestamp_pb2.Timestamp
    def __init__(self, time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., kind: _Optional[_Union[Decision.Kind, str]] = ..., reason: _Optional[str] = ..., stage: _Optional[int] = ..., weight_percent: _Optional[float] = ..., primary: _Optional[_Union[ArmStats, _Mapping]] = ..., canary: _Optional[_Union[ArmStats, _Mapping]] = ..., actor: _Optional[str] = ..., tests: _Optional[_Iterable[_Union[StatisticalTest, _Mapping]]] = ..., repeats: _Optional[int] = ..., first_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateRolloutRequest(_message.Message):
    __slots__ = ("rollout",)
    ROLLOUT_FIELD_NUMBER: _ClassVar[int]
    rollout: Rollout
    def __init__(self, rollout: _Optional[_Union[Rollout, _Mapping]] = ...) -> None: ...

class CreateRolloutResponse(_message.Message):
    __slots__ = ("rollout",)
    ROLLOUT_FIELD_NUMBER: _ClassVar[int]
    rollout: Rollout
    def __init__(self, rollout: _Optional[_Union[Rollout, _Mapping]] = ...) -> None: ...

class GetRolloutRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetRolloutResponse(_message.Message):
    __slots__ = ("rollout",)
    ROLLOUT_FIELD_NUMBER: _ClassVar[int]
    rollout: Rollout
    def __init__(self, rollout: _Optional[_Union[Rollout, _Mapping]] = ...) -> None: ...

class ListRolloutsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "collection")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    collection: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., collection: _Optional[str] = ...) -> None: ...

class ListRolloutsResponse(_message.Message):
    __slots__ = ("rollouts", "next_page_token")
    ROLLOUTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    rollouts: _containers.RepeatedCompositeFieldContainer[Rollout]
    next_page_token: str
    def __init__(self, rollouts: _Optional[_Iterable[_Union[Rollout, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class PauseRolloutRequest(_message.Message):
    __slots__ = ("name", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    reason: str
    def __init__(self, name: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class PauseRolloutResponse(_message.Message):
    __slots__ = ("rollout",)
    ROLLOUT_FIELD_NUMBER: _ClassVar[int]
    rollout: Rollout
    def __init__(self, rollout: _Optional[_Union[Rollout, _Mapping]] = ...) -> None: ...

class ResumeRolloutRequest(_message.Message):
    __slots__ = ("name", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    reason: str
    def __init__(self, name: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ResumeRolloutResponse(_message.Message):
    __slots__ = ("rollout",)
    ROLLOUT_FIELD_NUMBER: _ClassVar[int]
    rollout: Rollout
    def __init__(self, rollout: _Optional[_Union[Rollout, _Mapping]] = ...) -> None: ...

class PromoteRolloutRequest(_message.Message):
    __slots__ = ("name", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    reason: str
    def __init__(self, name: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class PromoteRolloutResponse(_message.Message):
    __slots__ = ("rollout",)
    ROLLOUT_FIELD_NUMBER: _ClassVar[int]
    rollout: Rollout
    def __init__(self, rollout: _Optional[_Union[Rollout, _Mapping]] = ...) -> None: ...

class AbortRolloutRequest(_message.Message):
    __slots__ = ("name", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    reason: str
    def __init__(self, name: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class AbortRolloutResponse(_message.Message):
    __slots__ = ("rollout",)
    ROLLOUT_FIELD_NUMBER: _ClassVar[int]
    rollout: Rollout
    def __init__(self, rollout: _Optional[_Union[Rollout, _Mapping]] = ...) -> None: ...

class UndoRolloutRequest(_message.Message):
    __slots__ = ("name", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    reason: str
    def __init__(self, name: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class UndoRolloutResponse(_message.Message):
    __slots__ = ("rollout",)
    ROLLOUT_FIELD_NUMBER: _ClassVar[int]
    rollout: Rollout
    def __init__(self, rollout: _Optional[_Union[Rollout, _Mapping]] = ...) -> None: ...

class WatchRolloutRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class WatchRolloutResponse(_message.Message):
    __slots__ = ("rollout", "decision")
    ROLLOUT_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    rollout: Rollout
    decision: Decision
    def __init__(self, rollout: _Optional[_Union[Rollout, _Mapping]] = ..., decision: _Optional[_Union[Decision, _Mapping]] = ...) -> None: ...

class PrepareRolloutRequest(_message.Message):
    __slots__ = ("rollout", "canary", "batch_size")
    ROLLOUT_FIELD_NUMBER: _ClassVar[int]
    CANARY_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    rollout: Rollout
    canary: _collection_service_pb2.Collection
    batch_size: int
    def __init__(self, rollout: _Optional[_Union[Rollout, _Mapping]] = ..., canary: _Optional[_Union[_collection_service_pb2.Collection, _Mapping]] = ..., batch_size: _Optional[int] = ...) -> None: ...

class PrepareRolloutResponse(_message.Message):
    __slots__ = ("rollout",)
    ROLLOUT_FIELD_NUMBER: _ClassVar[int]
    rollout: Rollout
    def __init__(self, rollout: _Optional[_Union[Rollout, _Mapping]] = ...) -> None: ...

class ValidateRolloutRequest(_message.Message):
    __slots__ = ("name", "queries", "policy")
    NAME_FIELD_NUMBER: _ClassVar[int]
    QUERIES_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    name: str
    queries: _containers.RepeatedScalarFieldContainer[str]
    policy: PreflightPolicy
    def __init__(self, name: _Optional[str] = ..., queries: _Optional[_Iterable[str]] = ..., policy: _Optional[_Union[PreflightPolicy, _Mapping]] = ...) -> None: ...

class ValidateRolloutResponse(_message.Message):
    __slots__ = ("rollout",)
    ROLLOUT_FIELD_NUMBER: _ClassVar[int]
    rollout: Rollout
    def __init__(self, rollout: _Optional[_Union[Rollout, _Mapping]] = ...) -> None: ...

class StartRolloutRequest(_message.Message):
    __slots__ = ("name", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    reason: str
    def __init__(self, name: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class StartRolloutResponse(_message.Message):
    __slots__ = ("rollout",)
    ROLLOUT_FIELD_NUMBER: _ClassVar[int]
    rollout: Rollout
    def __init__(self, rollout: _Optional[_Union[Rollout, _Mapping]] = ...) -> None: ...

class QualityPolicy(_message.Message):
    __slots__ = ("shadow_sample_rate", "k", "min_overlap", "max_below_share", "min_samples", "alpha", "rbo_p")
    SHADOW_SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    MIN_OVERLAP_FIELD_NUMBER: _ClassVar[int]
    MAX_BELOW_SHARE_FIELD_NUMBER: _ClassVar[int]
    MIN_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    ALPHA_FIELD_NUMBER: _ClassVar[int]
    RBO_P_FIELD_NUMBER: _ClassVar[int]
    shadow_sample_rate: float
    k: int
    min_overlap: float
    max_below_share: float
    min_samples: int
    alpha: float
    rbo_p: float
    def __init__(self, shadow_sample_rate: _Optional[float] = ..., k: _Optional[int] = ..., min_overlap: _Optional[float] = ..., max_below_share: _Optional[float] = ..., min_samples: _Optional[int] = ..., alpha: _Optional[float] = ..., rbo_p: _Optional[float] = ...) -> None: ...

class DifferingId(_message.Message):
    __slots__ = ("id", "count")
    ID_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    id: str
    count: int
    def __init__(self, id: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class QualityReport(_message.Message):
    __slots__ = ("samples", "below", "k", "min_overlap", "max_below_share", "min_samples", "median_overlap", "mean_overlap", "mean_rbo", "e_value", "p_value", "rejected", "differing_ids", "summary")
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    BELOW_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    MIN_OVERLAP_FIELD_NUMBER: _ClassVar[int]
    MAX_BELOW_SHARE_FIELD_NUMBER: _ClassVar[int]
    MIN_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    MEDIAN_OVERLAP_FIELD_NUMBER: _ClassVar[int]
    MEAN_OVERLAP_FIELD_NUMBER: _ClassVar[int]
    MEAN_RBO_FIELD_NUMBER: _ClassVar[int]
    E_VALUE_FIELD_NUMBER: _ClassVar[int]
    P_VALUE_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    DIFFERING_IDS_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    samples: int
    below: int
    k: int
    min_overlap: float
    max_below_share: float
    min_samples: int
    median_overlap: float
    mean_overlap: float
    mean_rbo: float
    e_value: float
    p_value: float
    rejected: bool
    differing_ids: _containers.RepeatedCompositeFieldContainer[DifferingId]
    summary: str
    def __init__(self, samples: _Optional[int] = ..., below: _Optional[int] = ..., k: _Optional[int] = ..., min_overlap: _Optional[float] = ..., max_below_share: _Optional[float] = ..., min_samples: _Optional[int] = ..., median_overlap: _Optional[float] = ..., mean_overlap: _Optional[float] = ..., mean_rbo: _Optional[float] = ..., e_value: _Optional[float] = ..., p_value: _Optional[float] = ..., rejected: _Optional[bool] = ..., differing_ids: _Optional[_Iterable[_Union[DifferingId, _Mapping]]] = ..., summary: _Optional[str] = ...) -> None: ...
