"""Bearer tokens: the token file, principals and their scopes.

The file never holds a token, only its SHA-256 (`printf %s "$TOKEN" | sha256sum`):

    tokens:
      - name: ops            # the principal: rate-limit key, log and metric label
        sha256: 9f86d08…     # 64 hex digits
        scopes: [admin]      # read, write and/or admin

Scopes nest: admin ⊇ write ⊇ read. A token with `write` may call every `read` method, and `admin`
may call everything. A principal listing several scopes holds the union of what they imply.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from searchgw.settings import SettingsError

#: The scopes a method may require, weakest first.
SCOPES: tuple[str, ...] = ("read", "write", "admin")

#: What each scope grants (itself and every weaker scope).
_IMPLIES: dict[str, frozenset[str]] = {scope: frozenset(SCOPES[: i + 1]) for i, scope in enumerate(SCOPES)}

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_ENTRY_KEYS = frozenset({"name", "sha256", "scopes"})


def expand_scopes(scopes: Iterable[str]) -> frozenset[str]:
    """Every scope that `scopes` grants under the hierarchy admin ⊇ write ⊇ read."""
    granted: set[str] = set()
    for scope in scopes:
        if scope not in _IMPLIES:
            raise ValueError(f"unknown scope {scope!r}; known: {', '.join(SCOPES)}")
        granted |= _IMPLIES[scope]
    return frozenset(granted)


@dataclass(frozen=True)
class Principal:
    """Who made a call: the token's name and the scopes the file lists for it."""

    name: str
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        """True when this principal's scopes grant `scope` (admin ⊇ write ⊇ read)."""
        return any(scope in _IMPLIES.get(granted, ()) for granted in self.scopes)


def token_digest(token: str) -> bytes:
    """The SHA-256 of a token's UTF-8 bytes, as the token file stores it (in hex)."""
    return hashlib.sha256(token.encode("utf-8")).digest()


class TokenStore:
    """The known tokens, by digest. `authenticate` never shows by its timing which entry matched."""

    def __init__(self, entries: Iterable[tuple[bytes, Principal]]) -> None:
        self._entries: tuple[tuple[bytes, Principal], ...] = tuple(entries)
        for digest, _principal in self._entries:
            if len(digest) != hashlib.sha256().digest_size:
                raise ValueError("token digests are raw 32-byte SHA-256 values")

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:  # names only: digests stay out of logs
        return f"TokenStore({', '.join(p.name for _, p in self._entries)})"

    def authenticate(self, token: str) -> Principal | None:
        """The principal holding `token`, or None.

        The token is hashed once, then its digest is compared with every entry's in constant time,
        always visiting all entries, so neither a prefix of the token nor the matching entry's position
        shows in the timing.
        """
        digest = token_digest(token)
        found: Principal | None = None
        for known, principal in self._entries:
            if hmac.compare_digest(digest, known):
                found = principal
        return found


def _entry_error(path: Path, index: int, name: object, message: str) -> SettingsError:
    label = f"tokens[{index}]" + (f" ({name})" if isinstance(name, str) and name else "")
    return SettingsError(f"auth tokens file {path}: {label}: {message}")


def _parse_entry(path: Path, index: int, entry: object) -> tuple[bytes, Principal]:
    if not isinstance(entry, dict):
        raise _entry_error(path, index, None, "expected a mapping with name, sha256 and scopes")
    name = entry.get("name")
    if "token" in entry:
        raise _entry_error(path, index, name, "holds a plain 'token'; store its sha256 instead "
                                              "(printf %s \"$TOKEN\" | sha256sum) and remove the token")
    unknown = sorted(str(key) for key in set(entry) - _ENTRY_KEYS)
    if unknown:
        raise _entry_error(path, index, name, f"unknown key(s) {', '.join(unknown)}; "
                                              f"expected {', '.join(sorted(_ENTRY_KEYS))}")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise _entry_error(path, index, None, "name: required; 1-64 characters of letters, digits and _.@- "
                                              "starting with a letter or digit")
    sha = entry.get("sha256")
    if not isinstance(sha, str):
        raise _entry_error(path, index, name, "sha256: required, as a (quoted) string of 64 hex digits")
    if not _HEX64.fullmatch(sha):
        raise _entry_error(path, index, name, f"sha256: expected 64 hex digits, got {len(sha)} characters "
                                              "that are not a SHA-256 digest")
    if sha.lower() == _EMPTY_SHA256:
        raise _entry_error(path, index, name, "sha256: is the digest of the empty token")
    scopes = entry.get("scopes")
    if isinstance(scopes, str):
        scopes = [scopes]
    if not isinstance(scopes, list) or not scopes or not all(isinstance(s, str) for s in scopes):
        raise _entry_error(path, index, name, f"scopes: required, a non-empty list of {', '.join(SCOPES)}")
    unknown_scopes = sorted(set(scopes) - set(SCOPES))
    if unknown_scopes:
        raise _entry_error(path, index, name, f"scopes: unknown {', '.join(unknown_scopes)}; "
                                              f"known: {', '.join(SCOPES)}")
    return bytes.fromhex(sha), Principal(name=name, scopes=frozenset(scopes))


def load_token_store(path: Path) -> TokenStore:
    """Read and check a token file; a `SettingsError` names the file and the bad entry."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SettingsError(f"auth tokens file {path}: cannot read: {exc.strerror or exc}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise SettingsError(f"auth tokens file {path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict) or "tokens" not in data:
        raise SettingsError(f"auth tokens file {path}: expected a mapping with a 'tokens' list at the top level")
    extra = sorted(str(key) for key in data if key != "tokens")
    if extra:
        raise SettingsError(f"auth tokens file {path}: unknown top-level key(s) {', '.join(extra)}")
    raw = data["tokens"]
    if not isinstance(raw, list):
        raise SettingsError(f"auth tokens file {path}: 'tokens' must be a list")
    if not raw:
        raise SettingsError(f"auth tokens file {path}: 'tokens' is empty, so no call could succeed; "
                            "add a token or unset the auth tokens file to turn authentication off")
    entries: list[tuple[bytes, Principal]] = []
    names: dict[str, int] = {}
    digests: dict[bytes, int] = {}
    for index, item in enumerate(raw):
        digest, principal = _parse_entry(path, index, item)
        if principal.name in names:
            raise _entry_error(path, index, principal.name,
                               f"name: already used by tokens[{names[principal.name]}]")
        if digest in digests:
            raise _entry_error(path, index, principal.name,
                               f"sha256: the same token as tokens[{digests[digest]}]")
        names[principal.name] = index
        digests[digest] = index
        entries.append((digest, principal))
    return TokenStore(entries)
