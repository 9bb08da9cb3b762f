import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Distance(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DISTANCE_UNSPECIFIED: _ClassVar[Distance]
    DISTANCE_COSINE: _ClassVar[Distance]
    DISTANCE_DOT: _ClassVar[Distance]
    DISTANCE_EUCLID: _ClassVar[Distance]
    DISTANCE_MANHATTAN: _ClassVar[Distance]

class PayloadIndexType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PAYLOAD_INDEX_TYPE_UNSPECIFIED: _ClassVar[PayloadIndexType]
    PAYLOAD_INDEX_TYPE_KEYWORD: _ClassVar[PayloadIndexType]
    PAYLOAD_INDEX_TYPE_INTEGER: _ClassVar[PayloadIndexType]
    PAYLOAD_INDEX_TYPE_FLOAT: _ClassVar[PayloadIndexType]
    PAYLOAD_INDEX_TYPE_BOOL: _ClassVar[PayloadIndexType]
    PAYLOAD_INDEX_TYPE_DATETIME: _ClassVar[PayloadIndexType]
    PAYLOAD_INDEX_TYPE_UUID: _ClassVar[PayloadIndexType]
    PAYLOAD_INDEX_TYPE_TEXT: _ClassVar[PayloadIndexType]

class Bm25Tokenizer(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BM25_TOKENIZER_UNSPECIFIED: _ClassVar[Bm25Tokenizer]
    BM25_TOKENIZER_WORD: _ClassVar[Bm25Tokenizer]
    BM25_TOKENIZER_WHITESPACE: _ClassVar[Bm25Tokenizer]
    BM25_TOKENIZER_MULTILINGUAL: _ClassVar[Bm25Tokenizer]
DISTANCE_UNSPECIFIED: Distance
DISTANCE_COSINE: Distance
DISTANCE_DOT: Distance
DISTANCE_EUCLID: Distance
DISTANCE_MANHATTAN: Distance
PAYLOAD_INDEX_TYPE_UNSPECIFIED: PayloadIndexType
PAYLOAD_INDEX_TYPE_KEYWORD: PayloadIndexType
PAYLOAD_INDEX_TYPE_INTEGER: PayloadIndexType
PAYLOAD_INDEX_TYPE_FLOAT: PayloadIndexType
PAYLOAD_INDEX_TYPE_BOOL: PayloadIndexType
PAYLOAD_INDEX_TYPE_DATETIME: PayloadIndexType
PAYLOAD_INDEX_TYPE_UUID: PayloadIndexType
PAYLOAD_INDEX_TYPE_TEXT: PayloadIndexType
BM25_TOKENIZER_UNSPECIFIED: Bm25Tokenizer
BM25_TOKENIZER_WORD: Bm25Tokenizer
BM25_TOKENIZER_WHITESPACE: Bm25Tokenizer
BM25_TOKENIZER_MULTILINGUAL: Bm25Tokenizer

class HnswConfig(_message.Message):
    __slots__ = ("m", "ef_construct", "full_scan_threshold")
    M_FIELD_NUMBER: _ClassVar[int]
    EF_CONSTRUCT_FIELD_NUMBER: _ClassVar[int]
    FULL_SCAN_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    m: int
    ef_construct: int
    full_scan_threshold: int
    def __init__(self, m: _Optional[int] = ..., ef_construct: _Optional[int] = ..., full_scan_threshold: _Optional[int] = ...) -> None: ...

class ScalarQuantization(_message.Message):
    __slots__ = ("quantile", "always_ram")
    QUANTILE_FIELD_NUMBER: _ClassVar[int]
    ALWAYS_RAM_FIELD_NUMBER: _ClassVar[int]
    quantile: float
    always_ram: bool
    def __init__(self, quantile: _Optional[float] = ..., always_ram: _Optional[bool] = ...) -> None: ...

class Collection(_message.Message):
    __slots__ = ("name", "dimension", "distance", "hnsw", "scalar_quantization", "embedding_model", "points_count", "aliases", "payload_indexes", "bm25")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_FIELD_NUMBER: _ClassVar[int]
    HNSW_FIELD_NUMBER: _ClassVar[int]
    SCALAR_QUANTIZATION_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_MODEL_FIELD_NUMBER: _ClassVar[int]
    POINTS_COUNT_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_INDEXES_FIELD_NUMBER: _ClassVar[int]
    BM25_FIELD_NUMBER: _ClassVar[int]
    name: str
    dimension: int
    distance: Distance
    hnsw: HnswConfig
    scalar_quantization: ScalarQuantization
    embedding_model: str
    points_count: int
    aliases: _containers.RepeatedScalarFieldContainer[str]
    payload_indexes: _containers.RepeatedCompositeFieldContainer[PayloadIndex]
    bm25: Bm25Config
    def __init__(self, name: _Optional[str] = ..., dimension: _Optional[int] = ..., distance: _Optional[_Union[Distance, str]] = ..., hnsw: _Optional[_Union[HnswConfig, _Mapping]] = ..., scalar_quantization: _Optional[_Union[ScalarQuantization, _Mapping]] = ..., embedding_model: _Optional[str] = ..., points_count: _Optional[int] = ..., aliases: _Optional[_Iterable[str]] = ..., payload_indexes: _Optional[_Iterable[_Union[PayloadIndex, _Mapping]]] = ..., bm25: _Optional[_Union[Bm25Config, _Mapping]] = ...) -> None: ...

class CreateCollectionRequest(_message.Message):
    __slots__ = ("collection",)
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    collection: Collection
    def __init__(self, collection: _Optional[_Union[Collection, _Mapping]] = ...) -> None: ...

class CreateCollectionResponse(_message.Message):
    __slots__ = ("collection",)
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    collection: Collection
    def __init__(self, collection: _Optional[_Union[Collection, _Mapping]] = ...) -> None: ...

class GetCollectionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetCollectionResponse(_message.Message):
    __slots__ = ("collection",)
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    collection: Collection
    def __init__(self, collection: _Optional[_Union[Collection, _Mapping]] = ...) -> None: ...

class ListCollectionsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListCollectionsResponse(_message.Message):
    __slots__ = ("collections", "next_page_token")
    COLLECTIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    collections: _containers.RepeatedCompositeFieldContainer[Collection]
    next_page_token: str
    def __init__(self, collections: _Optional[_Iterable[_Union[Collection, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteCollectionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteCollectionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class UpdateAliasRequest(_message.Message):
    __slots__ = ("alias", "collection")
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    alias: str
    collection: str
    def __init__(self, alias: _Optional[str] = ..., collection: _Optional[str] = ...) -> None: ...

class UpdateAliasResponse(_message.Message):
    __slots__ = ("previous_collection",)
    PREVIOUS_COLLECTION_FIELD_NUMBER: _ClassVar[int]
    previous_collection: str
    def __init__(self, previous_collection: _Optional[str] = ...) -> None: ...

class DeleteAliasRequest(_message.Message):
    __slots__ = ("alias",)
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    alias: str
    def __init__(self, alias: _Optional[str] = ...) -> None: ...

class DeleteAliasResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListAliasesRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class Alias(_message.Message):
    __slots__ = ("alias", "collection")
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    alias: str
    collection: str
    def __init__(self, alias: _Optional[str] = ..., collection: _Optional[str] = ...) -> None: ...

class ListAliasesResponse(_message.Message):
    __slots__ = ("aliases", "next_page_token")
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    aliases: _containers.RepeatedCompositeFieldContainer[Alias]
    next_page_token: str
    def __init__(self, aliases: _Optional[_Iterable[_Union[Alias, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class OptimizeCollectionRequest(_message.Message):
    __slots__ = ("name", "background")
    NAME_FIELD_NUMBER: _ClassVar[int]
    BACKGROUND_FIELD_NUMBER: _ClassVar[int]
    name: str
    background: bool
    def __init__(self, name: _Optional[str] = ..., background: _Optional[bool] = ...) -> None: ...

class OptimizeCollectionResponse(_message.Message):
    __slots__ = ("collection", "build")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    BUILD_FIELD_NUMBER: _ClassVar[int]
    collection: Collection
    build: IndexBuildReport
    def __init__(self, collection: _Optional[_Union[Collection, _Mapping]] = ..., build: _Optional[_Union[IndexBuildReport, _Mapping]] = ...) -> None: ...

class Snapshot(_message.Message):
    __slots__ = ("name", "collection", "size_bytes", "create_time", "checksum")
    NAME_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    CHECKSUM_FIELD_NUMBER: _ClassVar[int]
    name: str
    collection: str
    size_bytes: int
    create_time: _timestamp_pb2.Timestamp
    checksum: str
    def __init__(self, name: _Optional[str] = ..., collection: _Optional[str] = ..., size_bytes: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., checksum: _Optional[str] = ...) -> None: ...

class CreateSnapshotRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class CreateSnapshotResponse(_message.Message):
    __slots__ = ("snapshot",)
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    snapshot: Snapshot
    def __init__(self, snapshot: _Optional[_Union[Snapshot, _Mapping]] = ...) -> None: ...

class ListSnapshotsRequest(_message.Message):
    __slots__ = ("collection", "page_size", "page_token")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    collection: str
    page_size: int
    page_token: str
    def __init__(self, collection: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListSnapshotsResponse(_message.Message):
    __slots__ = ("snapshots", "next_page_token")
    SNAPSHOTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    snapshots: _containers.RepeatedCompositeFieldContainer[Snapshot]
    next_page_token: str
    def __init__(self, snapshots: _Optional[_Iterable[_Union[Snapshot, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class RestoreSnapshotRequest(_message.Message):
    __slots__ = ("snapshot", "collection")
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    snapshot: str
    collection: str
    def __init__(self, snapshot: _Optional[str] = ..., collection: _Optional[str] = ...) -> None: ...

class RestoreSnapshotResponse(_message.Message):
    __slots__ = ("collection",)
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    collection: Collection
    def __init__(self, collection: _Optional[_Union[Collection, _Mapping]] = ...) -> None: ...

class DeleteSnapshotRequest(_message.Message):
    __slots__ = ("collection", "snapshot")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    collection: str
    snapshot: str
    def __init__(self, collection: _Optional[str] = ..., snapshot: _Optional[str] = ...) -> None: ...

class DeleteSnapshotResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PruneSnapshotsRequest(_message.Message):
    __slots__ = ("collection", "keep_last", "max_age")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    KEEP_LAST_FIELD_NUMBER: _ClassVar[int]
    MAX_AGE_FIELD_NUMBER: _ClassVar[int]
    collection: str
    keep_last: int
    max_age: _duration_pb2.Duration
    def __init__(self, collection: _Optional[str] = ..., keep_last: _Optional[int] = ..., max_age: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class PruneSnapshotsResponse(_message.Message):
    __slots__ = ("deleted", "kept")
    DELETED_FIELD_NUMBER: _ClassVar[int]
    KEPT_FIELD_NUMBER: _ClassVar[int]
    deleted: _containers.RepeatedCompositeFieldContainer[Snapshot]
    kept: _containers.RepeatedCompositeFieldContainer[Snapshot]
    def __init__(self, deleted: _Optional[_Iterable[_Union[Snapshot, _Mapping]]] = ..., kept: _Optional[_Iterable[_Union[Snapshot, _Mapping]]] = ...) -> None: ...

class TextIndexParams(_message.Message):
    __slots__ = ("tokenizer", "lowercase", "min_token_length", "max_token_length")
    class Tokenizer(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        TOKENIZER_UNSPECIFIED: _ClassVar[TextIndexParams.Tokenizer]
        TOKENIZER_WORD: _ClassVar[TextIndexParams.Tokenizer]
        TOKENIZER_WHITESPACE: _ClassVar[TextIndexParams.Tokenizer]
        TOKENIZER_PREFIX: _ClassVar[TextIndexParams.Tokenizer]
        TOKENIZER_MULTILINGUAL: _ClassVar[TextIndexParams.Tokenizer]
    TOKENIZER_UNSPECIFIED: TextIndexParams.Tokenizer
    TOKENIZER_WORD: TextIndexParams.Tokenizer
    TOKENIZER_WHITESPACE: TextIndexParams.Tokenizer
    TOKENIZER_PREFIX: TextIndexParams.Tokenizer
    TOKENIZER_MULTILINGUAL: TextIndexParams.Tokenizer
    TOKENIZER_FIELD_NUMBER: _ClassVar[int]
    LOWERCASE_FIELD_NUMBER: _ClassVar[int]
    MIN_TOKEN_LENGTH_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKEN_LENGTH_FIELD_NUMBER: _ClassVar[int]
    tokenizer: TextIndexParams.Tokenizer
    lowercase: bool
    min_token_length: int
    max_token_length: int
    def __init__(self, tokenizer: _Optional[_Union[TextIndexParams.Tokenizer, str]] = ..., lowercase: _Optional[bool] = ..., min_token_length: _Optional[int] = ..., max_token_length: _Optional[int] = ...) -> None: ...

class PayloadIndex(_message.Message):
    __slots__ = ("key", "type", "text")
    KEY_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    key: str
    type: PayloadIndexType
    text: TextIndexParams
    def __init__(self, key: _Optional[str] = ..., type: _Optional[_Union[PayloadIndexType, str]] = ..., text: _Optional[_Union[TextIndexParams, _Mapping]] = ...) -> None: ...

class CreatePayloadIndexRequest(_message.Message):
    __slots__ = ("collection", "index")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    collection: str
    index: PayloadIndex
    def __init__(self, collection: _Optional[str] = ..., index: _Optional[_Union[PayloadIndex, _Mapping]] = ...) -> None: ...

class CreatePayloadIndexResponse(_message.Message):
    __slots__ = ("collection",)
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    collection: Collection
    def __init__(self, collection: _Optional[_Union[Collection, _Mapping]] = ...) -> None: ...

class DeletePayloadIndexRequest(_message.Message):
    __slots__ = ("collection", "key")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    collection: str
    key: str
    def __init__(self, collection: _Optional[str] = ..., key: _Optional[str] = ...) -> None: ...

class DeletePayloadIndexResponse(_message.Message):
    __slots__ = ("collection",)
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    collection: Collection
    def __init__(self, collection: _Optional[_Union[Collection, _Mapping]] = ...) -> None: ...

class Bm25Config(_message.Message):
    __slots__ = ("k1", "b", "avg_len", "language", "tokenizer")
    K1_FIELD_NUMBER: _ClassVar[int]
    B_FIELD_NUMBER: _ClassVar[int]
    AVG_LEN_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    TOKENIZER_FIELD_NUMBER: _ClassVar[int]
    k1: float
    b: float
    avg_len: float
    language: str
    tokenizer: Bm25Tokenizer
    def __init__(self, k1: _Optional[float] = ..., b: _Optional[float] = ..., avg_len: _Optional[float] = ..., language: _Optional[str] = ..., tokenizer: _Optional[_Union[Bm25Tokenizer, str]] = ...) -> None: ...

class IndexBuildReport(_message.Message):
    __slots__ = ("optimized", "duration", "build_duration", "writes_paused", "searches_paused", "replayed_writes")
    OPTIMIZED_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    BUILD_DURATION_FIELD_NUMBER: _ClassVar[int]
    WRITES_PAUSED_FIELD_NUMBER: _ClassVar[int]
    SEARCHES_PAUSED_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_WRITES_FIELD_NUMBER: _ClassVar[int]
    optimized: bool
    duration: _duration_pb2.Duration
    build_duration: _duration_pb2.Duration
    writes_paused: _duration_pb2.Duration
    searches_paused: _duration_pb2.Duration
    replayed_writes: int
    def __init__(self, optimized: _Optional[bool] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., build_duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., writes_paused: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., searches_paused: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., replayed_writes: _Optional[int] = ...) -> None: ...
