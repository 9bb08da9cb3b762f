"""Bulk ingest of JSONL, CSV and Parquet files, free of gRPC: reading, validation, ids, checkpoints.

`searchgw ingest` wires it to a GatewayClient. The rules, which are also its --help:

- **Every record needs an id, and ids never come from positions.** By default the `id` field
  (`--id-field NAME` for another): an unsigned integer (or a string of digits) or a UUID is used as it
  is; any other string becomes `uuid5(INGEST_NAMESPACE, value)` and the field stays in the payload.
  With `--id-from-content` the id is `uuid5(INGEST_NAMESPACE, text)` (of the vector's JSON when a
  record has no text). Either way a record gets the same id on every run, so re-sending it replaces
  the same point: writing is idempotent.
- **Content:** `vector` (a list of numbers; in CSV a JSON array) when present, else `text` (embedded
  by the gateway with the collection's model). Every other field is the payload (`text` included).
- **The whole file is checked before anything is written** (`validate`): bad JSON, a record that is not
  an object, a missing or unusable id, no text and no vector, a vector of another length than the
  first, a value JSON cannot hold, an id used twice. Each problem is `FILE:LINE: what is wrong`
  (for Parquet, LINE is the row number, from 1). With problems nothing is written, unless the caller
  chose to continue: then the good records are written and the problems reported.
- **Chunking** (`--chunk-tokens N`, `--chunk-overlap M`): each text is written as chunks of at most N
  tokens of the collection model's tokenizer (see `searchgw.gateway.chunks` for the ids and the
  deletion of a shorter document's surplus chunks); a record with a vector is then a problem.
  Without it, a text over the model's limit is refused by the gateway, never cut.
- **Resume:** after each written batch, a checkpoint records how many records are done, with the
  file's size and modification time. Running the same command again continues after them; the ids
  being deterministic, a batch sent twice (the one in flight at a crash) only replaces itself. A
  changed file, another collection or other options make the checkpoint void: everything is sent again,
  which is still safe. The checkpoint is removed when the run completes.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as _dt
import decimal
import hashlib
import json
import math
import os
import pathlib
import re
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from searchgw.errors import InvalidArgument, SearchgwError
from searchgw.gateway.rules import MAX_POINT_ID

#: The namespace of every id `searchgw ingest` derives (uuid5). Never change it: ids would change.
INGEST_NAMESPACE = uuid.UUID("6f1b3c52-5d1e-4f0a-9c39-7b2f0e0d6a11")
FORMATS = ("jsonl", "csv", "parquet")
_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet",
             ".pq": "parquet"}
_UUID = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")
_POINT_FIELD = re.compile(r"^points\[(\d+)\]")


class IngestError(Exception):
    """The file as a whole cannot be read (missing, unreadable, unknown format); the message says why."""


@dataclass(frozen=True)
class IngestOptions:
    id_field: str = "id"
    id_from_content: bool = False
    text_field: str = "text"
    vector_field: str = "vector"
    #: "jsonl", "csv" or "parquet"; None: from the file name's suffix.
    format: str | None = None
    #: Write texts as chunks of at most this many tokens (0: the model's limit); None: no chunking.
    chunk_tokens: int | None = None
    #: Tokens a chunk repeats from the one before (None: the gateway's default, 32).
    chunk_overlap: int | None = None

    def key(self) -> str:
        """What a checkpoint must match besides the file (options that change ids or content)."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


@dataclass(frozen=True)
class Record:
    line: int
    id: int | str
    text: str | None
    vector: list[float] | None
    payload: dict[str, Any]

    def as_point(self) -> dict[str, Any]:
        """The mapping `GatewayClient.upsert` takes."""
        return {"id": self.id, "text": None if self.vector is not None else self.text, "vector": self.vector,
                "payload": self.payload}


@dataclass(frozen=True)
class Problem:
    line: int
    message: str

    def describe(self, path: pathlib.Path) -> str:
        return f"{path}:{self.line}: {self.message}"


@dataclass
class Validation:
    """What `validate` found: how many records are good, and every problem, in file order."""

    good: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def bad_lines(self) -> frozenset[int]:
        return frozenset(p.line for p in self.problems)


# -- reading -----------------------------------------------------------------------------------
def detect_format(path: pathlib.Path, explicit: str | None = None) -> str:
    if explicit:
        if explicit not in FORMATS:
            raise IngestError(f"--format: {explicit!r} is not one of {', '.join(FORMATS)}")
        return explicit
    found = _SUFFIXES.get(path.suffix.lower())
    if found is None:
        raise IngestError(f"{path}: cannot tell the format from the suffix {path.suffix!r}; "
                          f"name it .jsonl, .csv or .parquet, or pass --format {'|'.join(FORMATS)}")
    return found


def _rows(path: pathlib.Path, fmt: str) -> Iterator[tuple[int, Any]]:
    """(line, row) pairs; a row that cannot be parsed comes as a Problem."""
    try:
        if fmt == "parquet":
            yield from _parquet_rows(path)
            return
        with path.open(newline="", encoding="utf-8") as handle:
            if fmt == "csv":
                reader = csv.DictReader(handle)
                if reader.fieldnames is None:
                    raise IngestError(f"{path}: empty CSV file (the first line must name the columns)")
                start = reader.line_num + 1
                for row in reader:
                    if None in row:
                        yield start, Problem(start, f"{len(row[None])} more value(s) than the header has columns")
                    else:
                        yield start, row
                    start = reader.line_num + 1
                return
            for number, text in enumerate(handle, start=1):
                if not text.strip():
                    continue
                try:
                    yield number, json.loads(text)
                except json.JSONDecodeError as exc:
                    yield number, Problem(number, f"not valid JSON: {exc.msg} (column {exc.colno})")
    except FileNotFoundError:
        raise IngestError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise IngestError(f"{path}: is a directory, not a file") from None
    except PermissionError:
        raise IngestError(f"{path}: permission denied") from None
    except UnicodeDecodeError as exc:
        raise IngestError(f"{path}: not UTF-8 text (byte {exc.start}); is it a {fmt.upper()} file?") from None
    except csv.Error as exc:
        raise IngestError(f"{path}: not readable as CSV: {exc}") from None


def _parquet_rows(path: pathlib.Path) -> Iterator[tuple[int, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise IngestError("Parquet needs pyarrow: pip install 'searchgw[parquet]'") from None
    if not path.exists():
        raise FileNotFoundError(path)
    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow's errors: ArrowInvalid, OSError
        raise IngestError(f"{path}: not a readable Parquet file: {exc}") from None
    number = 0
    for batch in parquet.iter_batches(batch_size=4096):
        for row in batch.to_pylist():
            number += 1
            yield number, row


def _id_from_value(value: Any, options: IngestOptions) -> tuple[int | str | None, bool, str]:
    """(id, derived, problem): `derived` when a string became a UUID5; `problem` is "" when usable."""
    name = options.id_field
    if isinstance(value, bool) or value is None:
        return None, False, f"{name!r} is {json.dumps(value)}; an id is an unsigned integer or a string"
    if isinstance(value, int):
        if not 0 <= value <= MAX_POINT_ID:
            return None, False, f"{name!r} is {value}; integer ids run from 0 to 2^64-1"
        return value, False, ""
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None, False, f"{name!r} is empty"
        if text.isdigit() and text.isascii():
            number = int(text)
            if number <= MAX_POINT_ID:
                return number, False, ""
        if _UUID.match(text):
            return str(uuid.UUID(text)), False, ""
        return str(uuid.uuid5(INGEST_NAMESPACE, text)), True, ""
    return None, False, f"{name!r} is {type(value).__name__} {value!r}; an id is an unsigned integer or a string"


def content_id(text: str | None, vector: Sequence[float] | None) -> str:
    """The id `--id-from-content` gives: uuid5 of the text, or of the vector's compact JSON."""
    if text is not None:
        basis = text
    elif vector is not None:
        basis = json.dumps(list(vector), separators=(",", ":"))
    else:
        raise ValueError("content_id needs a text or a vector")
    return str(uuid.uuid5(INGEST_NAMESPACE, basis))


def _jsonable(value: Any, where: str) -> Any:
    """`value` as JSON can hold it (Parquet's dates and decimals become strings and floats)."""
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where} is {value}; JSON has no NaN or infinity")
        return value
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return _jsonable(float(value), where)
    if isinstance(value, dict):
        return {str(k): _jsonable(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise ValueError(f"{where} holds {type(value).__name__}, which JSON cannot hold")


def _vector(raw: Any, fmt: str, name: str) -> list[float]:
    if fmt == "csv" and isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            raise ValueError(f"{name!r} is not a JSON array of numbers") from None
    if not isinstance(raw, (list, tuple)) or not raw:
        raise ValueError(f"{name!r} must be a non-empty list of numbers")
    values = []
    for index, item in enumerate(raw):
        if isinstance(item, bool) or not isinstance(item, (int, float)) or not math.isfinite(item):
            raise ValueError(f"{name}[{index}] is {item!r}, not a finite number")
        values.append(float(item))
    return values


def _record(line: int, row: Any, fmt: str, options: IngestOptions) -> Record | Problem:
    if not isinstance(row, dict):
        kind = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean"}.get(
            type(row), type(row).__name__)
        return Problem(line, f"is {kind}, not an object")
    if fmt == "csv":  # CSV has no null: an empty cell is an absent value
        row = {k: v for k, v in row.items() if v != ""}
    try:
        vector = None
        if row.get(options.vector_field) is not None:
            vector = _vector(row[options.vector_field], fmt, options.vector_field)
        text = row.get(options.text_field)
        if text is not None and not isinstance(text, str):
            raise ValueError(f"{options.text_field!r} is {type(text).__name__}, not a string")
        if text is not None and not text.strip():
            if vector is None:
                raise ValueError(f"{options.text_field!r} is empty")
        if text is None and vector is None:
            raise ValueError(f"neither {options.text_field!r} nor {options.vector_field!r}; a record needs one "
                             "(see --text-field, --vector-field)")
        if options.chunk_tokens is not None and vector is not None:
            raise ValueError(f"{options.vector_field!r} is set, but --chunk-tokens cuts texts into chunks and "
                             "embeds each; leave the vector out or ingest without chunking")
        payload = {k: _jsonable(v, k) for k, v in row.items() if k != options.vector_field}
    except ValueError as exc:
        return Problem(line, str(exc))
    if options.id_from_content:
        ident: int | str = content_id(text if text is not None and text.strip() else None, vector)
    else:
        if row.get(options.id_field) is None:
            return Problem(line, f"no {options.id_field!r} field; every record needs an id (--id-field NAME "
                                 "names another field, --id-from-content derives one from the text)")
        value, derived, problem = _id_from_value(row[options.id_field], options)
        if problem:
            return Problem(line, problem)
        assert value is not None  # _id_from_value gives an id exactly when it finds no problem
        ident = value
        if not derived:
            payload.pop(options.id_field, None)
    return Record(line=line, id=ident, text=text, vector=vector, payload=payload)


def read(path: pathlib.Path, options: IngestOptions) -> Iterator[Record | Problem]:
    """Every record of the file in order, or the Problem that stands in its place (no cross-record checks)."""
    fmt = detect_format(path, options.format)
    for line, row in _rows(path, fmt):
        yield row if isinstance(row, Problem) else _record(line, row, fmt, options)


def validate(path: pathlib.Path, options: IngestOptions) -> Validation:
    """Read the whole file; report every bad record, vectors of different lengths and repeated ids."""
    result = Validation()
    first_line: dict[int | str, int] = {}
    dimension: tuple[int, int] | None = None  # (length, line of the first vector)
    for item in read(path, options):
        if isinstance(item, Problem):
            result.problems.append(item)
            continue
        if item.vector is not None:
            if dimension is None:
                dimension = (len(item.vector), item.line)
            elif len(item.vector) != dimension[0]:
                result.problems.append(Problem(item.line, f"{options.vector_field!r} has {len(item.vector)} values; "
                                                          f"line {dimension[1]} has {dimension[0]}"))
                continue
        seen = first_line.setdefault(item.id, item.line)
        if seen != item.line:
            result.problems.append(Problem(item.line, f"id {item.id!r} again (first on line {seen}); a second "
                                                      "record would silently replace the first"))
            continue
        result.good += 1
    return result


def good_records(path: pathlib.Path, options: IngestOptions, validation: Validation) -> Iterator[Record]:
    """The records `validation` found good, in file order."""
    bad = validation.bad_lines
    for item in read(path, options):
        if isinstance(item, Record) and item.line not in bad:
            yield item


# -- checkpoints -------------------------------------------------------------------------------
def default_checkpoint_path(path: pathlib.Path, collection: str) -> pathlib.Path:
    base = pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache")
    digest = hashlib.sha256(f"{path.resolve()}\0{collection}".encode()).hexdigest()[:16]
    return base / "searchgw" / "ingest" / f"{digest}.json"


@dataclass
class Checkpoint:
    """How many good records of `file` have been written to `collection` (see the module doc)."""

    path: pathlib.Path
    file: pathlib.Path
    collection: str
    options: IngestOptions

    def _identity(self) -> dict[str, Any]:
        stat = self.file.stat()
        return {"file": str(self.file.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                "collection": self.collection, "options": self.options.key()}

    def load(self) -> int:
        """Records already written by an earlier run of the same file, collection and options (else 0)."""
        try:
            saved = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return 0
        if not isinstance(saved, dict) or saved.get("identity") != self._identity():
            return 0
        done = saved.get("done")
        return done if isinstance(done, int) and done >= 0 else 0

    def save(self, done: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps({"identity": self._identity(), "done": done}))
        os.replace(temporary, self.path)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


# -- writing -----------------------------------------------------------------------------------
@dataclass
class WriteReport:
    written: int = 0
    #: Chunks written (with chunking), as the gateway counted them.
    chunks: int = 0
    #: Records the gateway refused (with --continue), as problems.
    rejected: list[Problem] = field(default_factory=list)
    #: Set when the run stopped early: why, as a message naming the record when one is to blame.
    stopped: str = ""


Upsert = Callable[[list[dict[str, Any]]], Awaitable[object]]


def _rejected_index(exc: SearchgwError, size: int) -> int | None:
    if isinstance(exc, InvalidArgument):
        match = _POINT_FIELD.match(exc.field or "")
        if match and int(match.group(1)) < size:
            return int(match.group(1))
    return None


async def write(records: Iterator[Record], upsert: Upsert, *, path: pathlib.Path, batch_size: int,
                skip: int = 0, keep_going: bool = False, checkpoint: Checkpoint | None = None,
                on_progress: Callable[[int], None] = lambda n: None) -> WriteReport:
    """Send `records` (after the first `skip`) in batches; save the checkpoint after each batch.

    A batch the gateway refuses because of one record (INVALID_ARGUMENT naming `points[i]`) stops the
    run naming that record's line, or with `keep_going` is sent again without it. Any other failure
    stops the run; what was written stays written and the checkpoint says how far it got.
    """
    report = WriteReport()
    done = skip
    batch: list[Record] = []

    async def flush() -> bool:
        nonlocal done
        pending = list(batch)
        while pending:
            try:
                written = await upsert([r.as_point() for r in pending])
            except SearchgwError as exc:
                index = _rejected_index(exc, len(pending))
                if index is None or not keep_going:
                    where = f"{path}:{pending[index].line}: " if index is not None else ""
                    detail = exc.description if index is not None and isinstance(exc, InvalidArgument) else exc.message
                    report.stopped = f"{where}{exc.code_name}: {detail}"
                    return False
                assert isinstance(exc, InvalidArgument)  # _rejected_index finds an index only in these
                bad = pending.pop(index)
                report.rejected.append(Problem(bad.line, f"refused by the gateway: {exc.description}"))
                continue
            report.written += len(pending)
            if isinstance(written, int):  # an upsert that reports chunks returns their count
                report.chunks += written
            break
        done += len(batch)
        on_progress(len(batch))
        if checkpoint is not None:
            checkpoint.save(done)
        return True

    for position, record in enumerate(records):
        if position < skip:
            continue
        batch.append(record)
        if len(batch) == batch_size:
            if not await flush():
                return report
            batch = []
    if batch and not await flush():
        return report
    return report


__all__ = ["FORMATS", "INGEST_NAMESPACE", "Checkpoint", "IngestError", "IngestOptions", "Problem", "Record",
           "Validation", "WriteReport", "content_id", "default_checkpoint_path", "detect_format", "good_records",
           "read", "validate", "write"]
