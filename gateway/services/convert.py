"""Converters between searchgw.v1 messages and the gateway's domain types, in one place.

Each `*_from_proto` reads a request part into a domain value (shape only: the domain checks the
values and names the field when one is wrong); each `*_to_proto` writes a domain value into a
message. tests/gateway/test_convert.py round-trips every pair.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from google.protobuf import duration_pb2, struct_pb2, timestamp_pb2
from google.protobuf.json_format import MessageToDict

from searchgw.gateway.backends import (
    Bm25Config,
    Bm25Tokenizer,
    CollectionInfo,
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
    PayloadIndex,
    PayloadIndexType,
    PointId,
    Range,
    ScalarQuantization,
    ScoredPoint,
    SearchMode,
    SnapshotInfo,
    StoredPoint,
    TextIndexParams,
    Tokenizer,
    ValuesCount,
)
from searchgw.gateway.backends.types import IndexBuild, QuantizationParams, SearchParams
from searchgw.gateway.core import RouteInfo
from searchgw.gateway.embedding import ChunkingOptions
from searchgw.gateway.experiments import (
    CONTROL as EXPERIMENT_CONTROL,
    ArmCounts,
    ArmSpec,
    Experiment,
    ExperimentPolicy,
    ExperimentState,
    ExperimentVerdict,
    OutcomeStatus,
    VariantStatus,
)
from searchgw.gateway.rollout import (
    AnalysisPolicy,
    ArmStats,
    Decision,
    DecisionKind,
    OldCollectionAction,
    PromotionPolicy,
    Rollout,
    RolloutState,
    Stage,
    TestKind,
    TestOutcome,
    TestReport,
)
from searchgw.gateway.rollout.preparation import (
    BackfillProgress,
    CanaryOverrides,
    PreflightPolicy,
    PreflightResult,
)
from searchgw.gateway.rollout.quality import QualityPolicy, QualitySummary
from searchgw.gateway.routing import Arm
from searchgw.gateway.rules import MAX_FILTER_CONDITIONS, MAX_FILTER_DEPTH, FilterBudget  # noqa: F401 - the limits, here too
from searchgw.errors import InvalidArgument
from searchgw.v1 import collection_service_pb2 as coll_pb
from searchgw.v1 import common_pb2 as common_pb
from searchgw.v1 import experiment_service_pb2 as experiment_pb
from searchgw.v1 import rollout_service_pb2 as roll_pb
from searchgw.v1 import search_service_pb2 as search_pb

_MAX_SAFE_INTEGER = 2**53

# -- ids, payloads, durations ---------------------------------------------------------------


def point_id_from_proto(message: common_pb.PointId, field: str) -> PointId:
    kind = message.WhichOneof("kind")
    if kind == "num":
        return message.num
    if kind == "uuid":
        return message.uuid
    raise InvalidArgument(field, "set num or uuid")


def point_id_to_proto(value: PointId) -> common_pb.PointId:
    return common_pb.PointId(num=value) if isinstance(value, int) else common_pb.PointId(uuid=value)


def _plain(value: Any) -> Any:
    """Struct numbers are doubles: give whole numbers back as ints, so integer filters match them."""
    if isinstance(value, float) and value.is_integer() and abs(value) < _MAX_SAFE_INTEGER:
        return int(value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def payload_from_proto(message: struct_pb2.Struct, field: str = "payload") -> dict[str, Any]:
    try:
        return _plain(MessageToDict(message))
    except ValueError:  # JSON has no NaN or infinity
        raise InvalidArgument(field, "numbers must be finite (JSON has no NaN or infinity)") from None


def payload_to_proto(payload: dict[str, Any] | None) -> struct_pb2.Struct | None:
    if payload is None:
        return None
    message = struct_pb2.Struct()
    message.update(payload)
    return message


def duration_from_proto(message: duration_pb2.Duration) -> float:
    return message.seconds + message.nanos / 1e9


def duration_to_proto(seconds: float) -> duration_pb2.Duration:
    message = duration_pb2.Duration()
    message.FromNanoseconds(round(seconds * 1e9))
    return message


def timestamp_to_proto(epoch_seconds: float) -> timestamp_pb2.Timestamp:
    message = timestamp_pb2.Timestamp()
    message.FromNanoseconds(round(epoch_seconds * 1e9))
    return message


_FLOAT32_LE = np.dtype("<f4")  # the wire's floats; numpy's float32 on every platform we run on


def vector_from_proto(message: common_pb.Vector) -> np.ndarray:
    """A Vector's values as one (read-only) float32 array, read from its packed wire form in one copy
    (about half the cost of converting the repeated field value by value); any other encoding is
    converted the slow way."""
    raw = message.SerializeToString()
    if raw[:1] == b"\x0a":  # field 1, length-delimited: the packed floats
        size, start, shift = 0, 1, 0
        while start < len(raw) and start < 6:
            byte = raw[start]
            size |= (byte & 0x7F) << shift
            start += 1
            shift += 7
            if not byte & 0x80:
                break
        if start + size == len(raw) and size % 4 == 0:
            return np.frombuffer(raw, dtype=_FLOAT32_LE, offset=start, count=size // 4)
    return np.array(message.values, dtype=np.float32)


# -- filters ---------------------------------------------------------------------------------


class _FilterReader:
    """Builds the domain filter; the depth and size limits (the rules' `FilterBudget`) bound the recursion.
    The values are the rules' to check (`searchgw.gateway.rules.checked_filter`, in the core)."""

    def __init__(self) -> None:
        self._budget = FilterBudget()

    def filter(self, message: common_pb.Filter, field: str, depth: int) -> Filter:
        self._budget.enter(field, depth)
        min_should = None
        if message.HasField("min_should"):
            part = message.min_should
            min_should = MinShould(tuple(self.condition(c, f"{field}.min_should.conditions[{i}]", depth)
                                         for i, c in enumerate(part.conditions)), part.min_count)
        return Filter(
            must=tuple(self.condition(c, f"{field}.must[{i}]", depth) for i, c in enumerate(message.must)),
            should=tuple(self.condition(c, f"{field}.should[{i}]", depth) for i, c in enumerate(message.should)),
            must_not=tuple(self.condition(c, f"{field}.must_not[{i}]", depth)
                           for i, c in enumerate(message.must_not)),
            min_should=min_should,
        )

    def condition(self, message: common_pb.Condition, field: str, depth: int) -> Condition:
        self._budget.spend(field)
        kind = message.WhichOneof("condition")
        if kind == "filter":
            return self.filter(message.filter, f"{field}.filter", depth + 1)
        if kind == "has_id":
            return HasId(tuple(point_id_from_proto(p, f"{field}.has_id.ids[{i}]")
                               for i, p in enumerate(message.has_id.ids)))
        if kind == "field":
            return _field_condition(message.field, f"{field}.field")
        if kind == "is_null":
            return IsNull(message.is_null.key)
        if kind == "is_empty":
            return IsEmpty(message.is_empty.key)
        raise InvalidArgument(field, "set field, filter, has_id, is_null or is_empty")


def _bounds(message: Any) -> dict[str, Any]:
    """The set bounds of a range message (gt, gte, lt, lte)."""
    return {name: getattr(message, name) for name in ("gt", "gte", "lt", "lte") if message.HasField(name)}


def _field_condition(message: common_pb.FieldCondition, field: str) -> FieldCondition:
    match = message.WhichOneof("match")
    key = message.key
    if match == "keyword":
        return FieldCondition(key, keyword=message.keyword)
    if match == "integer":
        return FieldCondition(key, integer=message.integer)
    if match == "boolean":
        return FieldCondition(key, boolean=message.boolean)
    if match == "any_keyword":
        return FieldCondition(key, any_keyword=tuple(message.any_keyword.keywords))
    if match == "range":
        r = message.range
        bounds = {name: getattr(r, name) for name in ("gt", "gte", "lt", "lte") if r.HasField(name)}
        if not bounds:
            raise InvalidArgument(f"{field}.range", "set at least one bound")
        return FieldCondition(key, range=Range(**bounds))
    if match == "text":
        return FieldCondition(key, text=message.text)
    if match == "datetime_range":
        return FieldCondition(key, datetime_range=DatetimeRange(**_bounds(message.datetime_range)))
    if match == "values_count":
        return FieldCondition(key, values_count=ValuesCount(**_bounds(message.values_count)))
    raise InvalidArgument(field, "set keyword, integer, boolean, any_keyword, range, text, datetime_range or "
                                 "values_count")


def filter_from_proto(message: common_pb.Filter, field: str = "filter") -> Filter:
    return _FilterReader().filter(message, field, 1)


def index_build_to_proto(build: IndexBuild) -> coll_pb.IndexBuildReport:
    return coll_pb.IndexBuildReport(
        optimized=build.optimized, duration=duration_to_proto(build.seconds),
        build_duration=duration_to_proto(build.build_seconds), writes_paused=duration_to_proto(build.writes_paused_seconds),
        searches_paused=duration_to_proto(build.searches_paused_seconds), replayed_writes=build.replayed_writes)


def search_params_from_proto(message: search_pb.SearchParams) -> SearchParams:
    """SearchRequest.params: zero `hnsw_ef` and unset optionals mean the engine's defaults (limits are
    checked by `rules.checked_params`)."""
    quantization = None
    if message.HasField("quantization"):
        q = message.quantization
        quantization = QuantizationParams(ignore=q.ignore, rescore=q.rescore if q.HasField("rescore") else None,
                                          oversampling=q.oversampling if q.HasField("oversampling") else None)
    return SearchParams(hnsw_ef=message.hnsw_ef or None, exact=message.exact, quantization=quantization)


def _set_bounds(target: Any, bounds: Any) -> None:
    for name in ("gt", "gte", "lt", "lte"):
        bound = getattr(bounds, name)
        if bound is not None:
            setattr(target, name, bound)


def filter_to_proto(value: Filter) -> common_pb.Filter:
    def condition(c: Condition) -> common_pb.Condition:
        if isinstance(c, Filter):
            return common_pb.Condition(filter=filter_to_proto(c))
        if isinstance(c, HasId):
            return common_pb.Condition(has_id=common_pb.PointIdList(ids=[point_id_to_proto(i) for i in c.ids]))
        if isinstance(c, IsNull):
            return common_pb.Condition(is_null=common_pb.IsNullCondition(key=c.key))
        if isinstance(c, IsEmpty):
            return common_pb.Condition(is_empty=common_pb.IsEmptyCondition(key=c.key))
        out = common_pb.FieldCondition(key=c.key)
        if c.keyword is not None:
            out.keyword = c.keyword
        elif c.integer is not None:
            out.integer = c.integer
        elif c.boolean is not None:
            out.boolean = c.boolean
        elif c.any_keyword is not None:
            out.any_keyword.keywords.extend(c.any_keyword)
        elif c.range is not None:
            _set_bounds(out.range, c.range)
        elif c.text is not None:
            out.text = c.text
        elif c.datetime_range is not None:
            out.datetime_range.SetInParent()
            _set_bounds(out.datetime_range, c.datetime_range)
        elif c.values_count is not None:
            out.values_count.SetInParent()
            _set_bounds(out.values_count, c.values_count)
        return common_pb.Condition(field=out)

    message = common_pb.Filter(must=[condition(c) for c in value.must], should=[condition(c) for c in value.should],
                               must_not=[condition(c) for c in value.must_not])
    if value.min_should is not None:
        message.min_should.conditions.extend(condition(c) for c in value.min_should.conditions)
        message.min_should.min_count = value.min_should.min_count
    return message


# -- search results --------------------------------------------------------------------------

_ARM = {Arm.PRIMARY: common_pb.ARM_PRIMARY, Arm.CANARY: common_pb.ARM_CANARY}
_ARM_FROM_PROTO: dict[int, Arm | None] = {common_pb.ARM_UNSPECIFIED: None, **{v: k for k, v in _ARM.items()}}


def arm_from_proto(value: int, field: str = "arm") -> Arm | None:
    """The arm a request names (ARM_UNSPECIFIED: none); an unknown number is INVALID_ARGUMENT on `field`."""
    if value not in _ARM_FROM_PROTO:
        raise InvalidArgument(field, f"{value} is not a known arm")
    return _ARM_FROM_PROTO[value]


def scored_point_to_proto(point: ScoredPoint) -> search_pb.ScoredPoint:
    return search_pb.ScoredPoint(id=point_id_to_proto(point.id), score=point.score,
                                 payload=payload_to_proto(point.payload))


#: Integers up to this are exact as a protobuf Value's double.
_EXACT_DOUBLE = 2**53


def point_groups_to_proto(points: list[ScoredPoint]) -> list[search_pb.PointGroup]:
    """A grouped search's hits (group by group, each with its `group_id`) as groups, in order."""
    groups: list[search_pb.PointGroup] = []
    current: object = None
    for point in points:
        if not groups or point.group_id != current:
            current = point.group_id
            value = struct_pb2.Value()
            if isinstance(point.group_id, str):
                value.string_value = point.group_id
            elif point.group_id is not None and abs(point.group_id) > _EXACT_DOUBLE:
                value.string_value = str(point.group_id)  # a double would round it
            else:
                value.number_value = float(point.group_id or 0)
            groups.append(search_pb.PointGroup(id=value))
        groups[-1].hits.append(scored_point_to_proto(point))
    return groups


def chunking_from_proto(message: search_pb.Chunking) -> ChunkingOptions:
    return ChunkingOptions(max_tokens=message.max_tokens,
                           overlap_tokens=message.overlap_tokens if message.HasField("overlap_tokens") else None)


def stored_point_to_proto(point: StoredPoint, *, with_payload: bool, with_vector: bool) -> search_pb.PointRecord:
    """A point a read returns: its payload and vector when the request asked for them."""
    message = search_pb.PointRecord(id=point_id_to_proto(point.id))
    if with_payload:
        message.payload.update(point.payload)
    if with_vector:
        message.vector.values.extend(point.vector.tolist())
    return message


_DIRECTION_DESCENDING = {search_pb.OrderBy.DIRECTION_UNSPECIFIED: False, search_pb.OrderBy.DIRECTION_ASC: False,
                         search_pb.OrderBy.DIRECTION_DESC: True}


def order_by_from_proto(message: search_pb.OrderBy) -> OrderBy:
    if message.direction not in _DIRECTION_DESCENDING:
        raise InvalidArgument("order_by.direction", f"{message.direction} is not a known direction")
    return OrderBy(key=message.key, descending=_DIRECTION_DESCENDING[message.direction])


def order_by_to_proto(order_by: OrderBy) -> search_pb.OrderBy:
    return search_pb.OrderBy(key=order_by.key, direction=search_pb.OrderBy.DIRECTION_DESC if order_by.descending
                             else search_pb.OrderBy.DIRECTION_ASC)


def route_to_proto(route: RouteInfo) -> common_pb.Route:
    return common_pb.Route(arm=_ARM[route.arm], collection=route.collection, rollout=route.rollout,
                           fallback=route.fallback, experiment=route.experiment, variant=route.variant)


# -- collections -----------------------------------------------------------------------------

_DISTANCE = {
    coll_pb.DISTANCE_UNSPECIFIED: Distance.COSINE,
    coll_pb.DISTANCE_COSINE: Distance.COSINE,
    coll_pb.DISTANCE_DOT: Distance.DOT,
    coll_pb.DISTANCE_EUCLID: Distance.EUCLID,
    coll_pb.DISTANCE_MANHATTAN: Distance.MANHATTAN,
}
_DISTANCE_OUT = {Distance.COSINE: coll_pb.DISTANCE_COSINE, Distance.DOT: coll_pb.DISTANCE_DOT,
                 Distance.EUCLID: coll_pb.DISTANCE_EUCLID, Distance.MANHATTAN: coll_pb.DISTANCE_MANHATTAN}


def _scalar_quantization_from_proto(message: coll_pb.Collection) -> ScalarQuantization | None:
    if not message.HasField("scalar_quantization"):
        return None
    q = message.scalar_quantization
    return ScalarQuantization(quantile=round(q.quantile, 6) or 0.99, always_ram=q.always_ram)  # float32 on the wire


_INDEX_TYPE = {
    coll_pb.PAYLOAD_INDEX_TYPE_KEYWORD: PayloadIndexType.KEYWORD,
    coll_pb.PAYLOAD_INDEX_TYPE_INTEGER: PayloadIndexType.INTEGER,
    coll_pb.PAYLOAD_INDEX_TYPE_FLOAT: PayloadIndexType.FLOAT,
    coll_pb.PAYLOAD_INDEX_TYPE_BOOL: PayloadIndexType.BOOL,
    coll_pb.PAYLOAD_INDEX_TYPE_DATETIME: PayloadIndexType.DATETIME,
    coll_pb.PAYLOAD_INDEX_TYPE_UUID: PayloadIndexType.UUID,
    coll_pb.PAYLOAD_INDEX_TYPE_TEXT: PayloadIndexType.TEXT,
}
_INDEX_TYPE_OUT = {kind: number for number, kind in _INDEX_TYPE.items()}
_TOKENIZER = {
    coll_pb.TextIndexParams.TOKENIZER_UNSPECIFIED: Tokenizer.WORD,
    coll_pb.TextIndexParams.TOKENIZER_WORD: Tokenizer.WORD,
    coll_pb.TextIndexParams.TOKENIZER_WHITESPACE: Tokenizer.WHITESPACE,
    coll_pb.TextIndexParams.TOKENIZER_PREFIX: Tokenizer.PREFIX,
    coll_pb.TextIndexParams.TOKENIZER_MULTILINGUAL: Tokenizer.MULTILINGUAL,
}
_TOKENIZER_OUT = {Tokenizer.WORD: coll_pb.TextIndexParams.TOKENIZER_WORD,
                  Tokenizer.WHITESPACE: coll_pb.TextIndexParams.TOKENIZER_WHITESPACE,
                  Tokenizer.PREFIX: coll_pb.TextIndexParams.TOKENIZER_PREFIX,
                  Tokenizer.MULTILINGUAL: coll_pb.TextIndexParams.TOKENIZER_MULTILINGUAL}


def payload_index_from_proto(message: coll_pb.PayloadIndex, field: str = "index") -> PayloadIndex:
    """The index a request declares; its values are the rules' to check (`rules.checked_payload_index`)."""
    kind = _INDEX_TYPE.get(message.type)
    if kind is None:
        raise InvalidArgument(f"{field}.type", "set keyword, integer, float, bool, datetime, uuid or text")
    text = None
    if message.HasField("text"):
        params = message.text
        tokenizer = _TOKENIZER.get(params.tokenizer)
        if tokenizer is None:
            raise InvalidArgument(f"{field}.text.tokenizer", f"{params.tokenizer} is not a known tokenizer")
        text = TextIndexParams(tokenizer=tokenizer, lowercase=params.lowercase if params.HasField("lowercase")
                               else True, min_token_length=params.min_token_length,
                               max_token_length=params.max_token_length)
    return PayloadIndex(key=message.key, type=kind, text=text)


def payload_index_to_proto(index: PayloadIndex) -> coll_pb.PayloadIndex:
    message = coll_pb.PayloadIndex(key=index.key, type=_INDEX_TYPE_OUT[PayloadIndexType(index.type)])
    if index.text is not None:
        message.text.tokenizer = _TOKENIZER_OUT[Tokenizer(index.text.tokenizer)]
        message.text.lowercase = index.text.lowercase
        message.text.min_token_length = index.text.min_token_length
        message.text.max_token_length = index.text.max_token_length
    return message


def collection_spec_from_proto(message: coll_pb.Collection) -> CollectionSpec:
    if message.distance not in _DISTANCE:
        raise InvalidArgument("collection.distance", f"{message.distance} is not a known distance")
    quantization = _scalar_quantization_from_proto(message)
    return CollectionSpec(
        name=message.name, dimension=message.dimension, distance=_DISTANCE[message.distance],
        hnsw_m=message.hnsw.m, hnsw_ef_construct=message.hnsw.ef_construct,
        full_scan_threshold=message.hnsw.full_scan_threshold, scalar_quantization=quantization,
        embedding_model=message.embedding_model,
        payload_indexes=tuple(payload_index_from_proto(index, f"collection.payload_indexes[{i}]")
                              for i, index in enumerate(message.payload_indexes)),
        bm25=bm25_from_proto(message.bm25) if message.HasField("bm25") else None,
    )


_BM25_TOKENIZER = {coll_pb.BM25_TOKENIZER_UNSPECIFIED: Bm25Tokenizer.WORD, coll_pb.BM25_TOKENIZER_WORD: Bm25Tokenizer.WORD,
              coll_pb.BM25_TOKENIZER_WHITESPACE: Bm25Tokenizer.WHITESPACE,
              coll_pb.BM25_TOKENIZER_MULTILINGUAL: Bm25Tokenizer.MULTILINGUAL}
_BM25_TOKENIZER_OUT = {Bm25Tokenizer.WORD: coll_pb.BM25_TOKENIZER_WORD, Bm25Tokenizer.WHITESPACE: coll_pb.BM25_TOKENIZER_WHITESPACE,
                  Bm25Tokenizer.MULTILINGUAL: coll_pb.BM25_TOKENIZER_MULTILINGUAL}


def bm25_from_proto(message: coll_pb.Bm25Config, field: str = "collection.bm25") -> Bm25Config:
    """A BM25 config; zero k1 / avg_len and an empty language stay zero (the domain fills the defaults)."""
    if message.tokenizer not in _BM25_TOKENIZER:
        raise InvalidArgument(f"{field}.tokenizer", f"{message.tokenizer} is not a known tokenizer")
    return Bm25Config(k1=message.k1, b=message.b if message.HasField("b") else Bm25Config.b,
                      avg_len=message.avg_len, language=message.language, tokenizer=_BM25_TOKENIZER[message.tokenizer])


def bm25_to_proto(config: Bm25Config) -> coll_pb.Bm25Config:
    return coll_pb.Bm25Config(k1=config.k1, b=config.b, avg_len=config.avg_len, language=config.language,
                              tokenizer=_BM25_TOKENIZER_OUT[Bm25Tokenizer(config.tokenizer)])


_SEARCH_MODE = {search_pb.SEARCH_MODE_UNSPECIFIED: SearchMode.DENSE, search_pb.SEARCH_MODE_DENSE: SearchMode.DENSE,
                search_pb.SEARCH_MODE_SPARSE: SearchMode.SPARSE, search_pb.SEARCH_MODE_HYBRID: SearchMode.HYBRID}
_SEARCH_MODE_OUT = {SearchMode.DENSE: search_pb.SEARCH_MODE_DENSE, SearchMode.SPARSE: search_pb.SEARCH_MODE_SPARSE,
                    SearchMode.HYBRID: search_pb.SEARCH_MODE_HYBRID}
_FUSION_METHOD = {search_pb.FUSION_METHOD_UNSPECIFIED: FusionMethod.RRF, search_pb.FUSION_METHOD_RRF: FusionMethod.RRF,
                  search_pb.FUSION_METHOD_DBSF: FusionMethod.DBSF}
_FUSION_METHOD_OUT = {FusionMethod.RRF: search_pb.FUSION_METHOD_RRF, FusionMethod.DBSF: search_pb.FUSION_METHOD_DBSF}


def search_mode_from_proto(value: search_pb.SearchMode) -> SearchMode:
    if value not in _SEARCH_MODE:
        raise InvalidArgument("mode", f"{value} is not a known search mode")
    return _SEARCH_MODE[value]


def search_mode_to_proto(mode: SearchMode) -> search_pb.SearchMode:
    return _SEARCH_MODE_OUT[mode]


def fusion_from_proto(message: search_pb.Fusion) -> Fusion:
    """A fusion; a zero rrf_k stays zero (the domain fills the default)."""
    if message.method not in _FUSION_METHOD:
        raise InvalidArgument("fusion.method", f"{message.method} is not a known fusion method")
    return Fusion(method=_FUSION_METHOD[message.method], rrf_k=message.rrf_k, prefetch_limit=message.prefetch_limit)


def fusion_to_proto(fusion: Fusion) -> search_pb.Fusion:
    return search_pb.Fusion(method=_FUSION_METHOD_OUT[fusion.method], rrf_k=fusion.rrf_k,
                            prefetch_limit=fusion.prefetch_limit)


def collection_to_proto(info: CollectionInfo) -> coll_pb.Collection:
    spec = info.spec
    message = coll_pb.Collection(
        name=spec.name, dimension=spec.dimension, distance=_DISTANCE_OUT[Distance(spec.distance)],
        hnsw=coll_pb.HnswConfig(m=spec.hnsw_m, ef_construct=spec.hnsw_ef_construct,
                                full_scan_threshold=spec.full_scan_threshold),
        embedding_model=spec.embedding_model, points_count=info.points_count, aliases=list(info.aliases),
        payload_indexes=[payload_index_to_proto(index) for index in spec.payload_indexes],
    )
    if spec.scalar_quantization is not None:
        message.scalar_quantization.quantile = spec.scalar_quantization.quantile
        message.scalar_quantization.always_ram = spec.scalar_quantization.always_ram
    if spec.bm25 is not None:
        message.bm25.CopyFrom(bm25_to_proto(spec.bm25))
    return message


def snapshot_to_proto(info: SnapshotInfo) -> coll_pb.Snapshot:
    create_time = timestamp_pb2.Timestamp()
    create_time.FromMicroseconds(round(info.create_time * 1e6))  # exact: backends stamp in microseconds
    return coll_pb.Snapshot(name=info.name, collection=info.collection, size_bytes=info.size_bytes,
                            create_time=create_time, checksum=info.checksum)


def snapshot_from_proto(message: coll_pb.Snapshot) -> SnapshotInfo:
    return SnapshotInfo(name=message.name, collection=message.collection, size_bytes=message.size_bytes,
                        create_time=message.create_time.ToMicroseconds() / 1e6, checksum=message.checksum)


# -- rollouts --------------------------------------------------------------------------------

_STATE_OUT = {state: getattr(roll_pb.Rollout, f"STATE_{state.name}") for state in RolloutState}
_KIND_OUT = {kind: getattr(roll_pb.Decision, f"KIND_{kind.name}") for kind in DecisionKind}
_TEST_KIND_OUT = {kind: getattr(roll_pb.StatisticalTest, f"KIND_{kind.name}") for kind in TestKind}
_TEST_OUTCOME_OUT = {outcome: getattr(roll_pb.StatisticalTest, f"OUTCOME_{outcome.name}") for outcome in TestOutcome}


def analysis_from_proto(message: roll_pb.AnalysisPolicy) -> AnalysisPolicy:
    """Zero fields mean 'default' (AnalysisPolicy.with_defaults fills them)."""
    return AnalysisPolicy(
        interval_s=duration_from_proto(message.interval), window_s=duration_from_proto(message.window),
        error_codes=tuple(message.error_codes), max_error_rate=message.max_error_rate,
        max_error_rate_delta=message.max_error_rate_delta, max_latency_ratio=message.max_latency_ratio,
        latency_slack_s=duration_from_proto(message.latency_slack),
        min_requests_per_arm=message.min_requests_per_arm,
        max_consecutive_failures=message.max_consecutive_failures,
        max_total_failures=message.max_total_failures, latency_quantile=message.latency_quantile,
        error_alpha=message.error_alpha, latency_alpha=message.latency_alpha, guard_alpha=message.guard_alpha,
        sample_ratio_alpha=message.sample_ratio_alpha,
        latency_threshold_s=duration_from_proto(message.latency_threshold),
        quality=quality_policy_from_proto(message.quality),
    )


def quality_policy_from_proto(message: roll_pb.QualityPolicy) -> QualityPolicy:
    """Zero fields mean 'default' (QualityPolicy.with_defaults fills them; a zero sample rate is off)."""
    return QualityPolicy(shadow_sample_rate=message.shadow_sample_rate, k=message.k, min_overlap=message.min_overlap,
                         max_below_share=message.max_below_share, min_samples=message.min_samples,
                         alpha=message.alpha, rbo_p=message.rbo_p)


def quality_policy_to_proto(policy: QualityPolicy) -> roll_pb.QualityPolicy:
    return roll_pb.QualityPolicy(shadow_sample_rate=policy.shadow_sample_rate, k=policy.k,
                                 min_overlap=policy.min_overlap, max_below_share=policy.max_below_share,
                                 min_samples=policy.min_samples, alpha=policy.alpha, rbo_p=policy.rbo_p)


def quality_report_to_proto(summary: QualitySummary) -> roll_pb.QualityReport:
    return roll_pb.QualityReport(
        samples=summary.samples, below=summary.below, k=summary.k, min_overlap=summary.min_overlap,
        max_below_share=summary.max_below_share, min_samples=summary.min_samples,
        median_overlap=summary.median_overlap, mean_overlap=summary.mean_overlap, mean_rbo=summary.mean_rbo,
        e_value=summary.e_value, p_value=summary.p_value, rejected=summary.rejected,
        differing_ids=[roll_pb.DifferingId(id=item, count=count) for item, count in summary.differing_ids],
        summary=summary.summary)


def analysis_to_proto(policy: AnalysisPolicy) -> roll_pb.AnalysisPolicy:
    return roll_pb.AnalysisPolicy(
        interval=duration_to_proto(policy.interval_s), window=duration_to_proto(policy.window_s),
        error_codes=list(policy.error_codes), max_error_rate=policy.max_error_rate,
        max_error_rate_delta=policy.max_error_rate_delta, max_latency_ratio=policy.max_latency_ratio,
        latency_slack=duration_to_proto(policy.latency_slack_s), min_requests_per_arm=policy.min_requests_per_arm,
        max_consecutive_failures=policy.max_consecutive_failures, max_total_failures=policy.max_total_failures,
        latency_quantile=policy.latency_quantile, error_alpha=policy.error_alpha, latency_alpha=policy.latency_alpha,
        guard_alpha=policy.guard_alpha, sample_ratio_alpha=policy.sample_ratio_alpha,
        quality=quality_policy_to_proto(policy.quality),
        latency_threshold=duration_to_proto(policy.latency_threshold_s),
    )


_OLD_ACTION_OUT = {action: getattr(roll_pb.PromotionPolicy, f"OLD_COLLECTION_ACTION_{action.name}")
                   for action in OldCollectionAction}
_OLD_ACTION_IN = {number: action for action, number in _OLD_ACTION_OUT.items()}


def promotion_from_proto(message: roll_pb.PromotionPolicy) -> PromotionPolicy:
    """An unset duration means 'default'; a zero one means 'none' (no bake, no grace)."""
    action = _OLD_ACTION_IN.get(message.old_collection_action)
    if action is None:
        raise InvalidArgument("rollout.promotion.old_collection_action",
                              f"{message.old_collection_action} is not a known action (KEEP or DELETE)")
    return PromotionPolicy(
        bake_duration_s=duration_from_proto(message.bake_duration) if message.HasField("bake_duration") else None,
        grace_period_s=duration_from_proto(message.grace_period) if message.HasField("grace_period") else None,
        old_collection_action=action)


def promotion_to_proto(policy: PromotionPolicy) -> roll_pb.PromotionPolicy:
    message = roll_pb.PromotionPolicy(old_collection_action=_OLD_ACTION_OUT[policy.old_collection_action])
    if policy.bake_duration_s is not None:
        message.bake_duration.CopyFrom(duration_to_proto(policy.bake_duration_s))
    if policy.grace_period_s is not None:
        message.grace_period.CopyFrom(duration_to_proto(policy.grace_period_s))
    return message


def _time_or_none(seconds: float) -> Any:
    return timestamp_to_proto(seconds) if seconds else None


def rollout_from_proto(message: roll_pb.Rollout) -> Rollout:
    """The fields a client may set; output-only fields are ignored."""
    return Rollout(
        name=message.name, collection=message.collection, canary_collection=message.canary_collection,
        primary_collection=message.primary_collection,
        stages=tuple(Stage(weight_percent=s.weight_percent, min_duration_s=duration_from_proto(s.min_duration),
                           min_requests=s.min_requests, max_error_rate=s.max_error_rate) for s in message.stages),
        analysis=analysis_from_proto(message.analysis), auto_promote=message.auto_promote,
        preflight_policy=preflight_policy_from_proto(message.preflight_policy)
        if message.HasField("preflight_policy") else None,
        promotion=promotion_from_proto(message.promotion),
    )


def preflight_policy_from_proto(message: roll_pb.PreflightPolicy) -> PreflightPolicy:
    """Zero fields mean 'default' (PreflightPolicy.with_defaults fills them)."""
    return PreflightPolicy(k=message.k, sample_size=message.sample_size, min_overlap_at_k=message.min_overlap_at_k,
                           min_rbo=message.min_rbo, rbo_p=message.rbo_p, count_tolerance=message.count_tolerance)


def preflight_policy_to_proto(policy: PreflightPolicy) -> roll_pb.PreflightPolicy:
    return roll_pb.PreflightPolicy(k=policy.k, sample_size=policy.sample_size,
                                   min_overlap_at_k=policy.min_overlap_at_k, min_rbo=policy.min_rbo,
                                   rbo_p=policy.rbo_p, count_tolerance=policy.count_tolerance)


def preflight_result_to_proto(result: PreflightResult) -> roll_pb.PreflightResult:
    return roll_pb.PreflightResult(
        passed=result.passed, time=timestamp_to_proto(result.time), policy=preflight_policy_to_proto(result.policy),
        primary_count=result.primary_count, canary_count=result.canary_count, queries=result.queries,
        errors=result.errors, mean_overlap_at_k=result.mean_overlap_at_k, min_overlap_at_k=result.min_overlap_at_k,
        mean_rbo=result.mean_rbo, summary=result.summary)


def backfill_progress_to_proto(progress: BackfillProgress) -> roll_pb.BackfillProgress:
    return roll_pb.BackfillProgress(
        total=progress.total, copied=progress.copied, reembedded=progress.reembedded, failed=progress.failed,
        superseded=progress.superseded, done=progress.done, start_time=timestamp_to_proto(progress.start_time),
        update_time=timestamp_to_proto(progress.update_time), last_error=progress.last_error,
        batch_size=progress.batch_size)


def canary_overrides_from_proto(message: coll_pb.Collection) -> CanaryOverrides:
    """The fields of a Collection that override primary's spec; zero (unset) fields keep primary's."""
    if message.distance not in _DISTANCE:
        raise InvalidArgument("canary.distance", f"{message.distance} is not a known distance")
    quantization = _scalar_quantization_from_proto(message)
    return CanaryOverrides(
        dimension=message.dimension,
        distance=None if message.distance == coll_pb.DISTANCE_UNSPECIFIED else _DISTANCE[message.distance],
        hnsw_m=message.hnsw.m, hnsw_ef_construct=message.hnsw.ef_construct,
        full_scan_threshold=message.hnsw.full_scan_threshold, scalar_quantization=quantization,
        embedding_model=message.embedding_model,
        bm25=bm25_from_proto(message.bm25, "canary.bm25") if message.HasField("bm25") else None)


def arm_stats_to_proto(stats: ArmStats | None) -> roll_pb.ArmStats | None:
    if stats is None:
        return None
    message = roll_pb.ArmStats(requests=stats.requests, errors=stats.errors, error_rate=stats.error_rate)
    if stats.latency_s is not None:
        message.latency_seconds = stats.latency_s
    return message


def _or_nan(value: float | None) -> float:
    return math.nan if value is None else value


def test_report_to_proto(test: TestReport) -> roll_pb.StatisticalTest:
    return roll_pb.StatisticalTest(
        kind=_TEST_KIND_OUT[test.kind], outcome=_TEST_OUTCOME_OUT[test.outcome], alpha=test.alpha,
        canary_events=test.canary_events, canary_calls=test.canary_calls, primary_events=test.primary_events,
        primary_calls=test.primary_calls, estimate=_or_nan(test.estimate), lower=_or_nan(test.lower),
        upper=_or_nan(test.upper), null_value=_or_nan(test.null_value), e_value=test.e_value, p_value=test.p_value,
        threshold=duration_to_proto(test.threshold_s), summary=test.summary,
    )


def decision_to_proto(decision: Decision) -> roll_pb.Decision:
    return roll_pb.Decision(
        time=timestamp_to_proto(decision.time), kind=_KIND_OUT[decision.kind], reason=decision.reason,
        stage=decision.stage, weight_percent=decision.weight_percent, primary=arm_stats_to_proto(decision.primary),
        canary=arm_stats_to_proto(decision.canary), actor=decision.actor,
        tests=[test_report_to_proto(test) for test in decision.tests], repeats=decision.repeats,
        first_time=timestamp_to_proto(decision.first_time or decision.time),
    )


def rollout_to_proto(rollout: Rollout, *, with_decisions: bool = True) -> roll_pb.Rollout:
    return roll_pb.Rollout(
        name=rollout.name, collection=rollout.collection, primary_collection=rollout.primary_collection,
        canary_collection=rollout.canary_collection,
        stages=[roll_pb.Stage(weight_percent=s.weight_percent, min_duration=duration_to_proto(s.min_duration_s),
                              min_requests=s.min_requests, max_error_rate=s.max_error_rate) for s in rollout.stages],
        analysis=analysis_to_proto(rollout.analysis), auto_promote=rollout.auto_promote,
        state=_STATE_OUT[rollout.state], current_stage=rollout.current_stage, weight_percent=rollout.weight_percent,
        decisions=[decision_to_proto(d) for d in rollout.decisions] if with_decisions else [],
        create_time=timestamp_to_proto(rollout.create_time), update_time=timestamp_to_proto(rollout.update_time),
        stage_elapsed=duration_to_proto(rollout.stage_elapsed_s),
        consecutive_failures=rollout.consecutive_failures, total_failures=rollout.total_failures,
        backfill=None if rollout.backfill is None else backfill_progress_to_proto(rollout.backfill),
        preflight=None if rollout.preflight is None else preflight_result_to_proto(rollout.preflight),
        preflight_policy=None if rollout.preflight_policy is None
        else preflight_policy_to_proto(rollout.preflight_policy),
        promotion=promotion_to_proto(rollout.promotion), bake_start_time=_time_or_none(rollout.bake_start_time),
        bake_end_time=_time_or_none(rollout.bake_end_time),
        old_collection_time=_time_or_none(rollout.old_collection_time),
        quality=None if rollout.quality is None else quality_report_to_proto(rollout.quality),
    )


# -- experiments (ExperimentService) ----------------------------------------------------------------


def experiment_from_proto(message: experiment_pb.Experiment) -> Experiment:
    """A new experiment's spec (output-only fields ignored; defaults filled in by the manager)."""
    policy = message.policy
    return Experiment(
        name=message.name, collection=message.collection,
        control=ArmSpec(EXPERIMENT_CONTROL, message.control_collection, message.control_split_bps),
        variants=tuple(ArmSpec(v.name, v.collection, v.split_bps) for v in message.variants),
        policy=ExperimentPolicy(
            alpha=policy.alpha, goal=policy.goal, outcome_kinds=tuple(policy.outcome_kinds),
            latency_threshold_s=duration_from_proto(policy.latency_threshold) if policy.HasField(
                "latency_threshold") else 0.0,
            interval_s=duration_from_proto(policy.interval) if policy.HasField("interval") else 0.0,
            quality=quality_policy_from_proto(policy.quality), quality_guard=policy.quality_guard))


_EXPERIMENT_STATE: dict[ExperimentState, Any] = {
    state: experiment_pb.Experiment.State.Value(f"STATE_{state.name}") for state in ExperimentState}
_VARIANT_STATUS: dict[VariantStatus, Any] = {
    status: experiment_pb.VariantVerdict.Status.Value(f"STATUS_{status.name}") for status in VariantStatus}
_OUTCOME_STATUS: dict[OutcomeStatus, Any] = {
    status: experiment_pb.OutcomeResult.Status.Value(f"STATUS_{status.name}") for status in OutcomeStatus}


def _finite_or_zero(value: float) -> float:
    return value if math.isfinite(value) else 0.0


def _bound(value: float) -> float:
    return value if not math.isnan(value) else 0.0


def experiment_to_proto(experiment: Experiment, verdict: ExperimentVerdict | None = None, *,
                        with_decisions: bool = True) -> experiment_pb.Experiment:
    policy = experiment.policy
    message = experiment_pb.Experiment(
        name=experiment.name, collection=experiment.collection, control_collection=experiment.control.collection,
        control_split_bps=experiment.control.split_bps,
        variants=[experiment_pb.ExperimentArm(name=v.name, collection=v.collection, split_bps=v.split_bps)
                  for v in experiment.variants],
        policy=experiment_pb.ExperimentPolicy(
            alpha=policy.alpha, goal=policy.goal, outcome_kinds=list(policy.outcome_kinds),
            latency_threshold=duration_to_proto(policy.latency_threshold_s),
            interval=duration_to_proto(policy.interval_s), quality=quality_policy_to_proto(policy.quality),
            quality_guard=policy.quality_guard),
        state=_EXPERIMENT_STATE[experiment.state], winner=experiment.winner, summary=experiment.summary,
        concluded_arm=experiment.concluded_arm, promoted=experiment.promoted,
        create_time=timestamp_to_proto(experiment.create_time), update_time=timestamp_to_proto(experiment.update_time))
    if experiment.start_time:
        message.start_time.CopyFrom(timestamp_to_proto(experiment.start_time))
    if experiment.end_time:
        message.end_time.CopyFrom(timestamp_to_proto(experiment.end_time))
    for arm in experiment.arms:
        counts = experiment.counts.get(arm.name, ArmCounts())
        message.arms.append(experiment_pb.ArmResult(
            arm=arm.name, collection=arm.collection, searches=counts.searches, errors=counts.errors,
            slow=counts.slow, mean_latency=duration_to_proto(_finite_or_zero(counts.mean_latency_s)),
            outcomes=[experiment_pb.OutcomeCount(kind=kind, count=totals.count, value_sum=totals.value_sum,
                                                 rate=_finite_or_zero(counts.outcome_rate(kind)))
                      for kind, totals in sorted(counts.outcomes.items())]))
    if verdict is not None:
        for variant in verdict.variants:
            message.verdicts.append(experiment_pb.VariantVerdict(
                arm=variant.variant, status=_VARIANT_STATUS[variant.status],
                tests=[experiment_pb.ComparisonTest(
                    name=c.comparison.value, e_value=_bound(c.result.e_value), p_value=_bound(c.result.p_value),
                    rejected=c.result.rejected, estimate=c.result.estimate, lower=c.result.lower,
                    upper=c.result.upper, alpha=c.alpha) for c in variant.comparisons],
                veto=verdict.vetoes.get(variant.variant, "")))
            quality = verdict.quality.get(variant.variant)
            if quality is not None:
                message.verdicts[-1].quality.CopyFrom(quality_report_to_proto(quality))
    if with_decisions:
        message.decisions.extend(experiment_pb.ExperimentDecision(
            time=timestamp_to_proto(d.time), kind=d.kind, reason=d.reason, actor=d.actor)
            for d in experiment.decisions)
    return message


def outcomes_from_proto(outcomes: Iterable[experiment_pb.Outcome]) -> list[tuple[str, str, float]]:
    return [(o.search_id, o.kind, o.value) for o in outcomes]


def outcome_status_to_proto(status: OutcomeStatus) -> experiment_pb.OutcomeResult:
    return experiment_pb.OutcomeResult(status=_OUTCOME_STATUS[status])
