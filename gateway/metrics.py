"""The gateway's Prometheus metrics, on a registry of its own (one per server instance).

`GatewayMetrics` is the error interceptor's RpcObserver (every RPC counted and timed per arm and
status code name, "OK", "UNAVAILABLE"...), the instrumented backend's observer (`observe_backend`)
and the rollout controller's observer (weight, state, decisions, the numbers behind checks). No gRPC
here: codes arrive as their names.

Label values stay bounded whatever clients send:

- `collection` is a collection or alias that exists (the known names are refreshed from the backend:
  at start-up, after every create/delete/alias/restore, and by the dependency probe); any other name
  a client sends is counted under `collection="_other"`. At most `MAX_LABELLED_COLLECTIONS` names
  are labelled.
- Only SearchService calls (Search, Upsert, Delete) carry a collection and an arm, in
  `searchgw_requests_total`; administration and health calls are counted in
  `searchgw_admin_requests_total{rpc,code}`.
- A call whose arm was forced with the `x-canary-arm` metadata (smoke and load tests) is counted
  under `arm="primary_forced"` / `arm="canary_forced"`, so it never reaches the canary alerts.
- A rollout's series exist while it is active and for `FINISHED_ROLLOUT_LINGER_S` after it ends
  (long enough for scrapes and the rolled-back alert to see the final values), then `sweep()`
  removes them. Rollouts that had already ended when the gateway started are not exported.

`_created` series are off (`prometheus_client.disable_created_metrics()`, process-wide).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from searchgw.gateway.backends.types import IndexBuild
from searchgw.gateway.rollout import DecisionKind, TestKind

log = logging.getLogger(__name__)

_LATENCY_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
ROLLOUT_STATES = ("running", "paused", "awaiting_promotion", "promoted", "rolled_back", "aborted", "baking",
                  "undone", "preparing", "prepared")
_ACTIVE_STATES = frozenset({"running", "paused", "awaiting_promotion", "baking", "preparing", "prepared"})
#: How a backfilled point ended (`searchgw_backfill_points_total{result}`).
BACKFILL_RESULTS = ("copied", "reembedded", "failed", "superseded")
_ARMS = ("primary", "canary")
#: How a sampled shadow search ended (`searchgw_shadow_queries_total{outcome}`; see gateway/shadow.py).
SHADOW_OUTCOMES = ("compared", "failed", "dropped_busy", "skipped_vector", "skipped_fallback")
_AGREEMENT_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)

#: The RPCs labelled with a collection and an arm: the data plane.
SEARCH_SERVICE = "searchgw.v1.SearchService"
#: The `collection` label of a name that is no collection or alias the gateway knows.
OTHER_COLLECTION = "_other"
#: Most collection and alias names used as label values; later ones count under `_other`.
MAX_LABELLED_COLLECTIONS = 1000
#: The label an interceptor puts on a call that carried the `x-canary-arm` metadata.
FORCED_ARM_LABEL = "forced_arm"
#: How long an ended rollout's series stay (the final state and the rolled-back counter must be
#: scraped, and SearchgwRolloutRolledBack looks 10 minutes back).
FINISHED_ROLLOUT_LINGER_S = 15 * 60.0


def _name_of(value) -> str:
    return value.name.lower() if hasattr(value, "name") else str(value).lower()


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        prometheus_client.disable_created_metrics()
        self.registry = registry or CollectorRegistry()
        self._clock = clock
        r = self.registry
        self.requests = Counter("searchgw_requests", "SearchService calls by method, logical collection, arm and "
                                "code", ["rpc", "collection", "arm", "code"], registry=r)
        self.admin_requests = Counter("searchgw_admin_requests", "Calls of every other service (collections, "
                                      "rollouts, health) by method and code", ["rpc", "code"], registry=r)
        self.request_duration = Histogram("searchgw_request_duration_seconds", "Gateway RPC duration",
                                          ["rpc", "arm"], buckets=_LATENCY_BUCKETS, registry=r)
        self.backend_duration = Histogram("searchgw_backend_duration_seconds", "Vector backend call duration",
                                          ["operation", "backend"], buckets=_LATENCY_BUCKETS, registry=r)
        self.embed_duration = Histogram("searchgw_embed_duration_seconds", "Embedder call duration",
                                        buckets=_LATENCY_BUCKETS, registry=r)
        self.snapshots = Counter("searchgw_snapshots", "Scheduled snapshots by collection (as scheduled) and "
                                 "result: ok, error, pruned (one the retention policy deleted), prune_error",
                                 ["collection", "result"], registry=r)
        self.index_builds = Counter("searchgw_index_builds", "Index builds (OptimizeCollection) by collection and "
                                    "result: ok, error", ["collection", "result"], registry=r)
        self.index_build_seconds = Histogram(
            "searchgw_index_build_seconds", "Index builds by step: total, build (the child process), writes_paused "
            "(copy and swap), searches_paused (the swap alone)", ["step"],
            buckets=(0.001, 0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 1800, 7200), registry=r)
        self.index_build_replayed_writes = Counter(
            "searchgw_index_build_replayed_writes", "Writes acknowledged during index builds and replayed onto "
            "the built copy", registry=r)
        self.index_builds_running = Gauge("searchgw_index_builds_running", "Index builds under way", registry=r)
        self.unkeyed = Counter("searchgw_unkeyed_requests", "Searches without a routing key, by fallback used",
                               ["fallback"], registry=r)
        self.fallbacks = Counter("searchgw_canary_fallbacks", "Canary failures answered from primary",
                                 ["collection"], registry=r)
        self.chunks_written = Counter("searchgw_chunks_written", "Chunks written by chunked upserts (every "
                                      "target collection's), by logical collection", ["collection"], registry=r)
        self.model_canary_vector_queries = Counter(
            "searchgw_model_canary_vector_queries",
            "Raw-vector searches during a model canary (arms in different vector spaces): served by primary, "
            "whose space they belong to, and kept out of the rollout analysis", ["collection"], registry=r)
        self.search_modes = Counter(
            "searchgw_search_modes", "Searches by ranking: dense, sparse (BM25) or hybrid, and a hybrid's fusion "
            "(rrf, dbsf; 'none' otherwise); counted once its mode and fusion are valid", ["mode", "fusion"], registry=r)
        self.rollout_weight = Gauge("searchgw_rollout_weight_ratio", "Canary share of keyed traffic (0..1)",
                                    ["rollout", "collection"], registry=r)
        self.rollout_state = Gauge("searchgw_rollout_state", "1 for the rollout's current state",
                                   ["rollout", "collection", "state"], registry=r)
        self.decisions = Counter("searchgw_rollout_decisions", "Rollout decisions by kind", ["rollout", "kind"],
                                 registry=r)
        self.analysis_requests = Gauge("searchgw_rollout_analysis_requests",
                                       "Analysed requests in the current stage at the last check", ["rollout", "arm"],
                                       registry=r)
        self.analysis_error_rate = Gauge("searchgw_rollout_analysis_error_rate",
                                         "Error rate in the current stage at the last check", ["rollout", "arm"],
                                         registry=r)
        self.analysis_latency = Gauge("searchgw_rollout_analysis_latency_seconds",
                                      "Latency quantile in the current stage at the last check (failures rank "
                                      "slowest; +Inf when they reach the quantile)", ["rollout", "arm"], registry=r)
        self.test_e_value = Gauge("searchgw_rollout_test_e_value",
                                  "E-value of each sequential test at the last check (rejects at 1/alpha)",
                                  ["rollout", "test"], registry=r)
        self.test_p_value = Gauge("searchgw_rollout_test_p_value",
                                  "Always-valid p-value of each sequential test at the last check",
                                  ["rollout", "test"], registry=r)
        self.test_estimate = Gauge("searchgw_rollout_test_estimate",
                                   "Effect estimate of each test at the last check (rate ratio canary/primary, "
                                   "or the canary's rate or key share)", ["rollout", "test"], registry=r)
        self.test_rejected = Gauge("searchgw_rollout_test_rejected",
                                   "1 when the test rejected its null hypothesis at its alpha this stage",
                                   ["rollout", "test"], registry=r)
        self.backfill_points = Counter("searchgw_backfill_points", "Points a rollout's backfill handled, by result: "
                                       "copied (vector kept), reembedded (stored text embedded with the canary's "
                                       "model), failed (no text to re-embed), superseded (a newer write won)",
                                       ["rollout", "result"], registry=r)
        self.backfill_progress = Gauge("searchgw_backfill_progress_ratio",
                                       "A preparing rollout's backfill progress (0..1, 1 when done)",
                                       ["rollout"], registry=r)
        self.shadow_queries = Counter(
            "searchgw_shadow_queries", "Sampled searches also run on a rollout's other arm, off the request path, by "
            "outcome: compared, failed (the shadow call; the caller never sees it), dropped_busy (too many in "
            "flight), skipped_vector (a raw vector on a model canary), skipped_fallback (primary answered for "
            "a failed canary)", ["rollout", "outcome"], registry=r)
        self.shadow_overlap = Histogram("searchgw_shadow_overlap_ratio",
                                        "overlap@k between a rollout's arms per shadow comparison", ["rollout"],
                                        buckets=_AGREEMENT_BUCKETS, registry=r)
        self.shadow_rbo = Histogram("searchgw_shadow_rbo_ratio",
                                    "Rank-biased overlap between a rollout's arms per shadow comparison", ["rollout"],
                                    buckets=_AGREEMENT_BUCKETS, registry=r)
        self.dependency_up = Gauge("searchgw_dependency_up", "1 when the dependency answered its last probe",
                                   ["dependency"], registry=r)
        self.ready = Gauge("searchgw_ready", "1 when the gateway is SERVING", registry=r)
        self.state_store_up = Gauge("searchgw_state_store_up", "1 while the rollout state store (Redis with "
                                    "--state redis) answers; 0: routing keeps the last state, no decision is taken",
                                    registry=r)
        self.rollout_leader = Gauge("searchgw_controller_leader", "1 while this replica leads the rollout analysis "
                                    "(always 1 with --state sqlite)", registry=r)
        self._init_experiment_metrics(r)
        #: Rollouts with exported series, and the collection each is labelled with.
        self._exported_rollouts: dict[str, str] = {}
        #: Ended rollouts still exported, and when they ended (clock seconds).
        self._ended_at: dict[str, float] = {}
        self._collections: frozenset[str] = frozenset()
        #: Labelled children of the per-call metrics, by label values (see `observe`).
        self._rpc_children: dict[tuple[str, str, str, str], tuple[Counter, Histogram]] = {}
        self._backend_children: dict[tuple[str, str], Histogram] = {}

    # -- collection label ------------------------------------------------------------------
    def set_known_collections(self, names: Iterable[str]) -> None:
        """Replace the names used as `collection` label values (collections and aliases that exist)."""
        names = sorted(set(names))
        if len(names) > MAX_LABELLED_COLLECTIONS:
            log.warning("more collections and aliases than labelled ones; the rest count as _other",
                        extra={"names": len(names), "labelled": MAX_LABELLED_COLLECTIONS})
            names = names[:MAX_LABELLED_COLLECTIONS]
        self._collections = frozenset(names)

    def observe_snapshot(self, collection: str, result: str) -> None:
        """The snapshot scheduler's outcomes; `collection` is a name from the gateway's own schedule."""
        self.snapshots.labels(collection=collection, result=result).inc()

    def observe_index_build_start(self, collection: str) -> None:
        self.index_builds_running.inc()

    def observe_index_build(self, collection: str, build: IndexBuild | None) -> None:
        """One finished index build (None: it failed)."""
        self.index_builds_running.dec()
        self.index_builds.labels(collection=self.collection_label(collection),
                                 result="error" if build is None else "ok").inc()
        if build is not None:
            for step, seconds in (("total", build.seconds), ("build", build.build_seconds),
                                  ("writes_paused", build.writes_paused_seconds),
                                  ("searches_paused", build.searches_paused_seconds)):
                self.index_build_seconds.labels(step=step).observe(seconds)
            self.index_build_replayed_writes.inc(build.replayed_writes)

    def add_known_collection(self, name: str) -> None:
        if name not in self._collections and len(self._collections) < MAX_LABELLED_COLLECTIONS:
            self._collections = self._collections | {name}

    def forget_known_collection(self, name: str) -> None:
        self._collections = self._collections - {name}

    def collection_label(self, name: str) -> str:
        return name if name in self._collections else OTHER_COLLECTION

    # -- RpcObserver -----------------------------------------------------------------------
    def observe(self, method: str, code: str, seconds: float, labels: dict[str, str]) -> None:
        """One RPC: its full method name, the name of its final status code, duration and labels.

        The labelled children are cached per label tuple (`Counter.labels()` costs a lock and several
        dict operations per call); every label value is bounded (see the module docstring), so the
        caches are too."""
        arm = labels.get("arm", "none")
        if arm != "none" and labels.get(FORCED_ARM_LABEL):
            arm = f"{arm}_forced"
        collection = self.collection_label(labels.get("collection", ""))
        key = (method, collection, arm, code)
        children = self._rpc_children.get(key)
        if children is None:
            service, _, rpc = method.lstrip("/").rpartition("/")
            counter = (self.requests.labels(rpc, collection, arm, code) if service == SEARCH_SERVICE
                       else self.admin_requests.labels(rpc, code))
            children = self._rpc_children[key] = (counter, self.request_duration.labels(rpc, arm))
        children[0].inc()
        children[1].observe(seconds)

    # -- backend observer ------------------------------------------------------------------
    def observe_backend(self, operation: str, backend: str, seconds: float) -> None:
        """One vector backend call (the InstrumentedBackend's observer); children cached as in `observe`."""
        child = self._backend_children.get((operation, backend))
        if child is None:
            child = self._backend_children[(operation, backend)] = self.backend_duration.labels(operation, backend)
        child.observe(seconds)

    # -- rollout observer ------------------------------------------------------------------
    def on_change(self, rollout) -> None:
        state = _name_of(rollout.state)
        name = rollout.name
        if state not in _ACTIVE_STATES:
            if name not in self._exported_rollouts:
                return  # ended before this process saw it run: nothing to show
            self._ended_at.setdefault(name, self._clock())
        elif name not in self._exported_rollouts:
            self._exported_rollouts[name] = rollout.collection
            # Every kind's counter at 0 from the start, so that `increase()` in alerts and
            # annotations also sees the first decision of a kind.
            for kind in DecisionKind:
                if kind is not DecisionKind.UNSPECIFIED:
                    self.decisions.labels(name, kind.name.lower())
        self.rollout_weight.labels(name, rollout.collection).set(rollout.weight_percent / 100.0)
        for candidate in ROLLOUT_STATES:
            self.rollout_state.labels(name, rollout.collection, candidate).set(1 if candidate == state else 0)
        if rollout.backfill is not None:
            self.backfill_progress.labels(name).set(rollout.backfill.ratio)

    def observe_backfill(self, rollout: str, result: str, points: int) -> None:
        """`points` points of `rollout`'s backfill ended as `result` (one of BACKFILL_RESULTS)."""
        self.backfill_points.labels(rollout, result).inc(points)

    def observe_shadow(self, rollout: str, outcome: str) -> None:
        """A sampled shadow search of `rollout` ended as `outcome` (one of SHADOW_OUTCOMES)."""
        self.shadow_queries.labels(rollout, outcome).inc()

    def observe_comparison(self, rollout: str, overlap: float, rbo: float) -> None:
        self.shadow_overlap.labels(rollout).observe(overlap)
        self.shadow_rbo.labels(rollout).observe(rbo)

    def on_decision(self, rollout, decision) -> None:
        self.on_change(rollout)
        if rollout.name not in self._exported_rollouts:
            return
        self.decisions.labels(rollout.name, _name_of(decision.kind)).inc()
        for arm, stats in (("primary", decision.primary), ("canary", decision.canary)):
            if stats is None:
                continue
            self.analysis_requests.labels(rollout.name, arm).set(stats.requests)
            self.analysis_error_rate.labels(rollout.name, arm).set(stats.error_rate)
            if stats.latency_s is not None:
                self.analysis_latency.labels(rollout.name, arm).set(stats.latency_s)
        for test in decision.tests:
            kind = _name_of(test.kind)
            self.test_e_value.labels(rollout.name, kind).set(test.e_value)
            self.test_p_value.labels(rollout.name, kind).set(test.p_value)
            self.test_estimate.labels(rollout.name, kind).set(math.nan if test.estimate is None else test.estimate)
            self.test_rejected.labels(rollout.name, kind).set(1 if _name_of(test.outcome) == "rejected" else 0)

    def sweep(self) -> list[str]:
        """Remove the series of rollouts that ended `FINISHED_ROLLOUT_LINGER_S` ago or more; their names."""
        now = self._clock()
        expired = [name for name, ended in self._ended_at.items() if now - ended >= FINISHED_ROLLOUT_LINGER_S]
        for name in expired:
            self._remove_rollout(name)
        return expired

    def _remove_rollout(self, name: str) -> None:
        collection = self._exported_rollouts.pop(name)
        self._ended_at.pop(name, None)
        removals: list[tuple[Gauge | Counter | Histogram, tuple[str, ...]]] = [(self.rollout_weight, (name, collection))]
        removals += [(self.rollout_state, (name, collection, state)) for state in ROLLOUT_STATES]
        removals += [(self.decisions, (name, kind.name.lower())) for kind in DecisionKind]
        removals += [(self.backfill_progress, (name,))]
        removals += [(self.backfill_points, (name, result)) for result in BACKFILL_RESULTS]
        removals += [(self.shadow_queries, (name, outcome)) for outcome in SHADOW_OUTCOMES]
        removals += [(self.shadow_overlap, (name,)), (self.shadow_rbo, (name,))]
        removals += [(gauge, (name, arm)) for arm in _ARMS
                     for gauge in (self.analysis_requests, self.analysis_error_rate, self.analysis_latency)]
        removals += [(gauge, (name, kind.name.lower())) for kind in TestKind
                     for gauge in (self.test_e_value, self.test_p_value, self.test_estimate, self.test_rejected)]
        for metric, values in removals:
            try:
                metric.remove(*values)
            except KeyError:
                pass  # never set (e.g. no check ran, so no analysis numbers)


    # -- experiments (the ExperimentManager's observer) --------------------------------------------
    def _init_experiment_metrics(self, r: CollectorRegistry) -> None:
        self.experiment_searches = Counter(
            "searchgw_experiment_searches", "Searches an experiment routed, by arm and status code name",
            ["experiment", "arm", "code"], registry=r)
        self.experiment_search_duration = Histogram(
            "searchgw_experiment_search_duration_seconds", "Duration of the searches an experiment routed, by arm",
            ["experiment", "arm"], buckets=_LATENCY_BUCKETS, registry=r)
        self.experiment_outcomes = Counter(
            "searchgw_experiment_outcomes", "Outcomes clients reported, by arm, kind and status (accepted, "
            "duplicate, expired, ended, overloaded)", ["experiment", "arm", "kind", "status"], registry=r)
        self.experiment_state = Gauge("searchgw_experiment_state", "1 for the experiment's current state",
                                      ["experiment", "collection", "state"], registry=r)
        self.experiment_test_p_value = Gauge(
            "searchgw_experiment_test_p_value", "Each variant's always-valid p-value against control at the last "
            "analysis (test: goal_better, goal_worse, errors, latency)", ["experiment", "arm", "test"], registry=r)
        self.experiment_test_rejected = Gauge(
            "searchgw_experiment_test_rejected", "1 when the test rejected at the experiment's alpha / N",
            ["experiment", "arm", "test"], registry=r)
        self._experiment_children: dict[tuple[str, str, str], tuple[Counter, Histogram]] = {}
        self.experiment_shadow_queries = Counter(
            "searchgw_experiment_shadow_queries", "Sampled searches of a variant also run on control, off the request "
            "path, by outcome: compared, failed, dropped_busy (the shared shadow sampler was full), skipped_vector",
            ["experiment", "arm", "outcome"], registry=r)
        self.experiment_shadow_overlap = Histogram(
            "searchgw_experiment_shadow_overlap_ratio", "overlap@k between control and a variant per shadow comparison",
            ["experiment", "arm"], buckets=_AGREEMENT_BUCKETS, registry=r)
        self.experiment_shadow_rbo = Histogram(
            "searchgw_experiment_shadow_rbo_ratio", "Rank-biased overlap between control and a variant per shadow "
            "comparison", ["experiment", "arm"], buckets=_AGREEMENT_BUCKETS, registry=r)
        self.experiment_quality_median_overlap = Gauge(
            "searchgw_experiment_quality_median_overlap", "A variant's median overlap@k with control over its shadow "
            "comparisons so far (at the last analysis)", ["experiment", "arm"], registry=r)
        self.experiment_quality_vetoed = Gauge(
            "searchgw_experiment_quality_vetoed", "1 when the quality guard keeps the variant from winning",
            ["experiment", "arm"], registry=r)
        self.experiment_winner = Gauge("searchgw_experiment_winner", "1 for the arm the tests name the winner",
                                       ["experiment", "arm"], registry=r)

    def observe_experiment_search(self, experiment: str, arm: str, code: str, seconds: float) -> None:
        # On the request path: the labelled children are looked up once (`labels()` costs microseconds).
        children = self._experiment_children.get((experiment, arm, code))
        if children is None:
            children = self._experiment_children[(experiment, arm, code)] = (
                self.experiment_searches.labels(experiment, arm, code),
                self.experiment_search_duration.labels(experiment, arm))
        children[0].inc()
        children[1].observe(seconds)

    def observe_experiment_shadow_query(self, experiment: str, arm: str, outcome: str) -> None:
        self.experiment_shadow_queries.labels(experiment, arm, outcome).inc()

    def observe_experiment_comparison(self, experiment: str, arm: str, overlap: float, rbo: float) -> None:
        self.experiment_shadow_overlap.labels(experiment, arm).observe(overlap)
        self.experiment_shadow_rbo.labels(experiment, arm).observe(rbo)

    def observe_experiment_outcome(self, experiment: str, arm: str, kind: str, status: str) -> None:
        self.experiment_outcomes.labels(experiment, arm, kind, status).inc()

    def on_experiment(self, experiment, verdict) -> None:
        """State, winner and the tests after a transition or an analysis (label values: names the
        manager validated; arms and tests are bounded per experiment)."""
        for state in ("created", "running", "paused", "stopped", "concluded"):
            self.experiment_state.labels(experiment.name, experiment.collection, state).set(
                1 if experiment.state.name.lower() == state else 0)
        for arm in experiment.arms:
            self.experiment_winner.labels(experiment.name, arm.name).set(1 if experiment.winner == arm.name else 0)
        if verdict is None:
            return
        for variant in verdict.variants:
            for comparison in variant.comparisons:
                labels = (experiment.name, variant.variant, comparison.comparison.value)
                self.experiment_test_p_value.labels(*labels).set(comparison.result.p_value)
                self.experiment_test_rejected.labels(*labels).set(1 if comparison.result.rejected else 0)
        for name, quality in verdict.quality.items():
            if quality.median_overlap is not None:
                self.experiment_quality_median_overlap.labels(experiment.name, name).set(quality.median_overlap)
            self.experiment_quality_vetoed.labels(experiment.name, name).set(1 if name in verdict.vetoes else 0)
