"""Sticky, monotone request routing between the arms of a rollout.

    bucket = xxh3_64(salt ‖ NUL ‖ key) mod 10 000        (basis points; a fresh salt per rollout)
    canary iff bucket < weight_bps                       (so 5 % → 25 % → 50 % only adds users)

`Router.route(collection, key, forced_arm)` answers from the snapshot the rollout controller
published last; `resolve_routing_key` picks the key; `parse_forced_arm` reads `x-canary-arm`.
No grpc here: the gateway's services pass plain strings in.
"""

from searchgw.gateway.routing.buckets import BUCKETS, ArmRange, BucketLayout, bucket, salt_prefix, weight_to_bps
from searchgw.gateway.routing.keys import (
    FORCED_ARM_HEADER,
    MAX_ROUTING_KEY_LENGTH,
    ROUTING_KEY_HEADER,
    KeyFallback,
    KeySource,
    parse_forced_arm,
    peer_host,
    resolve_routing_key,
)
from searchgw.gateway.routing.router import UNROUTED, Arm, RouteDecision, Router, RouteTable

__all__ = [
    "BUCKETS",
    "FORCED_ARM_HEADER",
    "MAX_ROUTING_KEY_LENGTH",
    "ROUTING_KEY_HEADER",
    "UNROUTED",
    "Arm",
    "ArmRange",
    "BucketLayout",
    "KeyFallback",
    "KeySource",
    "RouteDecision",
    "RouteTable",
    "Router",
    "bucket",
    "parse_forced_arm",
    "peer_host",
    "resolve_routing_key",
    "salt_prefix",
    "weight_to_bps",
]
