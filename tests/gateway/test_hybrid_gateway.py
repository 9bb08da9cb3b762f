"""Hybrid search through the gateway: real gRPC on loopback, the real embedder (ONNX model), real engines.

What a client relies on: a collection created with `bm25` shows it in GetCollection; SearchRequest.mode
sparse / hybrid ranks by BM25 / both fused (text only, and only where the collection has BM25); page
tokens are bound to the mode and fusion; a raw-vector point's `bm25_text`; and rollouts: a canary without
primary's BM25 is refused, and PrepareRollout gives the canary primary's BM25 config so hybrid queries
routed to it are answered there.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from searchgw.errors import SearchgwError
from searchgw.gateway.rules import BM25_TEXT_PAYLOAD_KEY
from searchgw.v1 import collection_service_pb2 as coll_pb
from searchgw.v1 import common_pb2
from searchgw.v1 import rollout_service_pb2 as roll_pb
from searchgw.v1 import search_service_pb2 as search_pb
from tests.gateway.test_cli import searchgw
from tests.qdrant_server import QdrantTestServer

SPARSE, HYBRID, DENSE = search_pb.SEARCH_MODE_SPARSE, search_pb.SEARCH_MODE_HYBRID, search_pb.SEARCH_MODE_DENSE
DOCS = [
    "Order the XK-4471 replacement filter for your air purifier",
    "How to clean the filter of an air purifier",
    "Our kettles boil a litre of water in three minutes",
    "Return policy: send the item back within thirty days",
    "The warranty covers manufacturing defects for two years",
    "Shipping takes three to five working days",
]


async def fill(client, name: str, *, bm25: bool = True) -> None:
    await client.create_collection(name, bm25=coll_pb.Bm25Config() if bm25 else None)
    await client.upsert(name, [{"id": i, "text": text} for i, text in enumerate(DOCS)])


def ids(response) -> list[int]:
    return [point.id.num for point in response.points]


@pytest.fixture(params=["edge", "qdrant"])
async def gateway(request, rig, tmp_path: Path):
    """A gateway on the edge backend, or on the qdrant backend over the Qdrant-protocol test server."""
    if request.param == "edge":
        yield await rig.start()
        return
    server = QdrantTestServer(tmp_path / "qdrant")
    await server.start()
    try:
        yield await rig.start("qdrant", qdrant_url=server.url)
    finally:
        for running in list(rig.servers):
            await rig.stop(running)
        await server.stop()


async def test_a_bm25_collection_serves_sparse_and_hybrid_searches_and_shows_its_config(gateway):
    server, client = gateway
    await fill(client, "docs")
    shown = (await client.get_collection("docs")).bm25
    assert (shown.k1, shown.b, shown.avg_len, shown.language) == (pytest.approx(1.2), 0.75, 256.0, "english")
    sparse = await client.search("docs", text="XK-4471", mode=SPARSE, limit=3)
    assert ids(sparse) == [0]  # only the exact code; no other text has a token of it
    hybrid = await client.search("docs", text="XK-4471 filter", mode=HYBRID, limit=3)
    assert ids(hybrid)[0] == 0
    rrf_k_1 = await client.search("docs", text="XK-4471 filter", mode=HYBRID, limit=3,
                                  fusion=search_pb.Fusion(method=search_pb.FUSION_METHOD_RRF, rrf_k=1))
    assert rrf_k_1.points[0].score == pytest.approx(2 / 1)  # first in both lists: 1/(1+0) twice
    dbsf = await client.search("docs", text="XK-4471 filter", mode=HYBRID, limit=3,
                               fusion=search_pb.Fusion(method=search_pb.FUSION_METHOD_DBSF))
    assert ids(dbsf)[0] == 0
    dense = await client.search("docs", text="XK-4471", limit=3)  # unset mode: dense, as before
    assert dense.points and dense.route.collection == "docs"
    counted = {labels: server.metrics.registry.get_sample_value("searchgw_search_modes_total",
                                                              dict(zip(("mode", "fusion"), labels))) or 0.0
               for labels in (("sparse", "none"), ("hybrid", "rrf"), ("hybrid", "dbsf"), ("dense", "none"))}
    assert counted == {("sparse", "none"): 1, ("hybrid", "rrf"): 2, ("hybrid", "dbsf"): 1, ("dense", "none"): 1}


async def test_sparse_and_hybrid_refusals_name_the_field(rig):
    server, client = await rig.start()
    await fill(client, "docs")
    await fill(client, "plain", bm25=False)
    with pytest.raises(SearchgwError) as caught:
        await client.search("docs", vector=[0.1] * 384, mode=SPARSE)
    assert (caught.value.code_name, caught.value.field) == ("INVALID_ARGUMENT", "mode")
    with pytest.raises(SearchgwError) as caught:
        await client.search("plain", text="XK-4471", mode=HYBRID)
    assert caught.value.code_name == "FAILED_PRECONDITION" and caught.value.reason == "NO_BM25_INDEX"
    assert "mode" in caught.value.message and "bm25" in caught.value.message
    with pytest.raises(SearchgwError) as caught:
        await client.search("docs", text="filter", mode=HYBRID, fusion=search_pb.Fusion(rrf_k=100_000))
    assert (caught.value.code_name, caught.value.field) == ("INVALID_ARGUMENT", "fusion.rrf_k")
    with pytest.raises(SearchgwError) as caught:
        await client.create_collection("bad", bm25=coll_pb.Bm25Config(language="klingon"))
    assert (caught.value.code_name, caught.value.field) == ("INVALID_ARGUMENT", "collection.bm25.language")


async def test_a_page_token_is_bound_to_the_mode_and_the_fusion(rig):
    server, client = await rig.start()
    await fill(client, "docs")
    first = await client.search("docs", text="filter purifier", mode=HYBRID, limit=2)
    second = await client.search("docs", text="filter purifier", mode=HYBRID, limit=2,
                                 page_token=first.next_page_token)
    assert first.next_page_token and not set(ids(first)) & set(ids(second))
    for other in ({"mode": DENSE}, {"mode": SPARSE},
                  {"mode": HYBRID, "fusion": search_pb.Fusion(method=search_pb.FUSION_METHOD_DBSF)}):
        with pytest.raises(SearchgwError) as caught:
            await client.search("docs", text="filter purifier", limit=2, page_token=first.next_page_token, **other)
        assert (caught.value.code_name, caught.value.field) == ("INVALID_ARGUMENT", "page_token")


async def test_a_raw_vector_point_is_found_by_its_bm25_text(rig):
    server, client = await rig.start()
    await fill(client, "docs")
    await client.upsert("docs", [{"id": 50, "vector": [0.05] * 384, "bm25_text": "ZQ-9 gasket"}])
    found = await client.search("docs", text="gasket ZQ-9", mode=SPARSE, with_payload=True)
    assert ids(found) == [50]
    assert found.points[0].payload.fields[BM25_TEXT_PAYLOAD_KEY].string_value == "ZQ-9 gasket"
    with pytest.raises(SearchgwError) as caught:
        await client.upsert("docs", [{"id": 51, "text": "a kettle", "bm25_text": "kettle"}])
    assert (caught.value.code_name, caught.value.field) == ("INVALID_ARGUMENT", "points[0].bm25_text")
    with pytest.raises(SearchgwError) as caught:
        await client.upsert("docs", [{"id": 52, "vector": [0.05] * 384, "payload": {BM25_TEXT_PAYLOAD_KEY: "x"}}])
    assert caught.value.field == f"points[0].payload.{BM25_TEXT_PAYLOAD_KEY}"
    assert (await client.get_collection("docs")).points_count == len(DOCS) + 1  # the refused writes wrote nothing


async def test_a_rollout_whose_canary_lacks_primarys_bm25_is_refused(rig):
    server, client = await rig.start()
    await fill(client, "docs-v1")
    await client.update_alias("docs", "docs-v1")
    await fill(client, "docs-v2", bm25=False)
    with pytest.raises(SearchgwError) as caught:
        await client.create_rollout("r1", "docs", "docs-v2")
    assert caught.value.code_name == "FAILED_PRECONDITION" and caught.value.reason == "INCOMPATIBLE_ARMS"
    assert "BM25" in caught.value.message


async def test_a_prepared_canary_gets_primarys_bm25_and_serves_hybrid_queries_routed_to_it(rig):
    server, client = await rig.start()
    await fill(client, "docs-v1")
    await client.update_alias("docs", "docs-v1")
    await client.prepare_rollout("r1", "docs", "docs-v2", stages=[roll_pb.Stage(weight_percent=100)])
    async for message in client.watch_rollout("r1"):
        if message.rollout.state != roll_pb.Rollout.STATE_PREPARING:
            break
    canary = await client.get_collection("docs-v2")
    assert canary.HasField("bm25") and canary.bm25 == (await client.get_collection("docs-v1")).bm25
    assert canary.points_count == len(DOCS)
    on_canary = await client.search("docs", text="XK-4471", mode=SPARSE, force_arm="canary")
    assert ids(on_canary) == [0] and on_canary.route.arm == common_pb2.ARM_CANARY
    on_primary = await client.search("docs", text="XK-4471", mode=SPARSE, force_arm="primary")
    assert ids(on_primary) == [0]


async def test_the_cli_creates_a_bm25_collection_shows_it_and_searches_by_mode(rig):
    server, client = await rig.start()
    code, out, err = await searchgw("collections", "create", "cat", "--bm25", "--addr", server.address)
    assert code == 0, err
    assert "bm25         k1=1.2 b=0.75 avg_len=256 language=english" in out
    await client.upsert("cat", [{"id": i, "text": text} for i, text in enumerate(DOCS)])
    code, out, err = await searchgw("search", "XK-4471", "--collection", "cat", "--mode", "sparse", "-o", "json",
                                    "--addr", server.address)
    assert code == 0, err
    assert [point["id"]["num"] for point in json.loads(out)["points"]] == ["0"]
    code, out, err = await searchgw("search", "XK-4471 filter", "--collection", "cat", "--mode", "hybrid",
                                    "--fusion", "dbsf", "--addr", server.address)
    assert code == 0 and out.splitlines()[1].split()[1] == "0", (out, err)
    code, out, err = await searchgw("search", "--vector", "[0.1, 0.2]", "--collection", "cat", "--mode", "hybrid",
                                    "--addr", server.address)
    assert code == 2 and "--mode" in err


async def test_prepare_rollout_may_give_the_canary_another_bm25_config(rig):
    server, client = await rig.start()
    await fill(client, "docs-v1")
    await client.update_alias("docs", "docs-v1")
    await client.prepare_rollout("r1", "docs", "docs-v2", canary=coll_pb.Collection(
        bm25=coll_pb.Bm25Config(k1=2.0, avg_len=12, language="english")))
    async for message in client.watch_rollout("r1"):
        if message.rollout.state != roll_pb.Rollout.STATE_PREPARING:
            break
    canary = (await client.get_collection("docs-v2")).bm25
    assert (canary.k1, canary.b, canary.avg_len) == (2.0, 0.75, 12.0)
    assert ids(await client.search("docs", text="XK-4471", mode=SPARSE, force_arm="canary")) == [0]
