"""Domain errors ⇄ `google.rpc.Status`, both ways, on the gRPC floor.

Servers send (`status_for`, used by `DomainErrorInterceptor`): the canonical code, a message a person
can act on, and AIP-193 details — always an `ErrorInfo` (reason, metadata), a `BadRequest` field
violation for INVALID_ARGUMENT, a `RetryInfo` when the error knows when to retry.

Clients read back (`error_from_rpc`, used by every client: GatewayClient, EmbedderClient): the
structured details when the status carries them, the plain status message only when it does not.

    status code           the client's error (searchgw.errors)
    INVALID_ARGUMENT      InvalidArgument; .field and .description from the BadRequest field violation
                          ("" and the message when the status has no details)
    NOT_FOUND             NotFound
    ALREADY_EXISTS        AlreadyExists
    FAILED_PRECONDITION   FailedPrecondition
    RESOURCE_EXHAUSTED    ResourceExhausted; .retry_after (seconds) from RetryInfo, else None
    DEADLINE_EXCEEDED     DeadlineExceeded
    UNAVAILABLE           Unavailable
    UNAUTHENTICATED       Unauthenticated
    PERMISSION_DENIED     PermissionDenied
    any other code        SearchgwError whose .code_name is the code's name (INTERNAL, UNKNOWN, …)

Every error's `.message` is the status message as sent, `.code_name` the status code's name, and
`.reason` / `.metadata` those of the `ErrorInfo` ("" and {} without one).

`dependency_error` is the same reading for a server calling another one (the gateway calling the
embedder): it re-attributes the error to its own caller's request (see there).
"""

from __future__ import annotations

from typing import Any, Protocol, cast

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from searchgw import errors

__all__ = ["MAX_MESSAGE_CHARS", "FailedCall", "dependency_error", "error_from_rpc", "error_from_status", "status_for",
           "status_of_rpc"]

_DOMAIN = "searchgw"

#: Longest status message sent: trailers past a few KiB make clients fail with RESOURCE_EXHAUSTED.
MAX_MESSAGE_CHARS = 1024

#: The domain error of each status code that has one (the table above).
_KINDS: dict[str, type[errors.SearchgwError]] = {kind.code_name: kind for kind in (
    errors.InvalidArgument, errors.NotFound, errors.AlreadyExists, errors.FailedPrecondition,
    errors.ResourceExhausted, errors.DeadlineExceeded, errors.Unavailable, errors.Unauthenticated,
    errors.PermissionDenied,
)}


class FailedCall(Protocol):
    """A call that ended with an error: `grpc.aio.AioRpcError`, or a synchronous `grpc.RpcError`
    (which is also a `grpc.Call`)."""

    def code(self) -> grpc.StatusCode: ...

    def details(self) -> str | None: ...

    def trailing_metadata(self) -> Any: ...


def _capped(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 1] + "…"


# -- server side -----------------------------------------------------------------------------------

def status_for(exc: errors.SearchgwError) -> status_pb2.Status:
    """The status a server sends for `exc`: its code, its message and AIP-193 details."""
    code = getattr(code_pb2, exc.code_name)
    details: list[error_details_pb2.ErrorInfo | error_details_pb2.BadRequest | error_details_pb2.RetryInfo] = []
    info = error_details_pb2.ErrorInfo(
        reason=exc.reason or exc.code_name, domain=_DOMAIN,
        metadata={k: _capped(str(v)) for k, v in exc.metadata.items()}
    )
    details.append(info)
    if isinstance(exc, errors.InvalidArgument):
        details.append(error_details_pb2.BadRequest(
            field_violations=[error_details_pb2.BadRequest.FieldViolation(field=_capped(exc.field),
                                                                          description=_capped(exc.description))]
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
    return status_pb2.Status(code=code, message=_capped(exc.message), details=packed)


# -- client side -----------------------------------------------------------------------------------

def status_of_rpc(exc: FailedCall) -> status_pb2.Status:
    """The status a failed call ended with: the rich one from its trailers (`grpc-status-details-bin`)
    when the server sent one that agrees with the call's code and message, else code and message only."""
    code = exc.code()
    message = exc.details() or code.name
    try:
        # from_call reads only code(), details() and trailing_metadata(), which FailedCall has.
        rich = rpc_status.from_call(cast(grpc.Call, exc))
    except ValueError:  # trailers that contradict the call's own status: trust the call
        rich = None
    return rich if rich is not None else status_pb2.Status(code=code.value[0], message=message)


def error_from_rpc(exc: FailedCall) -> errors.SearchgwError:
    """The domain error a failed call means (the table in the module's docstring)."""
    return error_from_status(status_of_rpc(exc))


def error_from_status(status: status_pb2.Status) -> errors.SearchgwError:
    """The domain error `status` stands for (the table in the module's docstring)."""
    code_name = code_pb2.Code.Name(status.code) if status.code in code_pb2.Code.values() else "UNKNOWN"
    message = status.message or code_name
    info = error_details_pb2.ErrorInfo()
    violation: error_details_pb2.BadRequest.FieldViolation | None = None
    retry_after: float | None = None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            detail.Unpack(info)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            if bad_request.field_violations and violation is None:
                violation = bad_request.field_violations[0]
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            retry_after = retry.retry_delay.ToNanoseconds() / 1e9
    reason, metadata = info.reason, dict(info.metadata)
    kind = _KINDS.get(code_name)
    error: errors.SearchgwError
    if kind is errors.InvalidArgument:
        field, description = (violation.field, violation.description) if violation is not None else ("", message)
        error = errors.InvalidArgument(field, description, reason=reason, metadata=metadata)
    elif kind is errors.ResourceExhausted:
        error = errors.ResourceExhausted(message, retry_after=retry_after, reason=reason, metadata=metadata)
    elif kind is not None:
        error = kind(message, reason=reason, metadata=metadata)
    else:
        error = errors.SearchgwError(message, reason=reason, metadata=metadata)
        error.code_name = code_name  # the code's own name: INTERNAL, UNKNOWN, CANCELLED, …
    return _saying(error, message)


def _saying(error: errors.SearchgwError, message: str) -> errors.SearchgwError:
    """`error` with `message` as its message: what the server said, word for word."""
    error.message = message
    error.args = (message,)
    return error


def dependency_error(exc: FailedCall, *, field: str = "", what: str = "") -> errors.SearchgwError:
    """The domain error a dependency's failed call means to our own caller.

    The dependency's error, read as `error_from_rpc` does, with its message prefixed by `what`, except:
    INVALID_ARGUMENT is re-attributed to `field` ("request" when empty) of our own request, since our
    caller only knows its own fields; a code without a domain error (INTERNAL, UNKNOWN, CANCELLED, …)
    is not our bug but the dependency failing: Unavailable. A RetryInfo delay is kept.
    """
    error = error_from_rpc(exc)
    message = (f"{what}: " if what else "") + error.message
    if isinstance(error, errors.InvalidArgument):
        return errors.InvalidArgument(field or "request", message)
    if isinstance(error, errors.ResourceExhausted):
        return errors.ResourceExhausted(message, retry_after=error.retry_after)
    return _KINDS.get(error.code_name, errors.Unavailable)(message)
