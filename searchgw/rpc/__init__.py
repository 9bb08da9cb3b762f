"""Shared gRPC plumbing for both servers: the domain-error interceptor, per-RPC observation,
health and reflection registration, channel helpers, and (`status`) the domain error ⇄ status codec
that servers send with and every client reads with."""

from searchgw.rpc.errors import DomainErrorInterceptor, RpcObserver, current_rpc
from searchgw.rpc.server import ServingState, add_health_and_reflection

__all__ = ["DomainErrorInterceptor", "RpcObserver", "ServingState", "add_health_and_reflection", "current_rpc"]
