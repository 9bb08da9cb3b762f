"""The domain errors that cores raise; one interceptor (searchgw.rpc.errors) maps them to status codes,
and every client reads a status back into the same error (searchgw.rpc.status.error_from_rpc).

    SearchgwError
     ├── InvalidArgument      the request is wrong; names the field         -> INVALID_ARGUMENT
     ├── NotFound             a named thing does not exist                 -> NOT_FOUND
     ├── AlreadyExists        a thing with that name exists                -> ALREADY_EXISTS
     ├── FailedPrecondition   the state forbids the move                   -> FAILED_PRECONDITION
     ├── ResourceExhausted    a queue or quota is full; retry later        -> RESOURCE_EXHAUSTED
     ├── DeadlineExceeded     the caller's deadline passed before the work -> DEADLINE_EXCEEDED
     ├── Unavailable          a dependency cannot be reached right now     -> UNAVAILABLE
     ├── Unauthenticated      no or bad credentials                        -> UNAUTHENTICATED
     └── PermissionDenied     credentials lack the scope                   -> PERMISSION_DENIED

Anything else that escapes a handler is a bug: INTERNAL with a generic message, logged in full.
No module here imports grpc, so domain code stays testable on its own.
"""

from __future__ import annotations

from typing import Any


class SearchgwError(Exception):
    """Base of every error a client is meant to see."""

    #: The canonical status code name this error maps to.
    code_name: str = "UNKNOWN"

    def __init__(self, message: str, *, reason: str = "", metadata: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        #: A machine-readable UPPER_SNAKE reason (AIP-193 ErrorInfo.reason); optional.
        self.reason = reason
        #: Machine-readable details (ErrorInfo.metadata).
        self.metadata = dict(metadata or {})


class InvalidArgument(SearchgwError):
    """The request is malformed; `field` names the offending field path (e.g. `texts[3]`)."""

    code_name = "INVALID_ARGUMENT"

    def __init__(self, field: str, message: str, **kwargs: Any) -> None:
        super().__init__(f"{field}: {message}", **kwargs)
        self.field = field
        self.description = message


class NotFound(SearchgwError):
    code_name = "NOT_FOUND"


class AlreadyExists(SearchgwError):
    code_name = "ALREADY_EXISTS"


class FailedPrecondition(SearchgwError):
    code_name = "FAILED_PRECONDITION"


class ResourceExhausted(SearchgwError):
    """A bounded resource is full. `retry_after` (seconds) becomes a retry hint when known."""

    code_name = "RESOURCE_EXHAUSTED"

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class DeadlineExceeded(SearchgwError):
    code_name = "DEADLINE_EXCEEDED"


class Unavailable(SearchgwError):
    code_name = "UNAVAILABLE"


class Unauthenticated(SearchgwError):
    code_name = "UNAUTHENTICATED"


class PermissionDenied(SearchgwError):
    code_name = "PERMISSION_DENIED"


__all__ = [
    "AlreadyExists",
    "DeadlineExceeded",
    "FailedPrecondition",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "SearchgwError",
    "Unauthenticated",
    "Unavailable",
]
