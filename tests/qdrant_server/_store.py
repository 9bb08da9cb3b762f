"""The server's state: qdrant-edge shards on disk and a catalog of collections and aliases.

Layout of the data directory::

    LOCK                          flock()ed while a server has the directory open
    catalog.json                  each collection's CreateCollection request (defaults filled in) and every alias
    collections/<name>/           one qdrant-edge shard per collection (its WAL, segments, config)
    snapshots/<name>/<snapshot>   gzipped tars of a collection's shard and catalog entry, with a .sha256 beside
                                  (trailing zeros of preallocated files left out; sizes.json has their sizes)

Every method is blocking and is meant to run on ONE worker thread (see `_server`): engine calls never
overlap, so deleting a collection can never race a search on it, and a snapshot holds exactly the
writes acknowledged before it. qdrant-edge holds the GIL while it works, so a second thread would
buy nothing.

Durability: a point write is in the shard's write-ahead log (a memory-mapped file) before the call
returns, so it survives SIGKILL; the catalog is replaced atomically and fsynced, so a collection or an
alias change survives it too. This mirrors what a Qdrant server promises, over the same engine.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import grpc
import qdrant_edge as qe
from google.protobuf import json_format
from qdrant_client.grpc import collections_pb2, points_pb2, snapshots_service_pb2

from tests.qdrant_server._inference import fill_vectors_output
from tests.qdrant_server._convert import (
    QdrantStatus,
    fill_payload,
    fill_point_id,
    invalid,
    not_found,
    refuse_set_fields,
    unimplemented,
)

_FORMAT = 1
#: Qdrant's defaults for what a CreateCollection leaves unset.
DEFAULT_HNSW = {"m": 16, "ef_construct": 100, "full_scan_threshold": 10_000}
MAX_DIMENSION = 65_536
#: What Get reports for the settings this server does not model: Qdrant's defaults (qdrant-edge has its own).
OPTIMIZERS = collections_pb2.OptimizersConfigDiff(deleted_threshold=0.2, vacuum_min_vector_number=1000,
                                                  default_segment_number=0, flush_interval_sec=5)
WAL = collections_pb2.WalConfigDiff(wal_capacity_mb=32, wal_segments_ahead=0)
_DISTANCES = {
    collections_pb2.Distance.Cosine: qe.Distance.Cosine,
    collections_pb2.Distance.Dot: qe.Distance.Dot,
    collections_pb2.Distance.Euclid: qe.Distance.Euclid,
    collections_pb2.Distance.Manhattan: qe.Distance.Manhattan,
}
#: Names become directory names: no separators, no NUL, no dot-only or hidden names.
_BAD_NAME = re.compile(r"[/\\\x00]|^\.")


def check_name(name: str, what: str = "Collection name") -> None:
    if not name or len(name) > 255 or _BAD_NAME.search(name):
        raise invalid(f"{what} `{name}` is empty, longer than 255 characters, starts with '.' or contains "
                      "'/', '\\' or NUL")


def _fsync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _write_atomically(path: Path, data: bytes) -> None:
    """`path` holds `data` whole, or keeps what it held: temporary file, fsync, rename, fsync the directory."""
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def engine_config(config: collections_pb2.CreateCollection) -> qe.EdgeConfig:
    params = config.vectors_config.params
    quantization = None
    if config.quantization_config.HasField("scalar"):
        scalar = config.quantization_config.scalar
        quantization = qe.ScalarQuantizationConfig(
            type=qe.ScalarType.Int8, quantile=scalar.quantile if scalar.HasField("quantile") else None,
            always_ram=scalar.always_ram if scalar.HasField("always_ram") else None)
    sparse = {name: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf if sparse_params.modifier == collections_pb2.Modifier.Idf
                                              else None)
              for name, sparse_params in config.sparse_vectors_config.map.items()} or None
    return qe.EdgeConfig(
        vectors=qe.EdgeVectorParams(size=params.size, distance=_DISTANCES[params.distance]),
        sparse_vectors=sparse,
        hnsw_config=qe.HnswIndexConfig(m=config.hnsw_config.m, ef_construct=config.hnsw_config.ef_construct,
                                       full_scan_threshold=config.hnsw_config.full_scan_threshold),
        quantization_config=quantization,
    )


@dataclass
class Collection:
    """An open collection: its normalised CreateCollection request and its engine shard."""

    config: collections_pb2.CreateCollection
    shard: qe.EdgeShard

    @property
    def dimension(self) -> int:
        return self.config.vectors_config.params.size


class Store:
    """Collections, aliases, points and snapshots in one data directory; see the module docstring."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "collections").mkdir(parents=True, exist_ok=True)
        (root / "snapshots").mkdir(exist_ok=True)
        self._lock = self._take_lock()
        self._catalog_path = root / "catalog.json"
        self.collections: dict[str, Collection] = {}
        self.aliases: dict[str, str] = {}
        self._load()

    # -- the catalog -------------------------------------------------------------------------------
    def _take_lock(self) -> IO[str]:
        lock = open(self.root / "LOCK", "a")  # noqa: SIM115 - held until close()
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise RuntimeError(f"{self.root} is in use by another Qdrant test server") from None
        return lock

    def _load(self) -> None:
        configs: dict[str, collections_pb2.CreateCollection] = {}
        if self._catalog_path.exists():
            document = json.loads(self._catalog_path.read_text(encoding="utf-8"))
            if document.get("format") != _FORMAT:
                raise ValueError(f"{self._catalog_path}: format {document.get('format')!r} is not {_FORMAT}")
            configs = {name: json_format.ParseDict(entry, collections_pb2.CreateCollection())
                       for name, entry in document["collections"].items()}
            self.aliases = dict(document["aliases"])
        for leftover in (self.root / "collections").iterdir():  # a create or delete a crash cut short
            if leftover.name not in configs:
                shutil.rmtree(leftover, ignore_errors=True)
        for name, config in configs.items():
            self.collections[name] = Collection(config, qe.EdgeShard.load(str(self._path(name))))

    def _save(self, configs: dict[str, collections_pb2.CreateCollection], aliases: dict[str, str]) -> None:
        document = {
            "format": _FORMAT,
            "collections": {name: json_format.MessageToDict(configs[name], preserving_proto_field_name=True)
                            for name in sorted(configs)},
            "aliases": dict(sorted(aliases.items())),
        }
        _write_atomically(self._catalog_path, json.dumps(document, indent=1).encode())

    def _configs(self) -> dict[str, collections_pb2.CreateCollection]:
        return {name: collection.config for name, collection in self.collections.items()}

    def _path(self, name: str) -> Path:
        return self.root / "collections" / name

    def close(self) -> None:
        for collection in self.collections.values():
            collection.shard.flush()
            collection.shard.close()
        self.collections = {}
        self._lock.close()

    # -- collections -------------------------------------------------------------------------------
    def resolve(self, name: str) -> tuple[str, Collection]:
        """The collection `name` is, or that the alias `name` points at (Qdrant resolves aliases too)."""
        physical = self.aliases.get(name, name)
        collection = self.collections.get(physical)
        if collection is None:
            raise not_found(f"Collection `{name}` doesn't exist!")
        return physical, collection

    def collection_names(self) -> list[str]:
        return sorted(self.collections)

    def alias_map(self) -> dict[str, str]:
        return dict(self.aliases)

    def aliases_of(self, name: str) -> dict[str, str]:
        """The aliases of the collection `name` is (or that the alias `name` points at)."""
        physical, _ = self.resolve(name)
        return {alias: target for alias, target in self.aliases.items() if target == physical}

    def create_collection(self, request: collections_pb2.CreateCollection) -> None:
        name = request.collection_name
        check_name(name)
        if name in self.collections:
            raise QdrantStatus(grpc.StatusCode.ALREADY_EXISTS, f"Collection `{name}` already exists!")
        if name in self.aliases:
            raise QdrantStatus(grpc.StatusCode.ALREADY_EXISTS, f"Alias with name `{name}` already exists!")
        config = normalized_config(request)
        path = self._path(name)
        if path.exists():
            shutil.rmtree(path)
        shard = qe.EdgeShard.create(str(path), engine_config(config))
        try:
            shard.flush()
            self._save({**self._configs(), name: config}, self.aliases)
        except BaseException:
            shard.close()
            shutil.rmtree(path, ignore_errors=True)
            raise
        self.collections[name] = Collection(config, shard)

    def delete_collection(self, name: str) -> bool:
        """False when there is no such collection (Qdrant answers OK with `result: false`)."""
        collection = self.collections.get(name)
        if collection is None:
            return False
        aliases = {alias: target for alias, target in self.aliases.items() if target != name}
        configs = {other: config for other, config in self._configs().items() if other != name}
        self._save(configs, aliases)  # Qdrant drops a collection's aliases with it
        del self.collections[name]
        self.aliases = aliases
        collection.shard.close()
        shutil.rmtree(self._path(name), ignore_errors=True)
        return True

    def collection_info(self, name: str) -> collections_pb2.CollectionInfo:
        _, collection = self.resolve(name)
        config = collection.config
        shard_info = collection.shard.info()
        info = collections_pb2.CollectionInfo(
            status=collections_pb2.CollectionStatus.Green,
            optimizer_status=collections_pb2.OptimizerStatus(ok=True),
            segments_count=shard_info.segments_count,
            points_count=shard_info.points_count,
            indexed_vectors_count=shard_info.indexed_vectors_count,
        )
        info.config.params.shard_number = 1
        info.config.params.vectors_config.CopyFrom(config.vectors_config)
        if config.HasField("sparse_vectors_config"):
            info.config.params.sparse_vectors_config.CopyFrom(config.sparse_vectors_config)
        info.config.hnsw_config.CopyFrom(config.hnsw_config)
        info.config.optimizer_config.CopyFrom(OPTIMIZERS)
        info.config.wal_config.CopyFrom(WAL)
        if config.HasField("quantization_config"):
            info.config.quantization_config.CopyFrom(config.quantization_config)
        for key, value in config.metadata.items():
            info.config.metadata[key].CopyFrom(value)
        for key, index in shard_info.payload_schema.items():  # the engine keeps its indexes with the shard
            _fill_schema_info(index, info.payload_schema[key])
        return info

    # -- payload indexes ---------------------------------------------------------------------------
    def create_field_index(self, name: str, key: str, schema: Any) -> None:
        _, collection = self.resolve(name)
        collection.shard.update(qe.UpdateOperation.create_field_index(key, schema))

    def delete_field_index(self, name: str, key: str) -> None:
        _, collection = self.resolve(name)
        collection.shard.update(qe.UpdateOperation.delete_field_index(key))

    def retrieve(self, name: str, ids: list[int | str], with_payload: bool, with_vector: bool) -> list[qe.Record]:
        _, collection = self.resolve(name)
        return collection.shard.retrieve(list(ids), with_payload=with_payload, with_vector=with_vector)

    # -- aliases -----------------------------------------------------------------------------------
    def update_aliases(self, actions: Iterable[collections_pb2.AliasOperations]) -> None:
        """Apply every action in order, all or none (Qdrant applies a ChangeAliases atomically)."""
        aliases = dict(self.aliases)
        for i, action in enumerate(actions):
            kind = action.WhichOneof("action")
            if kind == "create_alias":
                alias, target = action.create_alias.alias_name, action.create_alias.collection_name
                check_name(alias, "Alias name")
                if target not in self.collections:
                    raise not_found(f"Collection `{target}` doesn't exist!")
                if alias in self.collections:
                    raise QdrantStatus(grpc.StatusCode.ALREADY_EXISTS, f"Collection `{alias}` already exists!")
                aliases[alias] = target
            elif kind == "delete_alias":
                alias = action.delete_alias.alias_name
                if alias not in aliases:
                    raise not_found(f"Alias `{alias}` doesn't exist!")
                del aliases[alias]
            elif kind == "rename_alias":
                old, new = action.rename_alias.old_alias_name, action.rename_alias.new_alias_name
                check_name(new, "Alias name")
                if old not in aliases:
                    raise not_found(f"Alias `{old}` doesn't exist!")
                if new in self.collections:
                    raise QdrantStatus(grpc.StatusCode.ALREADY_EXISTS, f"Collection `{new}` already exists!")
                aliases[new] = aliases.pop(old)
            else:
                raise invalid(f"actions[{i}]: an alias operation is required")
        if aliases != self.aliases:
            self._save(self._configs(), aliases)
            self.aliases = aliases

    # -- points ------------------------------------------------------------------------------------
    def upsert(self, name: str, points: list[qe.Point], dimensions: list[tuple[int, int]]) -> None:
        """Write every point, or none: each (index, size) in `dimensions` is checked first."""
        _, collection = self.resolve(name)
        for index, size in dimensions:
            if size != collection.dimension:
                raise invalid(f"points[{index}]: Vector dimension error: expected dim: {collection.dimension}, "
                              f"got {size}")
        if points:
            collection.shard.update(qe.UpdateOperation.upsert_points(points))

    def delete_points(self, name: str, selector: list[int | str] | qe.Filter) -> None:
        _, collection = self.resolve(name)
        if isinstance(selector, qe.Filter):
            collection.shard.update(qe.UpdateOperation.delete_points_by_filter(selector))
        elif selector:
            collection.shard.update(qe.UpdateOperation.delete_points(selector))

    def query(self, name: str, vector: list[float], request: qe.QueryRequest) -> list[qe.ScoredPoint]:
        return self.query_vectors(name, [vector], request)

    def query_vectors(self, name: str, dense: list[list[float]], request: qe.QueryRequest) -> list[qe.ScoredPoint]:
        """`query` for a request with any number of dense vectors (none for a sparse query; a fusion's
        prefetches may have one each), each checked against the collection's size."""
        _, collection = self.resolve(name)
        for vector in dense:
            if len(vector) != collection.dimension:
                raise invalid(f"Vector dimension error: expected dim: {collection.dimension}, got {len(vector)}")
        return collection.shard.query(request)

    def check_sparse_names(self, name: str, names: set[str]) -> None:
        """Every name is one of the collection's sparse vectors (Qdrant: "Not existing vector name")."""
        _, collection = self.resolve(name)
        for vector in sorted(names - set(collection.config.sparse_vectors_config.map)):
            raise invalid(f"Not existing vector name error: {vector}")

    def scroll(self, name: str, request: qe.ScrollRequest) -> tuple[list[qe.Record], int | str | None]:
        _, collection = self.resolve(name)
        return collection.shard.scroll(request)

    def count(self, name: str, request: qe.CountRequest) -> int:
        _, collection = self.resolve(name)
        return collection.shard.count(request)

    # -- snapshots ---------------------------------------------------------------------------------
    def _snapshot_dir(self, physical: str) -> Path:
        return self.root / "snapshots" / physical

    def create_snapshot(self, name: str) -> snapshots_service_pb2.SnapshotDescription:
        """A gzipped tar of the flushed shard and its catalog entry, fsynced and renamed into place.

        No write runs meanwhile (one worker thread), so it holds exactly the writes acknowledged before it.
        """
        physical, collection = self.resolve(name)
        collection.shard.flush()
        moment = datetime.now(timezone.utc)
        snapshot = f"{physical}-{uuid.uuid4().int % 10**16}-{moment:%Y-%m-%d-%H-%M-%S}.snapshot"
        directory = self._snapshot_dir(physical)
        directory.mkdir(parents=True, exist_ok=True)
        config = json_format.MessageToJson(collection.config, preserving_proto_field_name=True).encode()
        descriptor, temporary = tempfile.mkstemp(prefix=f".{snapshot}.", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(descriptor, "w+b") as file:
                with tarfile.open(fileobj=file, mode="w:gz", compresslevel=1) as archive:
                    _add_bytes(archive, "config.json", config)
                    sizes = _add_shard(archive, self._path(physical))
                    _add_bytes(archive, "sizes.json", json.dumps(sizes, indent=1).encode())
                file.flush()
                os.fsync(file.fileno())
                file.seek(0)
                checksum = hashlib.file_digest(file, "sha256").hexdigest()
            _write_atomically(directory / f"{snapshot}.sha256", checksum.encode())
            os.replace(temporary, directory / snapshot)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        _fsync_directory(directory)
        return self._describe(directory / snapshot)

    def _describe(self, path: Path) -> snapshots_service_pb2.SnapshotDescription:
        description = snapshots_service_pb2.SnapshotDescription(name=path.name, size=path.stat().st_size)
        description.creation_time.FromSeconds(int(path.stat().st_mtime))
        checksum = path.with_name(f"{path.name}.sha256")
        if checksum.exists():
            description.checksum = checksum.read_text().strip()
        return description

    def list_snapshots(self, name: str) -> list[snapshots_service_pb2.SnapshotDescription]:
        physical, _ = self.resolve(name)
        directory = self._snapshot_dir(physical)
        if not directory.exists():
            return []
        return [self._describe(path) for path in sorted(directory.glob("*.snapshot"))]

    def delete_snapshot(self, name: str, snapshot: str) -> None:
        physical, _ = self.resolve(name)
        check_name(snapshot, "Snapshot name")
        path = self._snapshot_dir(physical) / snapshot
        if not path.is_file():
            raise not_found(f"Snapshot `{snapshot}` of collection `{physical}` doesn't exist!")
        path.unlink()
        path.with_name(f"{snapshot}.sha256").unlink(missing_ok=True)


def _add_bytes(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    entry = tarfile.TarInfo(name)
    entry.size, entry.mtime = len(data), int(time.time())
    archive.addfile(entry, io.BytesIO(data))


def _data_end(descriptor: int, size: int) -> int:
    """Where the last extent holding data ends: the engine preallocates files (the WAL, payload pages)
    as holes, and everything past this offset reads as zeros."""
    end, offset = 0, 0
    while offset < size:
        try:
            start = os.lseek(descriptor, offset, os.SEEK_DATA)
        except OSError:  # ENXIO: no data past `offset`
            break
        offset = os.lseek(descriptor, start, os.SEEK_HOLE)
        end = offset
    return min(end, size)


def _add_shard(archive: tarfile.TarFile, shard: Path) -> dict[str, int]:
    """Every file of the shard, up to its last data (the trailing zeros are left out), under `shard/`;
    returns each file's full size, which a restore restores with `truncate`."""
    sizes = {}
    for path in sorted(p for p in shard.rglob("*") if p.is_file()):
        name = f"shard/{path.relative_to(shard)}"
        with open(path, "rb") as source:
            size = os.fstat(source.fileno()).st_size
            entry = tarfile.TarInfo(name)
            entry.size, entry.mtime = _data_end(source.fileno(), size), int(path.stat().st_mtime)
            source.seek(0)  # _data_end moved the descriptor
            archive.addfile(entry, source)
        sizes[name] = size
    return sizes


def normalized_config(request: collections_pb2.CreateCollection) -> collections_pb2.CreateCollection:
    """The part of a CreateCollection this server implements, defaults filled in; the rest is refused."""
    refuse_set_fields(request, {"collection_name", "vectors_config", "hnsw_config", "quantization_config",
                                "metadata", "timeout", "on_disk_payload", "sparse_vectors_config"}, "CreateCollection")
    for name, sparse in request.sparse_vectors_config.map.items():
        refuse_set_fields(sparse, {"modifier"}, f"sparse_vectors_config.map[{name}]")
        if not name:
            raise invalid("sparse_vectors_config: a sparse vector needs a name")
    if request.vectors_config.WhichOneof("config") != "params":
        raise unimplemented("collections without one unnamed dense vector (vectors_config.params)")
    params = request.vectors_config.params
    refuse_set_fields(params, {"size", "distance"}, "vectors_config.params")
    if not 1 <= params.size <= MAX_DIMENSION:
        raise invalid(f"vectors_config.params.size: {params.size} is not from 1 to {MAX_DIMENSION}")
    if params.distance not in _DISTANCES:
        raise invalid("vectors_config.params.distance: unknown distance")
    refuse_set_fields(request.hnsw_config, set(DEFAULT_HNSW), "hnsw_config")
    quantization = request.quantization_config
    if request.HasField("quantization_config"):
        if quantization.WhichOneof("quantization") != "scalar":
            raise unimplemented("quantization other than scalar")
        refuse_set_fields(quantization.scalar, {"type", "quantile", "always_ram"}, "quantization_config.scalar")
        if quantization.scalar.HasField("quantile") and not 0.5 <= quantization.scalar.quantile <= 1.0:
            raise invalid("quantization_config.scalar.quantile: must be from 0.5 to 1")
    config = collections_pb2.CreateCollection(collection_name=request.collection_name)
    config.vectors_config.CopyFrom(request.vectors_config)
    for field, default in DEFAULT_HNSW.items():
        setattr(config.hnsw_config, field, getattr(request.hnsw_config, field) if request.hnsw_config.HasField(field)
                else default)
    if request.HasField("quantization_config"):
        config.quantization_config.CopyFrom(quantization)
    if request.HasField("sparse_vectors_config"):
        config.sparse_vectors_config.CopyFrom(request.sparse_vectors_config)
    for key, value in request.metadata.items():
        config.metadata[key].CopyFrom(value)
    return config


_SCHEMA_TYPES = {
    qe.PayloadSchemaType.Keyword: collections_pb2.PayloadSchemaType.Keyword,
    qe.PayloadSchemaType.Integer: collections_pb2.PayloadSchemaType.Integer,
    qe.PayloadSchemaType.Float: collections_pb2.PayloadSchemaType.Float,
    qe.PayloadSchemaType.Geo: collections_pb2.PayloadSchemaType.Geo,
    qe.PayloadSchemaType.Text: collections_pb2.PayloadSchemaType.Text,
    qe.PayloadSchemaType.Bool: collections_pb2.PayloadSchemaType.Bool,
    qe.PayloadSchemaType.Datetime: collections_pb2.PayloadSchemaType.Datetime,
    qe.PayloadSchemaType.Uuid: collections_pb2.PayloadSchemaType.Uuid,
}
TOKENIZERS = {
    collections_pb2.TokenizerType.Prefix: qe.TokenizerType.Prefix,
    collections_pb2.TokenizerType.Whitespace: qe.TokenizerType.Whitespace,
    collections_pb2.TokenizerType.Word: qe.TokenizerType.Word,
    collections_pb2.TokenizerType.Multilingual: qe.TokenizerType.Multilingual,
}
_TOKENIZERS_BACK = {engine: wire for wire, engine in TOKENIZERS.items()}


def _fill_schema_info(index: qe.PayloadIndexInfo, target: collections_pb2.PayloadSchemaInfo) -> None:
    target.data_type = _SCHEMA_TYPES[index.data_type]
    target.points = index.points
    params = index.params
    if isinstance(params, qe.TextIndexParams):
        text = target.params.text_index_params
        text.tokenizer = _TOKENIZERS_BACK.get(params.tokenizer, collections_pb2.TokenizerType.Word)
        if params.lowercase is not None:
            text.lowercase = params.lowercase
        if params.min_token_len is not None:
            text.min_token_len = params.min_token_len
        if params.max_token_len is not None:
            text.max_token_len = params.max_token_len


def scored_point(hit: qe.ScoredPoint, with_payload: bool) -> points_pb2.ScoredPoint:
    point = points_pb2.ScoredPoint(score=hit.score, version=hit.version)
    fill_point_id(hit.id, point.id)
    if with_payload and hit.payload:
        fill_payload(point.payload, hit.payload)
    return point


def retrieved_point(record: qe.Record, with_payload: bool) -> points_pb2.RetrievedPoint:
    point = points_pb2.RetrievedPoint()
    fill_point_id(record.id, point.id)
    if with_payload and record.payload:
        fill_payload(point.payload, record.payload)
    if record.vector is not None:
        fill_vectors_output(record.vector, point.vectors)
    if record.order_value is not None:
        if isinstance(record.order_value, float):
            point.order_value.float = record.order_value
        else:
            point.order_value.int = record.order_value
    return point
