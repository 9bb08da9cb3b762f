"""The VectorBackend contract, run against both real engines: collections, search, filters, writes, aliases,
and the factory.

One suite, parametrised over the embedded qdrant-edge backend (in tmp_path) and qdrant-client's
local mode (":memory:"). No mocks: every search runs in a real engine. Collections are small and
low-dimensional, so the engines search exhaustively and scores can be checked against numpy.
"""

from __future__ import annotations

import asyncio
import uuid

import numpy as np
import pytest

from searchgw.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, Unavailable
from searchgw.gateway.backends import (
    CollectionInfo,
    CollectionSpec,
    Distance,
    FieldCondition,
    Filter,
    HasId,
    Point,
    Range,
    ScalarQuantization,
    SearchQuery,
    VectorBackend,
    open_backend,
)
from searchgw.gateway.backends.types import QuantizationParams, SearchParams
from tests.gateway.backend_helpers import DIM, UUID_5, cosine_ranking, filled, spec, unit_vectors


# -- collections --------------------------------------------------------------------------------
async def test_a_created_collection_reads_back_with_defaults_filled_in(backend):
    created = await backend.create_collection(spec(distance=Distance.DOT, hnsw_m=0, hnsw_ef_construct=0,
                                                   full_scan_threshold=0))
    expected = CollectionSpec(name="c", dimension=DIM, distance=Distance.DOT, hnsw_m=16, hnsw_ef_construct=100,
                              full_scan_threshold=10_000, embedding_model="model-a")
    assert created == CollectionInfo(spec=expected, points_count=0)
    assert await backend.get_collection("c") == created


async def test_custom_hnsw_settings_and_the_embedding_model_are_kept(backend):
    await backend.create_collection(spec(hnsw_m=8, hnsw_ef_construct=64, full_scan_threshold=500,
                                         embedding_model="model-b"))
    info = await backend.get_collection("c")
    assert (info.spec.hnsw_m, info.spec.hnsw_ef_construct, info.spec.full_scan_threshold) == (8, 64, 500)
    assert info.spec.embedding_model == "model-b"


async def test_collections_are_listed_by_name_with_counts_and_aliases(backend):
    await backend.create_collection(spec("zeta"))
    await filled(backend, count=5, name="alpha")
    await backend.update_alias("live", "alpha")
    listed = await backend.list_collections()
    assert [(c.spec.name, c.points_count, c.aliases) for c in listed] == [("alpha", 5, ("live",)), ("zeta", 0, ())]


async def test_deleting_a_collection_removes_it_and_its_points(backend):
    await filled(backend, count=5)
    await backend.delete_collection("c")
    assert await backend.list_collections() == []
    with pytest.raises(NotFound):
        await backend.count("c")
    await backend.create_collection(spec())  # the name is free again, and the new one is empty
    assert await backend.count("c") == 0


async def test_a_taken_name_cannot_be_created_again(backend):
    await backend.create_collection(spec())
    with pytest.raises(AlreadyExists):
        await backend.create_collection(spec())
    await backend.update_alias("live", "c")
    with pytest.raises(AlreadyExists):
        await backend.create_collection(spec("live"))


@pytest.mark.parametrize(("bad", "field"), [
    (spec(name="a/b"), "collection.name"),
    (spec(name=".hidden"), "collection.name"),
    (spec(dimension=0), "collection.dimension"),
    (spec(hnsw_ef_construct=2), "collection.hnsw.ef_construct"),
    (spec(scalar_quantization=ScalarQuantization(quantile=0.2)), "collection.scalar_quantization.quantile"),
])
async def test_a_bad_spec_is_refused_naming_the_field(backend, bad, field):
    with pytest.raises(InvalidArgument) as raised:
        await backend.create_collection(bad)
    assert raised.value.field == field
    assert await backend.list_collections() == []


async def test_a_collection_an_alias_points_at_cannot_be_deleted(backend):
    await backend.create_collection(spec())
    await backend.update_alias("live", "c")
    with pytest.raises(FailedPrecondition):
        await backend.delete_collection("c")
    await backend.delete_alias("live")
    await backend.delete_collection("c")


# -- search -------------------------------------------------------------------------------------
async def test_search_returns_the_nearest_first_with_cosine_scores(backend):
    vectors = await filled(backend)
    query = np.random.default_rng(1).standard_normal(DIM).astype(np.float32) * 3  # not normalised
    hits = await backend.search("c", SearchQuery(vector=query, limit=5))
    order, scores = cosine_ranking(vectors, query)
    assert [hit.id for hit in hits] == order[:5].tolist()
    assert [hit.score for hit in hits] == pytest.approx(scores[:5].tolist(), abs=1e-4)


async def test_payload_is_returned_only_when_asked_for(backend):
    vectors = await filled(backend, count=5)
    without = await backend.search("c", SearchQuery(vector=vectors[2], limit=1))
    with_payload = await backend.search("c", SearchQuery(vector=vectors[2], limit=1, with_payload=True))
    assert (without[0].id, without[0].payload) == (2, None)
    assert (with_payload[0].id, with_payload[0].payload) == (2, {"i": 2})


async def test_score_threshold_drops_the_weaker_hits(backend):
    vectors = await filled(backend)
    _, scores = cosine_ranking(vectors, vectors[0])
    threshold = float(scores[2] + scores[3]) / 2
    hits = await backend.search("c", SearchQuery(vector=vectors[0], limit=10, score_threshold=threshold))
    assert len(hits) == 3
    assert all(hit.score >= threshold for hit in hits)


async def test_offset_pages_do_not_overlap_and_follow_the_ranking(backend):
    vectors = await filled(backend)
    query = vectors[3] + 0.5 * vectors[11]
    pages = [await backend.search("c", SearchQuery(vector=query, limit=5, offset=offset)) for offset in (0, 5, 10)]
    ids = [hit.id for page in pages for hit in page]
    assert len(set(ids)) == 15
    assert ids == cosine_ranking(vectors, query)[0][:15].tolist()


async def test_concurrent_searches_each_get_their_own_answer(backend):
    vectors = await filled(backend, count=200)
    queries = [SearchQuery(vector=vectors[i], limit=3, with_payload=i % 2 == 0) for i in range(64)]
    answers = await asyncio.gather(*(backend.search("c", query) for query in queries))
    for i, hits in enumerate(answers):
        assert [hit.id for hit in hits] == cosine_ranking(vectors, vectors[i])[0][:3].tolist()
        assert hits[0].payload == ({"i": i} if i % 2 == 0 else None)


async def test_optimize_leaves_the_answers_unchanged(backend):
    vectors = await filled(backend)
    before = await backend.search("c", SearchQuery(vector=vectors[4], limit=5))
    await backend.optimize("c")
    assert await backend.search("c", SearchQuery(vector=vectors[4], limit=5)) == before


# -- filters ------------------------------------------------------------------------------------
FILTER_POINTS = [
    (1, {"color": "red", "n": 1, "ok": True, "tags": ["a", "b"], "meta": {"lang": "en"}}),
    (2, {"color": "blue", "n": 2, "ok": False, "tags": ["b"], "meta": {"lang": "de"}}),
    (3, {"color": "red", "n": 3, "ok": False, "tags": ["c"], "meta": {"lang": "en"}}),
    (4, {"color": "green", "n": 4, "ok": True, "tags": [], "meta": {"lang": "fr"}}),
    (UUID_5, {"color": "blue", "n": 5, "ok": True, "tags": ["a"], "meta": {"lang": "en"}}),
]


RED = FieldCondition("color", keyword="red")


@pytest.mark.parametrize(("filter", "expected"), [
    (Filter(must=(RED,)), {1, 3}),
    (Filter(must=(FieldCondition("n", integer=2),)), {2}),
    (Filter(must=(FieldCondition("ok", boolean=True),)), {1, 4, UUID_5}),
    (Filter(must=(FieldCondition("n", range=Range(gte=2, lt=4)),)), {2, 3}),
    (Filter(must=(FieldCondition("n", range=Range(gt=4)),)), {UUID_5}),
    (Filter(must=(FieldCondition("n", range=Range(lte=1.5)),)), {1}),
    (Filter(must=(FieldCondition("color", any_keyword=("green", "blue")),)), {2, 4, UUID_5}),
    (Filter(must=(FieldCondition("tags", any_keyword=("a",)),)), {1, UUID_5}),
    (Filter(must_not=(RED,)), {2, 4, UUID_5}),
    (Filter(should=(FieldCondition("color", keyword="green"), FieldCondition("n", integer=1))), {1, 4}),
    (Filter(must=(HasId((1, UUID_5.upper())),)), {1, UUID_5}),
    (Filter(must=(FieldCondition("meta.lang", keyword="en"),)), {1, 3, UUID_5}),
    (Filter(must=(FieldCondition("ok", boolean=True),
                  Filter(should=(FieldCondition("color", keyword="green"), FieldCondition("color", keyword="blue"))))),
     {4, UUID_5}),
    (Filter(must_not=(Filter(must=(RED, FieldCondition("n", integer=1))),)), {2, 3, 4, UUID_5}),
], ids=["keyword", "integer", "boolean", "range", "range-gt", "range-lte", "any-keyword", "any-keyword-array",
        "must-not", "should", "has-id", "dotted-key", "nested-filter", "must-not-nested"])
async def test_filters_select_the_matching_points(backend, filter, expected):
    await backend.create_collection(spec())
    vectors = unit_vectors(len(FILTER_POINTS))
    await backend.upsert("c", [Point(id=i, vector=v, payload=p) for (i, p), v in zip(FILTER_POINTS, vectors)])
    hits = await backend.search("c", SearchQuery(vector=vectors[0], limit=10, filter=filter))
    assert {hit.id for hit in hits} == expected


def test_a_field_condition_holds_exactly_one_test():
    with pytest.raises(ValueError):
        FieldCondition("color")
    with pytest.raises(ValueError):
        FieldCondition("color", keyword="red", any_keyword=("blue",))


async def test_a_malformed_filter_is_refused_naming_the_field(backend):
    await filled(backend, count=3)
    bad = Filter(must=(Filter(should=(HasId((1, "not-an-id")),)),))
    with pytest.raises(InvalidArgument) as raised:
        await backend.search("c", SearchQuery(vector=unit_vectors(1)[0], filter=bad))
    assert raised.value.field == "filter.must[0].filter.should[0].has_id.ids[1]"


# -- writes -------------------------------------------------------------------------------------
async def test_delete_by_ids_removes_those_points(backend):
    vectors = await filled(backend, count=10)
    await backend.delete_points("c", ids=[0, 1, 2])
    assert await backend.count("c") == 7
    hits = await backend.search("c", SearchQuery(vector=vectors[0], limit=10))
    assert {hit.id for hit in hits} == set(range(3, 10))


async def test_delete_by_filter_removes_the_matching_points(backend):
    await filled(backend, count=10)
    await backend.delete_points("c", filter=Filter(must=(FieldCondition("i", range=Range(gte=5)),)))
    assert await backend.count("c") == 5


async def test_a_delete_needs_exactly_one_selector(backend):
    await filled(backend, count=3)
    for kwargs in ({}, {"ids": [1], "filter": Filter()}):
        with pytest.raises(InvalidArgument) as raised:
            await backend.delete_points("c", **kwargs)
        assert raised.value.field == "selector"
    assert await backend.count("c") == 3


async def test_an_upsert_replaces_a_point_with_the_same_id(backend):
    vectors = await filled(backend, count=5)
    await backend.upsert("c", [Point(id=2, vector=vectors[4], payload={"i": "new"})])
    hits = await backend.search("c", SearchQuery(vector=vectors[4], limit=2, with_payload=True))
    assert await backend.count("c") == 5
    assert {(hit.id, hit.payload["i"]) for hit in hits} == {(2, "new"), (4, 4)}


async def test_a_wrong_vector_size_writes_nothing_and_names_the_point(backend):
    await backend.create_collection(spec())
    good, bad = Point(id=1, vector=unit_vectors(1)[0]), Point(id=2, vector=[0.5] * (DIM + 1))
    with pytest.raises(InvalidArgument) as raised:
        await backend.upsert("c", [good, bad])
    assert raised.value.field == "points[1].vector"
    assert await backend.count("c") == 0


async def test_a_search_vector_of_the_wrong_size_is_refused(backend):
    await filled(backend, count=3)
    with pytest.raises(InvalidArgument) as raised:
        await backend.search("c", SearchQuery(vector=[0.1] * (DIM - 1)))
    assert raised.value.field == "vector"


@pytest.mark.parametrize(("point", "field"), [
    (Point(id=-1, vector=[0.1] * DIM), "points[0].id"),
    (Point(id=2**64, vector=[0.1] * DIM), "points[0].id"),
    (Point(id="not-a-uuid", vector=[0.1] * DIM), "points[0].id"),
    (Point(id=1, vector=[float("nan")] * DIM), "points[0].vector"),
    (Point(id=1, vector=[0.1] * DIM, payload={"x": {1, 2}}), "points[0].payload"),
])
async def test_a_bad_point_is_refused_naming_the_field(backend, point, field):
    await backend.create_collection(spec())
    with pytest.raises(InvalidArgument) as raised:
        await backend.upsert("c", [point])
    assert raised.value.field == field


async def test_integer_and_uuid_ids_round_trip_in_canonical_form(backend):
    await backend.create_collection(spec())
    vectors = unit_vectors(3)
    big = 2**64 - 1
    await backend.upsert("c", [Point(id=big, vector=vectors[0]), Point(id=UUID_5.upper(), vector=vectors[1]),
                               Point(id=str(uuid.UUID(UUID_5)).replace("-", ""), vector=vectors[2])])
    assert await backend.count("c") == 2  # the two spellings of UUID_5 are one point
    hits = await backend.search("c", SearchQuery(vector=vectors[0], limit=5))
    assert {hit.id for hit in hits} == {big, UUID_5}
    await backend.delete_points("c", ids=[UUID_5])
    assert [hit.id for hit in await backend.search("c", SearchQuery(vector=vectors[1], limit=5))] == [big]


# -- aliases ------------------------------------------------------------------------------------
async def test_an_alias_switch_moves_resolve_and_reads_to_the_new_collection(backend):
    await filled(backend, count=3, name="v1")
    await filled(backend, count=6, name="v2")
    assert await backend.update_alias("docs", "v1") is None
    assert await backend.resolve("docs") == "v1"
    assert await backend.resolve("v2") == "v2"
    assert await backend.update_alias("docs", "v2") == "v1"
    assert await backend.resolve("docs") == "v2"
    assert await backend.count("docs") == 6
    assert (await backend.get_collection("docs")).spec.name == "v2"
    assert await backend.list_aliases() == {"docs": "v2"}
    await backend.delete_alias("docs")
    assert await backend.list_aliases() == {}
    with pytest.raises(NotFound):
        await backend.resolve("docs")


async def test_writes_through_an_alias_land_in_its_collection(backend):
    await backend.create_collection(spec("v1"))
    await backend.update_alias("docs", "v1")
    await backend.upsert("docs", [Point(id=1, vector=unit_vectors(1)[0])])
    assert await backend.count("v1") == 1


async def test_an_alias_to_a_missing_collection_is_refused_and_the_old_one_stays(backend):
    await backend.create_collection(spec("v1"))
    await backend.update_alias("docs", "v1")
    with pytest.raises(NotFound):
        await backend.update_alias("docs", "v9")
    assert await backend.resolve("docs") == "v1"
    assert await backend.list_aliases() == {"docs": "v1"}


async def test_an_alias_cannot_take_a_collection_name_or_point_at_an_alias(backend):
    await backend.create_collection(spec("v1"))
    await backend.create_collection(spec("v2"))
    await backend.update_alias("docs", "v1")
    with pytest.raises(AlreadyExists):
        await backend.update_alias("v2", "v1")
    with pytest.raises(NotFound):
        await backend.update_alias("other", "docs")
    with pytest.raises(InvalidArgument) as raised:
        await backend.update_alias("a b", "v1")
    assert raised.value.field == "alias"


@pytest.mark.parametrize("call", [
    lambda b: b.get_collection("nope"),
    lambda b: b.delete_collection("nope"),
    lambda b: b.delete_alias("nope"),
    lambda b: b.resolve("nope"),
    lambda b: b.upsert("nope", [Point(id=1, vector=[0.1] * DIM)]),
    lambda b: b.delete_points("nope", ids=[1]),
    lambda b: b.search("nope", SearchQuery(vector=[0.1] * DIM)),
    lambda b: b.count("nope"),
    lambda b: b.optimize("nope"),
], ids=["get", "delete", "delete-alias", "resolve", "upsert", "delete-points", "search", "count", "optimize"])
async def test_an_unknown_collection_is_not_found(backend, call):
    with pytest.raises(NotFound):
        await call(backend)


async def test_a_closed_backend_is_unavailable(backend):
    await backend.create_collection(spec())
    await backend.close()
    with pytest.raises(Unavailable):
        await backend.count("c")


# -- the factory --------------------------------------------------------------------------------
async def test_open_backend_builds_the_kind_asked_for(tmp_path):
    edge = await open_backend("edge", data_dir=tmp_path)
    qdrant = await open_backend("qdrant", data_dir=tmp_path, qdrant_location=":memory:")
    assert (edge.kind, qdrant.kind) == ("edge", "qdrant")
    assert isinstance(edge, VectorBackend) and isinstance(qdrant, VectorBackend)
    await edge.close()
    await qdrant.close()
    with pytest.raises(ValueError):
        await open_backend("sqlite", data_dir=tmp_path)


# -- scroll -------------------------------------------------------------------------------------
async def test_scroll_walks_every_point_once_in_id_order_with_vectors_and_payloads(backend):
    vectors = await filled(backend, count=25)
    seen, offset, pages = [], None, 0
    while True:
        page = await backend.scroll("c", offset=offset, limit=10)
        pages += 1
        seen.extend(page.points)
        if page.next_offset is None:
            break
        offset = page.next_offset
    assert pages == 3
    assert [p.id for p in seen] == list(range(25))
    for point in seen:
        np.testing.assert_allclose(point.vector, vectors[point.id], rtol=1e-5, atol=1e-6)
        assert point.payload == {"i": point.id}


async def test_scroll_by_ids_returns_only_the_points_that_exist(backend):
    await filled(backend, count=10)
    await backend.delete_points("c", ids=[3])
    page = await backend.scroll("c", limit=10, filter=Filter(must=(HasId((2, 3, 4, 99)),)))
    assert [p.id for p in page.points] == [2, 4]
    assert page.next_offset is None


async def test_scroll_of_an_empty_or_unknown_collection(backend):
    await backend.create_collection(spec("empty"))
    assert (await backend.scroll("empty")).points == ()
    with pytest.raises(NotFound):
        await backend.scroll("missing")
    with pytest.raises(InvalidArgument) as caught:
        await backend.scroll("empty", offset=-1)
    assert caught.value.field == "offset"


# -- search knobs (SearchQuery.params) ----------------------------------------------------------
async def _indexed(backend: VectorBackend, count: int = 400, **overrides) -> np.ndarray:
    """A collection small HNSW settings index for real (the smallest full-scan threshold, so an indexed
    segment is searched through its graph), built."""
    vectors = unit_vectors(count, seed=11)
    await backend.create_collection(spec(hnsw_m=4, hnsw_ef_construct=4, full_scan_threshold=10, **overrides))
    await backend.upsert("c", [Point(id=i, vector=v) for i, v in enumerate(vectors)])
    await backend.optimize("c")
    return vectors


async def test_an_exact_search_returns_the_true_top_k_of_an_indexed_collection(backend):
    vectors = await _indexed(backend)
    for query in unit_vectors(20, seed=12):
        hits = await backend.search("c", SearchQuery(vector=query, limit=10, params=SearchParams(exact=True)))
        order, scores = cosine_ranking(vectors, query)
        assert [hit.id for hit in hits] == order[:10].tolist()
        assert [hit.score for hit in hits] == pytest.approx(scores[:10].tolist(), abs=1e-4)


async def test_a_large_ef_finds_at_least_what_a_tiny_one_does(backend):
    vectors = await _indexed(backend)
    found = {1: 0, 4096: 0}
    for query in unit_vectors(20, seed=13):
        true = set(cosine_ranking(vectors, query)[0][:10].tolist())
        for ef in found:
            hits = await backend.search("c", SearchQuery(vector=query, limit=10, params=SearchParams(hnsw_ef=ef)))
            assert len(hits) == 10
            found[ef] += len(true & {hit.id for hit in hits})
    assert found[4096] >= found[1]
    assert found[4096] >= 0.95 * 200  # ef far above the collection size: (nearly) the exact answer


async def test_quantization_knobs_search_a_quantized_collection(backend):
    vectors = await _indexed(backend, scalar_quantization=ScalarQuantization(always_ram=True))
    knobs = [QuantizationParams(rescore=True, oversampling=4.0), QuantizationParams(rescore=False),
             QuantizationParams(ignore=True)]
    for knob in knobs:
        hits = await backend.search("c", SearchQuery(vector=vectors[7], limit=3,
                                                     params=SearchParams(hnsw_ef=256, quantization=knob)))
        assert hits[0].id == 7, knob  # a stored vector finds itself
    exact = await backend.search("c", SearchQuery(vector=vectors[7], limit=10, params=SearchParams(
        exact=True, quantization=QuantizationParams(ignore=True))))
    assert [hit.id for hit in exact] == cosine_ranking(vectors, vectors[7])[0][:10].tolist()


@pytest.mark.parametrize(("params", "field"), [
    (SearchParams(hnsw_ef=0), "params.hnsw_ef"),
    (SearchParams(hnsw_ef=4097), "params.hnsw_ef"),
    (SearchParams(hnsw_ef=True), "params.hnsw_ef"),
    (SearchParams(quantization=QuantizationParams(oversampling=0.5)), "params.quantization.oversampling"),
    (SearchParams(quantization=QuantizationParams(oversampling=16.5)), "params.quantization.oversampling"),
    (SearchParams(quantization=QuantizationParams(oversampling=float("nan"))), "params.quantization.oversampling"),
])
async def test_knobs_beyond_their_limits_are_refused_naming_the_field(backend, params, field):
    vectors = await filled(backend, count=5)
    with pytest.raises(InvalidArgument) as raised:
        await backend.search("c", SearchQuery(vector=vectors[0], params=params))
    assert raised.value.field == field
