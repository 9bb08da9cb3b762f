"""Paging for every listing (AIP-158), over opaque, tamper-evident page tokens.

A token carries a small JSON value (an offset, or a listing's position) and a fingerprint of the
query or listing it belongs to, signed with HMAC-SHA256. A token that was altered, forged, or
replayed with a different query is refused with INVALID_ARGUMENT naming `page_token`.

Every listing (collections, aliases, snapshots, rollouts) pages with `PageTokens.paginate`:

    page = tokens.paginate(everything, key=lambda c: c.name, page_size=request.page_size,
                           page_token=request.page_token, listing="collections", query=())

- `page_size` 0 means `DEFAULT_PAGE_SIZE` (50); above `MAX_PAGE_SIZE` (1000) it is clamped to it;
  negative is INVALID_ARGUMENT naming `page_size`. It may change from one page to the next.
- The items come back sorted by `key` (ascending); a page holds those after the previous page's
  last key, so an item added or removed between two calls never makes another repeat or vanish.
- `next_page_token` is "" on the last page. A token is bound to `listing` and `query` (the
  request's other parameters, e.g. the collection filter): used with other ones, or altered, it is
  INVALID_ARGUMENT naming `page_token`.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Generic, NamedTuple, TypeVar

from searchgw.errors import InvalidArgument

__all__ = ["DEFAULT_PAGE_SIZE", "MAX_PAGE_SIZE", "Page", "PageKey", "PageTokens", "SearchPage", "fingerprint",
           "page_size_of"]

_MAC_BYTES = 16

#: The page size of a request that sets none (page_size 0).
DEFAULT_PAGE_SIZE = 50
#: The largest page; a larger page_size is treated as this.
MAX_PAGE_SIZE = 1000

#: What a listing sorts and resumes by: a value, or a tuple of values (compared element by element).
PageKey = str | int | float | tuple[str | int | float, ...]

T = TypeVar("T")


class Page(NamedTuple, Generic[T]):
    """One page of a listing and the token of the next ("" on the last page); unpacks as (items, token)."""

    items: list[T]
    next_page_token: str


class SearchPage(NamedTuple):
    """Where a search's next page starts, and who served the pages before it.

    `collection` is the physical collection that served them ("" in a token of an older gateway,
    which carried the offset alone); `arm` ("primary" / "canary") and `rollout` ("" without one) say
    how it was reached. A follow-up page is served by `collection` only, so paging never mixes the
    two collections of a rollout.
    """

    offset: int
    collection: str = ""
    arm: str = ""
    rollout: str = ""


def page_size_of(requested: int, *, field: str = "page_size") -> int:
    """The page size to use for a requested one: 0 → the default, above the maximum → the maximum."""
    if requested < 0:
        raise InvalidArgument(field, f"{requested}; must not be negative (0 means {DEFAULT_PAGE_SIZE})")
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


class PageTokens:
    def __init__(self, secret: str | bytes = b"") -> None:
        key = secret.encode() if isinstance(secret, str) else secret
        self._key = key or secrets.token_bytes(32)
        self._keyed = hmac.new(self._key, digestmod=hashlib.sha256)  # copied per token: keyed once

    def _mac(self, body: bytes) -> bytes:
        mac = self._keyed.copy()  # about half of hmac.new's cost (OpenSSL 3 looks the digest up on each new)
        mac.update(body)
        return mac.digest()[:_MAC_BYTES]

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

    def issue_search(self, page: SearchPage, fingerprint: str) -> str:
        """The token of a search's next page, bound to the query (`fingerprint`) and the collection that served."""
        return self.issue_value({"o": page.offset, "c": page.collection, "a": page.arm, "r": page.rollout},
                                fingerprint)

    def read_search(self, token: str, fingerprint: str, *, field: str = "page_token") -> SearchPage | None:
        """The page a search token points at; None for an empty token. A token of an older gateway
        (an offset alone) reads as a page with no collection."""
        if not token:
            return None
        value = self.read_value(token, fingerprint, field=field)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return SearchPage(value)
        if isinstance(value, dict):
            offset, collection, arm, rollout = (value.get(k) for k in ("o", "c", "a", "r"))
            if (isinstance(offset, int) and not isinstance(offset, bool) and offset >= 0
                    and isinstance(collection, str) and isinstance(arm, str) and isinstance(rollout, str)):
                return SearchPage(offset, collection, arm, rollout)
        raise InvalidArgument(field, "is not a token this server issued")

    def paginate(self, items: Iterable[T], *, key: Callable[[T], PageKey], page_size: int, page_token: str,
                 listing: str, query: Sequence[object] = ()) -> Page[T]:
        """The page of `items` (in `key` order) that `page_token` points at, and the next page's token.

        `listing` names the listing ("collections", "snapshots", …) and `query` holds the request's
        other parameters; a token only works for the listing and query it was issued for. Keys must
        be unique within a listing (add the name to a timestamp to make them so).
        """
        size = page_size_of(page_size)
        bound_to = fingerprint(listing, *query)
        ordered = sorted(items, key=key)
        keys = [key(item) for item in ordered]
        start = 0
        if page_token:
            after = _key_from_wire(self.read_value(page_token, bound_to))
            try:
                start = bisect.bisect_right(keys, after)
            except TypeError:  # a key of another shape: issued by a server that sorted otherwise
                raise InvalidArgument("page_token", "is not a token this server issued") from None
        page = ordered[start:start + size]
        more = start + size < len(ordered)
        return Page(page, self.issue_value(_key_to_wire(keys[start + size - 1]), bound_to) if more else "")


def _key_to_wire(key: PageKey) -> Any:
    return list(key) if isinstance(key, tuple) else key


def _key_from_wire(value: Any) -> PageKey:
    scalar = (str, int, float)
    if isinstance(value, list) and all(isinstance(part, scalar) and not isinstance(part, bool) for part in value):
        return tuple(value)
    if isinstance(value, scalar) and not isinstance(value, bool):
        return value
    raise InvalidArgument("page_token", "is not a token this server issued")


def fingerprint(*parts: object) -> str:
    """A short digest of the query fields a page token is bound to."""
    digest = hashlib.blake2b(digest_size=12)
    for part in parts:
        digest.update(part if isinstance(part, bytes) else repr(part).encode())  # bytes as they are: a
        digest.update(b"\x1f")                                                 # vector's repr is slow
    return digest.hexdigest()
