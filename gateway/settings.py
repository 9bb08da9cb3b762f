"""GatewaySettings: every knob of the gateway, built once at start-up."""

from __future__ import annotations

import math
import pathlib
import re
from dataclasses import dataclass

from searchgw.gateway.rules import is_name
from searchgw.settings import ServerSettings, SettingsError, setting

ENV_PREFIX = "SEARCHGW_GATEWAY_"
DEFAULT_PORT = 50051
DEFAULT_METRICS_PORT = 9464


_INTERVAL = re.compile(r"(\d+(?:\.\d+)?)(s|m|h|d)?")
_INTERVAL_UNITS = {None: 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_snapshot_schedule(text: str) -> dict[str, float]:
    """'docs=6h,news=24h' as {collection: interval in seconds}; "" is no schedule. SettingsError
    naming --snapshot-schedule for anything else (a bad name, an interval not more than 0, a repeat)."""
    schedule: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, equals, interval = (piece.strip() for piece in part.partition("="))
        match = _INTERVAL.fullmatch(interval)
        if not equals or not is_name(name) or match is None:
            raise SettingsError(f"--snapshot-schedule: {part!r} is not COLLECTION=INTERVAL (e.g. docs=6h; "
                                "an interval in seconds, or with s, m, h, d)")
        seconds = float(match.group(1)) * _INTERVAL_UNITS[match.group(2)]
        if not math.isfinite(seconds) or seconds <= 0:
            raise SettingsError(f"--snapshot-schedule: {part!r}: the interval must be more than 0")
        if name in schedule:
            raise SettingsError(f"--snapshot-schedule: {name!r} is scheduled twice")
        schedule[name] = seconds
    return schedule


@dataclass(frozen=True)
class GatewaySettings(ServerSettings):
    port: int = setting(DEFAULT_PORT, "gRPC port; 0 picks a free one and logs it")
    metrics_port: int = setting(DEFAULT_METRICS_PORT, "Prometheus port; 0 picks a free one, -1 turns it off")
    data_dir: pathlib.Path = setting(pathlib.Path("./data"), "rollout state and the edge backend's collections")
    backend: str = setting("edge", "vector backend: edge (embedded qdrant-edge) or qdrant (qdrant-client)")
    qdrant_url: str = setting("", "Qdrant server URL for --backend qdrant (':memory:' or a path: local mode)")
    qdrant_api_key: str = setting("", "Qdrant API key", secret=True)
    qdrant_timeout_s: float = setting(5.0, "timeout of one Qdrant call")
    qdrant_prefer_grpc: bool = setting(True, "talk to the Qdrant server over gRPC")
    with_embedder: bool = setting(False, "start an embedding server in this process (on a loopback port)")
    embedder_addr: str = setting("", "host:port of the embedding server (ignored with --with-embedder)")
    embed_timeout_s: float = setting(5.0, "deadline of one embedder call (capped by the caller's deadline)")
    default_embedding_model: str = setting("", "model for collections that name none (default: the embedder's)")
    routing_key_fallback: str = setting("random", "key for requests without one: random (per request) or peer")
    canary_fallback: bool = setting(True, "answer from primary when the canary fails with a retryable error")
    canary_max_concurrency: int = setting(16, "searches one rollout's canary may always have in flight (more while "
                                              "it holds under twice its share of primary's); more are answered by "
                                              "primary (recorded as the canary's RESOURCE_EXHAUSTED); 0: no limit")
    controller_tick_s: float = setting(1.0, "how often the rollout controller looks for due checks")
    state: str = setting("sqlite", "where rollout state lives: sqlite (data_dir/rollouts.sqlite3, one replica) or "
                                   "redis://[:password@]host:port/db (or rediss://), shared by every replica",
                         secret=True)
    state_lease_s: float = setting(5.0, "with --state redis: the leader's lease; another replica leads at most "
                                        "4/3 of it after the leader dies (it tries every third of it)")
    state_poll_s: float = setting(0.5, "with --state redis: how often a replica reads the shared state's version "
                                       "(besides pub/sub, which can drop messages)")
    default_limit: int = setting(10, "hits returned when a search sets no limit")
    max_limit: int = setting(1000, "most hits one search may ask for (limit + page offset)")
    max_upsert_points: int = setting(1000, "most points in one Upsert")
    max_text_chars: int = setting(100_000, "most characters in one query or point text")
    max_payload_bytes: int = setting(64 * 1024, "largest payload of one point, in bytes of compact UTF-8 JSON")
    max_filter_values: int = setting(10_000, "most point ids and keywords one filter (has_id, any_keyword) or "
                                             "one Delete (ids) may list")
    embed_batch_texts: int = setting(256, "most texts in one call to the embedder (larger upserts are split); "
                                          "keep it within the embedder's --max-texts-per-request")
    page_token_secret: str = setting("", "HMAC key of page tokens (default: random per process)", secret=True)
    demo: bool = setting(False, "create and fill the demo collection 'docs' if it does not exist")
    embedder_tls_ca: pathlib.Path | None = setting(None, "PEM CA that signed the embedder's certificate "
                                                         "(enables TLS to the embedder)")
    embedder_tls_cert: pathlib.Path | None = setting(None, "client certificate for mutual TLS to the embedder")
    embedder_tls_key: pathlib.Path | None = setting(None, "private key of --embedder-tls-cert")
    embedder_token: str = setting("", "bearer token the gateway presents to the embedder", secret=True)
    snapshot_schedule: str = setting("", "collections to snapshot and how often, e.g. 'docs=6h,news=24h' "
                                         "(s, m, h, d); empty: none")
    snapshot_keep_last: int = setting(0, "after a scheduled snapshot, keep that collection's newest N "
                                         "(0: no count rule; with --snapshot-max-age-s 0 too: no pruning)")
    snapshot_max_age_s: float = setting(0.0, "after a scheduled snapshot, keep those younger than this "
                                             "(0: no age rule); a snapshot either rule keeps stays, the newest "
                                             "always does")
    outcome_ttl_s: float = setting(1800.0, "how long after its search an experiment's search id is accepted "
                                           "by ReportOutcome (seconds)")
    outcome_max_search_ids: int = setting(200_000, "search ids remembered for the once-per-kind outcome rule; "
                                                   "over it, outcomes are refused as OVERLOADED")
    shadow_max_in_flight: int = setting(4, "shadow searches (a rollout's quality sample, run on the other arm off "
                                           "the request path) in flight at once; more are dropped and counted "
                                           "(dropped_busy); 0: no shadow searches")
    workers: int = setting(1, "gateway processes serving the one port (SO_REUSEPORT), each with its own event "
                              "loop; more than 1 needs --backend qdrant and --state redis://…")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (math.isfinite(self.outcome_ttl_s) and self.outcome_ttl_s > 0):
            raise SettingsError(f"--outcome-ttl-s: {self.outcome_ttl_s}; must be a finite number above 0")
        if self.outcome_max_search_ids < 1:
            raise SettingsError("--outcome-max-search-ids: must be at least 1")
        if self.backend not in ("edge", "qdrant"):
            raise SettingsError(f"--backend: {self.backend!r} is not edge or qdrant")
        if self.backend == "qdrant" and not self.qdrant_url:
            raise SettingsError("--qdrant-url: required with --backend qdrant")
        if self.routing_key_fallback not in ("random", "peer"):
            raise SettingsError(f"--routing-key-fallback: {self.routing_key_fallback!r} is not random or peer")
        for name in ("default_limit", "max_limit", "max_upsert_points", "max_text_chars", "max_message_bytes",
                     "max_payload_bytes", "max_filter_values", "embed_batch_texts"):
            if getattr(self, name) < 1:
                raise SettingsError(f"--{name.replace('_', '-')}: must be at least 1")
        if self.shadow_max_in_flight < 0:
            raise SettingsError("--shadow-max-in-flight: must not be negative (0: no shadow searches)")
        if self.canary_max_concurrency < 0:
            raise SettingsError("--canary-max-concurrency: must not be negative (0 turns the limit off)")
        if self.default_limit > self.max_limit:
            raise SettingsError("--default-limit: must not exceed --max-limit")
        if self.state != "sqlite" and not self.state.startswith(("redis://", "rediss://")):
            raise SettingsError("--state: must be sqlite or a redis:// or rediss:// URL")
        for name in ("embed_timeout_s", "qdrant_timeout_s", "controller_tick_s", "state_lease_s", "state_poll_s"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise SettingsError(f"--{name.replace('_', '-')}: {value} seconds; must be a finite number "
                                    "more than 0")
        self.snapshot_intervals()  # checked here, at start-up
        if self.snapshot_keep_last < 0:
            raise SettingsError("--snapshot-keep-last: must not be negative (0: no count rule)")
        if not math.isfinite(self.snapshot_max_age_s) or self.snapshot_max_age_s < 0:
            raise SettingsError(f"--snapshot-max-age-s: {self.snapshot_max_age_s} seconds; must be a finite "
                                "number, 0 or more (0: no age rule)")
        if self.embedder_addr and ":" not in self.embedder_addr:
            raise SettingsError(f"--embedder-addr: {self.embedder_addr!r} is not host:port")
        if (self.embedder_tls_cert is None) != (self.embedder_tls_key is None):
            raise SettingsError("--embedder-tls-cert and --embedder-tls-key: set both or neither")
        self._check_workers()

    def _check_workers(self) -> None:
        """Several workers are several replicas on one host: each process holds its own engine and
        rollout controller, so the collections and the rollout state must live outside them."""
        if self.workers < 1:
            raise SettingsError(f"--workers: {self.workers}; must be at least 1")
        if self.workers == 1:
            return
        if self.backend == "edge":
            raise SettingsError(f"--workers {self.workers}: the edge backend is embedded in the process (one "
                                "engine owns --data-dir), so one process serves it; use --workers 1, or "
                                "--backend qdrant for several workers")
        if not self.shared_state:
            raise SettingsError(f"--workers {self.workers}: the workers are replicas and must share their rollout "
                                "state; SQLite state belongs to one process: set --state redis://host:port/db")
        if self.with_embedder:
            raise SettingsError(f"--workers {self.workers}: --with-embedder would start an embedder in every "
                                "worker; run one embedder and point --embedder-addr at it")

    @property
    def shared_state(self) -> bool:
        """Rollout state in Redis, shared by several replicas."""
        return self.state != "sqlite"

    def snapshot_intervals(self) -> dict[str, float]:
        """`snapshot_schedule` parsed: {collection: seconds between its snapshots}."""
        return parse_snapshot_schedule(self.snapshot_schedule)

    def __repr__(self) -> str:  # never print secrets
        return f"GatewaySettings(port={self.port}, backend={self.backend!r}, data_dir={str(self.data_dir)!r})"
