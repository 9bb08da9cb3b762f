from google.protobuf import struct_pb2 as _struct_pb2
from searchgw.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SearchMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SEARCH_MODE_UNSPECIFIED: _ClassVar[SearchMode]
    SEARCH_MODE_DENSE: _ClassVar[SearchMode]
    SEARCH_MODE_SPARSE: _ClassVar[SearchMode]
    SEARCH_MODE_HYBRID: _ClassVar[SearchMode]

class FusionMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FUSION_METHOD_UNSPECIFIED: _ClassVar[FusionMethod]
    FUSION_METHOD_RRF: _ClassVar[FusionMethod]
    FUSION_METHOD_DBSF: _ClassVar[FusionMethod]
SEARCH_MODE_UNSPECIFIED: SearchMode
SEARCH_MODE_DENSE: SearchMode
SEARCH_MODE_SPARSE: SearchMode
SEARCH_MODE_HYBRID: SearchMode
FUSION_METHOD_UNSPECIFIED: FusionMethod
FUSION_METHOD_RRF: FusionMethod
FUSION_METHOD_DBSF: FusionMethod

class SearchRequest(_message.Message):
    __slots__ = ("collection", "text", "vector", "limit", "routing_key", "filter", "score_threshold", "with_payload", "page_token", "mode", "fusion", "params")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    ROUTING_KEY_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    SCORE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    WITH_PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    FUSION_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    text: str
    vector: _common_pb2.Vector
    limit: int
    routing_key: str
    filter: _common_pb2.Filter
    score_threshold: float
    with_payload: bool
    page_token: str
    mode: SearchMode
    fusion: Fusion
    params: SearchParams
    def __init__(self, collection: _Optional[str] = ..., text: _Optional[str] = ..., vector: _Optional[_Union[_common_pb2.Vector, _Mapping]] = ..., limit: _Optional[int] = ..., routing_key: _Optional[str] = ..., filter: _Optional[_Union[_common_pb2.Filter, _Mapping]] = ..., score_threshold: _Optional[float] = ..., with_payload: _Optional[bool] = ..., page_token: _Optional[str] = ..., mode: _Optional[_Union[SearchMode, str]] = ..., fusion: _Optional[_Union[Fusion, _Mapping]] = ..., params: _Optional[_Union[SearchParams, _Mapping]] = ...) -> None: ...

class ScoredPoint(_message.Message):
    __slots__ = ("id", "score", "payload")
    ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    id: _common_pb2.PointId
    score: float
    payload: _struct_pb2.Struct
    def __init__(self, id: _Optional[_Union[_common_pb2.PointId, _Mapping]] = ..., score: _Optional[float] = ..., payload: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("points", "route", "next_page_token", "search_id")
    POINTS_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    SEARCH_ID_FIELD_NUMBER: _ClassVar[int]
    points: _containers.RepeatedCompositeFieldContainer[ScoredPoint]
    route: _common_pb2.Route
    next_page_token: str
    search_id: str
    def __init__(self, points: _Optional[_Iterable[_Union[ScoredPoint, _Mapping]]] = ..., route: _Optional[_Union[_common_pb2.Route, _Mapping]] = ..., next_page_token: _Optional[str] = ..., search_id: _Optional[str] = ...) -> None: ...

class PointInput(_message.Message):
    __slots__ = ("id", "text", "vector", "payload", "bm25_text")
    ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    BM25_TEXT_FIELD_NUMBER: _ClassVar[int]
    id: _common_pb2.PointId
    text: str
    vector: _common_pb2.Vector
    payload: _struct_pb2.Struct
    bm25_text: str
    def __init__(self, id: _Optional[_Union[_common_pb2.PointId, _Mapping]] = ..., text: _Optional[str] = ..., vector: _Optional[_Union[_common_pb2.Vector, _Mapping]] = ..., payload: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., bm25_text: _Optional[str] = ...) -> None: ...

class UpsertRequest(_message.Message):
    __slots__ = ("collection", "points")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    points: _containers.RepeatedCompositeFieldContainer[PointInput]
    def __init__(self, collection: _Optional[str] = ..., points: _Optional[_Iterable[_Union[PointInput, _Mapping]]] = ...) -> None: ...

class UpsertResponse(_message.Message):
    __slots__ = ("upserted", "collections")
    UPSERTED_FIELD_NUMBER: _ClassVar[int]
    COLLECTIONS_FIELD_NUMBER: _ClassVar[int]
    upserted: int
    collections: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, upserted: _Optional[int] = ..., collections: _Optional[_Iterable[str]] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("collection", "ids", "filter")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    collection: str
    ids: _common_pb2.PointIdList
    filter: _common_pb2.Filter
    def __init__(self, collection: _Optional[str] = ..., ids: _Optional[_Union[_common_pb2.PointIdList, _Mapping]] = ..., filter: _Optional[_Union[_common_pb2.Filter, _Mapping]] = ...) -> None: ...

class DeleteResponse(_message.Message):
    __slots__ = ("collections",)
    COLLECTIONS_FIELD_NUMBER: _ClassVar[int]
    collections: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, collections: _Optional[_Iterable[str]] = ...) -> None: ...

class CountPointsRequest(_message.Message):
    __slots__ = ("collection", "filter", "arm")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    ARM_FIELD_NUMBER: _ClassVar[int]
    collection: str
    filter: _common_pb2.Filter
    arm: _common_pb2.Arm
    def __init__(self, collection: _Optional[str] = ..., filter: _Optional[_Union[_common_pb2.Filter, _Mapping]] = ..., arm: _Optional[_Union[_common_pb2.Arm, str]] = ...) -> None: ...

class CountPointsResponse(_message.Message):
    __slots__ = ("count", "route")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    count: int
    route: _common_pb2.Route
    def __init__(self, count: _Optional[int] = ..., route: _Optional[_Union[_common_pb2.Route, _Mapping]] = ...) -> None: ...

class OrderBy(_message.Message):
    __slots__ = ("key", "direction")
    class Direction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        DIRECTION_UNSPECIFIED: _ClassVar[OrderBy.Direction]
        DIRECTION_ASC: _ClassVar[OrderBy.Direction]
        DIRECTION_DESC: _ClassVar[OrderBy.Direction]
    DIRECTION_UNSPECIFIED: OrderBy.Direction
    DIRECTION_ASC: OrderBy.Direction
    DIRECTION_DESC: OrderBy.Direction
    KEY_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    key: str
    direction: OrderBy.Direction
    def __init__(self, key: _Optional[str] = ..., direction: _Optional[_Union[OrderBy.Direction, str]] = ...) -> None: ...

class PointRecord(_message.Message):
    __slots__ = ("id", "payload", "vector")
    ID_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    id: _common_pb2.PointId
    payload: _struct_pb2.Struct
    vector: _common_pb2.Vector
    def __init__(self, id: _Optional[_Union[_common_pb2.PointId, _Mapping]] = ..., payload: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., vector: _Optional[_Union[_common_pb2.Vector, _Mapping]] = ...) -> None: ...

class ScrollPointsRequest(_message.Message):
    __slots__ = ("collection", "filter", "page_size", "page_token", "order_by", "with_payload", "with_vector", "arm")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_FIELD_NUMBER: _ClassVar[int]
    WITH_PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    WITH_VECTOR_FIELD_NUMBER: _ClassVar[int]
    ARM_FIELD_NUMBER: _ClassVar[int]
    collection: str
    filter: _common_pb2.Filter
    page_size: int
    page_token: str
    order_by: OrderBy
    with_payload: bool
    with_vector: bool
    arm: _common_pb2.Arm
    def __init__(self, collection: _Optional[str] = ..., filter: _Optional[_Union[_common_pb2.Filter, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., order_by: _Optional[_Union[OrderBy, _Mapping]] = ..., with_payload: _Optional[bool] = ..., with_vector: _Optional[bool] = ..., arm: _Optional[_Union[_common_pb2.Arm, str]] = ...) -> None: ...

class ScrollPointsResponse(_message.Message):
    __slots__ = ("points", "next_page_token", "route")
    POINTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    points: _containers.RepeatedCompositeFieldContainer[PointRecord]
    next_page_token: str
    route: _common_pb2.Route
    def __init__(self, points: _Optional[_Iterable[_Union[PointRecord, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., route: _Optional[_Union[_common_pb2.Route, _Mapping]] = ...) -> None: ...

class GetPointsRequest(_message.Message):
    __slots__ = ("collection", "ids", "with_payload", "with_vector", "arm")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    WITH_PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    WITH_VECTOR_FIELD_NUMBER: _ClassVar[int]
    ARM_FIELD_NUMBER: _ClassVar[int]
    collection: str
    ids: _containers.RepeatedCompositeFieldContainer[_common_pb2.PointId]
    with_payload: bool
    with_vector: bool
    arm: _common_pb2.Arm
    def __init__(self, collection: _Optional[str] = ..., ids: _Optional[_Iterable[_Union[_common_pb2.PointId, _Mapping]]] = ..., with_payload: _Optional[bool] = ..., with_vector: _Optional[bool] = ..., arm: _Optional[_Union[_common_pb2.Arm, str]] = ...) -> None: ...

class GetPointsResponse(_message.Message):
    __slots__ = ("points", "route")
    POINTS_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    points: _containers.RepeatedCompositeFieldContainer[PointRecord]
    route: _common_pb2.Route
    def __init__(self, points: _Optional[_Iterable[_Union[PointRecord, _Mapping]]] = ..., route: _Optional[_Union[_common_pb2.Route, _Mapping]] = ...) -> None: ...

class Fusion(_message.Message):
    __slots__ = ("method", "rrf_k", "prefetch_limit")
    METHOD_FIELD_NUMBER: _ClassVar[int]
    RRF_K_FIELD_NUMBER: _ClassVar[int]
    PREFETCH_LIMIT_FIELD_NUMBER: _ClassVar[int]
    method: FusionMethod
    rrf_k: int
    prefetch_limit: int
    def __init__(self, method: _Optional[_Union[FusionMethod, str]] = ..., rrf_k: _Optional[int] = ..., prefetch_limit: _Optional[int] = ...) -> None: ...

class SearchParams(_message.Message):
    __slots__ = ("hnsw_ef", "exact", "quantization")
    HNSW_EF_FIELD_NUMBER: _ClassVar[int]
    EXACT_FIELD_NUMBER: _ClassVar[int]
    QUANTIZATION_FIELD_NUMBER: _ClassVar[int]
    hnsw_ef: int
    exact: bool
    quantization: QuantizationSearchParams
    def __init__(self, hnsw_ef: _Optional[int] = ..., exact: _Optional[bool] = ..., quantization: _Optional[_Union[QuantizationSearchParams, _Mapping]] = ...) -> None: ...

class QuantizationSearchParams(_message.Message):
    __slots__ = ("ignore", "rescore", "oversampling")
    IGNORE_FIELD_NUMBER: _ClassVar[int]
    RESCORE_FIELD_NUMBER: _ClassVar[int]
    OVERSAMPLING_FIELD_NUMBER: _ClassVar[int]
    ignore: bool
    rescore: bool
    oversampling: float
    def __init__(self, ignore: _Optional[bool] = ..., rescore: _Optional[bool] = ..., oversampling: _Optional[float] = ...) -> None: ...
