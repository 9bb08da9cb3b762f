"""EmbedderSettings: every knob of the embedding server, built once at start-up."""

from __future__ import annotations

import pathlib
from dataclasses import dataclass

from searchgw.settings import SettingsError, setting

ENV_PREFIX = "SEARCHGW_EMBEDDER_"
DEFAULT_PORT = 50061
DEFAULT_METRICS_PORT = 9465


@dataclass(frozen=True)
class EmbedderSettings:
    host: str = setting("127.0.0.1", "address to bind (0.0.0.0 or [::] in a container)")
    port: int = setting(DEFAULT_PORT, "gRPC port; 0 picks a free one and logs it")
    metrics_host: str = setting("127.0.0.1", "address of the Prometheus endpoint")
    metrics_port: int = setting(DEFAULT_METRICS_PORT, "Prometheus port; 0 picks a free one, -1 turns it off")
    model_dir: tuple[str, ...] = setting(
        (), "model directories to serve, each DIR or NAME=DIR (model.onnx + tokenizer.json); "
            "empty serves the built-in all-MiniLM-L6-v2", flag="--model-dir")
    default_model: str = setting("", "the model used when a request names none (default: the first)")
    cache_dir: pathlib.Path = setting(pathlib.Path("~/.cache/searchgw").expanduser(),
                                      "where the built-in model's ONNX export is kept")
    max_batch_tokens: int = setting(16384, "padded token budget of one batch (longest input x inputs)")
    max_batch_size: int = setting(64, "most inputs in one model run")
    max_queue_size: int = setting(2048, "most inputs waiting for the model; more get RESOURCE_EXHAUSTED")
    intra_op_threads: int = setting(0, "onnxruntime threads per model run; 0 = one per core")
    cache_size: int = setting(20000, "embeddings kept in the LRU cache; 0 turns it off")
    max_texts_per_request: int = setting(512, "most texts in one Embed request")
    max_text_chars: int = setting(100_000, "most characters in one text")
    grace_period_s: float = setting(10.0, "how long in-flight calls may finish after SIGTERM")
    max_message_bytes: int = setting(32 * 1024 * 1024, "largest gRPC message accepted or sent")
    keepalive_time_s: float = setting(30.0, "HTTP/2 keepalive ping interval")
    keepalive_timeout_s: float = setting(10.0, "how long a keepalive ping may go unanswered")
    tls_cert: pathlib.Path | None = setting(None, "PEM certificate chain to serve TLS with (with --tls-key)")
    tls_key: pathlib.Path | None = setting(None, "PEM private key of --tls-cert")
    tls_client_ca: pathlib.Path | None = setting(None, "PEM CA bundle; when set, clients must present a "
                                                       "certificate it signed (mutual TLS)")
    auth_tokens_file: pathlib.Path | None = setting(None, "YAML file of bearer tokens (sha256) and their scopes; "
                                                          "unset: no authentication")
    rate_limit_rps: float = setting(0.0, "calls per second per principal (token bucket); 0: unlimited")
    rate_limit_burst: int = setting(0, "bucket size of the rate limit (default: one second of calls)")
    tracing_exporter: str = setting("none", "span exporter: none, console or otlp (OTEL_* variables)")
    log_level: str = setting("info", "log level")
    log_format: str = setting("json", "log format: json or text")

    def __post_init__(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise SettingsError("--tls-cert and --tls-key: set both or neither")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise SettingsError("--tls-client-ca: needs --tls-cert and --tls-key (mutual TLS is TLS first)")
        if self.rate_limit_rps < 0 or self.rate_limit_burst < 0:
            raise SettingsError("--rate-limit-rps and --rate-limit-burst must not be negative")
        if not 0 <= self.port <= 65535:
            raise SettingsError(f"--port: {self.port} is not a port number")
        if not -1 <= self.metrics_port <= 65535:
            raise SettingsError(f"--metrics-port: {self.metrics_port} is not a port number (or -1)")
        for name in ("max_batch_tokens", "max_batch_size", "max_queue_size", "max_texts_per_request",
                     "max_text_chars", "max_message_bytes"):
            if getattr(self, name) < 1:
                raise SettingsError(f"--{name.replace('_', '-')}: must be at least 1")
        if self.max_batch_size > self.max_queue_size:
            raise SettingsError("--max-batch-size: must not exceed --max-queue-size")
        if self.intra_op_threads < 0 or self.cache_size < 0:
            raise SettingsError("--intra-op-threads and --cache-size must not be negative")
        if self.tracing_exporter not in ("none", "console", "otlp"):
            raise SettingsError(f"--tracing-exporter: {self.tracing_exporter!r} is not none, console or otlp")
        if self.log_format not in ("json", "text"):
            raise SettingsError(f"--log-format: {self.log_format!r} is not json or text")

    def model_sources(self) -> list[tuple[str | None, pathlib.Path]]:
        """(name or None, directory) for every --model-dir entry."""
        sources = []
        for entry in self.model_dir:
            name, sep, path = entry.partition("=")
            if not sep:
                name, path = "", entry
            sources.append((name or None, pathlib.Path(path).expanduser()))
        return sources
