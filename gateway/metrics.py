"""The gateway's Prometheus metrics, on a registry of its own (one per server instance).

`GatewayMetrics` is the error interceptor's RpcObserver (every RPC counted and timed per arm and
code) and the rollout controller's observer (weight, state, decisions, the numbers behind checks).
"""

from __future__ import annotations

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from gateway.rollout import DecisionKind

_LATENCY_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
ROLLOUT_STATES = ("running", "paused", "awaiting_promotion", "promoted", "rolled_back", "aborted")


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter("searchgw_requests", "Gateway RPCs by method, logical collection, arm and code",
                                ["rpc", "collection", "arm", "code"], registry=r)
        self.request_duration = Histogram("searchgw_request_duration_seconds", "Gateway RPC duration",
                                          ["rpc", "arm"], buckets=_LATENCY_BUCKETS, registry=r)
        self.backend_duration = Histogram("searchgw_backend_duration_seconds", "Vector backend call duration",
                                          ["operation", "backend"], buckets=_LATENCY_BUCKETS, registry=r)
        self.embed_duration = Histogram("searchgw_embed_duration_seconds", "Embedder call duration",
                                        buckets=_LATENCY_BUCKETS, registry=r)
        self.unkeyed = Counter("searchgw_unkeyed_requests", "Searches without a routing key, by fallback used",
                               ["fallback"], registry=r)
        self.fallbacks = Counter("searchgw_canary_fallbacks", "Canary failures answered from primary",
                                 ["collection"], registry=r)
        self.rollout_weight = Gauge("searchgw_rollout_weight_ratio", "Canary share of keyed traffic (0..1)",
                                    ["rollout", "collection"], registry=r)
        self.rollout_state = Gauge("searchgw_rollout_state", "1 for the rollout's current state",
                                   ["rollout", "collection", "state"], registry=r)
        self.decisions = Counter("searchgw_rollout_decisions", "Rollout decisions by kind", ["rollout", "kind"],
                                 registry=r)
        self.analysis_requests = Gauge("searchgw_rollout_analysis_requests",
                                       "Requests in the analysis window at the last check", ["rollout", "arm"],
                                       registry=r)
        self.analysis_error_rate = Gauge("searchgw_rollout_analysis_error_rate",
                                         "Error rate in the analysis window at the last check", ["rollout", "arm"],
                                         registry=r)
        self.analysis_latency = Gauge("searchgw_rollout_analysis_latency_seconds",
                                      "Latency quantile in the analysis window at the last check",
                                      ["rollout", "arm"], registry=r)
        self.ready = Gauge("searchgw_ready", "1 when the gateway is SERVING", registry=r)
        self._counted_rollouts: set[str] = set()

    # -- RpcObserver -----------------------------------------------------------------------
    def observe(self, method: str, code: grpc.StatusCode, seconds: float, labels: dict[str, str]) -> None:
        rpc = method.rsplit("/", 1)[-1]
        arm = labels.get("arm", "none")
        self.requests.labels(rpc, labels.get("collection", ""), arm, code.name).inc()
        self.request_duration.labels(rpc, arm).observe(seconds)

    # -- rollout observer ------------------------------------------------------------------
    def _init_decision_counters(self, rollout) -> None:
        """Create every kind's counter at 0 the first time a rollout is seen, so that `increase()`
        in alerts and annotations also sees the first decision of a kind."""
        if rollout.name in self._counted_rollouts:
            return
        self._counted_rollouts.add(rollout.name)
        for kind in DecisionKind:
            if kind is not DecisionKind.UNSPECIFIED:
                self.decisions.labels(rollout.name, kind.name.lower())

    def on_change(self, rollout) -> None:
        self._init_decision_counters(rollout)
        self.rollout_weight.labels(rollout.name, rollout.collection).set(rollout.weight_percent / 100.0)
        current = rollout.state.name.lower() if hasattr(rollout.state, "name") else str(rollout.state).lower()
        for state in ROLLOUT_STATES:
            self.rollout_state.labels(rollout.name, rollout.collection, state).set(1 if state == current else 0)

    def on_decision(self, rollout, decision) -> None:
        kind = decision.kind.name.lower() if hasattr(decision.kind, "name") else str(decision.kind).lower()
        self.decisions.labels(rollout.name, kind).inc()
        for arm, stats in (("primary", decision.primary), ("canary", decision.canary)):
            if stats is None:
                continue
            self.analysis_requests.labels(rollout.name, arm).set(stats.requests)
            self.analysis_error_rate.labels(rollout.name, arm).set(stats.error_rate)
            if stats.latency_s is not None:
                self.analysis_latency.labels(rollout.name, arm).set(stats.latency_s)
        self.on_change(rollout)
