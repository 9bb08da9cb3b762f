"""Qdrant's gRPC messages ⇄ qdrant-edge values, written for this test server (no qdrant-client helpers).

Each converter raises `QdrantStatus` for what Qdrant would refuse (INVALID_ARGUMENT) and for what this
server does not implement (UNIMPLEMENTED, naming the field), so a request it cannot answer honestly is
never answered approximately.
"""

from __future__ import annotations

import math
import uuid
from typing import Any

import grpc
import numpy as np
import qdrant_edge as qe
from google.protobuf.message import Message
from qdrant_client.grpc import json_with_int_pb2, points_pb2, qdrant_common_pb2

#: JSON as Python holds it (the payload of a point, the metadata of a collection).
JsonValue = None | bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"]


class QdrantStatus(Exception):
    """A request refused with a gRPC status, as Qdrant would refuse it."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def invalid(message: str) -> QdrantStatus:
    """Qdrant's BadInput: INVALID_ARGUMENT, its message prefixed as Qdrant prefixes it."""
    return QdrantStatus(grpc.StatusCode.INVALID_ARGUMENT, f"Wrong input: {message}")


def not_found(message: str) -> QdrantStatus:
    """Qdrant's NotFound: NOT_FOUND."""
    return QdrantStatus(grpc.StatusCode.NOT_FOUND, f"Not found: {message}")


def unimplemented(what: str) -> QdrantStatus:
    """Something Qdrant supports and this test double does not."""
    return QdrantStatus(grpc.StatusCode.UNIMPLEMENTED, f"the Qdrant test server does not implement {what}")


def refuse_set_fields(message: Message, supported: set[str], where: str) -> None:
    """UNIMPLEMENTED when `message` sets a field outside `supported` (scalars at their zero value count as unset)."""
    for descriptor, _ in message.ListFields():
        if descriptor.name not in supported:
            raise unimplemented(f"{where}.{descriptor.name}")


# -- JSON values (json_with_int.proto) ---------------------------------------------------------------
def value_to_python(value: json_with_int_pb2.Value) -> JsonValue:
    kind = value.WhichOneof("kind")
    if kind is None or kind == "null_value":
        return None
    if kind == "struct_value":
        return {key: value_to_python(item) for key, item in value.struct_value.fields.items()}
    if kind == "list_value":
        return [value_to_python(item) for item in value.list_value.values]
    return getattr(value, kind)  # double_value, integer_value, string_value, bool_value


def python_to_value(data: Any, value: json_with_int_pb2.Value) -> None:
    """Fill `value` (a message owned by its parent) with `data`."""
    if data is None:
        value.null_value = json_with_int_pb2.NULL_VALUE
    elif isinstance(data, (bool, np.bool_)):
        value.bool_value = bool(data)
    elif isinstance(data, (int, np.integer)):
        value.integer_value = int(data)
    elif isinstance(data, (float, np.floating)):
        value.double_value = float(data)
    elif isinstance(data, str):
        value.string_value = data
    elif isinstance(data, dict):
        value.struct_value.SetInParent()
        for key, item in data.items():
            python_to_value(item, value.struct_value.fields[key])
    elif isinstance(data, (list, tuple)):
        value.list_value.SetInParent()
        for item in data:
            python_to_value(item, value.list_value.values.add())
    else:
        raise TypeError(f"{type(data).__name__} is not JSON")


def payload_to_python(payload: Any) -> dict[str, JsonValue]:
    """A `map<string, Value>` as a dict."""
    return {key: value_to_python(value) for key, value in payload.items()}


def fill_payload(target: Any, payload: dict[str, Any]) -> None:
    """Fill a `map<string, Value>` field from a dict."""
    for key, data in payload.items():
        python_to_value(data, target[key])


# -- ids and vectors ---------------------------------------------------------------------------------
def point_id(message: qdrant_common_pb2.PointId, where: str) -> int | str:
    """An unsigned integer, or a UUID in canonical form (as Qdrant stores it)."""
    kind = message.WhichOneof("point_id_options")
    if kind == "num":
        return message.num
    if kind == "uuid":
        try:
            return str(uuid.UUID(message.uuid))
        except ValueError:
            raise invalid(f"{where}: unable to parse UUID: {message.uuid}") from None
    raise invalid(f"{where}: a point id needs num or uuid")


def fill_point_id(value: int | uuid.UUID | str, target: qdrant_common_pb2.PointId) -> None:
    if isinstance(value, int):
        target.num = value
    else:
        target.uuid = str(value)


def dense_values(data: Any, where: str) -> list[float]:
    values = [float(x) for x in data]
    if not all(math.isfinite(x) for x in values):
        raise invalid(f"{where}: vectors must hold finite numbers")
    return values


def point_vector(vectors: points_pb2.Vectors, where: str) -> list[float]:
    """The one unnamed dense vector of a point (the deprecated flat `data` form included)."""
    if vectors.WhichOneof("vectors_options") != "vector":
        raise unimplemented(f"{where} other than one unnamed vector")
    vector = vectors.vector
    kind = vector.WhichOneof("vector")
    if kind == "dense":
        return dense_values(vector.dense.data, where)
    if kind is None and len(vector.data) and not len(vector.indices.data) and not vector.vectors_count:
        return dense_values(vector.data, where)
    raise unimplemented(f"{where} of kind {kind or 'sparse/multi'}")


# -- filters -----------------------------------------------------------------------------------------
def _match(match: qdrant_common_pb2.Match, where: str) -> Any:
    kind = match.WhichOneof("match_value")
    if kind == "keyword":
        return qe.MatchValue(match.keyword)
    if kind == "integer":
        return qe.MatchValue(match.integer)
    if kind == "boolean":
        # qdrant-edge-py 0.9 reads a Python bool as the integer 1 or 0; numpy's bool arrives as a boolean.
        return qe.MatchValue(np.bool_(match.boolean))
    if kind == "keywords":
        return qe.MatchAny(list(match.keywords.strings))
    if kind == "integers":
        return qe.MatchAny(list(match.integers.integers))
    if kind == "text":
        return qe.MatchText(match.text)
    raise unimplemented(f"{where}.match.{kind}")


def _bounds(message: Message, convert: Any = lambda value: value) -> dict[str, Any]:
    return {name: convert(getattr(message, name)) for name in ("gt", "gte", "lt", "lte") if message.HasField(name)}


def _rfc3339(timestamp: Any) -> str:
    """A protobuf Timestamp as the RFC 3339 string qdrant-edge parses."""
    text: str = timestamp.ToJsonString()
    return text


def _field_condition(field: qdrant_common_pb2.FieldCondition, where: str) -> Any:
    tests = {"match", "range", "datetime_range", "values_count"}
    refuse_set_fields(field, {"key"} | tests, where)
    if not field.key:
        raise invalid(f"{where}.key is empty")
    set_tests = [name for name in sorted(tests) if field.HasField(name)]
    if len(set_tests) != 1:
        raise invalid(f"{where}: exactly one of match, range, datetime_range and values_count is required here")
    if field.HasField("match"):
        return qe.FieldCondition(key=field.key, match=_match(field.match, where))
    if field.HasField("datetime_range"):
        return qe.FieldCondition(key=field.key, range=qe.RangeDateTime(**_bounds(field.datetime_range, _rfc3339)))
    if field.HasField("values_count"):
        return qe.FieldCondition(key=field.key, values_count=qe.ValuesCount(**_bounds(field.values_count)))
    return qe.FieldCondition(key=field.key, range=qe.RangeFloat(**_bounds(field.range)))


def _condition(condition: qdrant_common_pb2.Condition, where: str) -> Any:
    kind = condition.WhichOneof("condition_one_of")
    if kind == "field":
        return _field_condition(condition.field, f"{where}.field")
    if kind == "is_null":
        return qe.IsNullCondition(condition.is_null.key)
    if kind == "is_empty":
        return qe.IsEmptyCondition(condition.is_empty.key)
    if kind == "has_id":
        return qe.HasIdCondition({point_id(pid, f"{where}.has_id[{i}]") for i, pid in enumerate(condition.has_id.has_id)})
    if kind == "filter":
        return engine_filter(condition.filter, f"{where}.filter")
    raise unimplemented(f"{where}.{kind}")


def engine_filter(filter: qdrant_common_pb2.Filter, where: str = "filter") -> qe.Filter:
    """A Qdrant filter of must / should / must_not / min_should clauses, nested filters, has_id, is_null,
    is_empty, match (keyword, integer, boolean, keywords, integers, text), range, datetime_range and
    values_count."""
    refuse_set_fields(filter, {"must", "should", "must_not", "min_should"}, where)

    def clause(name: str) -> list[Any] | None:
        conditions = getattr(filter, name)
        return [_condition(c, f"{where}.{name}[{i}]") for i, c in enumerate(conditions)] or None

    min_should = None
    if filter.HasField("min_should"):
        min_should = qe.MinShould([_condition(c, f"{where}.min_should.conditions[{i}]")
                                   for i, c in enumerate(filter.min_should.conditions)], filter.min_should.min_count)
    return qe.Filter(must=clause("must"), should=clause("should"), must_not=clause("must_not"),
                     min_should=min_should)


def search_params(params: points_pb2.SearchParams, where: str = "params") -> qe.SearchParams:
    """QueryPoints.params: hnsw_ef, exact and quantization (ignore, rescore, oversampling)."""
    refuse_set_fields(params, {"hnsw_ef", "exact", "quantization", "indexed_only"}, where)
    if params.indexed_only:  # qdrant-client sends it, false, whenever it sends params
        raise unimplemented(f"{where}.indexed_only")
    quantization = None
    if params.HasField("quantization"):
        q = params.quantization
        refuse_set_fields(q, {"ignore", "rescore", "oversampling"}, f"{where}.quantization")
        if q.HasField("oversampling") and q.oversampling < 1:
            raise invalid(f"{where}.quantization.oversampling: {q.oversampling} is below 1")
        quantization = qe.QuantizationSearchParams(
            ignore=q.ignore, rescore=q.rescore if q.HasField("rescore") else None,
            oversampling=q.oversampling if q.HasField("oversampling") else None)
    return qe.SearchParams(hnsw_ef=params.hnsw_ef if params.HasField("hnsw_ef") else None,
                           exact=params.exact, quantization=quantization)
