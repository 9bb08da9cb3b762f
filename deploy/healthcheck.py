#!/usr/bin/env python3
"""A grpc.health.v1 check for container health checks: exit 0 when the service is SERVING.

    healthcheck 127.0.0.1:50061 searchgw.v1.EmbedService
    healthcheck 127.0.0.1:50051                 (the server as a whole)

Exit 1 when it is NOT_SERVING, unknown to the server, or the server does not answer within
--timeout seconds. The image installs it as /opt/searchgw/bin/healthcheck; Kubernetes uses its
native gRPC probes instead.
"""

from __future__ import annotations

import argparse
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def check(address: str, service: str, timeout: float) -> tuple[bool, str]:
    """(serving, what to print) for `service` on the server at `address`."""
    label = service or "(server)"
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError as exc:
            return False, f"{address} {label}: {exc.code().name} {exc.details() or ''}".rstrip()
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    return response.status == health_pb2.HealthCheckResponse.SERVING, f"{address} {label}: {status}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="healthcheck", description=__doc__.splitlines()[0])
    parser.add_argument("address", help="host:port of the gRPC server")
    parser.add_argument("service", nargs="?", default="", help="service name; empty for the whole server")
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for the answer")
    args = parser.parse_args(argv)
    serving, message = check(args.address, args.service, args.timeout)
    print(message, file=sys.stdout if serving else sys.stderr)
    return 0 if serving else 1


if __name__ == "__main__":
    sys.exit(main())
