"""The gateway's input rules, in one place: names, limits, and the checks every layer uses. Pure, free of gRPC.

Every check raises `InvalidArgument` naming the field path of the request it came from
(`points[2].vector`, `filter.must[0].has_id.ids[1]`) and returns the value in the one form the engines
are given: ids canonical, vectors lists of floats, tuples where the caller may have passed lists.

Who uses what:

- the servicers' converters (`services/convert.py`) bound their recursion over a filter with a
  `FilterBudget` (the same depth and size limits `checked_filter` enforces);
- `SearchCore` checks a request with its limits (`FilterLimits`, the text, payload and id limits
  of the settings) before anything is looked up;
- the backends check what reaches an engine with the same functions and no request limits, since
  a backend may be called directly (ingest, benchmarks, tests) — then they only convert;
- the rollout model checks the names of a rollout with the same name rule as a collection, so that
  any collection that can be created can be rolled out.

Names. Collections, aliases, rollouts and snapshots share one rule: letters, digits, '_', '-' and '.',
not starting with '.', of at most `MAX_NAME_LENGTH` characters (`MAX_ROLLOUT_NAME_LENGTH` for a rollout,
`MAX_SNAPSHOT_NAME_LENGTH` for a snapshot, which holds its collection's name and a time stamp). It is
the rule the embedded backend has always stored collections under (a name is a directory there, so it
has no separator and never starts with '.': no hidden or relative directory), and a subset of what
Qdrant accepts (1 to 255 characters without `<>:"/\\|?*`, NUL or US), so every engine takes every name.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone

import numpy as np

from searchgw.errors import FailedPrecondition, InvalidArgument, NotFound
from searchgw.gateway.backends.types import (
    DEFAULT_BM25_AVG_LEN,
    DEFAULT_BM25_K1,
    DEFAULT_BM25_LANGUAGE,
    DEFAULT_FULL_SCAN_THRESHOLD_KB,
    DEFAULT_HNSW_EF_CONSTRUCT,
    DEFAULT_HNSW_M,
    DEFAULT_QUANTILE,
    ORDERABLE_INDEX_TYPES,
    DEFAULT_RRF_K,
    Bm25Config,
    Bm25Tokenizer,
    CollectionSpec,
    Condition,
    DatetimeRange,
    Distance,
    FieldCondition,
    Filter,
    Fusion,
    FusionMethod,
    HasId,
    IsEmpty,
    IsNull,
    MinShould,
    OrderBy,
    Payload,
    PayloadIndex,
    PayloadIndexType,
    Point,
    PointId,
    QuantizationParams,
    Range,
    ScalarQuantization,
    SearchParams,
    SearchMode,
    SearchQuery,
    TextIndexParams,
    Tokenizer,
    ValuesCount,
    Vector,
)

# -- limits ------------------------------------------------------------------------------------------
#: Collection and alias names.
MAX_NAME_LENGTH = 255
#: Rollout names (a rollout's name is a metric label value and a line in every decision log).
MAX_ROLLOUT_NAME_LENGTH = 63
#: Snapshot names: a collection name plus a time stamp and a suffix.
MAX_SNAPSHOT_NAME_LENGTH = 512
#: The longest vector any collection may hold.
MAX_DIMENSION = 65_536
#: Deepest filter nesting accepted (a deeper one is refused before anything recurses over it).
MAX_FILTER_DEPTH = 8
#: Most conditions in one filter, nested ones included.
MAX_FILTER_CONDITIONS = 256
MAX_POINT_ID = 2**64 - 1
#: Largest `hnsw_ef` a search may ask for (Qdrant's own default is the collection's ef_construct, 100;
#: beyond a few thousand an HNSW search costs more than scoring every point of a million).
MAX_HNSW_EF = 4096
#: Bounds of a search's quantization oversampling (Qdrant needs at least 1; 16 × limit candidates
#: rescored is already far past where recall stops improving).
MIN_OVERSAMPLING = 1.0
MAX_OVERSAMPLING = 16.0
#: Most payload indexes one collection may declare.
MAX_PAYLOAD_INDEXES = 64
#: Longest token a full-text index can be told to keep or drop (its min/max token length).
MAX_TOKEN_LENGTH = 1024
_MAX_ARRAY_INDEX = 2**64 - 1
#: How much of a bad value an error message repeats: status messages travel in HTTP/2 trailers,
#: which clients refuse beyond a few KiB (RESOURCE_EXHAUSTED instead of the real error).
_SHOWN_CHARS = 64

#: One name rule (see the module docstring); the lengths are checked apart.
_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")
_NAME_CHARS = "letters, digits, '_', '-' or '.', not starting with '.'"


def shown(value: object) -> str:
    """`repr(value)`, cut to a length an error message can carry."""
    if isinstance(value, str) and len(value) > _SHOWN_CHARS:
        return f"{value[:_SHOWN_CHARS]!r}… ({len(value)} characters)"
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS + 2 else f"{text[:_SHOWN_CHARS]}…"


# -- names -------------------------------------------------------------------------------------------
def is_name(value: object, max_length: int = MAX_NAME_LENGTH) -> bool:
    """Whether `value` follows the name rule with at most `max_length` characters."""
    return isinstance(value, str) and 0 < len(value) <= max_length and _NAME.fullmatch(value) is not None


def _check_named(field: str, value: object, max_length: int, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidArgument(field, "is required")
    if not is_name(value, max_length):
        raise InvalidArgument(field, f"{shown(value)} is not a valid {what}: 1 to {max_length} {_NAME_CHARS}")
    return value


def check_name(field: str, name: object) -> str:
    """A collection or alias name (see the module docstring)."""
    return _check_named(field, name, MAX_NAME_LENGTH, "name")


def check_rollout_name(field: str, name: object) -> str:
    """A rollout name: the name rule, at most `MAX_ROLLOUT_NAME_LENGTH` characters."""
    return _check_named(field, name, MAX_ROLLOUT_NAME_LENGTH, "rollout name")


def check_snapshot_name(field: str, name: object) -> str:
    """A snapshot name as backends hand them out: the name rule, at most `MAX_SNAPSHOT_NAME_LENGTH` characters."""
    return _check_named(field, name, MAX_SNAPSHOT_NAME_LENGTH, "snapshot name")


def aliases_of(collection: str, aliases: Mapping[str, str]) -> tuple[str, ...]:
    """The aliases that point at `collection`, by name."""
    return tuple(sorted(alias for alias, target in aliases.items() if target == collection))


def refuse_if_aliased(collection: str, aliases: Mapping[str, str]) -> None:
    """FailedPrecondition when an alias points at `collection`: nothing a search depends on is deleted."""
    pointing = aliases_of(collection, aliases)
    if pointing:
        raise FailedPrecondition(f"collection {collection!r} is the target of alias(es) {', '.join(pointing)}; "
                                 "point them elsewhere or delete them first")


# -- collection specs --------------------------------------------------------------------------------
def _in_range(field: str, value: int, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidArgument(field, f"{value!r} is not an integer from {low} to {high}")
    return value


def normalized_spec(spec: CollectionSpec) -> CollectionSpec:
    """The spec with zero settings replaced by the defaults, or InvalidArgument."""
    check_name("collection.name", spec.name)
    _in_range("collection.dimension", spec.dimension, 1, MAX_DIMENSION)
    try:
        distance = Distance(spec.distance)
    except ValueError:
        raise InvalidArgument("collection.distance", f"{spec.distance!r} is not one of "
                                                     f"{', '.join(d.value for d in Distance)}") from None
    quantization = spec.scalar_quantization
    if quantization is not None:
        quantile = quantization.quantile or DEFAULT_QUANTILE
        if not 0.5 <= quantile <= 1.0:
            raise InvalidArgument("collection.scalar_quantization.quantile", f"{quantile} is not from 0.5 to 1")
        quantization = ScalarQuantization(quantile=quantile, always_ram=bool(quantization.always_ram))
    return replace(
        spec,
        distance=distance,
        hnsw_m=_in_range("collection.hnsw.m", spec.hnsw_m or DEFAULT_HNSW_M, 2, 256),
        hnsw_ef_construct=_in_range("collection.hnsw.ef_construct",
                                    spec.hnsw_ef_construct or DEFAULT_HNSW_EF_CONSTRUCT, 4, 10_000),
        full_scan_threshold=_in_range("collection.hnsw.full_scan_threshold",
                                      spec.full_scan_threshold or DEFAULT_FULL_SCAN_THRESHOLD_KB, 10, 2**31 - 1),
        scalar_quantization=quantization,
        embedding_model=spec.embedding_model or "",
        payload_indexes=checked_payload_indexes("collection.payload_indexes", spec.payload_indexes),
        bm25=None if spec.bm25 is None else normalized_bm25(spec.bm25),
    )


# -- payload indexes ---------------------------------------------------------------------------------
def checked_payload_index(field: str, index: PayloadIndex) -> PayloadIndex:
    """A payload index in canonical form: a valid key and type, and text params for a TEXT index only
    (filled with the defaults when unset); InvalidArgument naming the field otherwise."""
    key = check_key(f"{field}.key", index.key)
    try:
        kind = PayloadIndexType(index.type)
    except ValueError:
        raise InvalidArgument(f"{field}.type", f"{shown(index.type)} is not one of "
                                               f"{', '.join(t.value for t in PayloadIndexType)}") from None
    if kind is not PayloadIndexType.TEXT:
        if index.text is not None:
            raise InvalidArgument(f"{field}.text", f"only a text index takes text params, not a {kind.value} index")
        return PayloadIndex(key, kind)
    text = index.text or TextIndexParams()
    try:
        tokenizer = Tokenizer(text.tokenizer)
    except ValueError:
        raise InvalidArgument(f"{field}.text.tokenizer", f"{shown(text.tokenizer)} is not one of "
                                                         f"{', '.join(t.value for t in Tokenizer)}") from None
    low = _in_range(f"{field}.text.min_token_length", text.min_token_length, 0, MAX_TOKEN_LENGTH)
    high = _in_range(f"{field}.text.max_token_length", text.max_token_length, 0, MAX_TOKEN_LENGTH)
    if high and high < low:
        raise InvalidArgument(f"{field}.text.max_token_length", f"{high} is below min_token_length {low}")
    return PayloadIndex(key, kind, TextIndexParams(tokenizer, bool(text.lowercase), low, high))


def checked_payload_indexes(field: str, indexes: Sequence[PayloadIndex]) -> tuple[PayloadIndex, ...]:
    """Every index checked, one per key, sorted by key."""
    if len(indexes) > MAX_PAYLOAD_INDEXES:
        raise InvalidArgument(field, f"{len(indexes)} indexes; at most {MAX_PAYLOAD_INDEXES} per collection")
    seen: dict[str, int] = {}
    checked = []
    for i, index in enumerate(indexes):
        index = checked_payload_index(f"{field}[{i}]", index)
        if index.key in seen:
            raise InvalidArgument(f"{field}[{i}].key", f"{shown(index.key)} is indexed already by "
                                                       f"{field}[{seen[index.key]}]; one index per key")
        seen[index.key] = i
        checked.append(index)
    return tuple(sorted(checked, key=lambda index: index.key))


def with_payload_index(spec: CollectionSpec, index: PayloadIndex) -> CollectionSpec:
    """The spec with `index` (checked already) added, or replacing the index of its key."""
    others = [existing for existing in spec.payload_indexes if existing.key != index.key]
    if len(others) >= MAX_PAYLOAD_INDEXES:
        raise InvalidArgument("index", f"collection {spec.name!r} has {len(others)} indexes; at most "
                                       f"{MAX_PAYLOAD_INDEXES}")
    return replace(spec, payload_indexes=tuple(sorted([*others, index], key=lambda i: i.key)))


def without_payload_index(spec: CollectionSpec, key: str) -> CollectionSpec:
    """The spec without the index of `key`; NotFound when it has none."""
    if all(existing.key != key for existing in spec.payload_indexes):
        raise NotFound(f"collection {spec.name!r} has no payload index on {shown(key)}")
    return replace(spec, payload_indexes=tuple(i for i in spec.payload_indexes if i.key != key))


def checked_order_by(spec: CollectionSpec, order_by: OrderBy) -> OrderBy:
    """An order for a scroll of `spec`'s collection: its key needs an integer, float or datetime index."""
    key = check_key("order_by.key", order_by.key)
    kinds = {index.key: index.type for index in spec.payload_indexes}
    if kinds.get(key) not in ORDERABLE_INDEX_TYPES:
        has = f"a {kinds[key].value} index" if key in kinds else "no index"
        raise InvalidArgument("order_by.key", f"{shown(key)} has {has} in collection {spec.name!r}; ordering "
                                              "needs an integer, float or datetime payload index on the key")
    start = order_by.start_from
    if start is not None and (isinstance(start, bool) or not isinstance(start, int | float)
                              or not math.isfinite(start)):
        raise InvalidArgument("order_by.start_from", f"{start!r} is not a finite number")
    return replace(order_by, key=key, descending=bool(order_by.descending))



#: The languages both engines' BM25 know (stopwords and a stemmer), by lowercase name.
BM25_LANGUAGES = frozenset({
    "arabic", "azerbaijani", "basque", "bengali", "catalan", "chinese", "danish", "dutch", "english", "finnish",
    "french", "german", "greek", "hebrew", "hinglish", "hungarian", "indonesian", "italian", "japanese", "kazakh",
    "nepali", "norwegian", "portuguese", "romanian", "russian", "slovene", "spanish", "swedish", "tajik", "turkish",
})
MAX_BM25_K1 = 10.0
MAX_BM25_AVG_LEN = 100_000.0


def normalized_bm25(config: Bm25Config) -> Bm25Config:
    """A BM25 config with zero `k1` / `avg_len` and an empty language replaced by the defaults, or
    InvalidArgument naming `collection.bm25.<field>`."""
    k1 = config.k1 or DEFAULT_BM25_K1
    if not (isinstance(k1, (int, float)) and math.isfinite(k1) and 0 < k1 <= MAX_BM25_K1):
        raise InvalidArgument("collection.bm25.k1", f"{k1!r} is not above 0 and at most {MAX_BM25_K1:g}")
    b = config.b
    if not (isinstance(b, (int, float)) and math.isfinite(b) and 0.0 <= b <= 1.0):
        raise InvalidArgument("collection.bm25.b", f"{b!r} is not from 0 to 1")
    avg_len = config.avg_len or DEFAULT_BM25_AVG_LEN
    if not (isinstance(avg_len, (int, float)) and math.isfinite(avg_len) and 0 < avg_len <= MAX_BM25_AVG_LEN):
        raise InvalidArgument("collection.bm25.avg_len", f"{avg_len!r} is not above 0 and at most "
                                                         f"{MAX_BM25_AVG_LEN:g}")
    language = config.language or DEFAULT_BM25_LANGUAGE
    if language not in BM25_LANGUAGES:
        raise InvalidArgument("collection.bm25.language", f"{shown(language)} is not one of "
                                                          f"{', '.join(sorted(BM25_LANGUAGES))}")
    try:
        tokenizer = Bm25Tokenizer(config.tokenizer)
    except ValueError:
        raise InvalidArgument("collection.bm25.tokenizer", f"{shown(config.tokenizer)} is not one of "
                                                           f"{', '.join(t.value for t in Bm25Tokenizer)}") from None
    # float32 on the wire: 7 significant digits, so a spec read back compares equal to the one created
    return Bm25Config(k1=_float32(k1), b=_float32(b), avg_len=_float32(avg_len), language=language,
                      tokenizer=tokenizer)


def _float32(value: float) -> float:
    """`value` as a float32 holds it, shown as its shortest decimal (1.2, not 1.2000000476837158)."""
    return float(f"{np.float32(value):.7g}")


# -- texts, ids, vectors, payloads -------------------------------------------------------------------
def check_text(field: str, text: str, max_chars: int) -> None:
    """A text to embed: not blank, at most `max_chars` characters."""
    if not text.strip():
        raise InvalidArgument(field, "must not be empty")
    if len(text) > max_chars:
        raise InvalidArgument(field, f"{len(text)} characters; at most {max_chars}")


def point_id(field: str, value: object) -> PointId:
    """An unsigned 64-bit integer, or a UUID in canonical form (lower case, hyphenated)."""
    if isinstance(value, int) and not isinstance(value, bool):
        if 0 <= value <= MAX_POINT_ID:
            return value
        raise InvalidArgument(field, f"{shown(value)} is not an unsigned 64-bit integer")
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, str):
        try:
            return str(uuid.UUID(value))
        except ValueError:
            raise InvalidArgument(field, f"{shown(value)} is neither an unsigned integer nor a UUID") from None
    raise InvalidArgument(field, f"{shown(value)} is neither an unsigned integer nor a UUID")


def checked_ids(field: str, ids: Sequence[PointId]) -> list[PointId]:
    return [point_id(f"{field}[{i}]", value) for i, value in enumerate(ids)]


def check_query_length(field: str, values: int) -> None:
    """A query vector no collection could hold is refused before any collection is looked up."""
    if values > MAX_DIMENSION:
        raise InvalidArgument(field, f"{values} values; no collection holds vectors longer than {MAX_DIMENSION}")


def vector_values(field: str, vector: Vector, collection: str, dimension: int) -> list[float]:
    try:
        array = np.asarray(vector, dtype=np.float32)
    except (TypeError, ValueError):
        raise InvalidArgument(field, "must be a list of numbers") from None
    if array.ndim != 1 or array.shape[0] != dimension:
        raise InvalidArgument(field, f"has {array.size} values; collection {collection!r} holds "
                                     f"{dimension}-d vectors")
    if not np.isfinite(array).all():
        raise InvalidArgument(field, "must hold finite numbers only")
    values: list[float] = array.tolist()
    return values


#: The payload key under which SearchCore keeps the text a point was written with (an upsert with
#: `text`), so that a backfill can re-embed it with another model (see docs/canary.md). Reserved: a
#: text upsert overwrites whatever a client put there, an upsert by raw vector may not set it (SearchCore
#: refuses it, naming the key); search results show it like any payload key.
TEXT_PAYLOAD_KEY = "_searchgw_text"
#: The payload key under which SearchCore keeps a raw-vector point's BM25 text (`PointInput.bm25_text`).
#: Reserved like TEXT_PAYLOAD_KEY: set only through that field. A backfill copies it with the payload,
#: so a canary with a BM25 config indexes the point by the same text.
BM25_TEXT_PAYLOAD_KEY = "_searchgw_bm25_text"


def bm25_text(payload: Payload) -> str | None:
    """The text a point is BM25-indexed by: its BM25 text, else the text it was embedded from (None: none)."""
    for key in (BM25_TEXT_PAYLOAD_KEY, TEXT_PAYLOAD_KEY):
        text = payload.get(key)
        if isinstance(text, str) and text:
            return text
    return None


def checked_payload(field: str, payload: object, max_bytes: int | None = None) -> Payload:
    """A JSON object (finite numbers only), of at most `max_bytes` bytes as compact UTF-8 JSON when given."""
    if not isinstance(payload, Mapping):
        raise InvalidArgument(field, "must be a JSON object")
    try:
        size = len(json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode())
    except (TypeError, ValueError) as exc:  # UnicodeEncodeError (a lone surrogate) is a ValueError
        raise InvalidArgument(field, f"is not JSON: {exc}") from None
    if max_bytes is not None and size > max_bytes:
        raise InvalidArgument(field, f"{size} bytes as JSON; at most {max_bytes} per point (--max-payload-bytes)")
    return dict(payload)


def checked_points(collection: str, dimension: int, points: Sequence[Point]) -> list[Point]:
    """Every point checked, in engine form; the first bad one raises, before anything is written."""
    return [
        Point(id=point_id(f"points[{i}].id", point.id),
              vector=vector_values(f"points[{i}].vector", point.vector, collection, dimension),
              payload=checked_payload(f"points[{i}].payload", point.payload))
        for i, point in enumerate(points)
    ]


# -- payload paths -----------------------------------------------------------------------------------
def _raw_segment(text: str, start: int) -> int:
    """The end of the unquoted key segment at `start` (== start when there is none)."""
    end = start
    while end < len(text) and (text[end].isalnum() or text[end] in "_-"):
        end += 1
    return end


def _quoted_segment(text: str, start: int) -> int:
    """The end of the quoted key segment at `start`, past its closing quote (== start when there is none)."""
    if start >= len(text) or text[start] != '"':
        return start
    end = start + 1
    while end < len(text) and text[end] not in '"\\':
        end += 1
    return end + 1 if end < len(text) and text[end] == '"' else start


def _key_error(key: str) -> str | None:
    """Why `key` is not a payload path the engines accept, or None when it is one.

    The grammar is Qdrant's: a segment, then any of `.segment`, `[N]` (an array index) and `[]`
    (every element). A segment is letters, digits, '_' and '-', or anything but '"' and '\\' in double
    quotes (`meta."content-type"`). Letters and digits are those of `str.isalnum`, a subset of the
    engines' (which also take some combining marks): quote such a segment.
    """
    def segment(at: int) -> int:
        end = _raw_segment(key, at)
        return end if end > at else _quoted_segment(key, at)

    at = segment(0)
    if at == 0:
        return "must start with a field name (letters, digits, '_', '-', or any text in double quotes)"
    while at < len(key):
        if key[at] == ".":
            end = segment(at + 1)
            if end == at + 1:
                return f"needs a field name after the '.' at position {at}"
        elif key.startswith("[]", at):
            end = at + 2
        elif key[at] == "[":
            close = key.find("]", at)
            digits = key[at + 1:close] if close > 0 else ""
            if not (digits.isascii() and digits.isdigit()) or len(digits) > 20 or int(digits) > _MAX_ARRAY_INDEX:
                return f"has a bad array index at position {at}: write [N] with N from 0 to {_MAX_ARRAY_INDEX}, or []"
            end = close + 1
        else:
            return f"has {key[at]!r} at position {at}; quote a segment holding other characters: a.\"b c\""
        at = end
    return None


def check_key(field: str, key: object) -> str:
    """A payload path as filters name fields (`city`, `meta.tags[]`, `a."b c"[0]`)."""
    if not isinstance(key, str) or not key:
        raise InvalidArgument(field, "is required")
    problem = _key_error(key)
    if problem is not None:
        raise InvalidArgument(field, f"{shown(key)} is not a payload path: it {problem}")
    return key


# -- filters -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FilterLimits:
    """A request's limits on a filter (the gateway's settings); None: no limit (a backend's own check)."""

    #: Most ids and keywords in one filter (--max-filter-values).
    max_values: int | None = None
    #: Longest key or keyword in bytes: no payload holds more (--max-payload-bytes).
    max_value_bytes: int | None = None


class FilterBudget:
    """The depth and size limits of one filter, spent as it is walked.

    The converters from the wire spend it while they build the domain filter (so nothing recurses
    past the limits), and `checked_filter` spends it while it checks one.
    """

    def __init__(self) -> None:
        self.conditions = 0

    @staticmethod
    def enter(field: str, depth: int) -> None:
        """A filter at `depth` (the outermost is 1)."""
        if depth > MAX_FILTER_DEPTH:
            raise InvalidArgument(field, f"filters nest at most {MAX_FILTER_DEPTH} deep")

    def spend(self, field: str) -> None:
        """One more condition."""
        self.conditions += 1
        if self.conditions > MAX_FILTER_CONDITIONS:
            raise InvalidArgument(field, f"a filter holds at most {MAX_FILTER_CONDITIONS} conditions")


def _bound(field: str, value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidArgument(field, f"{value!r} is not a finite number")
    return float(value)


def _datetime_bound(field: str, value: object) -> str | None:
    """An RFC 3339 date-time (an offset or `Z`; none means UTC) as UTC with microseconds and `Z`."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidArgument(field, f"{shown(value)} is not an RFC 3339 date-time")
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidArgument(field, f"{shown(value)} is not an RFC 3339 date-time "
                                     "(like 2024-05-01T12:00:00Z)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _count_bound(field: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**32:
        raise InvalidArgument(field, f"{shown(value)} is not a count from 0 to {2**32 - 1}")
    return value


class _FilterCheck:
    """One walk over a filter that checks every rule and limit and builds its canonical form."""

    def __init__(self, limits: FilterLimits) -> None:
        self._limits = limits
        self._budget = FilterBudget()
        self._values = 0

    def filter(self, path: str, filter: Filter, depth: int) -> Filter:
        self._budget.enter(path, depth)
        clauses = {
            clause: tuple(self._condition(f"{path}.{clause}[{i}]", c, depth)
                          for i, c in enumerate(getattr(filter, clause)))
            for clause in ("must", "should", "must_not")
        }
        return Filter(**clauses, min_should=None if filter.min_should is None
                      else self._min_should(f"{path}.min_should", filter.min_should, depth))

    def _min_should(self, path: str, min_should: MinShould, depth: int) -> MinShould:
        conditions = tuple(self._condition(f"{path}.conditions[{i}]", c, depth)
                           for i, c in enumerate(min_should.conditions))
        if not conditions:
            raise InvalidArgument(f"{path}.conditions", "at least one condition is required")
        count = min_should.min_count
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= len(conditions):
            raise InvalidArgument(f"{path}.min_count", f"{count!r} is not from 1 to the {len(conditions)} "
                                                       "conditions given")
        return MinShould(conditions, count)

    def _count(self, path: str, values: int) -> None:
        self._values += values
        limit = self._limits.max_values
        if limit is not None and self._values > limit:
            raise InvalidArgument(path, f"the filter lists more than {limit} ids and keywords (--max-filter-values)")

    def _size(self, field: str, text: object) -> None:
        longest = self._limits.max_value_bytes
        if longest is not None and isinstance(text, str) and len(text) * 4 > longest and len(text.encode()) > longest:
            raise InvalidArgument(field, f"{len(text.encode())} bytes; at most {longest} (--max-payload-bytes: "
                                         "no payload holds more)")

    def _condition(self, path: str, condition: Condition, depth: int) -> Condition:
        self._budget.spend(path)
        if isinstance(condition, Filter):
            return self.filter(f"{path}.filter", condition, depth + 1)
        if isinstance(condition, HasId):
            self._count(path, len(condition.ids))
            return HasId(tuple(checked_ids(f"{path}.has_id.ids", condition.ids)))
        if isinstance(condition, FieldCondition):
            return self._field(path, condition)
        if isinstance(condition, IsNull | IsEmpty):
            name = "is_null" if isinstance(condition, IsNull) else "is_empty"
            self._size(f"{path}.{name}.key", condition.key)
            return type(condition)(check_key(f"{path}.{name}.key", condition.key))
        raise InvalidArgument(path, f"{type(condition).__name__} is not a filter condition")

    def _field(self, path: str, condition: FieldCondition) -> FieldCondition:
        keywords = condition.any_keyword or ()
        self._count(path, len(keywords))
        self._size(f"{path}.field.key", condition.key)
        self._size(f"{path}.field.keyword", condition.keyword)
        for i, keyword in enumerate(keywords):
            self._size(f"{path}.field.any_keyword.keywords[{i}]", keyword)
        check_key(f"{path}.field.key", condition.key)
        if condition.range is not None:
            bounds = condition.range
            return replace(condition, range=Range(*(_bound(f"{path}.field.range.{name}", getattr(bounds, name))
                                                    for name in ("gt", "gte", "lt", "lte"))))
        if condition.text is not None:
            self._size(f"{path}.field.text", condition.text)
            if not isinstance(condition.text, str) or not condition.text.strip():
                raise InvalidArgument(f"{path}.field.text", "must hold at least one word")
            return condition
        if condition.datetime_range is not None:
            dates = condition.datetime_range
            values = {}
            for name in ("gt", "gte", "lt", "lte"):
                self._size(f"{path}.field.datetime_range.{name}", getattr(dates, name))
                values[name] = _datetime_bound(f"{path}.field.datetime_range.{name}", getattr(dates, name))
            if all(value is None for value in values.values()):
                raise InvalidArgument(f"{path}.field.datetime_range", "set at least one bound")
            return replace(condition, datetime_range=DatetimeRange(**values))
        if condition.values_count is not None:
            counts = condition.values_count
            values_count = {name: _count_bound(f"{path}.field.values_count.{name}", getattr(counts, name))
                            for name in ("gt", "gte", "lt", "lte")}
            if all(value is None for value in values_count.values()):
                raise InvalidArgument(f"{path}.field.values_count", "set at least one bound")
            return replace(condition, values_count=ValuesCount(**values_count))
        if condition.any_keyword is not None:
            if not all(isinstance(keyword, str) for keyword in condition.any_keyword):
                raise InvalidArgument(f"{path}.field.any_keyword", "must hold strings only")
            return replace(condition, any_keyword=tuple(condition.any_keyword))
        expected: dict[str, type] = {"keyword": str, "integer": int, "boolean": bool}
        for name, kind in expected.items():
            value = getattr(condition, name)
            if value is not None and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
                raise InvalidArgument(f"{path}.field.{name}", f"{value!r} is not a {kind.__name__}")
        return condition


def checked_filter(path: str, filter: Filter, limits: FilterLimits = FilterLimits()) -> Filter:
    """The filter checked — nesting, size, ids, keys, values, and `limits` — in canonical form."""
    return _FilterCheck(limits).filter(path, filter, 1)


# -- queries and selectors ---------------------------------------------------------------------------
MAX_RRF_K = 1000
MAX_PREFETCH_LIMIT = 1000


def checked_fusion(field: str, fusion: Fusion) -> Fusion:
    """A fusion with its zero `rrf_k` replaced by the default, or InvalidArgument naming `<field>.<name>`."""
    try:
        method = FusionMethod(fusion.method)
    except ValueError:
        raise InvalidArgument(f"{field}.method", f"{shown(fusion.method)} is not one of "
                                                 f"{', '.join(m.value for m in FusionMethod)}") from None
    rrf_k = fusion.rrf_k or DEFAULT_RRF_K
    if method is FusionMethod.RRF:
        _in_range(f"{field}.rrf_k", rrf_k, 1, MAX_RRF_K)
    elif fusion.rrf_k and fusion.rrf_k != DEFAULT_RRF_K:
        raise InvalidArgument(f"{field}.rrf_k", "applies to RRF only; leave it 0 with DBSF")
    _in_range(f"{field}.prefetch_limit", fusion.prefetch_limit, 0, MAX_PREFETCH_LIMIT)
    return Fusion(method=method, rrf_k=rrf_k, prefetch_limit=fusion.prefetch_limit)


def check_search_mode(spec: CollectionSpec, query: SearchQuery, collection: str = "") -> None:
    """A sparse or hybrid query needs a text and a collection with a BM25 config (FailedPrecondition
    naming `mode` when it has none: the request is sound, the collection cannot serve it)."""
    if query.mode is SearchMode.DENSE:
        return
    if not query.text or not query.text.strip():
        raise InvalidArgument("text", f"a {query.mode.value} search ranks by BM25 over a text: set `text` "
                                      "(a vector query is dense only)")
    if spec.bm25 is None:
        name = collection or spec.name
        raise FailedPrecondition(
            f"mode: collection {name!r} has no BM25 index, so it cannot serve a {query.mode.value} search; "
            "create it with a bm25 config (`searchgw collections create --bm25`), or search it in dense mode",
            reason="NO_BM25_INDEX", metadata={"field": "mode", "collection": spec.name})
def checked_params(field: str, params: SearchParams | None) -> SearchParams | None:
    """A search's knobs within their limits (`MAX_HNSW_EF`, `MIN_OVERSAMPLING`..`MAX_OVERSAMPLING`);
    a knob left at its default stays None so the engine applies its own."""
    if params is None:
        return None
    ef = params.hnsw_ef
    if ef is not None and (isinstance(ef, bool) or not isinstance(ef, int) or not 1 <= ef <= MAX_HNSW_EF):
        raise InvalidArgument(f"{field}.hnsw_ef", f"{shown(ef)} is not an integer from 1 to {MAX_HNSW_EF}")
    quantization = params.quantization
    if quantization is not None:
        oversampling = _bound(f"{field}.quantization.oversampling", quantization.oversampling)
        if oversampling is not None and not MIN_OVERSAMPLING <= oversampling <= MAX_OVERSAMPLING:
            raise InvalidArgument(f"{field}.quantization.oversampling",
                                  f"{oversampling!r} is not from {MIN_OVERSAMPLING:g} to {MAX_OVERSAMPLING:g}")
        rescore = quantization.rescore
        quantization = QuantizationParams(ignore=bool(quantization.ignore),
                                          rescore=None if rescore is None else bool(rescore),
                                          oversampling=oversampling)
    return SearchParams(hnsw_ef=ef, exact=bool(params.exact), quantization=quantization)


def checked_query(collection: str, dimension: int, query: SearchQuery) -> SearchQuery:
    if isinstance(query.limit, bool) or not isinstance(query.limit, int) or query.limit < 1:
        raise InvalidArgument("limit", f"{query.limit!r} is not a positive integer")
    if isinstance(query.offset, bool) or not isinstance(query.offset, int) or query.offset < 0:
        raise InvalidArgument("offset", f"{query.offset!r} is not a non-negative integer")
    try:
        mode = SearchMode(query.mode)
    except ValueError:
        raise InvalidArgument("mode", f"{shown(query.mode)} is not one of "
                                      f"{', '.join(m.value for m in SearchMode)}") from None
    sparse_only = mode is SearchMode.SPARSE
    return replace(
        query,
        mode=mode,
        fusion=checked_fusion("fusion", query.fusion),
        vector=[] if sparse_only else vector_values("vector", query.vector, collection, dimension),
        filter=None if query.filter is None else checked_filter("filter", query.filter),
        score_threshold=_bound("score_threshold", query.score_threshold),
        with_payload=bool(query.with_payload),
        params=checked_params("params", query.params),
    )


def checked_selector(ids: Sequence[PointId] | None, filter: Filter | None) -> list[PointId] | Filter:
    """The point selector of a delete: ids or a filter, exactly one."""
    if ids is not None and filter is None:
        return checked_ids("ids.ids", ids)
    if filter is not None and ids is None:
        return checked_filter("filter", filter)
    raise InvalidArgument("selector", "set ids or filter, exactly one")


__all__ = [
    "BM25_LANGUAGES",
    "BM25_TEXT_PAYLOAD_KEY",
    "TEXT_PAYLOAD_KEY",
    "MAX_DIMENSION",
    "MAX_FILTER_CONDITIONS",
    "MAX_FILTER_DEPTH",
    "MAX_HNSW_EF",
    "MAX_OVERSAMPLING",
    "MIN_OVERSAMPLING",
    "MAX_NAME_LENGTH",
    "MAX_PAYLOAD_INDEXES",
    "MAX_POINT_ID",
    "MAX_ROLLOUT_NAME_LENGTH",
    "MAX_SNAPSHOT_NAME_LENGTH",
    "FilterBudget",
    "FilterLimits",
    "aliases_of",
    "bm25_text",
    "check_search_mode",
    "checked_fusion",
    "check_key",
    "check_name",
    "check_query_length",
    "check_rollout_name",
    "check_snapshot_name",
    "check_text",
    "checked_filter",
    "checked_ids",
    "checked_order_by",
    "checked_payload_index",
    "checked_payload_indexes",
    "checked_payload",
    "checked_points",
    "checked_params",
    "checked_query",
    "checked_selector",
    "is_name",
    "normalized_bm25",
    "normalized_spec",
    "point_id",
    "refuse_if_aliased",
    "shown",
    "vector_values",
    "with_payload_index",
    "without_payload_index",
]
