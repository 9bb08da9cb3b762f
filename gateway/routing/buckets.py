"""Stable buckets and the layout that gives each arm a range of them.

A routing key lands in one of `BUCKETS` (10 000) buckets: xxh3_64 of the rollout's salt, a NUL
separator and the key, modulo 10 000. A weight is therefore a number of basis points (0.01 %
granularity), and the same key with the same salt always lands in the same bucket — no sticky store.

A `BucketLayout` cuts the bucket space into contiguous ranges, one per arm. The canary layout puts
the canary at [0, weight) and primary at [weight, 10 000), so raising the weight only moves keys from
primary to canary: a key on the canary at 5 % is on it at 25 % and 50 %. Layouts with more arms (an
A/B test with several variants) are the same structure with more ranges; to keep every variant's
users when weights change, give each variant a range that grows in place (e.g. variant i starts at
i × 2 500) rather than packing them with `from_weights`.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import xxhash

#: The number of buckets: weights are in basis points.
BUCKETS = 10_000

#: Separates the salt from the key in the hashed bytes (salts never contain it).
SALT_SEPARATOR = b"\x00"

ArmT = TypeVar("ArmT")


def salt_prefix(salt: str) -> bytes:
    """The bytes hashed before every key of a rollout; precompute once per rollout."""
    if not salt:
        raise ValueError("a salt must not be empty")
    encoded = salt.encode()
    if SALT_SEPARATOR in encoded:
        raise ValueError("a salt must not contain NUL")
    return encoded + SALT_SEPARATOR


def bucket(salt: str, key: str) -> int:
    """The bucket (0 ≤ b < 10 000) of `key` under `salt`: xxh3_64(salt ‖ NUL ‖ key) mod 10 000."""
    return xxhash.xxh3_64_intdigest(salt_prefix(salt) + key.encode()) % BUCKETS


def weight_to_bps(weight_percent: float) -> int:
    """A weight in percent (0.01 steps) as basis points."""
    return round(weight_percent * 100)


@dataclass(frozen=True, slots=True)
class ArmRange(Generic[ArmT]):
    """Buckets [start, end) belong to `arm`."""

    arm: ArmT
    start: int
    end: int


class BucketLayout(Generic[ArmT]):
    """Contiguous ranges that cover [0, BUCKETS) exactly, one per arm, in bucket order.

    Empty ranges are allowed (an arm at weight 0). Looking an arm up is one bisect.
    """

    __slots__ = ("ranges", "ends", "_arms")

    def __init__(self, ranges: Sequence[ArmRange[ArmT]]) -> None:
        position = 0
        for arm_range in ranges:
            if arm_range.start != position or arm_range.end < arm_range.start:
                raise ValueError(f"ranges must be contiguous from 0; got {arm_range} after bucket {position}")
            position = arm_range.end
        if position != BUCKETS:
            raise ValueError(f"ranges must end at {BUCKETS}; they end at {position}")
        self.ranges: tuple[ArmRange[ArmT], ...] = tuple(ranges)
        #: The end of every range but the last: bisect_right over them gives a bucket's range index.
        self.ends: tuple[int, ...] = tuple(arm_range.end for arm_range in self.ranges[:-1])
        self._arms = [arm_range.arm for arm_range in self.ranges]

    @classmethod
    def from_weights(cls, weights: Sequence[tuple[ArmT, int]]) -> BucketLayout[ArmT]:
        """Pack arms in order, each `bps` buckets wide; the widths must add up to BUCKETS."""
        ranges, start = [], 0
        for arm, bps in weights:
            ranges.append(ArmRange(arm, start, start + bps))
            start += bps
        return cls(ranges)

    @classmethod
    def canary(cls, canary: ArmT, primary: ArmT, weight_bps: int) -> BucketLayout[ArmT]:
        """Canary at [0, weight_bps), primary above it: monotone as the weight grows."""
        if not 0 <= weight_bps <= BUCKETS:
            raise ValueError(f"weight_bps must be within 0..{BUCKETS}; got {weight_bps}")
        return cls.from_weights([(canary, weight_bps), (primary, BUCKETS - weight_bps)])

    def arm_at(self, bucket_number: int) -> ArmT:
        """The arm that owns `bucket_number`."""
        return self._arms[bisect.bisect_right(self.ends, bucket_number)]

    def __repr__(self) -> str:
        return f"BucketLayout({list(self.ranges)!r})"
