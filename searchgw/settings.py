"""Typed, frozen settings built once at start-up from flags > environment > config file > defaults.

A settings class is a frozen dataclass whose fields are declared with `setting(...)`:

    @dataclass(frozen=True)
    class EmbedderSettings:
        port: int = setting(50051, "gRPC port (0 picks a free one)")

`add_arguments(parser, EmbedderSettings, env_prefix="SEARCHGW_EMBEDDER_")` adds `--port`, and
`build(EmbedderSettings, args, env_prefix=..., environ=os.environ, file_section={...})` returns the
instance. Each field's environment variable is the prefix plus its upper-cased name
(`SEARCHGW_EMBEDDER_PORT`). Validation lives in the class's `__post_init__`, which raises
`SettingsError` with a message naming the setting; start-up turns that into a clear exit.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import pathlib
import types
import typing
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = ["ServerSettings", "SettingsError", "add_arguments", "build", "load_config_file", "setting"]


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names it."""


def setting(default: Any, help: str, *, flag: str | None = None, secret: bool = False) -> Any:
    """Declare a settings field with its default and help text."""
    factory: Any = dataclasses.MISSING
    if isinstance(default, (list, dict, set)):
        raise TypeError("use tuples for sequence defaults (settings are frozen)")
    return dataclasses.field(
        default=default, default_factory=factory, metadata={"help": help, "flag": flag, "secret": secret}
    )


def _flag(field: dataclasses.Field[Any]) -> str:
    return field.metadata.get("flag") or "--" + field.name.replace("_", "-")


def _env_name(prefix: str, field: dataclasses.Field[Any]) -> str:
    return prefix + field.name.upper()


def _resolved_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _parse(kind: Any, raw: Any, name: str) -> Any:
    """Convert a string (flag/env) or a config-file value to the field's type."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if raw is None or (isinstance(raw, str) and raw.strip().lower() in ("", "none", "null")):
            return None
        return _parse(args[0], raw, name)
    if origin is tuple:
        (item_type, *_rest) = typing.get_args(kind)
        if isinstance(raw, str):
            items = [part.strip() for part in raw.split(",") if part.strip()]
        elif isinstance(raw, (list, tuple)):
            items = list(raw)
        else:
            raise SettingsError(f"{name}: expected a comma-separated list, got {raw!r}")
        return tuple(_parse(item_type, item, name) for item in items)
    try:
        if kind is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if kind is int:
            if isinstance(raw, bool):
                raise ValueError(raw)
            return int(raw)
        if kind is float:
            return float(raw)
        if kind is pathlib.Path:
            return pathlib.Path(str(raw)).expanduser()
        if kind is str:
            return str(raw)
    except ValueError:
        raise SettingsError(f"{name}: cannot read {raw!r} as {getattr(kind, '__name__', kind)}") from None
    raise TypeError(f"unsupported settings type {kind!r} for {name}")


def add_arguments(parser: argparse.ArgumentParser, cls: type, *, env_prefix: str) -> None:
    """Add one flag per field; defaults stay None so `build` can tell 'not given' apart."""
    hints = _resolved_types(cls)
    for field in dataclasses.fields(cls):
        kind = hints[field.name]
        help_text = f"{field.metadata.get('help', '')} [env {_env_name(env_prefix, field)}; default {field.default!r}]"
        if kind is bool:
            parser.add_argument(_flag(field), dest=field.name, action=argparse.BooleanOptionalAction,
                                default=None, help=help_text)
        else:
            parser.add_argument(_flag(field), dest=field.name, default=None, help=help_text)


_SettingsT = TypeVar("_SettingsT", bound="DataclassInstance")


def build(
    cls: type[_SettingsT],
    args: argparse.Namespace | Mapping[str, Any] | None = None,
    *,
    env_prefix: str,
    environ: Mapping[str, str] | None = None,
    file_section: Mapping[str, Any] | None = None,
    **overrides: Any,
) -> _SettingsT:
    """Build `cls` from overrides > flags > environment > config file > defaults."""
    hints = _resolved_types(cls)
    given = vars(args) if isinstance(args, argparse.Namespace) else dict(args or {})
    environ = environ or {}
    file_section = dict(file_section or {})
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(file_section) - known)
    if unknown:
        raise SettingsError(f"config file: unknown setting(s) {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        kind = hints[field.name]
        env_name = _env_name(env_prefix, field)
        if field.name in overrides:
            values[field.name] = overrides[field.name]
        elif given.get(field.name) is not None:
            values[field.name] = _parse(kind, given[field.name], _flag(field))
        elif env_name in environ:
            values[field.name] = _parse(kind, environ[env_name], env_name)
        elif field.name in file_section:
            values[field.name] = _parse(kind, file_section[field.name], f"config file: {field.name}")
    return cls(**values)


def load_config_file(path: pathlib.Path | None) -> dict[str, Any]:
    """Read a YAML (or JSON) config file: a mapping of section name -> settings mapping."""
    if path is None:
        return {}
    import yaml

    try:
        data = yaml.safe_load(pathlib.Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise SettingsError(f"config file {path}: {exc}") from None
    if not isinstance(data, dict):
        raise SettingsError(f"config file {path}: expected a mapping at the top level")
    return data


#: Durations every server has; each must be a finite number of seconds, 0 or more.
_DURATION_FIELDS = ("grace_period_s", "drain_delay_s", "keepalive_time_s", "keepalive_timeout_s")
_LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


@dataclasses.dataclass(frozen=True)
class ServerSettings:
    """What every searchgw server has: where it listens, how it drains, TLS, auth, limits, telemetry.

    Each server's settings class derives from it and redefines `port` and `metrics_port` defaults.
    """

    host: str = setting("127.0.0.1", "address to bind (0.0.0.0 or [::] in a container)")
    port: int = setting(0, "gRPC port; 0 picks a free one and logs it")
    metrics_host: str = setting("127.0.0.1", "address of the Prometheus endpoint")
    metrics_port: int = setting(0, "Prometheus port; 0 picks a free one, -1 turns it off")
    grace_period_s: float = setting(10.0, "how long in-flight calls may finish after SIGTERM")
    drain_delay_s: float = setting(0.0, "after SIGTERM, how long to keep answering new calls while health says "
                                        "NOT_SERVING (so a proxy's health check takes the server out) before "
                                        "refusing them with HTTP/2 GOAWAY")
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
        for name in _DURATION_FIELDS:
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise SettingsError(f"--{name.replace('_', '-')}: {value} seconds; must be a finite number, "
                                    "0 or more")
        for name in ("keepalive_time_s", "keepalive_timeout_s"):
            if getattr(self, name) <= 0:
                raise SettingsError(f"--{name.replace('_', '-')}: must be more than 0 seconds")
        if not math.isfinite(self.rate_limit_rps):
            raise SettingsError(f"--rate-limit-rps: {self.rate_limit_rps} is not a finite number")
        if not self.host:
            raise SettingsError("--host: must not be empty (127.0.0.1, 0.0.0.0 or [::])")
        if self.log_level.lower() not in _LOG_LEVELS:
            raise SettingsError(f"--log-level: {self.log_level!r} is not one of {', '.join(_LOG_LEVELS)}")
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
        if self.tracing_exporter not in ("none", "console", "otlp"):
            raise SettingsError(f"--tracing-exporter: {self.tracing_exporter!r} is not none, console or otlp")
        if self.log_format not in ("json", "text"):
            raise SettingsError(f"--log-format: {self.log_format!r} is not json or text")
