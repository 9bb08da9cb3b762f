"""Logging, metrics endpoint and tracing set-up shared by both servers."""

from searchgw.telemetry.logs import configure_logging
from searchgw.telemetry.metrics import MetricsEndpoint
from searchgw.telemetry.tracing import configure_tracing, server_tracing_interceptor, tracing_records

__all__ = ["MetricsEndpoint", "configure_logging", "configure_tracing", "server_tracing_interceptor", "tracing_records"]
