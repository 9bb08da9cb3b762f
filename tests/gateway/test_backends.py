"""The VectorBackend contract, run against both real engines, plus what only one backend has.

One suite, parametrised over the embedded qdrant-edge backend (in tmp_path) and qdrant-client's
local mode (":memory:"). No mocks: every search runs in a real engine. Collections are small and
low-dimensional, so the engines search exhaustively and scores can be checked against numpy.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import socket
import sys
import uuid
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from searchgw.gateway.backends import (
    CollectionInfo,
    CollectionSpec,
    Distance,
    EdgeBackend,
    FaultInjectingBackend,
    FaultKind,
    FieldCondition,
    Filter,
    HasId,
    Point,
    QdrantBackend,
    Range,
    ScalarQuantization,
    SearchQuery,
    VectorBackend,
    open_backend,
)
from searchgw.gateway.backends._batching import MicroBatcher
from searchgw.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, Unavailable

REPO_ROOT = Path(__file__).resolve().parents[2]
DIM = 8
UUID_5 = "6f1c2d4e-8a3b-4c5d-9e7f-0a1b2c3d4e5f"


def unit_vectors(count: int, dim: int = DIM, seed: int = 7) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((count, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def spec(name: str = "c", **overrides) -> CollectionSpec:
    return CollectionSpec(**{"name": name, "dimension": DIM, "embedding_model": "model-a", **overrides})


@pytest.fixture(params=["edge", "qdrant"])
async def backend(request, tmp_path) -> VectorBackend:
    if request.param == "edge":
        opened: VectorBackend = EdgeBackend(tmp_path / "edge")
    else:
        opened = QdrantBackend(":memory:")
    yield opened
    await opened.close()


async def filled(backend: VectorBackend, count: int = 30, name: str = "c") -> np.ndarray:
    """A collection of `count` random unit vectors with ids 0..count-1 and payload {"i": id}."""
    vectors = unit_vectors(count)
    await backend.create_collection(spec(name))
    await backend.upsert(name, [Point(id=i, vector=v, payload={"i": i}) for i, v in enumerate(vectors)])
    return vectors


def cosine_ranking(vectors: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = vectors @ (query / np.linalg.norm(query))
    order = np.argsort(-scores, kind="stable")
    return order, scores[order]


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


# -- the embedded backend -----------------------------------------------------------------------
async def test_edge_reopened_after_close_has_everything_it_acknowledged(tmp_path):
    backend = EdgeBackend(tmp_path)
    vectors = await filled(backend, count=20, name="v1")
    quantized = spec("v2", scalar_quantization=ScalarQuantization(quantile=0.95, always_ram=True), hnsw_m=8)
    await backend.create_collection(quantized)
    await backend.update_alias("docs", "v1")
    await backend.close()

    reopened = EdgeBackend(tmp_path)
    try:
        assert await reopened.list_aliases() == {"docs": "v1"}
        assert (await reopened.get_collection("v2")).spec == quantized
        info = await reopened.get_collection("docs")
        assert (info.spec.name, info.spec.embedding_model, info.points_count) == ("v1", "model-a", 20)
        hits = await reopened.search("docs", SearchQuery(vector=vectors[7], limit=1, with_payload=True))
        assert (hits[0].id, hits[0].payload) == (7, {"i": 7})
    finally:
        await reopened.close()


_KILLED_WRITER = """
import asyncio, os, signal, sys
from searchgw.gateway.backends import CollectionSpec, EdgeBackend, Point

async def main(path):
    backend = EdgeBackend(path)
    await backend.create_collection(CollectionSpec(name="v1", dimension=4, embedding_model="m"))
    await backend.update_alias("docs", "v1")
    await backend.upsert("v1", [Point(id=i, vector=[1.0, float(i), 0.0, 0.0], payload={"i": i}) for i in range(100)])
    await backend.delete_points("v1", ids=[7])
    print("acknowledged", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # no close(), no flush: a crash

asyncio.run(main(sys.argv[1]))
"""


async def test_edge_keeps_acknowledged_writes_when_the_process_is_killed(tmp_path):
    writer = await asyncio.create_subprocess_exec(sys.executable, "-c", _KILLED_WRITER, str(tmp_path),
                                                  cwd=REPO_ROOT, stdout=asyncio.subprocess.PIPE,
                                                  stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(writer.communicate(), timeout=60)
    assert writer.returncode == -signal.SIGKILL, stderr.decode()
    assert stdout.decode().strip() == "acknowledged"

    backend = EdgeBackend(tmp_path)
    try:
        assert await backend.list_aliases() == {"docs": "v1"}
        assert await backend.count("docs") == 99
        hits = await backend.search("docs", SearchQuery(vector=[1.0, 8.0, 0.0, 0.0], limit=1, with_payload=True))
        assert (hits[0].id, hits[0].payload) == (8, {"i": 8})
    finally:
        await backend.close()


async def test_edge_refuses_a_data_dir_another_backend_holds(tmp_path):
    first = EdgeBackend(tmp_path)
    with pytest.raises(FailedPrecondition):
        EdgeBackend(tmp_path)
    await first.close()
    await EdgeBackend(tmp_path).close()


async def test_edge_replaces_a_shard_directory_left_by_an_interrupted_create(tmp_path):
    leftover = tmp_path / "collections" / "c"
    leftover.mkdir(parents=True)
    (leftover / "junk").write_text("half-made")
    backend = EdgeBackend(tmp_path)
    try:
        assert await backend.list_collections() == []
        await filled(backend, count=4)
        assert await backend.count("c") == 4
    finally:
        await backend.close()


# -- the Qdrant backend -------------------------------------------------------------------------
async def test_qdrant_local_path_mode_keeps_collections_and_the_embedding_model(tmp_path):
    backend = QdrantBackend(str(tmp_path / "qdrant"))
    await filled(backend, count=4)
    await backend.update_alias("docs", "c")
    await backend.close()
    reopened = QdrantBackend(str(tmp_path / "qdrant"))
    try:
        info = await reopened.get_collection("docs")
        assert (info.spec.embedding_model, info.points_count, info.aliases) == ("model-a", 4, ("docs",))
    finally:
        await reopened.close()


@pytest.mark.parametrize("prefer_grpc", [True, False], ids=["grpc", "rest"])
async def test_qdrant_server_that_refuses_connections_is_unavailable(prefer_grpc):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    backend = QdrantBackend(f"http://127.0.0.1:{port}", timeout=1, prefer_grpc=prefer_grpc)
    try:
        with pytest.raises(Unavailable):
            await backend.search("docs", SearchQuery(vector=[0.1] * DIM))
    finally:
        await backend.close()


async def test_qdrant_server_that_never_answers_times_out_as_unavailable():
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        backend = QdrantBackend(f"http://127.0.0.1:{silent.getsockname()[1]}", timeout=1, prefer_grpc=False)
        try:
            with pytest.raises(Unavailable):
                await backend.list_aliases()
        finally:
            await backend.close()


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


# -- fault injection ----------------------------------------------------------------------------
class RecordingSleep:
    def __init__(self) -> None:
        self.slept: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.slept.append(seconds)


@pytest.fixture
def sleeper() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
async def faulty(tmp_path, sleeper) -> FaultInjectingBackend:
    wrapped = FaultInjectingBackend(EdgeBackend(tmp_path), sleep=sleeper)
    await filled(wrapped, count=5, name="primary")
    await filled(wrapped, count=5, name="canary")
    yield wrapped
    await wrapped.close()


QUERY = SearchQuery(vector=unit_vectors(1)[0], limit=2)


@pytest.mark.parametrize(("kind", "error"), [(FaultKind.UNAVAILABLE, Unavailable),
                                             (FaultKind.EXCEPTION, RuntimeError)])
async def test_an_injected_fault_fails_only_its_collection_until_cleared(faulty, kind, error):
    faulty.inject("canary", error=kind)
    with pytest.raises(error):
        await faulty.search("canary", QUERY)
    with pytest.raises(error):
        await faulty.upsert("canary", [Point(id=9, vector=unit_vectors(1)[0])])
    assert len(await faulty.search("primary", QUERY)) == 2
    assert faulty.hits["canary"] == 2
    faulty.clear("canary")
    assert len(await faulty.search("canary", QUERY)) == 2
    assert await faulty.count("canary") == 5  # the refused upsert wrote nothing


async def test_a_fault_can_be_limited_to_some_operations(faulty):
    faulty.inject("canary", error=FaultKind.UNAVAILABLE, operations={"search"})
    await faulty.upsert("canary", [Point(id=9, vector=unit_vectors(1)[0])])
    assert await faulty.count("canary") == 6
    with pytest.raises(Unavailable):
        await faulty.search("canary", QUERY)
    faulty.clear()
    await faulty.search("canary", QUERY)


async def test_an_injected_delay_waits_then_answers(faulty, sleeper):
    faulty.inject("canary", delay=0.25)
    assert await faulty.search("canary", QUERY) == await faulty.inner.search("canary", QUERY)
    assert sleeper.slept == [0.25]


async def test_a_fault_needs_something_to_do(faulty):
    with pytest.raises(ValueError):
        faulty.inject("canary")
    with pytest.raises(ValueError):
        faulty.inject("canary", error=FaultKind.UNAVAILABLE, operations={"serach"})


# -- micro-batching -----------------------------------------------------------------------------
class GatedDoubler:
    """Doubles numbers; the first batch waits at a gate so the test decides what queues behind it."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.batches: list[list[int]] = []

    async def __call__(self, batch: list[int]) -> list[int]:
        self.batches.append(list(batch))
        if len(self.batches) == 1:
            await self.gate.wait()
        if any(n < 0 for n in batch):
            raise ValueError("negative")
        return [2 * n for n in batch]


async def let_queue() -> None:
    """Let every ready task run up to its next wait."""
    for _ in range(3):
        await asyncio.sleep(0)


async def test_an_idle_batcher_runs_a_request_alone_at_once():
    run = GatedDoubler()
    run.gate.set()
    batcher = MicroBatcher(run, max_batch_size=8)
    assert [await batcher.submit(1), await batcher.submit(2)] == [2, 4]
    assert run.batches == [[1], [2]]


async def test_requests_arriving_during_a_batch_run_together_as_the_next_batches():
    run = GatedDoubler()
    batcher = MicroBatcher(run, max_batch_size=3)
    first = asyncio.ensure_future(batcher.submit(0))
    await let_queue()
    rest = [asyncio.ensure_future(batcher.submit(n)) for n in range(1, 6)]
    await let_queue()
    run.gate.set()
    assert await asyncio.gather(first, *rest) == [0, 2, 4, 6, 8, 10]
    assert run.batches == [[0], [1, 2, 3], [4, 5]]
    assert (batcher.batches, batcher.requests) == (3, 6)


async def test_a_queued_request_whose_caller_left_is_skipped():
    run = GatedDoubler()
    batcher = MicroBatcher(run, max_batch_size=8)
    first = asyncio.ensure_future(batcher.submit(0))
    await let_queue()
    gone, kept = asyncio.ensure_future(batcher.submit(1)), asyncio.ensure_future(batcher.submit(2))
    await let_queue()
    gone.cancel()
    run.gate.set()
    assert await asyncio.gather(first, kept) == [0, 4]
    assert run.batches == [[0], [2]]


async def test_a_failed_batch_fails_each_of_its_requests_and_the_next_batch_still_runs():
    run = GatedDoubler()
    batcher = MicroBatcher(run, max_batch_size=2)
    first = asyncio.ensure_future(batcher.submit(0))
    await let_queue()
    queued = [asyncio.ensure_future(batcher.submit(n)) for n in (-1, 1, 2)]
    await let_queue()
    run.gate.set()
    results = await asyncio.gather(first, *queued, return_exceptions=True)
    assert results[0] == 0
    assert all(isinstance(r, ValueError) for r in results[1:3])
    assert results[3] == 4
    assert await batcher.submit(3) == 6  # idle again


# -- snapshots ----------------------------------------------------------------------------------
#: A Qdrant server to run the server snapshot tests against (qdrant-client's local mode has none).
QDRANT_TEST_URL = os.environ.get("SEARCHGW_TEST_QDRANT_URL", "")


@pytest.fixture(params=["edge", "qdrant-server"])
async def snapshotting(request, tmp_path) -> VectorBackend:
    """A backend that can take snapshots: the embedded one, and a Qdrant server when one is given."""
    if request.param == "edge":
        opened: VectorBackend = EdgeBackend(tmp_path / "edge")
    else:
        if not QDRANT_TEST_URL:
            pytest.skip("snapshots on the qdrant backend need a Qdrant server (qdrant-client's local mode raises "
                        "NotImplementedError for them): set SEARCHGW_TEST_QDRANT_URL=http://host:6333 to run this")
        opened = QdrantBackend(QDRANT_TEST_URL, prefer_grpc=False)
        for name in ("c", "r"):
            with contextlib.suppress(NotFound):
                await opened.delete_collection(name)
    yield opened
    await opened.close()


def snapshot_file(data_dir: Path, name: str, collection: str = "c") -> Path:
    """Where the edge backend keeps the snapshot `name` (see gateway.backends._snapshots)."""
    return data_dir / "snapshots" / collection / name.removeprefix(f"{collection}-")


async def test_a_restored_snapshot_has_the_spec_and_exactly_the_points_it_was_taken_with(snapshotting):
    custom = spec(distance=Distance.DOT, hnsw_m=8, hnsw_ef_construct=50, full_scan_threshold=500,
                  embedding_model="model-b")
    vectors = unit_vectors(40)
    await snapshotting.create_collection(custom)
    await snapshotting.upsert("c", [Point(id=i, vector=vectors[i], payload={"i": i}) for i in range(30)])
    snapshot = await snapshotting.create_snapshot("c")
    await snapshotting.upsert("c", [Point(id=i, vector=vectors[i], payload={"i": i}) for i in range(30, 40)])
    await snapshotting.delete_points("c", ids=[0])

    assert (snapshot.collection, snapshot.size_bytes > 0) == ("c", True)
    assert snapshot in await snapshotting.list_snapshots("c")
    restored = await snapshotting.restore_snapshot(snapshot.name, "r")
    assert restored.spec == replace(custom, name="r")
    assert restored.points_count == 30 and await snapshotting.count("c") == 39
    query = SearchQuery(vector=vectors[35], limit=40, with_payload=True)
    hits = await snapshotting.search("r", query)
    assert sorted(hit.id for hit in hits) == list(range(30))
    assert all(hit.payload == {"i": hit.id} for hit in hits)
    expected = {hit.id: hit.score for hit in await snapshotting.search("c", query) if hit.id < 30}
    assert {hit.id: hit.score for hit in hits if hit.id in expected} == pytest.approx(expected)


async def test_a_snapshot_can_be_taken_through_an_alias_and_is_of_its_target(snapshotting):
    await filled(snapshotting, count=3)
    await snapshotting.update_alias("docs", "c")
    try:
        snapshot = await snapshotting.create_snapshot("docs")
        assert snapshot.collection == "c"
        assert [s.name for s in await snapshotting.list_snapshots("docs")] == [s.name for s in
                                                                              await snapshotting.list_snapshots("c")]
    finally:
        await snapshotting.delete_alias("docs")


async def test_a_restore_never_overwrites_a_collection_or_an_alias(snapshotting):
    await filled(snapshotting, count=5)
    await filled(snapshotting, count=2, name="r")
    snapshot = await snapshotting.create_snapshot("c")
    await snapshotting.update_alias("docs", "r")
    try:
        for taken in ("r", "docs", "c"):
            with pytest.raises(AlreadyExists):
                await snapshotting.restore_snapshot(snapshot.name, taken)
        assert (await snapshotting.count("r"), await snapshotting.count("c")) == (2, 5)
    finally:
        await snapshotting.delete_alias("docs")


@pytest.mark.parametrize("name", ["c-2001-01-01-00-00-00-000000.snapshot", "nope-2001-01-01-00-00-00-000000.snapshot",
                                  "no-such.snapshot", "c"])
async def test_an_unknown_snapshot_is_not_found(snapshotting, name):
    await filled(snapshotting, count=2)
    await snapshotting.create_snapshot("c")
    with pytest.raises(NotFound):
        await snapshotting.restore_snapshot(name, "r")
    with pytest.raises(NotFound):
        await snapshotting.get_collection("r")


@pytest.mark.parametrize(("snapshot", "collection", "field"), [
    ("", "r", "snapshot"),
    ("../../catalog.json", "r", "snapshot"),
    (".hidden.snapshot", "r", "snapshot"),
    ("c-2001-01-01-00-00-00-000000.snapshot", "", "collection"),
    ("c-2001-01-01-00-00-00-000000.snapshot", "a/b", "collection"),
    ("c-2001-01-01-00-00-00-000000.snapshot", ".r", "collection"),
])
async def test_a_restore_with_a_bad_name_is_refused_naming_the_field(backend, snapshot, collection, field):
    with pytest.raises(InvalidArgument) as info:
        await backend.restore_snapshot(snapshot, collection)
    assert info.value.field == field


@pytest.mark.parametrize("call", [lambda b: b.create_snapshot("nope"), lambda b: b.list_snapshots("nope")],
                         ids=["create", "list"])
async def test_snapshots_of_an_unknown_collection_are_not_found(backend, call):
    with pytest.raises(NotFound):
        await call(backend)


async def test_edge_a_write_issued_during_a_snapshot_waits_for_it_and_is_not_in_it(tmp_path):
    backend = EdgeBackend(tmp_path)
    try:
        vectors = await filled(backend, count=10)
        finished: list[str] = []
        taking = asyncio.ensure_future(backend.create_snapshot("c"))
        taking.add_done_callback(lambda _: finished.append("snapshot"))
        await let_queue()  # the snapshot has paused writes and is copying the shard
        writing = asyncio.ensure_future(backend.upsert("c", [Point(id=100, vector=vectors[0])]))
        writing.add_done_callback(lambda _: finished.append("write"))
        snapshot = await taking
        await writing
        assert finished == ["snapshot", "write"]
        assert (await backend.restore_snapshot(snapshot.name, "r")).points_count == 10
        assert await backend.count("c") == 11
    finally:
        await backend.close()


async def test_edge_a_snapshot_waits_for_the_writes_in_flight_and_holds_them(tmp_path):
    backend = EdgeBackend(tmp_path)
    try:
        await filled(backend, count=10)
        bulk = unit_vectors(3000, seed=11)
        writing = asyncio.ensure_future(backend.upsert("c", [Point(id=1000 + i, vector=v) for i, v in enumerate(bulk)]))
        await asyncio.sleep(0)  # the upsert is in the engine
        snapshot = await backend.create_snapshot("c")
        assert writing.done()
        assert (await backend.restore_snapshot(snapshot.name, "r")).points_count == 3010
    finally:
        await backend.close()


async def test_edge_a_caller_that_leaves_does_not_cut_a_snapshot_short(tmp_path):
    backend = EdgeBackend(tmp_path)
    try:
        await filled(backend, count=10)
        taking = asyncio.ensure_future(backend.create_snapshot("c"))
        await let_queue()
        taking.cancel()
        await backend.upsert("c", [Point(id=100, vector=unit_vectors(1)[0])])  # waits for the copy to finish
        (snapshot,) = await backend.list_snapshots("c")
        assert (await backend.restore_snapshot(snapshot.name, "r")).points_count == 10
    finally:
        await backend.close()


async def test_edge_snapshots_are_named_by_collection_and_time_and_listed_oldest_first(tmp_path):
    backend = EdgeBackend(tmp_path, wall_clock=lambda: 1_700_000_000.25)
    try:
        await filled(backend, count=3)
        first, second = await backend.create_snapshot("c"), await backend.create_snapshot("c")
        assert first.name == "c-2023-11-14-22-13-20-250000.snapshot"
        assert second.name == "c-2023-11-14-22-13-20-250001.snapshot"  # the same instant, made unique
        assert first.create_time == pytest.approx(1_700_000_000.25)
        assert len(first.checksum) == 64 and first.checksum == hashlib.sha256(
            snapshot_file(tmp_path, first.name).read_bytes()).hexdigest()
        assert await backend.list_snapshots("c") == [first, second]
    finally:
        await backend.close()


async def test_edge_snapshots_survive_a_restart_and_the_deletion_of_their_collection(tmp_path):
    backend = EdgeBackend(tmp_path)
    vectors = await filled(backend, count=6)
    snapshot = await backend.create_snapshot("c")
    await backend.delete_collection("c")
    await backend.close()

    reopened = EdgeBackend(tmp_path)
    try:
        assert await reopened.list_snapshots("c") == [snapshot]
        restored = await reopened.restore_snapshot(snapshot.name, "c")  # even under its old name
        assert (restored.spec, restored.points_count) == (spec(), 6)
        hits = await reopened.search("c", SearchQuery(vector=vectors[4], limit=1))
        assert hits[0].id == 4
    finally:
        await reopened.close()
    again = EdgeBackend(tmp_path)
    try:
        assert (await again.get_collection("c")).points_count == 6  # the restore was committed durably
    finally:
        await again.close()


@pytest.mark.parametrize("damage", ["flipped-bytes", "truncated-without-checksum"])
async def test_edge_a_damaged_snapshot_is_refused_and_leaves_nothing_behind(tmp_path, damage):
    backend = EdgeBackend(tmp_path)
    try:
        await filled(backend, count=5)
        snapshot = await backend.create_snapshot("c")
        archive = snapshot_file(tmp_path, snapshot.name)
        data = bytearray(archive.read_bytes())
        if damage == "flipped-bytes":
            data[len(data) // 2:len(data) // 2 + 16] = bytes(b ^ 0xFF for b in data[len(data) // 2:len(data) // 2 + 16])
        else:
            del data[len(data) // 2:]
            archive.with_name(archive.name + ".sha256").unlink()
        archive.write_bytes(bytes(data))
        with pytest.raises(FailedPrecondition, match="damaged"):
            await backend.restore_snapshot(snapshot.name, "r")
        with pytest.raises(NotFound):
            await backend.get_collection("r")
        assert sorted(p.name for p in (tmp_path / "collections").iterdir()) == ["c"]
    finally:
        await backend.close()


async def test_qdrant_local_mode_has_no_snapshots_and_says_so():
    backend = QdrantBackend(":memory:")
    try:
        await filled(backend, count=3)
        with pytest.raises(FailedPrecondition, match="local mode"):
            await backend.create_snapshot("c")
        assert await backend.list_snapshots("c") == []
        with pytest.raises(FailedPrecondition, match="local mode"):
            await backend.restore_snapshot("c-1-2001-01-01-00-00-00.snapshot", "r")
        with pytest.raises(AlreadyExists):  # the name is checked first, as on a server
            await backend.restore_snapshot("c-1-2001-01-01-00-00-00.snapshot", "c")
    finally:
        await backend.close()


async def test_qdrant_snapshots_on_a_server_that_refuses_connections_are_unavailable():
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    backend = QdrantBackend(f"http://127.0.0.1:{port}", timeout=1, prefer_grpc=False)
    try:
        for call in (lambda: backend.create_snapshot("c"), lambda: backend.list_snapshots("c"),
                     lambda: backend.restore_snapshot("c-1-2001-01-01-00-00-00.snapshot", "r")):
            with pytest.raises(Unavailable):
                await call()
    finally:
        await backend.close()


async def test_faults_reach_the_snapshot_operations_and_the_rest_pass_through(faulty):
    faulty.inject("canary", error=FaultKind.UNAVAILABLE, operations={"create_snapshot", "list_snapshots"})
    faulty.inject("copy", error=FaultKind.UNAVAILABLE, operations={"restore_snapshot"})
    with pytest.raises(Unavailable):
        await faulty.create_snapshot("canary")
    with pytest.raises(Unavailable):
        await faulty.list_snapshots("canary")
    snapshot = await faulty.create_snapshot("primary")
    assert await faulty.list_snapshots("primary") == [snapshot]
    with pytest.raises(Unavailable):
        await faulty.restore_snapshot(snapshot.name, "copy")
    assert (await faulty.restore_snapshot(snapshot.name, "copy-2")).points_count == 5
    assert faulty.hits == {"canary": 2, "copy": 1}
