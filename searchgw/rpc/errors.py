"""One interceptor turns domain errors into status codes and observes every RPC.

Handlers raise `searchgw.errors.SearchgwError` subclasses; this interceptor aborts the call with the
matching code, a message a person can act on, and AIP-193 details (`ErrorInfo`, `BadRequest` field
violations, `RetryInfo`), as `searchgw.rpc.status.status_for` builds them (clients read them back with
`searchgw.rpc.status.error_from_rpc`). Anything else is a bug: INTERNAL with a generic message, logged
in full with the trace id.

Every call, whatever its outcome, is reported once to the `RpcObserver` with its method, the name of
its final code ("OK", "DEADLINE_EXCEEDED": observers need no grpc), duration and the labels the handler
put on `current_rpc()` (the gateway adds its routing arm there).
"""

from __future__ import annotations

import contextvars
import inspect
import logging
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc
from google.protobuf.message import DecodeError
from grpc_status import rpc_status

from searchgw import errors
from searchgw.rpc.status import status_for

log = logging.getLogger(__name__)


@dataclass
class RpcInfo:
    """What a handler learned about its call that the observer should label it with."""

    method: str
    labels: dict[str, str] = field(default_factory=dict)


_current: contextvars.ContextVar[RpcInfo | None] = contextvars.ContextVar("searchgw_rpc", default=None)


def current_rpc() -> RpcInfo:
    """The running call's info; a detached placeholder outside a call."""
    info = _current.get()
    return info if info is not None else RpcInfo(method="")


class RpcObserver(Protocol):
    def observe(self, method: str, code: str, seconds: float, labels: dict[str, str]) -> None:
        """One finished call: full method name, status code name ("OK", "UNAVAILABLE"...), seconds, labels."""
        ...


def _code_of(context: grpc.aio.ServicerContext) -> grpc.StatusCode:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    if isinstance(code, int):
        for candidate in grpc.StatusCode:
            if candidate.value[0] == code:
                return candidate
    return grpc.StatusCode.OK


def _cancellation_code(context) -> grpc.StatusCode:
    """DEADLINE_EXCEEDED when the call's deadline has passed, else CANCELLED (the caller cancelled)."""
    try:
        remaining = context.time_remaining()
    except Exception:  # pragma: no cover - a context that cannot tell
        remaining = None
    return grpc.StatusCode.DEADLINE_EXCEEDED if remaining is not None and remaining <= 0 else grpc.StatusCode.CANCELLED


def _trace_id() -> str:
    try:
        from opentelemetry import trace

        ctx = trace.get_current_span().get_span_context()
        return format(ctx.trace_id, "032x") if ctx.is_valid else ""
    except Exception:  # pragma: no cover - tracing is optional
        return ""


class Admission(Protocol):
    """What `DomainErrorInterceptor` asks before a call runs (the security package's `AuthInterceptor`):
    raise the domain error that refuses the call, or return (labelling the call with its principal)."""

    def admit(self, method: str, context: grpc.aio.ServicerContext) -> None: ...

    def guard(self, method: str, handler: Any) -> Any:
        """`handler` guarded on its own (request-streaming calls, which are refused by aborting)."""
        ...


#: Health checks are neither traced (probes would flood traces) nor guarded.
_HEALTH_PREFIX = "/grpc.health.v1.Health/"
_OK = "OK"


class DomainErrorInterceptor(grpc.aio.ServerInterceptor):
    """Maps domain errors to status codes and reports every call to an observer.

    It also parses each request itself, so bytes that are not the request message get
    INVALID_ARGUMENT (grpc's own deserializer would answer UNKNOWN).

    One interceptor for what would otherwise be three (each costing the server a coroutine and a
    wrapped handler per call): with `admission` (the security package's `AuthInterceptor`) it also
    authenticates, authorises and rate-limits every call but health and reflection, inside the error
    mapping; with `tracing` it also opens the call's SERVER span as OpenTelemetry's gRPC server
    interceptor does (see `_CallTracing`). Each method's wrapped handler is built once and reused.
    """

    def __init__(self, observer: RpcObserver | None = None, *, clock: Callable[[], float] = time.perf_counter,
                 metadata_labels: Mapping[str, str] | None = None, admission: Admission | None = None,
                 tracing: bool = False) -> None:
        """`metadata_labels` maps invocation metadata keys to label names: a call that carries the
        key gets its value under that label (e.g. {"x-canary-arm": "forced_arm"})."""
        self._observer = observer
        self._clock = clock
        self._metadata_labels = dict(metadata_labels or {})
        self._admission = admission
        self._tracing = _CallTracing() if tracing else None
        #: method → (the handler grpc found, the handler this interceptor serves it with)
        self._wrapped: dict[str, tuple[Any, Any]] = {}

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            wrapped = cached[1]
        else:
            wrapped = self._wrap(method, handler)
            self._wrapped[method] = (handler, wrapped)
        if self._tracing is not None and handler.unary_unary is None and not method.startswith(_HEALTH_PREFIX):
            return await self._tracing.intercept_stream(wrapped, handler_call_details)
        return wrapped

    def _wrap(self, method: str, handler):
        admission = self._admission
        if admission is not None and method.startswith(_OPEN_PREFIXES):
            admission = None
        if handler.unary_unary is not None:
            return self._wrap_unary_unary(method, handler, admission)
        if admission is not None:  # the other shapes: guarded as the auth interceptor guards them alone
            handler = admission.guard(method, handler)
        parse = handler.request_deserializer
        raw = handler._replace(request_deserializer=None)
        if handler.unary_stream is not None:
            if inspect.iscoroutinefunction(handler.unary_stream):  # writes with context.write (Health/Watch)
                return raw._replace(unary_stream=self._wrap_unary(method, parse, handler.unary_stream))
            return raw._replace(unary_stream=self._wrap_stream(method, parse, handler.unary_stream))
        return handler

    def _wrap_unary_unary(self, method: str, handler, admission: Admission | None):
        """The unary call path, flat: one coroutine per call doing labels, tracing, admission, the
        handler, error mapping and observation."""
        parse = handler.request_deserializer
        behaviour = handler.unary_unary
        observer, clock = self._observer, self._clock
        wanted = self._metadata_labels
        tracing = None if method.startswith(_HEALTH_PREFIX) else self._tracing
        current = _current

        async def wrapped(request, context):
            info = RpcInfo(method=method)
            if wanted:
                for key, value in context.invocation_metadata() or ():
                    label = wanted.get(key)
                    if label is not None and isinstance(value, str):
                        info.labels[label] = value
            token = current.set(info)
            started = clock()
            span = None if tracing is None else tracing.start(method, context)
            try:
                if admission is not None:
                    admission.admit(method, context)
                response = await behaviour(_parsed(parse, request), context)
            except BaseException as exc:
                code = await _fail(method, context, exc, observer, info, clock() - started, span)
                raise
            else:
                code = _code_name(context)
                if observer is not None:
                    observer.observe(method, code, clock() - started, info.labels)
                if span is not None:
                    _CallTracing.end(span, code)
                return response
            finally:
                current.reset(token)

        return handler._replace(request_deserializer=None, unary_unary=wrapped)

    def _wrap_unary(self, method: str, parse, behaviour):
        async def wrapped(request, context):
            async with _ObservedCall(self, method, context):
                return await behaviour(_parsed(parse, request), context)

        return wrapped

    def _wrap_stream(self, method: str, parse, behaviour):
        async def wrapped(request, context):
            async with _ObservedCall(self, method, context):
                async for item in behaviour(_parsed(parse, request), context):
                    yield item

        return wrapped


#: Method-name prefixes an admission never guards (health and reflection stay reachable).
_OPEN_PREFIXES = (_HEALTH_PREFIX, "/grpc.reflection.")


def _code_name(context) -> str:
    code = context.code()
    if not code:  # None or 0: nobody set one
        return _OK
    return _code_of(context).name


async def _fail(method: str, context, exc: BaseException, observer: RpcObserver | None, info: RpcInfo,
                seconds: float, span) -> str:
    """Observe the call that `exc` ended and turn `exc` into its status (an abort raises AbortError;
    cancellation and an earlier abort are left to propagate)."""
    if isinstance(exc, grpc.aio.AbortError):
        code = _code_of(context)
    elif isinstance(exc, errors.SearchgwError):
        code = getattr(grpc.StatusCode, exc.code_name)
    elif isinstance(exc, NotImplementedError):
        code = grpc.StatusCode.UNIMPLEMENTED
    elif isinstance(exc, Exception):
        log.error("unexpected error in %s (trace %s)", method, _trace_id(), exc_info=exc)
        code = grpc.StatusCode.INTERNAL
    else:  # CancelledError: the caller left, or its deadline passed (grpc cancels the handler)
        code = _cancellation_code(context)
    if observer is not None:
        observer.observe(method, code.name, seconds, info.labels)  # before the status is sent
    if span is not None:
        _CallTracing.end(span, code.name, exc if isinstance(exc, Exception) and
                         not isinstance(exc, (grpc.aio.AbortError, errors.SearchgwError)) else None)
    if isinstance(exc, errors.SearchgwError):
        await context.abort_with_status(rpc_status.to_status(status_for(exc)))
    if isinstance(exc, NotImplementedError):
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{method} is not implemented by this server")
    if code is grpc.StatusCode.INTERNAL:
        await context.abort(grpc.StatusCode.INTERNAL, "internal error; the server logged the details")
    return code.name


class _CallTracing:
    """The call's SERVER span, as OpenTelemetry's gRPC server interceptor makes it (name: the full
    method; `rpc.system`, `rpc.service`, `rpc.method`, `rpc.grpc.status_code`, the peer's address;
    the caller's W3C trace context from the metadata as its parent; status ERROR for a code other
    than OK), without its per-call wrappers.

    Without a tracing SDK (exporter "none") no span is made at all: a call that carries a
    `traceparent` only gets the caller's context attached, so the embedder client still propagates it.
    """

    def __init__(self) -> None:
        from opentelemetry import context as otel_context
        from opentelemetry import propagate, trace

        self._trace = trace
        self._context = otel_context
        self._propagate = propagate
        from searchgw.telemetry.tracing import tracing_records

        self._tracer = trace.get_tracer("searchgw.rpc")
        self._records = tracing_records
        self._streams: Any = None

    def start(self, method: str, context):
        """What `end` needs: (span or None, context token); None when there is nothing to do."""
        metadata = context.invocation_metadata() or ()
        recording = self._records()
        carrier = None
        for key, value in metadata:
            if key == "traceparent":
                carrier = {key: value for key, value in metadata if isinstance(value, str)}
                break
        if not recording:
            if carrier is None:
                return None
            return None, self._context.attach(self._propagate.extract(carrier))
        parent = self._propagate.extract(carrier) if carrier is not None else None
        service, _, name = method.lstrip("/").partition("/")
        attributes: dict[str, Any] = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name,
                                      "rpc.grpc.status_code": 0}
        for key, value in metadata:
            if key == "user-agent":
                attributes["rpc.user_agent"] = value
        peer = context.peer() or ""
        if not peer.startswith("unix:"):
            ip, _, port = peer.split(",")[0].partition(":")[2].rpartition(":")
            if ip:
                ip = urllib.parse.unquote(ip)
                attributes["net.peer.ip"], attributes["net.peer.port"] = ip, port
                if ip in ("[::1]", "127.0.0.1"):
                    attributes["net.peer.name"] = "localhost"
        span = self._tracer.start_span(method, context=parent, kind=self._trace.SpanKind.SERVER,
                                       attributes=attributes)
        return span, self._context.attach(self._trace.set_span_in_context(span))

    @staticmethod
    def end(started, code: str, error: BaseException | None = None) -> None:
        span, token = started
        try:
            if span is not None:
                from opentelemetry.trace import Status, StatusCode

                if code != _OK:
                    number = getattr(grpc.StatusCode, code).value[0]
                    span.set_attribute("rpc.grpc.status_code", number)
                    span.set_status(Status(StatusCode.ERROR, description=f"{code}"))
                if error is not None:
                    span.record_exception(error)
                span.end()
        finally:
            from opentelemetry import context as otel_context

            otel_context.detach(token)

    async def intercept_stream(self, handler, handler_call_details):
        """A streaming call (rare on these servers): OpenTelemetry's own interceptor around it."""
        if self._streams is None:
            from searchgw.telemetry.tracing import server_tracing_interceptor

            self._streams = server_tracing_interceptor()

        async def found(_details):
            return handler

        return await self._streams.intercept_service(found, handler_call_details)


def _parsed(parse, request):
    if parse is None or not isinstance(request, bytes):
        return request
    try:
        return parse(request)
    except DecodeError:
        raise errors.InvalidArgument("request", "is not a valid message of this method's request type") from None


class _ObservedCall:
    """One call: sets `current_rpc()`, turns what escapes the handler into a status, reports the outcome."""

    def __init__(self, interceptor: DomainErrorInterceptor, method: str, context) -> None:
        self._interceptor = interceptor
        self._method = method
        self._context = context
        self._info = RpcInfo(method=method)
        self._observed = False

    async def __aenter__(self) -> RpcInfo:
        wanted = self._interceptor._metadata_labels
        if wanted:
            for key, value in self._context.invocation_metadata() or ():
                label = wanted.get(key)
                if label is not None and isinstance(value, str):
                    self._info.labels[label] = value
        self._token = _current.set(self._info)
        self._started = self._interceptor._clock()
        return self._info

    async def __aexit__(self, exc_type, exc, tb) -> bool:
        # Each outcome is observed before its status is sent: a client that has its answer finds the call
        # already counted.
        context = self._context
        try:
            if exc is None or isinstance(exc, grpc.aio.AbortError):
                self._observe(_code_of(context))
                return False
            if isinstance(exc, errors.SearchgwError):
                self._observe(getattr(grpc.StatusCode, exc.code_name))
                await context.abort_with_status(rpc_status.to_status(status_for(exc)))
            if isinstance(exc, NotImplementedError):
                self._observe(grpc.StatusCode.UNIMPLEMENTED)
                await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{self._method} is not implemented by this server")
            if isinstance(exc, Exception):
                log.error("unexpected error in %s (trace %s)", self._method, _trace_id(), exc_info=exc)
                self._observe(grpc.StatusCode.INTERNAL)
                await context.abort(grpc.StatusCode.INTERNAL, "internal error; the server logged the details")
            # CancelledError: the caller left, or its deadline passed (grpc cancels the handler).
            self._observe(_cancellation_code(context))
            return False
        finally:
            _current.reset(self._token)

    def _observe(self, code: grpc.StatusCode) -> None:
        """Report the call's outcome to the observer, once."""
        observer = self._interceptor._observer
        if observer is not None and not self._observed:
            self._observed = True
            observer.observe(self._method, code.name, self._interceptor._clock() - self._started, self._info.labels)
