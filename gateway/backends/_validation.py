"""Checks shared by every backend: names, specs, ids, vectors, payloads, filters, queries.

Each check raises InvalidArgument naming the field path of the request it came from (`points[2].vector`,
`filter.must[0].has_id.ids[1]`) and returns the value in the one form the engines are given: ids
canonical, vectors lists of floats, tuples where the caller may have passed lists.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np

from searchgw.gateway.backends.types import (
    DEFAULT_FULL_SCAN_THRESHOLD_KB,
    DEFAULT_HNSW_EF_CONSTRUCT,
    DEFAULT_HNSW_M,
    DEFAULT_QUANTILE,
    CollectionSpec,
    Condition,
    Distance,
    FieldCondition,
    Filter,
    HasId,
    Point,
    PointId,
    Range,
    ScalarQuantization,
    SearchQuery,
    Vector,
)
from searchgw.errors import InvalidArgument

#: Collection and alias names: they name directories of the embedded backend, so no separators.
MAX_NAME_LENGTH = 255
_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,%d}" % (MAX_NAME_LENGTH - 1))
#: The longest vector any collection may hold.
MAX_DIMENSION = 65_536
_MAX_POINT_ID = 2**64 - 1
_MAX_ARRAY_INDEX = 2**64 - 1
#: How much of a bad value an error message repeats: status messages travel in HTTP/2 trailers,
#: which clients refuse beyond a few KiB (RESOURCE_EXHAUSTED instead of the real error).
_SHOWN_CHARS = 64


def shown(value: object) -> str:
    """`repr(value)`, cut to a length an error message can carry."""
    if isinstance(value, str) and len(value) > _SHOWN_CHARS:
        return f"{value[:_SHOWN_CHARS]!r}… ({len(value)} characters)"
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS + 2 else f"{text[:_SHOWN_CHARS]}…"


def check_name(field: str, name: str) -> None:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidArgument(field, f"{shown(name)} is not a valid name: 1 to {MAX_NAME_LENGTH} letters, digits, "
                                     "'_', '-' or '.', not starting with '.'")


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
    )


def point_id(field: str, value: object) -> PointId:
    """An unsigned 64-bit integer, or a UUID in canonical form (lower case, hyphenated)."""
    if isinstance(value, int) and not isinstance(value, bool):
        if 0 <= value <= _MAX_POINT_ID:
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
    return array.tolist()


def _payload(field: str, payload: object) -> dict:
    if not isinstance(payload, Mapping):
        raise InvalidArgument(field, "must be a JSON object")
    try:
        json.dumps(payload, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(field, f"is not JSON: {exc}") from None
    return dict(payload)


def checked_points(collection: str, dimension: int, points: Sequence[Point]) -> list[Point]:
    """Every point checked, in engine form; the first bad one raises, before anything is written."""
    return [
        Point(id=point_id(f"points[{i}].id", point.id),
              vector=vector_values(f"points[{i}].vector", point.vector, collection, dimension),
              payload=_payload(f"points[{i}].payload", point.payload))
        for i, point in enumerate(points)
    ]


def checked_ids(field: str, ids: Sequence[PointId]) -> list[PointId]:
    return [point_id(f"{field}[{i}]", value) for i, value in enumerate(ids)]


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


def _bound(field: str, value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidArgument(field, f"{value!r} is not a finite number")
    return float(value)


def _condition(path: str, condition: Condition) -> Condition:
    if isinstance(condition, Filter):
        return checked_filter(f"{path}.filter", condition)
    if isinstance(condition, HasId):
        return HasId(tuple(checked_ids(f"{path}.has_id.ids", condition.ids)))
    if isinstance(condition, FieldCondition):
        check_key(f"{path}.field.key", condition.key)
        if condition.range is not None:
            bounds = condition.range
            return replace(condition, range=Range(*(_bound(f"{path}.field.range.{name}", getattr(bounds, name))
                                                    for name in ("gt", "gte", "lt", "lte"))))
        if condition.any_keyword is not None:
            if not all(isinstance(keyword, str) for keyword in condition.any_keyword):
                raise InvalidArgument(f"{path}.field.any_keyword", "must hold strings only")
            return replace(condition, any_keyword=tuple(condition.any_keyword))
        expected = {"keyword": str, "integer": int, "boolean": bool}
        for name, kind in expected.items():
            value = getattr(condition, name)
            if value is not None and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
                raise InvalidArgument(f"{path}.field.{name}", f"{value!r} is not a {kind.__name__}")
        return condition
    raise InvalidArgument(path, f"{type(condition).__name__} is not a filter condition")


def checked_filter(path: str, filter: Filter) -> Filter:
    return Filter(**{
        clause: tuple(_condition(f"{path}.{clause}[{i}]", c) for i, c in enumerate(getattr(filter, clause)))
        for clause in ("must", "should", "must_not")
    })


def checked_query(collection: str, dimension: int, query: SearchQuery) -> SearchQuery:
    if isinstance(query.limit, bool) or not isinstance(query.limit, int) or query.limit < 1:
        raise InvalidArgument("limit", f"{query.limit!r} is not a positive integer")
    if isinstance(query.offset, bool) or not isinstance(query.offset, int) or query.offset < 0:
        raise InvalidArgument("offset", f"{query.offset!r} is not a non-negative integer")
    return replace(
        query,
        vector=vector_values("vector", query.vector, collection, dimension),
        filter=None if query.filter is None else checked_filter("filter", query.filter),
        score_threshold=_bound("score_threshold", query.score_threshold),
        with_payload=bool(query.with_payload),
    )


def checked_selector(ids: Sequence[PointId] | None, filter: Filter | None) -> list[PointId] | Filter:
    """The point selector of a delete: ids or a filter, exactly one."""
    if (ids is None) == (filter is None):
        raise InvalidArgument("selector", "set ids or filter, exactly one")
    if ids is not None:
        return checked_ids("ids.ids", ids)
    return checked_filter("filter", filter)
