"""AuthInterceptor: bearer-token authentication, scope checks and per-principal rate limits.

It sits inside `DomainErrorInterceptor` and raises domain errors, which that interceptor turns into
status codes (with `RetryInfo` for the rate limit); the gateway hands it to that interceptor instead
(`DomainErrorInterceptor(admission=…)`, see `admission_for`), which calls `admit` itself: one
interceptor on the request path instead of two. For each call, in order:

1. Health (`grpc.health.v1.Health`) and reflection (`grpc.reflection.*`) pass untouched.
2. With a token store: `authorization: Bearer <token>` must name a known token, else UNAUTHENTICATED;
   the principal must hold the method's scope (admin ⊇ write ⊇ read), else PERMISSION_DENIED; a method
   missing from the scope map is denied to every token (fail closed).
   Without a token store the principal is the peer's host, used for rate limiting only.
3. With a rate limiter: one call from the principal's bucket, else RESOURCE_EXHAUSTED with a retry hint.
4. An authenticated principal's name goes on `current_rpc().labels["principal"]`.

Tokens are never logged nor echoed in an error message.
"""

from __future__ import annotations

import inspect
import logging
import math
import re
import urllib.parse
from collections.abc import Mapping
from typing import Any, Protocol

import grpc
from grpc_status import rpc_status

from searchgw import errors
from searchgw.rpc import current_rpc
from searchgw.rpc.status import status_for
from searchgw.security._ratelimit import RateLimiter
from searchgw.security._tokens import SCOPES, TokenStore, load_token_store
from searchgw.settings import SettingsError

log = logging.getLogger(__name__)

#: Method-name prefixes that need no token and are never rate limited.
OPEN_METHOD_PREFIXES: tuple[str, ...] = ("/grpc.health.v1.Health/", "/grpc.reflection.")

_BEARER = re.compile(r"[Bb][Ee][Aa][Rr][Ee][Rr][ \t]+([^\s]+)[ \t]*")


def is_open_method(method: str) -> bool:
    """True for health and reflection methods, which stay reachable without credentials."""
    return method.startswith(OPEN_METHOD_PREFIXES)


def peer_host(peer: str) -> str:
    """The host part of a gRPC peer string (`ipv4:10.0.0.1:5000`, `ipv6:%5B::1%5D:5000`, `unix:/s`)."""
    kind, sep, rest = peer.partition(":")
    if not sep:
        return peer or "unknown"
    if kind == "ipv4":
        return rest.rpartition(":")[0] or rest
    if kind == "ipv6":
        rest = urllib.parse.unquote(rest)
        host = rest.rpartition(":")[0] if rest.startswith("[") else rest
        return host.strip("[]") or rest
    return peer


def _bearer_token(metadata: Any) -> str:
    """The token of the single `authorization: Bearer <token>` entry; Unauthenticated otherwise."""
    values = [value for key, value in (metadata or ()) if key == "authorization"]
    if not values:
        raise errors.Unauthenticated("missing credentials: send the metadata 'authorization: Bearer <token>'",
                                     reason="MISSING_TOKEN")
    if len(values) > 1:
        raise errors.Unauthenticated("more than one 'authorization' metadata entry; send exactly one",
                                     reason="MALFORMED_TOKEN")
    value = values[0]
    match = _BEARER.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise errors.Unauthenticated("malformed 'authorization' metadata: expected 'Bearer <token>'",
                                     reason="MALFORMED_TOKEN")
    return match.group(1)


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates, authorises and rate-limits every call but health and reflection.

    `tokens` None turns authentication off (every method is allowed); `limiter` None turns rate
    limiting off. `method_scopes` maps full method names to the scope they need.
    """

    def __init__(self, tokens: TokenStore | None, method_scopes: Mapping[str, str],
                 limiter: RateLimiter | None) -> None:
        unknown = sorted({scope for scope in method_scopes.values() if scope not in SCOPES})
        if unknown:
            raise ValueError(f"method_scopes: unknown scope(s) {', '.join(unknown)}; known: {', '.join(SCOPES)}")
        self._tokens = tokens
        self._scopes = dict(method_scopes)
        self._limiter = limiter

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or is_open_method(method):
            return handler
        return self.guard(method, handler)

    def guard(self, method: str, handler: Any) -> Any:
        """`handler` with every call admitted first (see `admit`); request-streaming calls, which sit
        outside DomainErrorInterceptor's mapping, are refused by aborting."""
        if handler.unary_unary is not None:
            return handler._replace(unary_unary=self._guard_unary(method, handler.unary_unary))
        if handler.unary_stream is not None:
            return handler._replace(unary_stream=self._guard_stream(method, handler.unary_stream))
        # Request-streaming calls sit outside DomainErrorInterceptor's mapping, so refuse by aborting.
        if handler.stream_unary is not None:
            return handler._replace(stream_unary=self._guard_unary(method, handler.stream_unary, abort=True))
        if handler.stream_stream is not None:
            return handler._replace(stream_stream=self._guard_stream(method, handler.stream_stream, abort=True))
        return handler

    def admit(self, method: str, context: grpc.aio.ServicerContext) -> None:
        """Raise the domain error that refuses this call, or label it with its principal.
        `DomainErrorInterceptor(admission=…)` calls this itself (one interceptor instead of two)."""
        if self._tokens is None:
            if self._limiter is not None:
                self._limiter.acquire(peer_host(context.peer()))
            return
        try:
            token = _bearer_token(context.invocation_metadata())
            principal = self._tokens.authenticate(token)
            del token
            if principal is None:
                raise errors.Unauthenticated("unknown bearer token", reason="INVALID_TOKEN")
        except errors.Unauthenticated as exc:
            log.info("call refused: %s", exc.reason, extra={"method": method, "peer": context.peer()})
            raise
        scope = self._scopes.get(method)
        if scope is None:
            log.warning("call refused: no scope configured for the method",
                        extra={"method": method, "principal": principal.name})
            raise errors.PermissionDenied(f"{method} is not open to any token (no scope is configured for it)",
                                          reason="METHOD_NOT_ALLOWED", metadata={"method": method})
        if not principal.allows(scope):
            log.info("call refused: missing scope", extra={"method": method, "principal": principal.name,
                                                           "scope": scope})
            raise errors.PermissionDenied(
                f"{method} needs the {scope!r} scope; {principal.name!r} has {', '.join(sorted(principal.scopes))}",
                reason="MISSING_SCOPE", metadata={"method": method, "scope": scope},
            )
        if self._limiter is not None:
            self._limiter.acquire(principal.name)
        current_rpc().labels["principal"] = principal.name

    async def _check(self, method: str, context: grpc.aio.ServicerContext, abort: bool) -> None:
        try:
            self.admit(method, context)
        except errors.SearchgwError as exc:
            if not abort:
                raise
            await context.abort_with_status(rpc_status.to_status(status_for(exc)))  # details too

    def _guard_unary(self, method: str, behaviour, *, abort: bool = False):
        async def guarded(request, context):
            await self._check(method, context, abort)
            return await behaviour(request, context)

        return guarded

    def _guard_stream(self, method: str, behaviour, *, abort: bool = False):
        # Keep the handler's shape: gRPC tells an async generator from a coroutine using context.write.
        if inspect.iscoroutinefunction(behaviour):
            async def guarded_writer(request, context):
                await self._check(method, context, abort)
                return await behaviour(request, context)

            return guarded_writer

        async def guarded(request, context):
            await self._check(method, context, abort)
            async for item in behaviour(request, context):
                yield item

        return guarded


class SecuritySettings(Protocol):
    """The settings fields `interceptors_for` reads (both servers' settings have them)."""

    @property
    def auth_tokens_file(self) -> Any: ...
    @property
    def rate_limit_rps(self) -> float: ...
    @property
    def rate_limit_burst(self) -> int: ...


def interceptors_for(settings: SecuritySettings, method_scopes: Mapping[str, str]) -> list[grpc.aio.ServerInterceptor]:
    """See `admission_for`; the interceptor as a list to put after DomainErrorInterceptor."""
    admission = admission_for(settings, method_scopes)
    return [] if admission is None else [admission]


def admission_for(settings: SecuritySettings, method_scopes: Mapping[str, str]) -> AuthInterceptor | None:
    """The security interceptor a server's settings ask for; None when neither auth nor limits are on.

    Reads the token file now, so a bad file stops start-up with a `SettingsError`. The rate limit's
    burst defaults to one second of calls (at least one).
    """
    tokens = load_token_store(settings.auth_tokens_file) if settings.auth_tokens_file is not None else None
    limiter = None
    if settings.rate_limit_rps > 0:
        burst = settings.rate_limit_burst or max(1, math.ceil(settings.rate_limit_rps))
        limiter = RateLimiter(settings.rate_limit_rps, burst)
    elif settings.rate_limit_burst:
        raise SettingsError("--rate-limit-burst: needs --rate-limit-rps (a bucket with no refill rate)")
    if tokens is None and limiter is None:
        return None
    if tokens is not None and getattr(settings, "tls_cert", None) is None:
        log.warning("authentication is on without TLS: bearer tokens cross the network in plain text")
    return AuthInterceptor(tokens, method_scopes, limiter)
