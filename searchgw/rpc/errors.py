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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

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


class DomainErrorInterceptor(grpc.aio.ServerInterceptor):
    """Maps domain errors to status codes and reports every call to an observer.

    It also parses each request itself, so bytes that are not the request message get
    INVALID_ARGUMENT (grpc's own deserializer would answer UNKNOWN).
    """

    def __init__(self, observer: RpcObserver | None = None, *, clock: Callable[[], float] = time.perf_counter,
                 metadata_labels: Mapping[str, str] | None = None) -> None:
        """`metadata_labels` maps invocation metadata keys to label names: a call that carries the
        key gets its value under that label (e.g. {"x-canary-arm": "forced_arm"})."""
        self._observer = observer
        self._clock = clock
        self._metadata_labels = dict(metadata_labels or {})

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        parse = handler.request_deserializer
        raw = handler._replace(request_deserializer=None)
        if handler.unary_unary is not None:
            return raw._replace(unary_unary=self._wrap_unary(method, parse, handler.unary_unary))
        if handler.unary_stream is not None:
            if inspect.iscoroutinefunction(handler.unary_stream):  # writes with context.write (Health/Watch)
                return raw._replace(unary_stream=self._wrap_unary(method, parse, handler.unary_stream))
            return raw._replace(unary_stream=self._wrap_stream(method, parse, handler.unary_stream))
        return handler

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
