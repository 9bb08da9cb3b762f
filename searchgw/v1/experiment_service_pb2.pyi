import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from searchgw.v1 import rollout_service_pb2 as _rollout_service_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ExperimentArm(_message.Message):
    __slots__ = ("name", "collection", "split_bps")
    NAME_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    SPLIT_BPS_FIELD_NUMBER: _ClassVar[int]
    name: str
    collection: str
    split_bps: int
    def __init__(self, name: _Optional[str] = ..., collection: _Optional[str] = ..., split_bps: _Optional[int] = ...) -> None: ...

class ExperimentPolicy(_message.Message):
    __slots__ = ("alpha", "goal", "outcome_kinds", "latency_threshold", "interval", "quality", "quality_guard")
    ALPHA_FIELD_NUMBER: _ClassVar[int]
    GOAL_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_KINDS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    QUALITY_GUARD_FIELD_NUMBER: _ClassVar[int]
    alpha: float
    goal: str
    outcome_kinds: _containers.RepeatedScalarFieldContainer[str]
    latency_threshold: _duration_pb2.Duration
    interval: _duration_pb2.Duration
    quality: _rollout_service_pb2.QualityPolicy
    quality_guard: bool
    def __init__(self, alpha: _Optional[float] = ..., goal: _Optional[str] = ..., outcome_kinds: _Optional[_Iterable[str]] = ..., latency_threshold: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., quality: _Optional[_Union[_rollout_service_pb2.QualityPolicy, _Mapping]] = ..., quality_guard: _Optional[bool] = ...) -> None: ...

class OutcomeCount(_message.Message):
    __slots__ = ("kind", "count", "value_sum", "rate")
    KIND_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    VALUE_SUM_FIELD_NUMBER: _ClassVar[int]
    RATE_FIELD_NUMBER: _ClassVar[int]
    kind: str
    count: int
    value_sum: float
    rate: float
    def __init__(self, kind: _Optional[str] = ..., count: _Optional[int] = ..., value_sum: _Optional[float] = ..., rate: _Optional[float] = ...) -> None: ...

class ArmResult(_message.Message):
    __slots__ = ("arm", "collection", "searches", "errors", "slow", "mean_latency", "outcomes")
    ARM_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    SEARCHES_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    SLOW_FIELD_NUMBER: _ClassVar[int]
    MEAN_LATENCY_FIELD_NUMBER: _ClassVar[int]
    OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    arm: str
    collection: str
    searches: int
    errors: int
    slow: int
    mean_latency: _duration_pb2.Duration
    outcomes: _containers.RepeatedCompositeFieldContainer[OutcomeCount]
    def __init__(self, arm: _Optional[str] = ..., collection: _Optional[str] = ..., searches: _Optional[int] = ..., errors: _Optional[int] = ..., slow: _Optional[int] = ..., mean_latency: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., outcomes: _Optional[_Iterable[_Union[OutcomeCount, _Mapping]]] = ...) -> None: ...

class ComparisonTest(_message.Message):
    __slots__ = ("name", "e_value", "p_value", "rejected", "estimate", "lower", "upper", "alpha")
    NAME_FIELD_NUMBER: _ClassVar[int]
    E_VALUE_FIELD_NUMBER: _ClassVar[int]
    P_VALUE_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    ESTIMATE_FIELD_NUMBER: _ClassVar[int]
    LOWER_FIELD_NUMBER: _ClassVar[int]
    UPPER_FIELD_NUMBER: _ClassVar[int]
    ALPHA_FIELD_NUMBER: _ClassVar[int]
    name: str
    e_value: float
    p_value: float
    rejected: bool
    estimate: float
    lower: float
    upper: float
    alpha: float
    def __init__(self, name: _Optional[str] = ..., e_value: _Optional[float] = ..., p_value: _Optional[float] = ..., rejected: _Optional[bool] = ..., estimate: _Optional[float] = ..., lower: _Optional[float] = ..., upper: _Optional[float] = ..., alpha: _Optional[float] = ...) -> None: ...

class VariantVerdict(_message.Message):
    __slots__ = ("arm", "status", "tests", "quality", "veto")
    class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATUS_UNSPECIFIED: _ClassVar[VariantVerdict.Status]
        STATUS_UNDECIDED: _ClassVar[VariantVerdict.Status]
        STATUS_BETTER: _ClassVar[VariantVerdict.Status]
        STATUS_WORSE: _ClassVar[VariantVerdict.Status]
        STATUS_HARMFUL: _ClassVar[VariantVerdict.Status]
        STATUS_BETTER_BUT_HARMFUL: _ClassVar[VariantVerdict.Status]
    STATUS_UNSPECIFIED: VariantVerdict.Status
    STATUS_UNDECIDED: VariantVerdict.Status
    STATUS_BETTER: VariantVerdict.Status
    STATUS_WORSE: VariantVerdict.Status
    STATUS_HARMFUL: VariantVerdict.Status
    STATUS_BETTER_BUT_HARMFUL: VariantVerdict.Status
    ARM_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TESTS_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    VETO_FIELD_NUMBER: _ClassVar[int]
    arm: str
    status: VariantVerdict.Status
    tests: _containers.RepeatedCompositeFieldContainer[ComparisonTest]
    quality: _rollout_service_pb2.QualityReport
    veto: str
    def __init__(self, arm: _Optional[str] = ..., status: _Optional[_Union[VariantVerdict.Status, str]] = ..., tests: _Optional[_Iterable[_Union[ComparisonTest, _Mapping]]] = ..., quality: _Optional[_Union[_rollout_service_pb2.QualityReport, _Mapping]] = ..., veto: _Optional[str] = ...) -> None: ...

class ExperimentDecision(_message.Message):
    __slots__ = ("time", "kind", "reason", "actor")
    TIME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    time: _timestamp_pb2.Timestamp
    kind: str
    reason: str
    actor: str
    def __init__(self, time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., kind: _Optional[str] = ..., reason: _Optional[str] = ..., actor: _Optional[str] = ...) -> None: ...

class Experiment(_message.Message):
    __slots__ = ("name", "collection", "control_collection", "control_split_bps", "variants", "policy", "state", "winner", "summary", "arms", "verdicts", "concluded_arm", "promoted", "decisions", "create_time", "start_time", "end_time", "update_time")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATE_UNSPECIFIED: _ClassVar[Experiment.State]
        STATE_CREATED: _ClassVar[Experiment.State]
        STATE_RUNNING: _ClassVar[Experiment.State]
        STATE_PAUSED: _ClassVar[Experiment.State]
        STATE_STOPPED: _ClassVar[Experiment.State]
        STATE_CONCLUDED: _ClassVar[Experiment.State]
    STATE_UNSPECIFIED: Experiment.State
    STATE_CREATED: Experiment.State
    STATE_RUNNING: Experiment.State
    STATE_PAUSED: Experiment.State
    STATE_STOPPED: Experiment.State
    STATE_CONCLUDED: Experiment.State
    NAME_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    CONTROL_COLLECTION_FIELD_NUMBER: _ClassVar[int]
    CONTROL_SPLIT_BPS_FIELD_NUMBER: _ClassVar[int]
    VARIANTS_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    WINNER_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    ARMS_FIELD_NUMBER: _ClassVar[int]
    VERDICTS_FIELD_NUMBER: _ClassVar[int]
    CONCLUDED_ARM_FIELD_NUMBER: _ClassVar[int]
    PROMOTED_FIELD_NUMBER: _ClassVar[int]
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    collection: str
    control_collection: str
    control_split_bps: int
    variants: _containers.RepeatedCompositeFieldContainer[ExperimentArm]
    policy: ExperimentPolicy
    state: Experiment.State
    winner: str
    summary: str
    arms: _containers.RepeatedCompositeFieldContainer[ArmResult]
    verdicts: _containers.RepeatedCompositeFieldContainer[VariantVerdict]
    concluded_arm: str
    promoted: bool
    decisions: _containers.RepeatedCompositeFieldContainer[ExperimentDecision]
    create_time: _timestamp_pb2.Timestamp
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., collection: _Optional[str] = ..., control_collection: _Optional[str] = ..., control_split_bps: _Optional[int] = ..., variants: _Optional[_Iterable[_Union[ExperimentArm, _Mapping]]] = ..., policy: _Optional[_Union[ExperimentPolicy, _Mapping]] = ..., state: _Optional[_Union[Experiment.State, str]] = ..., winner: _Optional[str] = ..., summary: _Optional[str] = ..., arms: _Optional[_Iterable[_Union[ArmResult, _Mapping]]] = ..., verdicts: _Optional[_Iterable[_Union[VariantVerdict, _Mapping]]] = ..., concluded_arm: _Optional[str] = ..., promoted: _Optional[bool] = ..., decisions: _Optional[_Iterable[_Union[ExperimentDecision, _Mapping]]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateExperimentRequest(_message.Message):
    __slots__ = ("experiment",)
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    experiment: Experiment
    def __init__(self, experiment: _Optional[_Union[Experiment, _Mapping]] = ...) -> None: ...

class CreateExperimentResponse(_message.Message):
    __slots__ = ("experiment",)
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    experiment: Experiment
    def __init__(self, experiment: _Optional[_Union[Experiment, _Mapping]] = ...) -> None: ...

class GetExperimentRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetExperimentResponse(_message.Message):
    __slots__ = ("experiment",)
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    experiment: Experiment
    def __init__(self, experiment: _Optional[_Union[Experiment, _Mapping]] = ...) -> None: ...

class ListExperimentsRequest(_message.Message):
    __slots__ = ("collection", "page_size", "page_token")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    collection: str
    page_size: int
    page_token: str
    def __init__(self, collection: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListExperimentsResponse(_message.Message):
    __slots__ = ("experiments", "next_page_token")
    EXPERIMENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    experiments: _containers.RepeatedCompositeFieldContainer[Experiment]
    next_page_token: str
    def __init__(self, experiments: _Optional[_Iterable[_Union[Experiment, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class StartExperimentRequest(_message.Message):
    __slots__ = ("name", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    reason: str
    def __init__(self, name: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class StartExperimentResponse(_message.Message):
    __slots__ = ("experiment",)
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    experiment: Experiment
    def __init__(self, experiment: _Optional[_Union[Experiment, _Mapping]] = ...) -> None: ...

class PauseExperimentRequest(_message.Message):
    __slots__ = ("name", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    reason: str
    def __init__(self, name: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class PauseExperimentResponse(_message.Message):
    __slots__ = ("experiment",)
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    experiment: Experiment
    def __init__(self, experiment: _Optional[_Union[Experiment, _Mapping]] = ...) -> None: ...

class StopExperimentRequest(_message.Message):
    __slots__ = ("name", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    reason: str
    def __init__(self, name: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class StopExperimentResponse(_message.Message):
    __slots__ = ("experiment",)
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    experiment: Experiment
    def __init__(self, experiment: _Optional[_Union[Experiment, _Mapping]] = ...) -> None: ...

class ConcludeExperimentRequest(_message.Message):
    __slots__ = ("name", "arm", "promote", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ARM_FIELD_NUMBER: _ClassVar[int]
    PROMOTE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    arm: str
    promote: bool
    reason: str
    def __init__(self, name: _Optional[str] = ..., arm: _Optional[str] = ..., promote: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class ConcludeExperimentResponse(_message.Message):
    __slots__ = ("experiment",)
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    experiment: Experiment
    def __init__(self, experiment: _Optional[_Union[Experiment, _Mapping]] = ...) -> None: ...

class WatchExperimentRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class WatchExperimentResponse(_message.Message):
    __slots__ = ("experiment",)
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    experiment: Experiment
    def __init__(self, experiment: _Optional[_Union[Experiment, _Mapping]] = ...) -> None: ...

class Outcome(_message.Message):
    __slots__ = ("search_id", "kind", "value")
    SEARCH_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    search_id: str
    kind: str
    value: float
    def __init__(self, search_id: _Optional[str] = ..., kind: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...

class OutcomeResult(_message.Message):
    __slots__ = ("status",)
    class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATUS_UNSPECIFIED: _ClassVar[OutcomeResult.Status]
        STATUS_ACCEPTED: _ClassVar[OutcomeResult.Status]
        STATUS_DUPLICATE: _ClassVar[OutcomeResult.Status]
        STATUS_EXPIRED: _ClassVar[OutcomeResult.Status]
        STATUS_ENDED: _ClassVar[OutcomeResult.Status]
        STATUS_OVERLOADED: _ClassVar[OutcomeResult.Status]
    STATUS_UNSPECIFIED: OutcomeResult.Status
    STATUS_ACCEPTED: OutcomeResult.Status
    STATUS_DUPLICATE: OutcomeResult.Status
    STATUS_EXPIRED: OutcomeResult.Status
    STATUS_ENDED: OutcomeResult.Status
    STATUS_OVERLOADED: OutcomeResult.Status
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: OutcomeResult.Status
    def __init__(self, status: _Optional[_Union[OutcomeResult.Status, str]] = ...) -> None: ...

class ReportOutcomeRequest(_message.Message):
    __slots__ = ("outcomes",)
    OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    outcomes: _containers.RepeatedCompositeFieldContainer[Outcome]
    def __init__(self, outcomes: _Optional[_Iterable[_Union[Outcome, _Mapping]]] = ...) -> None: ...

class ReportOutcomeResponse(_message.Message):
    __slots__ = ("results", "accepted")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[OutcomeResult]
    accepted: int
    def __init__(self, results: _Optional[_Iterable[_Union[OutcomeResult, _Mapping]]] = ..., accepted: _Optional[int] = ...) -> None: ...
