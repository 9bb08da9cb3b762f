"""Experiments: an alias split between control and N variant collections, judged on client outcomes.

    model         Experiment, ArmSpec, ExperimentPolicy, ArmCounts, the states; validate_new_experiment
    significance  every variant against control: four anytime-valid tests each at α / N (pure math)
    outcomes      signed search ids (SearchIds) and the once-per-kind ledger of reported outcomes
    store         ExperimentStore (protocol): SQLite (the rollouts' file), Redis, memory
    manager       ExperimentManager: lifecycle, routing on the request path (held/assign), counts,
                  outcomes, folds and verdicts, watch

No grpc here; time comes from injected clocks.
"""

from searchgw.gateway.experiments.manager import (
    ArmRoute,
    ExperimentManager,
    ExperimentObserver,
    HeldAlias,
    QualityGuard,
)
from searchgw.gateway.experiments.model import (
    CONTROL,
    ArmCounts,
    ArmSpec,
    Experiment,
    ExperimentDecision,
    ExperimentPolicy,
    ExperimentState,
    OutcomeTotals,
    validate_new_experiment,
)
from searchgw.gateway.experiments.outcomes import OutcomeLedger, OutcomeStatus, SearchId, SearchIds
from searchgw.gateway.experiments.significance import (
    Comparison,
    ExperimentEvidence,
    ExperimentVerdict,
    SliceCounts,
    VariantStatus,
    VariantVerdict,
)
from searchgw.gateway.experiments.store import (
    ExperimentStore,
    MemoryExperimentStore,
    RedisExperimentStore,
    SqliteExperimentStore,
)

__all__ = [
    "ArmCounts", "ArmRoute", "ArmSpec", "CONTROL", "Comparison", "Experiment", "ExperimentDecision",
    "ExperimentEvidence", "ExperimentManager", "ExperimentObserver", "ExperimentPolicy", "ExperimentState",
    "ExperimentStore", "ExperimentVerdict", "HeldAlias", "MemoryExperimentStore", "OutcomeLedger", "OutcomeStatus",
    "OutcomeTotals", "QualityGuard", "RedisExperimentStore", "SearchId", "SearchIds", "SliceCounts", "SqliteExperimentStore",
    "VariantStatus", "VariantVerdict", "validate_new_experiment",
]
