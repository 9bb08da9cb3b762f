"""Opaque, tamper-evident page tokens.

A token carries a small JSON value (an offset, or a listing's position) and a fingerprint of the
query or listing it belongs to, signed with HMAC-SHA256. A token that was altered, forged, or
replayed with a different query is refused with INVALID_ARGUMENT naming `page_token`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from typing import Any

from searchgw.errors import InvalidArgument

_MAC_BYTES = 16


class PageTokens:
    def __init__(self, secret: str | bytes = b"") -> None:
        key = secret.encode() if isinstance(secret, str) else secret
        self._key = key or secrets.token_bytes(32)

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._key, body, hashlib.sha256).digest()[:_MAC_BYTES]

    def issue_value(self, value: Any, fingerprint: str) -> str:
        body = json.dumps({"v": value, "f": fingerprint}, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(self._mac(body) + body).decode().rstrip("=")

    def read_value(self, token: str, fingerprint: str, *, field: str = "page_token") -> Any:
        """The value a token carries (it must have been issued for `fingerprint`)."""
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            raise InvalidArgument(field, "is not a token this server issued") from None
        mac, body = raw[:_MAC_BYTES], raw[_MAC_BYTES:]
        if len(mac) != _MAC_BYTES or not hmac.compare_digest(mac, self._mac(body)):
            raise InvalidArgument(field, "is not a token this server issued (or it was altered)")
        data = json.loads(body)
        if data.get("f") != fingerprint:
            raise InvalidArgument(field, "belongs to a different query or listing; repeat the one it came from")
        return data.get("v")

    def issue(self, offset: int, fingerprint: str) -> str:
        return self.issue_value(offset, fingerprint)

    def read(self, token: str, fingerprint: str, *, field: str = "page_token") -> int:
        """The offset a token carries; 0 for an empty token."""
        if not token:
            return 0
        offset = self.read_value(token, fingerprint, field=field)
        if not isinstance(offset, int) or offset < 0:
            raise InvalidArgument(field, "is not a token this server issued")
        return offset


def fingerprint(*parts: object) -> str:
    """A short digest of the query fields a page token is bound to."""
    digest = hashlib.blake2b(digest_size=12)
    for part in parts:
        digest.update(part if isinstance(part, bytes) else repr(part).encode())  # bytes as they are: a
        digest.update(b"\x1f")                                                 # vector's repr is slow
    return digest.hexdigest()
