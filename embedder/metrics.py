"""The embedder's Prometheus metrics, on a registry of its own (one per server instance). Free of gRPC:
the error interceptor reports each RPC's status code by name ("OK", "RESOURCE_EXHAUSTED", ...)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from searchgw.embedder.batching import BatchStats

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_TOKEN_BUCKETS = (16, 64, 256, 1024, 4096, 16384, 65536)


class EmbedderMetrics:
    """Counts and times every RPC and every model run; also the RpcObserver of the error interceptor."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter("searchgw_embedder_requests", "Embedder RPCs by method and status code",
                                ["rpc", "code"], registry=r)
        self.request_duration = Histogram("searchgw_embedder_request_duration_seconds", "Embedder RPC duration",
                                          ["rpc"], buckets=_LATENCY_BUCKETS, registry=r)
        self.queue_duration = Histogram("searchgw_embedder_queue_duration_seconds",
                                        "Time an input waited for a model run", ["model"],
                                        buckets=_LATENCY_BUCKETS, registry=r)
        self.inference_duration = Histogram("searchgw_embedder_inference_duration_seconds",
                                            "Duration of one model run", ["model"], buckets=_LATENCY_BUCKETS,
                                            registry=r)
        self.batch_size = Histogram("searchgw_embedder_batch_size", "Inputs per model run", ["model"],
                                    buckets=_SIZE_BUCKETS, registry=r)
        self.batch_tokens = Histogram("searchgw_embedder_batch_tokens", "Padded tokens per model run", ["model"],
                                      buckets=_TOKEN_BUCKETS, registry=r)
        self.queue_depth = Gauge("searchgw_embedder_queue_depth", "Inputs waiting for the model", ["model"],
                                 registry=r)
        self.cache_hits = Counter("searchgw_embedder_cache_hits", "Inputs answered from the cache", registry=r)
        self.cache_misses = Counter("searchgw_embedder_cache_misses", "Inputs not in the cache", registry=r)
        self.texts = Counter("searchgw_embedder_texts", "Texts embedded", ["model"], registry=r)
        self.chunks = Counter("searchgw_embedder_chunks", "Chunks ChunkText cut texts into", ["model"], registry=r)
        self.ready = Gauge("searchgw_embedder_ready", "1 when the server is SERVING", registry=r)

    def observe(self, method: str, code: str, seconds: float, labels: dict[str, str]) -> None:
        rpc = method.rsplit("/", 1)[-1]
        self.requests.labels(rpc, code).inc()
        self.request_duration.labels(rpc).observe(seconds)

    def observe_batch(self, model: str, stats: BatchStats) -> None:
        self.batch_size.labels(model).observe(stats.size)
        self.batch_tokens.labels(model).observe(stats.padded_tokens)
        self.inference_duration.labels(model).observe(stats.run_seconds)
        queue = self.queue_duration.labels(model)
        for seconds in stats.queue_seconds:
            queue.observe(seconds)
