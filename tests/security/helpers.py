"""Small helpers shared by the security tests (importable without any conftest)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import yaml


def sha256_hex(token: str) -> str:
    """What `printf %s "$TOKEN" | sha256sum` prints (first field)."""
    return hashlib.sha256(token.encode()).hexdigest()


def write_token_file(path: Path, tokens: dict[str, tuple[str, list[str]]]) -> Path:
    """Write a token file from {name: (token, scopes)}."""
    entries = [{"name": name, "sha256": sha256_hex(token), "scopes": scopes}
               for name, (token, scopes) in tokens.items()]
    path.write_text(yaml.safe_dump({"tokens": entries}))
    return path
