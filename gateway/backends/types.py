"""Domain types of the vector backends, mirroring `searchgw.v1` (common.proto, collection_service.proto).

Every type is a frozen dataclass; sequences are tuples so values can be compared, hashed and printed
the same way every time (page tokens fingerprint a query by its `repr`). Vectors are any sequence of
floats, a 1-d numpy array included.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import numpy as np

#: A point id: an unsigned 64-bit integer, or a UUID in its canonical textual form.
PointId: TypeAlias = int | str
#: A dense vector.
Vector: TypeAlias = Sequence[float] | np.ndarray
#: A JSON object.
Payload: TypeAlias = dict[str, Any]

#: Qdrant's defaults, used where the API leaves a setting at zero.
DEFAULT_HNSW_M = 16
DEFAULT_HNSW_EF_CONSTRUCT = 100
DEFAULT_FULL_SCAN_THRESHOLD_KB = 10_000
DEFAULT_QUANTILE = 0.99


class Distance(enum.StrEnum):
    """The similarity a collection ranks by."""

    COSINE = "cosine"
    DOT = "dot"
    EUCLID = "euclid"
    MANHATTAN = "manhattan"


@dataclass(frozen=True)
class ScalarQuantization:
    """Keep int8 copies of the vectors for faster search."""

    quantile: float = DEFAULT_QUANTILE
    always_ram: bool = False


class PayloadIndexType(enum.StrEnum):
    """What a payload index holds (and so which filters it serves)."""

    KEYWORD = "keyword"
    INTEGER = "integer"
    FLOAT = "float"
    BOOL = "bool"
    DATETIME = "datetime"
    UUID = "uuid"
    TEXT = "text"


#: The index types a scroll can be ordered by (the engines' range indexes).
ORDERABLE_INDEX_TYPES = frozenset({PayloadIndexType.INTEGER, PayloadIndexType.FLOAT, PayloadIndexType.DATETIME})


class Tokenizer(enum.StrEnum):
    """How a full-text index splits a text into tokens."""

    WORD = "word"
    WHITESPACE = "whitespace"
    PREFIX = "prefix"
    MULTILINGUAL = "multilingual"


@dataclass(frozen=True)
class TextIndexParams:
    """A full-text index's token rules; a length of 0 means no bound."""

    tokenizer: Tokenizer = Tokenizer.WORD
    lowercase: bool = True
    min_token_length: int = 0
    max_token_length: int = 0


@dataclass(frozen=True)
class PayloadIndex:
    """An index on one payload field (`key`, dotted for nested objects); `text` only for a TEXT index
    (None there means the default `TextIndexParams`)."""

    key: str
    type: PayloadIndexType
    text: TextIndexParams | None = None


class Bm25Tokenizer(enum.StrEnum):
    """How a BM25 config splits a text into tokens."""

    #: Unicode words: "XK-4471" is "xk" and "4471".
    WORD = "word"
    #: Whitespace only: "XK-4471" is one token.
    WHITESPACE = "whitespace"
    #: Words in any script, Chinese, Japanese and Korean included.
    MULTILINGUAL = "multilingual"


#: BM25's standard parameters (Qdrant's defaults), used where the API leaves one at zero.
DEFAULT_BM25_K1 = 1.2
DEFAULT_BM25_B = 0.75
DEFAULT_BM25_AVG_LEN = 256.0
DEFAULT_BM25_LANGUAGE = "english"
#: The name the engines store a collection's sparse BM25 vector under (its dense vector is unnamed).
BM25_VECTOR = "bm25"


@dataclass(frozen=True)
class Bm25Config:
    """A sparse BM25 vector beside the dense one, computed by the engine from each point's text.

    Documents are weighted by term frequency with `k1`, `b` and `avg_len`; the engine applies the
    inverse document frequency over the collection at query time.
    """

    k1: float = DEFAULT_BM25_K1
    b: float = DEFAULT_BM25_B
    avg_len: float = DEFAULT_BM25_AVG_LEN
    #: Stopwords and stemmer: a lowercase language name the engines know (see rules.BM25_LANGUAGES).
    language: str = DEFAULT_BM25_LANGUAGE
    tokenizer: Bm25Tokenizer = Bm25Tokenizer.WORD


@dataclass(frozen=True)
class CollectionSpec:
    """What a physical collection is made of. Zero HNSW settings mean the engine's defaults."""

    name: str
    dimension: int
    distance: Distance = Distance.COSINE
    hnsw_m: int = DEFAULT_HNSW_M
    hnsw_ef_construct: int = DEFAULT_HNSW_EF_CONSTRUCT
    #: Below this many kilobytes of vectors a segment is searched exhaustively.
    full_scan_threshold: int = DEFAULT_FULL_SCAN_THRESHOLD_KB
    scalar_quantization: ScalarQuantization | None = None
    #: The embedding model whose vectors the collection holds; text queries are embedded with it.
    embedding_model: str = ""
    #: The indexed payload fields, one per key, sorted by key (`rules.normalized_spec` sorts them).
    payload_indexes: tuple[PayloadIndex, ...] = ()
    #: A sparse BM25 vector beside the dense one (None: dense only); needed by sparse and hybrid searches.
    bm25: Bm25Config | None = None


@dataclass(frozen=True)
class CollectionInfo:
    """A collection as it is now."""

    spec: CollectionSpec
    points_count: int
    #: The aliases that point at it, by name.
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class SnapshotInfo:
    """A point-in-time copy of one collection, which `restore_snapshot` turns into a new collection."""

    #: Unique in the backend; the name `restore_snapshot` takes.
    name: str
    #: The physical collection it was taken of.
    collection: str
    size_bytes: int
    #: When it was taken, in seconds since the epoch.
    create_time: float
    #: SHA-256 of the archive, lowercase hex; "" when the backend reports none.
    checksum: str = ""


@dataclass(frozen=True)
class Point:
    """A point to write."""

    id: PointId
    vector: Vector
    payload: Payload = field(default_factory=dict)


@dataclass(frozen=True)
class StoredPoint:
    """A point as the collection holds it (a `scroll` or `retrieve` result): its vector as a float32
    array (empty when the read did not ask for vectors), its payload ({} when it did not ask for it)."""

    id: PointId
    vector: np.ndarray
    payload: Payload = field(default_factory=dict)


@dataclass(frozen=True)
class ScrollPage:
    """One page of a collection's points in id order, and where the next page starts (None: none left).

    Ordered by a payload field (`OrderBy`), `next_offset` is None and `order_values` holds each
    point's value of that field (a datetime as microseconds since the epoch), which is where the
    next page starts (`OrderBy.start_from`).
    """

    points: tuple[StoredPoint, ...]
    next_offset: PointId | None = None
    order_values: tuple[int | float, ...] = ()


@dataclass(frozen=True)
class OrderBy:
    """Order a scroll by a payload field with an integer, float or datetime index.

    `start_from` (inclusive) is where the page starts: a value of the field (a datetime as
    microseconds since the epoch, as `ScrollPage.order_values` gives it); None: the first.
    """

    key: str
    descending: bool = False
    start_from: int | float | None = None


@dataclass(frozen=True)
class ScoredPoint:
    """A search hit; `payload` is None unless the query asked for it."""

    id: PointId
    score: float
    payload: Payload | None = None


@dataclass(frozen=True)
class Range:
    """Bounds on a numeric field; unset bounds are open."""

    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None


@dataclass(frozen=True)
class FieldCondition:
    """A test on one payload field (`key`, dotted for nested objects). Exactly one test is set."""

    key: str
    keyword: str | None = None
    integer: int | None = None
    boolean: bool | None = None
    #: The field equals one of these keywords (or, for an array field, holds one of them).
    any_keyword: tuple[str, ...] | None = None
    range: Range | None = None

    #: Full-text match: the field holds every token of this text.
    text: str | None = None
    datetime_range: DatetimeRange | None = None
    values_count: ValuesCount | None = None

    def __post_init__(self) -> None:
        tests = (self.keyword, self.integer, self.boolean, self.any_keyword, self.range, self.text,
                 self.datetime_range, self.values_count)
        if sum(test is not None for test in tests) != 1:
            raise ValueError(f"FieldCondition({self.key!r}) needs exactly one of keyword, integer, boolean, "
                             "any_keyword, range, text, datetime_range, values_count")


@dataclass(frozen=True)
class DatetimeRange:
    """Bounds on a date-time field, as RFC 3339 strings (`rules.checked_filter` makes them UTC, `Z`)."""

    gt: str | None = None
    gte: str | None = None
    lt: str | None = None
    lte: str | None = None


@dataclass(frozen=True)
class ValuesCount:
    """Bounds on how many values a field holds (an array's length; 1 for a single value)."""

    gt: int | None = None
    gte: int | None = None
    lt: int | None = None
    lte: int | None = None


@dataclass(frozen=True)
class IsNull:
    """The field is null (present with the value null)."""

    key: str


@dataclass(frozen=True)
class IsEmpty:
    """The field is missing, null or an empty array."""

    key: str


@dataclass(frozen=True)
class HasId:
    """The point's id is one of these."""

    ids: tuple[PointId, ...]


@dataclass(frozen=True)
class Filter:
    """Every `must` holds, at least one `should` holds (when any are given), no `must_not` holds."""

    must: tuple[Condition, ...] = ()
    should: tuple[Condition, ...] = ()
    must_not: tuple[Condition, ...] = ()
    #: At least `min_should.min_count` of its conditions hold.
    min_should: MinShould | None = None


@dataclass(frozen=True)
class MinShould:
    """At least `min_count` of `conditions` hold."""

    conditions: tuple[Condition, ...]
    min_count: int


#: One clause of a filter; a Filter nests.
Condition: TypeAlias = FieldCondition | HasId | Filter | IsNull | IsEmpty


class SearchMode(enum.StrEnum):
    """The index a search ranks by."""

    #: Nearest neighbours of `vector` (the embedding of a text query, or a raw vector).
    DENSE = "dense"
    #: BM25 over the points' texts, for `text`.
    SPARSE = "sparse"
    #: The dense and the sparse ranked lists, fused by the engine.
    HYBRID = "hybrid"


class FusionMethod(enum.StrEnum):
    """How a hybrid search fuses its two ranked lists."""

    #: Reciprocal rank fusion: sum of 1 / (k + rank) over the lists; scores ignored.
    RRF = "rrf"
    #: Distribution-based score fusion: each list's scores normalised (mean ± 3 sd), then summed.
    DBSF = "dbsf"


#: RRF's customary k (Cormack et al.; Qdrant's default when none is given is 2).
DEFAULT_RRF_K = 60
#: The least each list contributes to a fusion when the query does not say.
MIN_PREFETCH_LIMIT = 100


@dataclass(frozen=True)
class Fusion:
    """A hybrid search's fusion: the method, RRF's k, and how many hits each list contributes (0: derived)."""

    method: FusionMethod = FusionMethod.RRF
    rrf_k: int = DEFAULT_RRF_K
    prefetch_limit: int = 0

    def prefetch_for(self, limit: int, offset: int) -> int:
        """How many hits each list contributes: `prefetch_limit`, or max(100, 2 × (offset + limit))."""
        return self.prefetch_limit or max(MIN_PREFETCH_LIMIT, 2 * (offset + limit))


@dataclass(frozen=True)
class QuantizationParams:
    """How a search uses a collection's quantized vectors (Qdrant's `QuantizationSearchParams`)."""

    #: Search the original vectors only, as if the collection were not quantized.
    ignore: bool = False
    #: Re-score the candidates found on quantized vectors with the originals (None: the engine's default).
    rescore: bool | None = None
    #: Fetch `oversampling × limit` candidates on quantized vectors before rescoring (None: 1).
    oversampling: float | None = None


@dataclass(frozen=True)
class SearchParams:
    """Per-query search knobs; the defaults are the engine's own behaviour."""

    #: Candidates the HNSW search keeps (higher: better recall, slower); None: the engine's default.
    hnsw_ef: int | None = None
    #: Score every point (no index): the true top-k, at full-scan cost.
    exact: bool = False
    quantization: QuantizationParams | None = None


@dataclass(frozen=True)
class SearchQuery:
    """A nearest-neighbour query: the `limit` best points after skipping `offset`, best first."""

    vector: Vector
    limit: int = 10
    offset: int = 0
    filter: Filter | None = None
    #: Only points scoring at least this (at most this, for the euclid and manhattan distances).
    score_threshold: float | None = None
    with_payload: bool = False
    #: Which index ranks; SPARSE and HYBRID need `text` and a collection with a BM25 config. A SPARSE
    #: query has no dense vector: `vector` is empty.
    mode: SearchMode = SearchMode.DENSE
    #: The query text BM25 scores (SPARSE, HYBRID); None for a dense query.
    text: str | None = None
    #: How HYBRID fuses its lists.
    fusion: Fusion = field(default_factory=Fusion)
    #: Search knobs (ef, exact, quantization); None: the engine's defaults.
    params: SearchParams | None = None


@dataclass(frozen=True)
class IndexBuild:
    """What one `optimize` did. Durations in seconds; zero where a backend has no such step (a Qdrant
    server indexes by itself, so there `optimize` builds nothing)."""

    #: Whether the engine changed anything (False: the collection was already optimal, or nothing to do).
    optimized: bool = False
    #: The whole call.
    seconds: float = 0.0
    #: The build proper (in a child process, for the embedded engine).
    build_seconds: float = 0.0
    #: How long writes to the collection waited: the copy before the build, and the swap after it.
    writes_paused_seconds: float = 0.0
    #: How long searches waited: the swap of the built shard for the serving one.
    searches_paused_seconds: float = 0.0
    #: Writes acknowledged during the build, replayed onto the built copy before the swap.
    replayed_writes: int = 0
