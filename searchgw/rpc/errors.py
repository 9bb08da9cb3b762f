"""One interceptor turns domain errors into status codes and observes every RPC.

Handlers raise `searchgw.errors.SearchgwError` subclasses; this interceptor aborts the call with the
matching code, a message a person can act on, and AIP-193 details (`ErrorInfo`, `BadRequest` field
violations, `RetryInfo`). Anything else is a bug: INTERNAL with a generic message, logged in full
with the trace id.

Every call, whatever its outcome, is reported once to the `RpcObserver` with its method, final code,
duration and the labels the handler put on `current_rpc()` (the gateway adds its routing arm there).
"""

from __future__ import annotations

import contextvars
import inspect
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from searchgw import errors

log = logging.getLogger(__name__)

_DOMAIN = "searchgw"


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
    def observe(self, method: str, code: grpc.StatusCode, seconds: float, labels: dict[str, str]) -> None: ...


def _status_for(exc: errors.SearchgwError) -> status_pb2.Status:
    code = getattr(code_pb2, exc.code_name)
    details: list[Any] = []
    info = error_details_pb2.ErrorInfo(
        reason=exc.reason or exc.code_name, domain=_DOMAIN, metadata={k: str(v) for k, v in exc.metadata.items()}
    )
    details.append(info)
    if isinstance(exc, errors.InvalidArgument):
        details.append(error_details_pb2.BadRequest(
            field_violations=[error_details_pb2.BadRequest.FieldViolation(field=exc.field, description=exc.description)]
        ))
    if isinstance(exc, errors.ResourceExhausted) and exc.retry_after is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(exc.retry_after * 1e9))
        details.append(error_details_pb2.RetryInfo(retry_delay=delay))
    packed = []
    for detail in details:
        any_msg = any_pb2.Any()
        any_msg.Pack(detail)
        packed.append(any_msg)
    return status_pb2.Status(code=code, message=exc.message, details=packed)


def _code_of(context: grpc.aio.ServicerContext) -> grpc.StatusCode:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    if isinstance(code, int):
        for candidate in grpc.StatusCode:
            if candidate.value[0] == code:
                return candidate
    return grpc.StatusCode.OK


def _trace_id() -> str:
    try:
        from opentelemetry import trace

        ctx = trace.get_current_span().get_span_context()
        return format(ctx.trace_id, "032x") if ctx.is_valid else ""
    except Exception:  # pragma: no cover - tracing is optional
        return ""


class DomainErrorInterceptor(grpc.aio.ServerInterceptor):
    """Maps domain errors to status codes and reports every call to an observer."""

    def __init__(self, observer: RpcObserver | None = None, *, clock: Callable[[], float] = time.perf_counter) -> None:
        self._observer = observer
        self._clock = clock

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        if handler.unary_unary is not None:
            return handler._replace(unary_unary=self._wrap_unary(method, handler.unary_unary))
        if handler.unary_stream is not None:
            if inspect.iscoroutinefunction(handler.unary_stream):  # writes with context.write (Health/Watch)
                return handler._replace(unary_stream=self._wrap_unary(method, handler.unary_stream))
            return handler._replace(unary_stream=self._wrap_stream(method, handler.unary_stream))
        return handler

    async def _abort(self, context, exc: BaseException, method: str) -> None:
        if isinstance(exc, errors.SearchgwError):
            await context.abort_with_status(rpc_status.to_status(_status_for(exc)))
        log.error("unexpected error in %s (trace %s)", method, _trace_id(), exc_info=exc)
        await context.abort(grpc.StatusCode.INTERNAL, "internal error; the server logged the details")

    def _report(self, method: str, code: grpc.StatusCode, started: float, info: RpcInfo) -> None:
        if self._observer is not None:
            self._observer.observe(method, code, self._clock() - started, info.labels)

    def _wrap_unary(self, method: str, behaviour):
        async def wrapped(request, context):
            info = RpcInfo(method=method)
            token = _current.set(info)
            started = self._clock()
            code = grpc.StatusCode.OK
            try:
                return await behaviour(request, context)
            except grpc.aio.AbortError:
                code = _code_of(context)
                raise
            except errors.SearchgwError as exc:
                code = getattr(grpc.StatusCode, exc.code_name)
                await self._abort(context, exc, method)
            except Exception as exc:
                code = grpc.StatusCode.INTERNAL
                await self._abort(context, exc, method)
            except BaseException:  # cancelled: the client left
                code = grpc.StatusCode.CANCELLED
                raise
            finally:
                if code is grpc.StatusCode.OK:
                    code = _code_of(context)
                self._report(method, code, started, info)
                _current.reset(token)

        return wrapped

    def _wrap_stream(self, method: str, behaviour):
        async def wrapped(request, context):
            info = RpcInfo(method=method)
            token = _current.set(info)
            started = self._clock()
            code = grpc.StatusCode.OK
            try:
                async for item in behaviour(request, context):
                    yield item
            except grpc.aio.AbortError:
                code = _code_of(context)
                raise
            except errors.SearchgwError as exc:
                code = getattr(grpc.StatusCode, exc.code_name)
                await self._abort(context, exc, method)
            except Exception as exc:
                code = grpc.StatusCode.INTERNAL
                await self._abort(context, exc, method)
            except BaseException:
                code = grpc.StatusCode.CANCELLED
                raise
            finally:
                if code is grpc.StatusCode.OK:
                    code = _code_of(context)
                self._report(method, code, started, info)
                _current.reset(token)

        return wrapped


_CLIENT_ERRORS: dict[grpc.StatusCode, type[errors.SearchgwError]] = {
    grpc.StatusCode.NOT_FOUND: errors.NotFound,
    grpc.StatusCode.ALREADY_EXISTS: errors.AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: errors.FailedPrecondition,
    grpc.StatusCode.RESOURCE_EXHAUSTED: errors.ResourceExhausted,
    grpc.StatusCode.DEADLINE_EXCEEDED: errors.DeadlineExceeded,
    grpc.StatusCode.UNAVAILABLE: errors.Unavailable,
    grpc.StatusCode.UNAUTHENTICATED: errors.Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: errors.PermissionDenied,
}


def domain_error_from(exc: grpc.aio.AioRpcError, *, field: str = "", what: str = "") -> errors.SearchgwError:
    """The domain error a dependency's failed call means to our own caller.

    INVALID_ARGUMENT is re-attributed to `field` of our own request, since the caller only knows its
    own fields. A dependency's INTERNAL/UNKNOWN/CANCELLED is not our bug: it is Unavailable to us.
    """
    code = exc.code()
    detail = exc.details() or code.name
    prefix = f"{what}: " if what else ""
    if code is grpc.StatusCode.INVALID_ARGUMENT:
        return errors.InvalidArgument(field or "request", prefix + detail)
    return _CLIENT_ERRORS.get(code, errors.Unavailable)(prefix + detail)
