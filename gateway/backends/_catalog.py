"""The embedded backend's catalog: every collection's spec and every alias, in one JSON file.

The file is the commit point of every change to collections and aliases. It is replaced atomically
(write a temporary file, fsync it, `os.replace` it over the old one, fsync the directory), so a reader
— or a restart after a crash at any instant — sees the whole old catalog or the whole new one. A
Catalog value is never changed in place: each change returns a new one, which the backend adopts
only once it is on disk.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from searchgw.gateway.backends.types import (
    Bm25Config,
    Bm25Tokenizer,
    CollectionSpec,
    Distance,
    PayloadIndex,
    PayloadIndexType,
    ScalarQuantization,
    TextIndexParams,
    Tokenizer,
)
from searchgw.gateway.rules import aliases_of

_FORMAT = 1


@dataclass(frozen=True)
class Catalog:
    specs: MappingProxyType[str, CollectionSpec] = field(default_factory=lambda: MappingProxyType({}))
    aliases: MappingProxyType[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def aliases_of(self, collection: str) -> tuple[str, ...]:
        return aliases_of(collection, self.aliases)

    def with_collection(self, spec: CollectionSpec) -> Catalog:
        return replace(self, specs=MappingProxyType({**self.specs, spec.name: spec}))

    def without_collection(self, name: str) -> Catalog:
        return replace(self, specs=MappingProxyType({k: v for k, v in self.specs.items() if k != name}))

    def with_alias(self, alias: str, collection: str) -> Catalog:
        return replace(self, aliases=MappingProxyType({**self.aliases, alias: collection}))

    def without_alias(self, alias: str) -> Catalog:
        return replace(self, aliases=MappingProxyType({k: v for k, v in self.aliases.items() if k != alias}))

    # -- on disk ---------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: Path) -> Catalog:
        """The catalog at `path`; an empty one when there is no file yet."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls()
        if data.get("format") != _FORMAT:
            raise ValueError(f"{path}: catalog format {data.get('format')!r} is not {_FORMAT}")
        specs = {spec.name: spec for spec in map(_spec_from_json, data["collections"])}
        return cls(MappingProxyType(specs), MappingProxyType(dict(data["aliases"])))

    def save(self, path: Path) -> None:
        """Replace the file at `path` with this catalog, atomically and durably."""
        document = {
            "format": _FORMAT,
            "collections": [_spec_to_json(self.specs[name]) for name in sorted(self.specs)],
            "aliases": dict(sorted(self.aliases.items())),
        }
        descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as file:
                json.dump(document, file, indent=1)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def _spec_to_json(spec: CollectionSpec) -> dict[str, Any]:
    document = asdict(spec) | {"distance": spec.distance.value}
    if spec.bm25 is None:
        del document["bm25"]  # a catalog without BM25 reads as before (older versions refuse unknown keys)
    else:
        document["bm25"]["tokenizer"] = spec.bm25.tokenizer.value
    return document


def _index_from_json(data: dict[str, Any]) -> PayloadIndex:
    text = data.get("text")
    return PayloadIndex(key=data["key"], type=PayloadIndexType(data["type"]), text=None if text is None else
                        TextIndexParams(**{**text, "tokenizer": Tokenizer(text["tokenizer"])}))


def _spec_from_json(data: dict[str, Any]) -> CollectionSpec:
    """A spec as `_spec_to_json` wrote it; a catalog written before payload indexes existed has none."""
    quantization = data.get("scalar_quantization")
    bm25 = data.get("bm25")
    return CollectionSpec(**{
        **data,
        "distance": Distance(data["distance"]),
        "scalar_quantization": None if quantization is None else ScalarQuantization(**quantization),
        "payload_indexes": tuple(_index_from_json(index) for index in data.get("payload_indexes", ())),
        "bm25": None if bm25 is None else Bm25Config(**{**bm25, "tokenizer": Bm25Tokenizer(bm25["tokenizer"])}),
    })
