"""searchgw: a gRPC search gateway with sticky canary routing, and an ONNX embedding server.

Packages:
    searchgw.v1        generated protobuf/gRPC code (package searchgw.v1)
    searchgw.errors    the domain error tree every core raises (no grpc)
    searchgw.settings  typed, frozen settings built from flags > environment > file
    searchgw.rpc       shared gRPC plumbing: error interceptor, health, server helpers
    searchgw.telemetry logging, metrics endpoint and tracing set-up
    embedder           the embedding server and its async client
    gateway            the search gateway: routing, rollouts, analysis, backends, services
"""
