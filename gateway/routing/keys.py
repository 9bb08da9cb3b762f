"""Which key a request is routed by, and the forced-arm header.

The key is the request's `routing_key`, else the `x-routing-key` metadata, else a fallback:
"peer" (the client's address without its port, so reconnects stay on their arm; every client
behind one proxy or NAT shares an arm) or "random" (a fresh key per request: no stickiness).
The returned `KeySource` lets the caller count unkeyed traffic by the fallback that served it.
"""

from __future__ import annotations

import enum
import random

from searchgw.gateway.routing.router import Arm
from searchgw.errors import InvalidArgument

#: The metadata key a client may route by instead of `routing_key`.
ROUTING_KEY_HEADER = "x-routing-key"
#: The metadata key that forces an arm (smoke and load tests); such requests stay out of the analysis.
FORCED_ARM_HEADER = "x-canary-arm"
#: The longest routing key accepted, in characters.
MAX_ROUTING_KEY_LENGTH = 1024


class KeySource(enum.StrEnum):
    """Where a routing key came from."""

    REQUEST = "request"
    METADATA = "metadata"
    PEER = "peer"
    RANDOM = "random"


class KeyFallback(enum.StrEnum):
    """What keys a request that carries none."""

    PEER = "peer"
    RANDOM = "random"


_random = random.Random()


def resolve_routing_key(
    request_key: str, metadata_key: str | None, peer: str | None, fallback: str
) -> tuple[str, KeySource]:
    """The routing key of a request and where it came from.

    `fallback` is "peer" or "random"; "peer" without a peer falls back to random.
    Raises InvalidArgument (naming `routing_key` or the header) for a key over 1 024 characters.
    """
    if request_key:
        if len(request_key) > MAX_ROUTING_KEY_LENGTH:
            raise InvalidArgument("routing_key", f"{len(request_key)} characters; at most {MAX_ROUTING_KEY_LENGTH}")
        return request_key, KeySource.REQUEST
    if metadata_key:
        if len(metadata_key) > MAX_ROUTING_KEY_LENGTH:
            raise InvalidArgument(ROUTING_KEY_HEADER, f"{len(metadata_key)} characters; at most "
                                                      f"{MAX_ROUTING_KEY_LENGTH}")
        return metadata_key, KeySource.METADATA
    if fallback == KeyFallback.PEER:
        if peer:
            return peer_host(peer), KeySource.PEER
    elif fallback != KeyFallback.RANDOM:
        raise ValueError(f"fallback must be 'peer' or 'random', not {fallback!r}")
    return format(_random.getrandbits(64), "016x"), KeySource.RANDOM


def peer_host(peer: str) -> str:
    """A gRPC peer string without its port: "ipv4:10.0.0.7:51234" → "ipv4:10.0.0.7",
    "ipv6:[::1]:51234" → "ipv6:[::1]" (also in its %5B…%5D form); others ("unix:/path") unchanged."""
    scheme, _, address = peer.partition(":")
    if scheme in ("ipv4", "ipv6"):
        host, separator, port = address.rpartition(":")
        if separator and host and port.isdigit():
            return f"{scheme}:{host}"
    return peer


def parse_forced_arm(value: str | None) -> Arm | None:
    """The arm an `x-canary-arm` header forces, or None when absent or empty."""
    if not value:
        return None
    try:
        return Arm(value.strip().lower())
    except ValueError:
        raise InvalidArgument(FORCED_ARM_HEADER, f"{value!r} is not 'primary' or 'canary'") from None
