"""Search ids and the outcomes clients report against them.

A search served under a running experiment gets a `search_id`: the experiment, the arm's index, the
issue time (wall-clock seconds) and an 8-byte nonce (4 random bytes per process and a 4-byte counter),
signed with keyed BLAKE2b (a MAC by design, RFC 7693; 16 bytes; a quarter of HMAC-SHA256's cost per
search here) under a key derived from the gateway's page-token secret — set `page_token_secret` so ids
survive restarts and are accepted by every replica. A client quotes it in ReportOutcome: an id that was
not issued by this gateway (forged, altered, truncated) is INVALID_ARGUMENT naming it; a sound one is
accepted only within `outcome_ttl_s` of its issue (default 30 min), and only once per (search id,
outcome kind).

The once-only rule is kept by `OutcomeLedger` in memory: the random part and the kinds seen, each
forgotten once its id has expired (after which the id is refused anyway), at most `max_entries` ids
(a report beyond that is refused as `OVERLOADED` rather than counted twice). It is per process: with
several replicas, an outcome sent to two replicas counts twice (documented in docs/experiments.md).
"""

from __future__ import annotations

import base64
import binascii
import collections
import enum
import hashlib
import hmac
import itertools
import secrets
import struct
from dataclasses import dataclass

from searchgw.errors import InvalidArgument

_VERSION = 1
_MAC_BYTES = 16
_HEADER = struct.Struct(">BIB8s")  # version, issue second, arm index, nonce


@dataclass(frozen=True, slots=True)
class SearchId:
    experiment: str
    arm_index: int
    issued_s: int
    nonce: bytes


class SearchIds:
    """Issues and reads signed search ids."""

    def __init__(self, key: bytes) -> None:
        self._key = hashlib.sha256(b"searchgw search id\x00" + (key or secrets.token_bytes(32))).digest()
        # The nonce only has to be unique (the MAC makes ids unforgeable): 4 random bytes per process and a
        # counter, which costs no system call per search.
        self._process = secrets.token_bytes(4)
        self._serial = itertools.count()

    def issue(self, experiment: str, arm_index: int, issued_s: float) -> str:
        nonce = self._process + (next(self._serial) & 0xFFFFFFFF).to_bytes(4, "big")
        body = _HEADER.pack(_VERSION, int(issued_s), arm_index, nonce) + experiment.encode()
        return base64.urlsafe_b64encode(body + self._mac(body)).rstrip(b"=").decode()

    def read(self, token: str, field: str) -> SearchId:
        """The id's contents; InvalidArgument(field) when this gateway did not issue it."""
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError) as exc:
            raise InvalidArgument(field, "is not a search id this gateway issued") from exc
        body, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        if len(body) <= _HEADER.size or not hmac.compare_digest(mac, self._mac(body)):
            raise InvalidArgument(field, "is not a search id this gateway issued (unknown, altered or truncated)")
        version, issued, arm_index, nonce = _HEADER.unpack_from(body)
        if version != _VERSION:
            raise InvalidArgument(field, f"has version {version}; this gateway reads {_VERSION}")
        return SearchId(body[_HEADER.size:].decode(), arm_index, issued, nonce)

    def _mac(self, body: bytes) -> bytes:
        return hashlib.blake2b(body, key=self._key, digest_size=_MAC_BYTES).digest()


class OutcomeStatus(enum.Enum):
    """What became of one reported outcome (`OutcomeResult.Status`)."""

    UNSPECIFIED = 0
    ACCEPTED = 1
    #: This search id already reported an outcome of this kind.
    DUPLICATE = 2
    #: The search id is older than the outcome window.
    EXPIRED = 3
    #: The experiment has ended (stopped or concluded).
    ENDED = 4
    #: The gateway tracks too many search ids to tell a duplicate; the outcome was not counted.
    OVERLOADED = 5


class OutcomeLedger:
    """Which (search id, kind) pairs have been counted, until the ids expire."""

    def __init__(self, ttl_s: float, max_entries: int) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._kinds: dict[bytes, set[str]] = {}
        self._expiries: collections.deque[tuple[float, bytes]] = collections.deque()

    def __len__(self) -> int:
        return len(self._kinds)

    def check(self, search_id: SearchId, kind: str, now_s: float) -> OutcomeStatus:
        """ACCEPTED (and remembered) or why not; `now_s` is wall-clock seconds."""
        expires = search_id.issued_s + self.ttl_s
        if now_s > expires:
            return OutcomeStatus.EXPIRED
        self._forget(now_s)
        key = search_id.nonce + search_id.experiment.encode()
        kinds = self._kinds.get(key)
        if kinds is None:
            if len(self._kinds) >= self.max_entries:
                return OutcomeStatus.OVERLOADED
            kinds = self._kinds[key] = set()
            self._expiries.append((expires, key))
        if kind in kinds:
            return OutcomeStatus.DUPLICATE
        kinds.add(kind)
        return OutcomeStatus.ACCEPTED

    def _forget(self, now_s: float) -> None:
        # Ids are remembered in arrival order; one that expires later than the next blocks it until it
        # expires too, so nothing is ever forgotten early (only late).
        while self._expiries and self._expiries[0][0] < now_s:
            _, key = self._expiries.popleft()
            self._kinds.pop(key, None)
