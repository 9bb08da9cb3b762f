"""Small helpers shared by the security tests (importable without any conftest)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import yaml


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def sha256_hex(token: str) -> str:
    """What `printf %s "$TOKEN" | sha256sum` prints (first field)."""
    return hashlib.sha256(token.encode()).hexdigest()


def write_token_file(path: Path, tokens: dict[str, tuple[str, list[str]]]) -> Path:
    """Write a token file from {name: (token, scopes)}."""
    entries = [{"name": name, "sha256": sha256_hex(token), "scopes": scopes}
               for name, (token, scopes) in tokens.items()]
    path.write_text(yaml.safe_dump({"tokens": entries}))
    return path
