"""The embedded backend's snapshots: archives of one collection's shard and its catalog entry.

Layout, under the backend's `data_dir`::

    snapshots/<collection>/<stamp>.snapshot          the archive (tar, gzip level 1)
    snapshots/<collection>/<stamp>.snapshot.sha256   its SHA-256, lowercase hex

`<stamp>` is the UTC time it was taken, `YYYY-MM-DD-HH-MM-SS-ffffff`; the snapshot's public name is
`<collection>-<stamp>.snapshot`, which names the directory and the file unambiguously (the stamp has
a fixed shape, so whatever precedes it is the collection). The archive holds::

    searchgw-snapshot.json   {"format": 1, "collection": <catalog entry: the spec>, "points_count", "create_time"}
    shard/...                the qdrant-edge shard directory (config, segments, WAL), flushed

qdrant-edge 0.9 can unpack and apply snapshots a Qdrant *server* made (`EdgeShard.unpack_snapshot`,
`update_from_snapshot`) but cannot make one of a shard, so the archive is ours. The shard's files are
mostly preallocated, still-sparse memory maps (three 32 MiB files for an empty shard): gzip squeezes
their zeros to almost nothing, and unpacking writes zero runs as holes, so a restored shard takes
the disk space of its data, not of its preallocation.

Writing is atomic and durable: the archive is written to a hidden temporary file, fsynced, its
checksum file is written (fsynced, renamed into place), then the archive is renamed over its final
name and the directory fsynced. The rename is the commit point: a crash before it leaves no
snapshot (a stray hidden temporary, removed by the next snapshot of that collection); after it the
snapshot is whole. Unpacking verifies the checksum while it reads.

Deleting is atomic too: the archive is unlinked first (the commit point: listing and restoring see
only archives), then its checksum file, then the directory is fsynced. A crash between the two
leaves a stray checksum file that nothing lists; a later snapshot with the same stamp (none can be
taken at an earlier time) would replace it.
"""

from __future__ import annotations

import calendar
import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import time
import uuid
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import IO, Any

from searchgw.gateway.backends._catalog import _spec_from_json, _spec_to_json
from searchgw.gateway.backends.types import CollectionSpec, SnapshotInfo
from searchgw.gateway.rules import is_name
from searchgw.errors import FailedPrecondition, NotFound

_FORMAT = 1
_MANIFEST = "searchgw-snapshot.json"
_SHARD = "shard"
_SUFFIX = ".snapshot"
_CHECKSUM_SUFFIX = ".sha256"
_STAMP = r"\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2}-\d{6}"
_STAMP_FILE = re.compile(rf"(?P<stamp>{_STAMP})\.snapshot")
_PUBLIC_NAME = re.compile(rf"(?P<collection>.+)-(?P<stamp>{_STAMP})\.snapshot")
_CHUNK = 1 << 16
_ZEROS = bytes(_CHUNK)

# -- names ---------------------------------------------------------------------------------------
def _stamp(epoch_seconds: float) -> str:
    micros = round(epoch_seconds * 1e6)
    seconds, micro = divmod(micros, 1_000_000)
    return time.strftime("%Y-%m-%d-%H-%M-%S", time.gmtime(seconds)) + f"-{micro:06d}"


def _stamp_time(stamp: str) -> float:
    *fields, micro = (int(part) for part in stamp.split("-"))
    return calendar.timegm((*fields, 0, 0, 0)) + micro / 1e6


# -- small durable-file helpers ------------------------------------------------------------------
def fsync_directory(path: Path) -> None:
    """Make a directory's entries (a rename, a new file) durable."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _write_durably(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(temporary, "w", encoding="ascii") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)


class _HashingStream:
    """A one-way, unseekable file over `file` that hashes what passes through it.

    It has the whole surface tarfile asks of a `fileobj` (read, write, tell, seek, close); as io's
    one-way streams do, the direction it does not go and `seek` raise io.UnsupportedOperation.
    Closing it leaves `file` open: that belongs to the caller.
    """

    def __init__(self, file: IO[bytes]) -> None:
        self._file = file
        self._position = 0
        self.sha256 = hashlib.sha256()

    def read(self, size: int = -1, /) -> bytes:
        raise io.UnsupportedOperation("read")

    def write(self, data: bytes, /) -> int:
        raise io.UnsupportedOperation("write")

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = os.SEEK_SET, /) -> int:
        raise io.UnsupportedOperation("seek")

    def close(self) -> None:
        pass


class _HashingWriter(_HashingStream):
    """A write-only file that hashes what passes through it."""

    def write(self, data: bytes, /) -> int:
        self.sha256.update(data)
        written = self._file.write(data)
        self._position += written
        return written

    def flush(self) -> None:
        self._file.flush()


class _HashingReader(_HashingStream):
    """A read-only file that hashes what is read from it."""

    def read(self, size: int = -1, /) -> bytes:
        data = self._file.read(size)
        self.sha256.update(data)
        self._position += len(data)
        return data

    def drain(self) -> None:
        while self.read(_CHUNK):
            pass


def _write_sparse(source: IO[bytes], target: Path, size: int) -> None:
    """Copy `size` bytes from `source` to a new file at `target`, leaving zero runs as holes; fsynced."""
    with open(target, "wb") as out:
        while chunk := source.read(_CHUNK):
            if chunk == (_ZEROS if len(chunk) == _CHUNK else bytes(len(chunk))):
                out.seek(len(chunk), os.SEEK_CUR)
            else:
                out.write(chunk)
        out.truncate(size)
        out.flush()
        os.fsync(out.fileno())


class SnapshotCorrupt(Exception):
    """The archive is not one this module wrote (or it was damaged)."""


# -- the store -----------------------------------------------------------------------------------
class SnapshotStore:
    """The snapshots under `root` (`data_dir/snapshots`). Every method blocks: run it in an executor."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _directory(self, collection: str) -> Path:
        return self.root / collection

    def _info(self, collection: str, archive: Path, stamp: str) -> SnapshotInfo:
        checksum_file = archive.with_name(archive.name + _CHECKSUM_SUFFIX)
        try:
            checksum = checksum_file.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            checksum = ""
        return SnapshotInfo(name=f"{collection}-{stamp}{_SUFFIX}", collection=collection,
                            size_bytes=archive.stat().st_size, create_time=_stamp_time(stamp), checksum=checksum)

    def has_any(self, collection: str) -> bool:
        directory = self._directory(collection)
        return directory.is_dir() and any(_STAMP_FILE.fullmatch(p.name) for p in directory.iterdir())

    def list(self, collection: str) -> list[SnapshotInfo]:
        """The collection's snapshots, oldest first (stamps sort as times do)."""
        directory = self._directory(collection)
        if not directory.is_dir():
            return []
        found = sorted((match["stamp"], path) for path in directory.iterdir()
                       if (match := _STAMP_FILE.fullmatch(path.name)))
        return [self._info(collection, path, stamp) for stamp, path in found]

    def locate(self, name: str) -> tuple[str, Path]:
        """The collection and the archive of the snapshot `name`; NotFound when there is none."""
        match = _PUBLIC_NAME.fullmatch(name)
        if match is not None and not is_name(match["collection"]):
            match = None
        if match is None:
            raise NotFound(f"snapshot {name!r} does not exist (snapshots here are named "
                           "<collection>-<YYYY-MM-DD-HH-MM-SS-ffffff>.snapshot)")
        collection = match["collection"]
        archive = self._directory(collection) / f"{match['stamp']}{_SUFFIX}"
        if not archive.is_file():
            raise NotFound(f"snapshot {name!r} does not exist")
        return collection, archive

    def delete(self, name: str, collection: str) -> None:
        """Remove the snapshot `name` of `collection`, atomically and durably; NotFound when that
        collection has no snapshot of that name (or another collection's snapshot is named)."""
        owner, archive = self.locate(name)
        if owner != collection:
            raise NotFound(f"snapshot {name!r} is not one of collection {collection!r}'s (it is of {owner!r})")
        try:
            archive.unlink()
        except FileNotFoundError:  # deleted meanwhile
            raise NotFound(f"snapshot {name!r} does not exist") from None
        archive.with_name(archive.name + _CHECKSUM_SUFFIX).unlink(missing_ok=True)
        fsync_directory(archive.parent)

    def write(self, shard_dir: Path, spec: CollectionSpec, points_count: int,
              wall_clock: Callable[[], float]) -> SnapshotInfo:
        """Archive `shard_dir` (flushed, with writes to it paused) and `spec`, atomically and durably."""
        directory = self._directory(spec.name)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob(".*.tmp"):  # left by a snapshot a crash cut short
            stale.unlink(missing_ok=True)
        created = wall_clock()
        while (archive := directory / f"{_stamp(created)}{_SUFFIX}").exists():
            created += 1e-6  # one at a time per collection, so this ends
        stamp = _stamp(created)
        manifest = json.dumps({"format": _FORMAT, "collection": _spec_to_json(spec), "points_count": points_count,
                               "create_time": _stamp_time(stamp)}, indent=1).encode()
        temporary = directory / f".{archive.name}.{uuid.uuid4().hex}.tmp"
        try:
            with open(temporary, "wb") as file:
                hashing = _HashingWriter(file)
                with tarfile.open(fileobj=hashing, mode="w:gz", compresslevel=1) as tar:
                    entry = tarfile.TarInfo(_MANIFEST)
                    entry.size, entry.mtime, entry.mode = len(manifest), int(created), 0o644
                    tar.addfile(entry, _BytesReader(manifest))
                    tar.add(shard_dir, arcname=_SHARD)
                file.flush()
                os.fsync(file.fileno())
            _write_durably(archive.with_name(archive.name + _CHECKSUM_SUFFIX), hashing.sha256.hexdigest() + "\n")
            os.replace(temporary, archive)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        fsync_directory(directory)
        fsync_directory(self.root)
        return self._info(spec.name, archive, stamp)

    def unpack(self, name: str, target: Path) -> tuple[CollectionSpec, int]:
        """Unpack the snapshot's shard into the new directory `target` (fsynced); its spec and point count.

        The checksum is verified as the archive is read; on any failure `target` is removed.
        NotFound for an unknown snapshot; FailedPrecondition for a damaged one.
        """
        collection, archive = self.locate(name)
        expected = self._info(collection, archive, archive.name.removesuffix(_SUFFIX)).checksum
        target.mkdir(parents=True)
        try:
            with open(archive, "rb") as file:
                hashing = _HashingReader(file)
                try:
                    manifest = _extract(hashing, target)
                    hashing.drain()
                except (tarfile.TarError, EOFError, zlib.error, OSError, ValueError, KeyError) as exc:
                    raise SnapshotCorrupt(f"{type(exc).__name__}: {exc}") from exc
            if expected and hashing.sha256.hexdigest() != expected:
                raise SnapshotCorrupt("its SHA-256 differs from the one recorded when it was taken")
            for directory, _, _ in os.walk(target):
                fsync_directory(Path(directory))
            return _spec_from_json(manifest["collection"]), int(manifest["points_count"])
        except SnapshotCorrupt as exc:
            shutil.rmtree(target, ignore_errors=True)
            raise FailedPrecondition(f"snapshot {name!r} is damaged and cannot be restored: {exc}") from exc
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise


class _BytesReader:
    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self._at = 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._data) if size < 0 else min(len(self._data), self._at + size)
        chunk = bytes(self._data[self._at:end])
        self._at = end
        return chunk


def _contents(tar: tarfile.TarFile, member: tarfile.TarInfo) -> IO[bytes]:
    """The contents of the regular-file member `member` (tarfile gives none for other kinds of member)."""
    reader = tar.extractfile(member)
    if reader is None:
        raise SnapshotCorrupt(f"member {member.name!r} is not a regular file")
    return reader


def _extract(source: _HashingReader, target: Path) -> dict[str, Any]:
    """Stream the archive into `target`: the shard's directories and regular files only, nothing
    outside `shard/`; returns the manifest."""
    manifest: dict[str, Any] | None = None
    with tarfile.open(fileobj=source, mode="r|gz") as tar:
        for member in tar:
            if member.name == _MANIFEST and member.isfile():
                manifest = json.loads(_contents(tar, member).read(member.size))
                continue
            path = PurePosixPath(member.name)
            parts = path.parts
            if path.is_absolute() or not parts or parts[0] != _SHARD or any(p in ("", ".", "..") for p in parts[1:]):
                raise SnapshotCorrupt(f"unexpected member {member.name!r}")
            destination = target.joinpath(*parts[1:])
            if member.isdir():
                destination.mkdir(parents=True, exist_ok=True)
            elif member.isfile():
                destination.parent.mkdir(parents=True, exist_ok=True)
                _write_sparse(_contents(tar, member), destination, member.size)
            else:
                raise SnapshotCorrupt(f"member {member.name!r} is neither a file nor a directory")
    if manifest is None or manifest.get("format") != _FORMAT:
        raise SnapshotCorrupt(f"no {_MANIFEST} of format {_FORMAT}")
    return manifest
