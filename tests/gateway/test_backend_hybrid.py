"""The BM25 / hybrid part of the VectorBackend contract, run against both real engines.

`edge` is the embedded qdrant-edge backend (qdrant-edge's own `Bm25`, `Prefetch`, `Fusion`); `qdrant` is
`QdrantBackend` over gRPC against the Qdrant-protocol test server (`qdrant/bm25` documents embedded by
the server, `rrf` / `fusion` queries over prefetches), as a Qdrant ≥ 1.15.2 server would serve them.
qdrant-client's local mode has no server-side inference, so it refuses a BM25 collection (tested).

Every test runs on both, and one test checks both engines give the same hits and scores.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from searchgw.errors import FailedPrecondition, InvalidArgument
from searchgw.gateway.backends import (
    Bm25Config,
    Bm25Tokenizer,
    CollectionInfo,
    CollectionSpec,
    EdgeBackend,
    FieldCondition,
    Filter,
    Fusion,
    FusionMethod,
    Point,
    QdrantBackend,
    Range,
    SearchMode,
    SearchQuery,
    VectorBackend,
)
from searchgw.gateway.rules import BM25_TEXT_PAYLOAD_KEY, TEXT_PAYLOAD_KEY
from tests.gateway.backend_helpers import DIM, unit_vectors
from tests.qdrant_server import QdrantTestServer

TEXTS = [
    "replacement filter for the XK-4471 air purifier",
    "replacement filter for the XK-4472 air purifier",
    "cordless vacuum cleaner with a washable filter",
    "stainless steel kettle that boils water quickly",
    "noise cancelling headphones for long flights",
    "ergonomic office chair with lumbar support",
    "waterproof hiking boots for rocky trails",
    "espresso machine with a milk frother",
    "smart thermostat that learns your schedule",
    "portable charger for phones and tablets",
]
VECTORS = unit_vectors(len(TEXTS))


def bm25_spec(name: str = "h", **bm25: object) -> CollectionSpec:
    return CollectionSpec(name=name, dimension=DIM, embedding_model="model-a", bm25=Bm25Config(**bm25))  # type: ignore[arg-type]


@pytest.fixture
async def qdrant_server(tmp_path: Path) -> AsyncIterator[QdrantTestServer]:
    server = QdrantTestServer(tmp_path / "qdrant")
    await server.start()
    yield server
    await server.stop()


@pytest.fixture(params=["edge", "qdrant"])
async def backend(request, tmp_path: Path) -> AsyncIterator[VectorBackend]:
    if request.param == "edge":
        opened: VectorBackend = EdgeBackend(tmp_path / "edge")
        yield opened
        await opened.close()
        return
    server = QdrantTestServer(tmp_path / "qdrant")
    await server.start()
    opened = QdrantBackend(server.url, timeout=5)
    opened.server = server  # type: ignore[attr-defined]  # for the tests that read the server back
    yield opened
    await opened.close()
    await server.stop()


async def hybrid_filled(backend: VectorBackend, name: str = "h", *, twin: bool = True, **bm25: object) -> None:
    """TEXTS as points 0..9 (their text in the payload, as the gateway stores it), and (with `twin`) point 10
    with no text and point 0's vector."""
    await backend.create_collection(bm25_spec(name, **bm25))
    points = [Point(id=i, vector=VECTORS[i], payload={TEXT_PAYLOAD_KEY: text, "i": i}) for i, text in enumerate(TEXTS)]
    if twin:
        points.append(Point(id=10, vector=VECTORS[0], payload={"i": 10}))
    await backend.upsert(name, points)


async def reopened(backend: VectorBackend, tmp_path: Path) -> VectorBackend:
    """Another backend on the same data: the spec must come from what the engine stored."""
    if isinstance(backend, EdgeBackend):
        await backend.close()
        return EdgeBackend(tmp_path / "edge")
    return QdrantBackend(backend.server.url, timeout=5)  # type: ignore[attr-defined]


def sparse(text: str, limit: int = 10, **fields: object) -> SearchQuery:
    return SearchQuery(vector=(), limit=limit, mode=SearchMode.SPARSE, text=text, **fields)  # type: ignore[arg-type]


def hybrid(text: str, vector: np.ndarray, limit: int = 10, **fields: object) -> SearchQuery:
    return SearchQuery(vector=vector, limit=limit, mode=SearchMode.HYBRID, text=text, **fields)  # type: ignore[arg-type]


# -- the config ---------------------------------------------------------------------------------------
async def test_a_bm25_config_reads_back_with_defaults_filled_in_and_survives_a_new_client(backend, tmp_path):
    created = await backend.create_collection(bm25_spec(k1=0, avg_len=0, language=""))
    expected = Bm25Config(k1=1.2, b=0.75, avg_len=256.0, language="english", tokenizer=Bm25Tokenizer.WORD)
    assert created.spec.bm25 == expected
    other = await reopened(backend, tmp_path)
    try:
        assert await other.get_collection("h") == CollectionInfo(spec=created.spec, points_count=0)
    finally:
        await other.close()


async def test_custom_bm25_settings_are_kept(backend):
    custom = Bm25Config(k1=1.5, b=0.5, avg_len=12.0, language="german", tokenizer=Bm25Tokenizer.WHITESPACE)
    await backend.create_collection(CollectionSpec(name="h", dimension=DIM, bm25=custom))
    assert (await backend.get_collection("h")).spec.bm25 == custom


@pytest.mark.parametrize(("bad", "field"), [
    ({"language": "klingon"}, "collection.bm25.language"),
    ({"k1": -1.0}, "collection.bm25.k1"),
    ({"b": 1.5}, "collection.bm25.b"),
    ({"avg_len": -3.0}, "collection.bm25.avg_len"),
    ({"tokenizer": "sentencepiece"}, "collection.bm25.tokenizer"),
])
async def test_a_bad_bm25_config_is_refused_naming_the_field_and_creates_nothing(backend, bad, field):
    with pytest.raises(InvalidArgument) as caught:
        await backend.create_collection(bm25_spec(**bad))
    assert caught.value.field == field
    assert await backend.list_collections() == []


# -- sparse -------------------------------------------------------------------------------------------
async def test_a_sparse_search_finds_the_exact_rare_token_first(backend):
    await hybrid_filled(backend)
    hits = await backend.search("h", sparse("XK-4471", with_payload=True))
    assert hits[0].id == 0  # both XK-44xx points share "xk"; only point 0 has "4471"
    assert {hit.id for hit in hits} == {0, 1}
    assert hits[0].score > hits[1].score > 0
    assert hits[0].payload == {TEXT_PAYLOAD_KEY: TEXTS[0], "i": 0}


async def test_a_point_without_text_is_never_a_sparse_hit(backend):
    await hybrid_filled(backend)
    hits = await backend.search("h", sparse("replacement filter air purifier"))
    assert 10 not in {hit.id for hit in hits}  # same dense vector as point 0, but no text to index


async def test_a_raw_vector_point_is_indexed_by_its_bm25_text(backend):
    await hybrid_filled(backend)
    await backend.upsert("h", [Point(id=11, vector=VECTORS[5], payload={BM25_TEXT_PAYLOAD_KEY: "ZQ-9 gasket"})])
    assert [hit.id for hit in await backend.search("h", sparse("gasket"))] == [11]


async def test_sparse_search_takes_filters_thresholds_and_offsets(backend):
    await hybrid_filled(backend)
    both = await backend.search("h", sparse("XK-4471"))
    assert [hit.id for hit in both] == [0, 1]
    point_1 = Filter(must=(FieldCondition("i", integer=1),))
    assert [hit.id for hit in await backend.search("h", sparse("XK-4471", filter=point_1))] == [1]
    assert [hit.id for hit in await backend.search("h", sparse("XK-4471", score_threshold=(both[0].score + both[1].score) / 2))] == [0]
    assert [hit.id for hit in await backend.search("h", sparse("XK-4471", limit=1, offset=1))] == [1]


async def test_a_word_only_in_stopwords_matches_nothing(backend):
    await hybrid_filled(backend)
    assert await backend.search("h", sparse("the and of")) == []


# -- hybrid -------------------------------------------------------------------------------------------
async def test_rrf_fuses_the_dense_and_sparse_rankings_by_rank_with_the_k_asked_for(backend):
    await hybrid_filled(backend)
    query_vector = VECTORS[7]
    dense = await backend.search("h", SearchQuery(vector=query_vector, limit=11))
    bm25 = await backend.search("h", sparse("filter for the purifier", limit=11))
    for k in (1, 60):
        fused = await backend.search("h", hybrid("filter for the purifier", query_vector, limit=11,
                                                 fusion=Fusion(FusionMethod.RRF, rrf_k=k)))
        expected: dict[object, float] = {}
        for ranking in (dense, bm25):
            for rank, hit in enumerate(ranking):
                expected[hit.id] = expected.get(hit.id, 0.0) + 1.0 / (k + rank)
        assert {hit.id: pytest.approx(hit.score, rel=1e-5) for hit in fused} == expected
        assert [hit.score for hit in fused] == sorted((hit.score for hit in fused), reverse=True)


async def test_dbsf_fuses_by_normalised_scores(backend):
    await hybrid_filled(backend)
    query_vector = VECTORS[7]
    text = "filter for the purifier"
    fused = await backend.search("h", hybrid(text, query_vector, limit=11, fusion=Fusion(FusionMethod.DBSF, rrf_k=0)))
    dense = await backend.search("h", SearchQuery(vector=query_vector, limit=11))
    bm25 = await backend.search("h", sparse(text, limit=11))

    def normalised(ranking):  # mean ± 3 sample standard deviations mapped to 0..1 (DBSF)
        scores = np.array([hit.score for hit in ranking])
        mean, spread = scores.mean(), scores.std(ddof=1)  # the sample standard deviation
        low, high = mean - 3 * spread, mean + 3 * spread
        return {hit.id: (hit.score - low) / (high - low) for hit in ranking}

    expected: dict[object, float] = {}
    for ranking in (dense, bm25):
        for point, score in normalised(ranking).items():
            expected[point] = expected.get(point, 0.0) + score
    assert {hit.id: pytest.approx(hit.score, abs=1e-4) for hit in fused} == expected


async def test_hybrid_search_filters_both_lists_and_pages_without_overlap(backend):
    await hybrid_filled(backend)
    low = Filter(must=(FieldCondition("i", range=Range(lt=5)),))
    hits = await backend.search("h", hybrid("XK-4471 purifier", VECTORS[9], filter=low))
    assert hits and all(isinstance(hit.id, int) and hit.id < 5 for hit in hits)
    whole = await backend.search("h", hybrid("filter", VECTORS[3], limit=6))
    pages = [await backend.search("h", hybrid("filter", VECTORS[3], limit=2, offset=start)) for start in (0, 2, 4)]
    assert [hit.id for page in pages for hit in page] == [hit.id for hit in whole]


async def test_the_prefetch_limit_bounds_what_each_list_contributes(backend):
    await hybrid_filled(backend)
    fused = await backend.search("h", hybrid("XK-4471", VECTORS[6], limit=10,
                                             fusion=Fusion(FusionMethod.RRF, rrf_k=60, prefetch_limit=1)))
    dense_top = (await backend.search("h", SearchQuery(vector=VECTORS[6], limit=1)))[0].id
    assert {hit.id for hit in fused} == {0, dense_top}


# -- refusals -----------------------------------------------------------------------------------------
async def test_a_collection_without_bm25_refuses_sparse_and_hybrid_naming_the_mode(backend):
    await backend.create_collection(CollectionSpec(name="d", dimension=DIM))
    for query in (sparse("XK-4471"), hybrid("XK-4471", VECTORS[0])):
        with pytest.raises(FailedPrecondition) as caught:
            await backend.search("d", query)
        assert caught.value.metadata["field"] == "mode" and "bm25" in caught.value.message.lower()


async def test_sparse_and_hybrid_need_a_text(backend):
    await hybrid_filled(backend)
    for query in (sparse(""), SearchQuery(vector=VECTORS[0], mode=SearchMode.HYBRID)):
        with pytest.raises(InvalidArgument) as caught:
            await backend.search("h", query)
        assert caught.value.field == "text"


@pytest.mark.parametrize(("fusion", "field"), [
    (Fusion(FusionMethod.RRF, rrf_k=5000), "fusion.rrf_k"),
    (Fusion(FusionMethod.DBSF, rrf_k=3), "fusion.rrf_k"),
    (Fusion(FusionMethod.RRF, prefetch_limit=100_000), "fusion.prefetch_limit"),
])
async def test_a_bad_fusion_is_refused_naming_the_field(backend, fusion, field):
    await hybrid_filled(backend)
    with pytest.raises(InvalidArgument) as caught:
        await backend.search("h", hybrid("filter", VECTORS[0], fusion=fusion))
    assert caught.value.field == field


async def test_scroll_gives_the_dense_vector_of_a_point_with_a_bm25_vector(backend):
    await hybrid_filled(backend)
    page = await backend.scroll("h", limit=11)
    assert [point.id for point in page.points] == list(range(11))
    np.testing.assert_allclose(np.stack([point.vector for point in page.points[:10]]), VECTORS, atol=1e-6)


# -- the two engines agree ----------------------------------------------------------------------------
async def test_both_engines_give_the_same_sparse_and_hybrid_hits_and_scores(tmp_path, qdrant_server):
    edge = EdgeBackend(tmp_path / "edge-same")
    remote = QdrantBackend(qdrant_server.url, timeout=5)
    try:
        for opened in (edge, remote):
            # no twin: a dense tie may be ordered either way, and RRF scores follow the order
            await hybrid_filled(opened, twin=False, k1=1.5, b=0.6, avg_len=8.0)
        queries = [sparse("replacement filter XK-4472"),
                   hybrid("kettle for water", VECTORS[4]),
                   hybrid("headphones", VECTORS[2], fusion=Fusion(FusionMethod.DBSF, rrf_k=0))]
        for query in queries:
            on_edge, on_server = await edge.search("h", query), await remote.search("h", query)
            assert [hit.id for hit in on_edge] == [hit.id for hit in on_server]
            assert [hit.score for hit in on_edge] == pytest.approx([hit.score for hit in on_server], rel=1e-5)
    finally:
        await edge.close()
        await remote.close()


async def test_qdrant_client_local_mode_refuses_a_bm25_collection_naming_the_field():
    local = QdrantBackend(":memory:")
    try:
        with pytest.raises(FailedPrecondition) as caught:
            await local.create_collection(bm25_spec())
        assert caught.value.metadata["field"] == "collection.bm25"
        assert await local.list_collections() == []
    finally:
        await local.close()


async def test_a_restored_snapshot_keeps_the_bm25_config_and_index(tmp_path):
    # The embedded backend only: the test server cannot restore (Qdrant recovers over REST; see
    # test_qdrant_remote.NOT_OVER_THIS_SERVER).
    edge = EdgeBackend(tmp_path / "edge-snapshot")
    try:
        await hybrid_filled(edge, k1=1.5, avg_len=8.0)
        snapshot = await edge.create_snapshot("h")
        restored = await edge.restore_snapshot(snapshot.name, "h2")
        assert restored.spec.bm25 == (await edge.get_collection("h")).spec.bm25
        assert [hit.id for hit in await edge.search("h2", sparse("XK-4471"))] == [0, 1]
    finally:
        await edge.close()
