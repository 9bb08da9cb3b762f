"""OpenTelemetry tracing set-up.

Exporters: "none" (no SDK is installed: spans cost next to nothing, and W3C trace context from
callers still flows through to the embedder), "console", and "otlp" (the optional `otlp` extra;
configured by the standard OTEL_EXPORTER_OTLP_* variables). Tests pass their own span processor (an
in-memory exporter) instead.
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

_configured: TracerProvider | None = None


def configure_tracing(service_name: str, exporter: str = "none",
                      processor: SpanProcessor | None = None) -> TracerProvider | None:
    """Install a global TracerProvider once per process and return it (None when there is nothing to
    export: recording spans nobody reads cost ~50 µs each on the request path).

    A process that hosts both servers (the single-machine command, tests) shares one provider;
    later calls add their processor to it.
    """
    global _configured
    if exporter not in ("none", "console", "otlp"):
        raise ValueError(f"unknown tracing exporter {exporter!r} (none, console, otlp)")
    if exporter == "none" and processor is None:
        return _configured
    if _configured is None:
        _configured = TracerProvider(resource=Resource.create({"service.name": service_name}))
        trace.set_tracer_provider(_configured)
    if processor is not None:
        _configured.add_span_processor(processor)
    if exporter == "console":
        _configured.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    elif exporter == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        except ImportError as exc:  # pragma: no cover - depends on the optional extra
            raise RuntimeError("tracing exporter 'otlp' needs: pip install 'searchgw[otlp]'") from exc
        _configured.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return _configured


def tracing_records() -> bool:
    """True when a TracerProvider that records spans is installed (an SDK one). Without one every
    span is a no-op, yet opening one still costs the request path a context attach and detach, so the
    hot path skips its inner spans then (`InstrumentedBackend`, SearchCore). Once true, true for good
    (OpenTelemetry's global provider is set at most once)."""
    global _records
    if not _records:
        # The global provider itself: get_tracer_provider() reads an environment variable on every call
        # until one is set.
        provider = getattr(trace, "_TRACER_PROVIDER", None) if hasattr(trace, "_TRACER_PROVIDER") \
            else trace.get_tracer_provider()
        _records = provider is not None and not isinstance(provider, (trace.ProxyTracerProvider,
                                                                      trace.NoOpTracerProvider))
    return _records


_records = False


def server_tracing_interceptor():
    """The OpenTelemetry server interceptor (W3C trace context from metadata), minus health checks:
    probes would flood traces, and its wrapper cannot carry Health/Watch's `context.write` stream."""
    from opentelemetry.instrumentation.grpc import aio_server_interceptor

    return aio_server_interceptor(filter_=_not_health_check)


def _not_health_check(call_details) -> bool:
    # The library's own health_check() filter parses the method name with a regex on every call.
    return not call_details.method.startswith("/grpc.health.v1.Health/")
