"""Transport security and access control for both servers (see docs/security.md).

- `bind` / `server_credentials` / `channel_credentials`: TLS and mutual TLS from PEM files.
- `load_token_store` / `TokenStore` / `Principal`: bearer tokens kept as SHA-256 digests, with scopes
  that nest admin ⊇ write ⊇ read.
- `RateLimiter`: a token bucket per principal.
- `AuthInterceptor` / `interceptors_for`: one server interceptor that authenticates, checks the
  method's scope and applies the rate limit, raising `searchgw.errors` for `DomainErrorInterceptor`.
"""

from searchgw.security._interceptor import (
    OPEN_METHOD_PREFIXES,
    AuthInterceptor,
    admission_for,
    interceptors_for,
    is_open_method,
    peer_host,
)
from searchgw.security._ratelimit import RateLimiter
from searchgw.security._tls import bind, channel_credentials, server_credentials
from searchgw.security._tokens import SCOPES, Principal, TokenStore, expand_scopes, load_token_store, token_digest

__all__ = [
    "OPEN_METHOD_PREFIXES",
    "SCOPES",
    "AuthInterceptor",
    "Principal",
    "admission_for",
    "RateLimiter",
    "TokenStore",
    "bind",
    "channel_credentials",
    "expand_scopes",
    "interceptors_for",
    "is_open_method",
    "load_token_store",
    "peer_host",
    "server_credentials",
    "token_digest",
]
