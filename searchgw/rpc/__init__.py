"""Shared gRPC plumbing for both servers: the domain-error interceptor, per-RPC observation,
health and reflection registration, and channel helpers."""

from searchgw.rpc.errors import DomainErrorInterceptor, RpcObserver, current_rpc
from searchgw.rpc.server import ServingState, add_health_and_reflection

__all__ = ["DomainErrorInterceptor", "RpcObserver", "ServingState", "add_health_and_reflection", "current_rpc"]
