"""LoadConfig: everything one load run needs, frozen and validated on construction.

The CLI builds it with `searchgw.settings` (flags > `SEARCHGW_LOADGEN_*` environment > the config
file's `loadgen` section > defaults); library callers construct it directly.
"""

from __future__ import annotations

import dataclasses
import pathlib
from dataclasses import dataclass
from typing import Any

from searchgw.settings import SettingsError, setting

ENV_PREFIX = "SEARCHGW_LOADGEN_"

RPCS = ("search", "embed", "upsert")
MODES = ("closed", "open")
KEY_DISTRIBUTIONS = ("none", "uniform", "zipf")


@dataclass(frozen=True)
class LoadConfig:
    # What to call
    target: str = setting("127.0.0.1:50051", "host:port of the server under load")
    rpc: str = setting("search", "the RPC to drive: search, embed or upsert")
    vector: bool = setting(False, "Search / Upsert with vectors instead of texts")
    collection: str = setting("docs", "collection of Search and Upsert")
    limit: int = setting(10, "hits per Search")
    model: str = setting("", "model of Embed (empty: the server's default)")
    batch_size: int = setting(1, "texts per Embed, points per Upsert")
    id_space: int = setting(100_000, "Upsert writes point ids drawn uniformly from [0, N)")
    dimension: int = setting(384, "length of generated random unit vectors")
    queries: pathlib.Path | None = setting(
        None, "queries file: JSONL with `text` / `vector` fields, or CSV with a `text` column "
              "(default: a built-in set of short queries; random unit vectors with --vector)")
    # How hard
    mode: str = setting("closed", "closed (N concurrent callers) or open (Poisson arrivals at --rate)")
    concurrency: int = setting(8, "closed loop: callers in all processes together")
    rate: float = setting(100.0, "open loop: target calls/s in all processes together")
    max_in_flight: int = setting(
        10_000, "open loop: most calls outstanding at once (all processes); arrivals beyond it start late")
    late_after_ms: float = setting(1.0, "open loop: a call that starts this much after its scheduled "
                                        "time counts as late")
    duration_s: float = setting(10.0, "measured seconds (after the warm-up)")
    warmup_s: float = setting(1.0, "seconds of load before measuring; those calls are left out")
    deadline_s: float = setting(5.0, "deadline of each call")
    processes: int = setting(1, "worker processes, each with its share of --concurrency / --rate")
    seed: int | None = setting(None, "random seed of keys, queries and arrivals (default: random, reported)")
    # Routing
    keys: str = setting("none", "routing keys: none, uniform over --key-count keys, or zipf (skew --zipf-s)")
    key_count: int = setting(1000, "how many distinct routing keys")
    zipf_s: float = setting(1.1, "Zipf exponent: the k-th most frequent key (k = 1, 2, ...) has weight 1 / k^s")
    key_in_metadata: bool = setting(False, "send the key as `x-routing-key` metadata, not in SearchRequest")
    canary_arm: str = setting("", "send `x-canary-arm: VALUE` (e.g. primary or canary) to force an arm")
    # Connection
    tls: bool = setting(False, "use TLS, trusting the system's root certificates unless --tls-ca is given")
    tls_ca: pathlib.Path | None = setting(None, "PEM root certificates (implies --tls)")
    tls_cert: pathlib.Path | None = setting(None, "PEM client certificate chain, for mutual TLS (with --tls-key)")
    tls_key: pathlib.Path | None = setting(None, "PEM client private key, for mutual TLS (with --tls-cert)")
    tls_server_name: str = setting("", "expected name in the server certificate (default: the target host)")
    token: str = setting("", "bearer token, sent as `authorization: Bearer TOKEN`", secret=True)
    metadata: tuple[str, ...] = setting((), "extra metadata on every call, comma-separated k=v pairs")
    connect_timeout_s: float = setting(10.0, "how long to wait for the connection before the run")
    progress_interval_s: float = setting(1.0, "how often workers report progress")
    # Search knobs (SearchRequest.params) and recall
    hnsw_ef: int = setting(0, "Search: params.hnsw_ef of every call (0: the engine's default)")
    exact: bool = setting(False, "Search: params.exact on every call (score every point)")
    oversampling: float = setting(0.0, "Search: params.quantization.oversampling with rescoring (0: unset)")
    recall: bool = setting(False, "Search: before the load, run --recall-queries queries exact and as configured "
                                  "(and at each --recall-ef) one at a time, and report recall@limit and latency")
    recall_queries: int = setting(100, "how many queries the recall measurement runs")
    recall_ef: tuple[int, ...] = setting((), "hnsw_ef values to sweep in the recall measurement, comma-separated")

    def __post_init__(self) -> None:
        _require_choice("rpc", self.rpc, RPCS)
        _require_choice("mode", self.mode, MODES)
        _require_choice("keys", self.keys, KEY_DISTRIBUTIONS)
        for name in ("limit", "batch_size", "id_space", "dimension", "concurrency", "max_in_flight",
                     "processes", "key_count", "recall_queries"):
            if getattr(self, name) < 1:
                raise SettingsError(f"{_flag(name)}: must be at least 1")
        for name in ("rate", "duration_s", "deadline_s", "zipf_s", "connect_timeout_s", "progress_interval_s"):
            if not getattr(self, name) > 0:
                raise SettingsError(f"{_flag(name)}: must be positive")
        for name in ("warmup_s", "late_after_ms"):
            if getattr(self, name) < 0:
                raise SettingsError(f"{_flag(name)}: must not be negative")
        if self.hnsw_ef < 0 or any(ef < 1 for ef in self.recall_ef):
            raise SettingsError("--hnsw-ef / --recall-ef: must be at least 1 (0: the engine's default)")
        if self.oversampling and self.oversampling < 1:
            raise SettingsError("--oversampling: must be at least 1 (0: unset)")
        if (self.recall or self.recall_ef) and self.rpc != "search":
            raise SettingsError("--recall: measures Search only")
        if self.rpc == "embed" and self.vector:
            raise SettingsError("--vector: Embed takes texts only")
        if self.rpc == "upsert" and self.id_space < self.batch_size:
            raise SettingsError("--id-space: must be at least --batch-size (ids in one Upsert are distinct)")
        if self.mode == "closed" and self.concurrency < self.processes:
            raise SettingsError("--concurrency: must be at least --processes (each process needs a caller)")
        if self.mode == "open" and self.max_in_flight < self.processes:
            raise SettingsError("--max-in-flight: must be at least --processes")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise SettingsError("--tls-cert and --tls-key: give both or neither")
        for entry in self.metadata:
            key, sep, _value = entry.partition("=")
            if not sep or not key.strip():
                raise SettingsError(f"--metadata: {entry!r} is not k=v")

    @property
    def uses_tls(self) -> bool:
        return self.tls or any(path is not None for path in (self.tls_ca, self.tls_cert, self.tls_key))

    def metadata_pairs(self) -> tuple[tuple[str, str], ...]:
        """The --metadata entries as (lower-case key, value) pairs."""
        pairs = (entry.partition("=") for entry in self.metadata)
        return tuple((key.strip().lower(), value.strip()) for key, _sep, value in pairs)

    def __repr__(self) -> str:  # never print secrets
        return "LoadConfig(" + ", ".join(f"{name}={value!r}" for name, value in self.to_dict().items()) + ")"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values; secrets are masked."""
        values: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.metadata.get("secret") and value:
                value = "***"
            elif isinstance(value, pathlib.Path):
                value = str(value)
            elif isinstance(value, tuple):
                value = list(value)
            values[field.name] = value
        return values


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _require_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise SettingsError(f"{_flag(name)}: {value!r} is not one of {', '.join(choices)}")
