"""Payload indexes, the new filter kinds and CountPoints / ScrollPoints / GetPoints through the real gateway:
a gRPC server on loopback, the typed client, the real edge engine (and the qdrant backend's local mode
where the backend matters), a rollout's two arms.
"""

from __future__ import annotations

import pytest
from google.protobuf import json_format

from searchgw.errors import FailedPrecondition, InvalidArgument, NotFound
from searchgw.gateway.backends import EdgeBackend, PayloadIndex, PayloadIndexType
from searchgw.gateway.rollout.backfill import create_canary
from searchgw.gateway.rollout.preparation import CanaryOverrides
from searchgw.v1 import collection_service_pb2 as coll_pb
from searchgw.v1 import common_pb2
from tests.gateway.backend_helpers import spec
from tests.faults.test_same_failure_same_status import counted as counted_sample
from tests.gateway.outcome_rig import unit_vector

DIMENSION = 384
KEYWORD, INTEGER, DATETIME, TEXT = (coll_pb.PAYLOAD_INDEX_TYPE_KEYWORD, coll_pb.PAYLOAD_INDEX_TYPE_INTEGER,
                                    coll_pb.PAYLOAD_INDEX_TYPE_DATETIME, coll_pb.PAYLOAD_INDEX_TYPE_TEXT)
INDEXES = [coll_pb.PayloadIndex(key="day", type=DATETIME), coll_pb.PayloadIndex(key="rank", type=INTEGER),
           coll_pb.PayloadIndex(key="title", type=TEXT)]


def filter_of(document: dict) -> common_pb2.Filter:
    return json_format.ParseDict(document, common_pb2.Filter())


def point(i: int, base: int = 0) -> dict:
    """Point `base + i`: rank i % 5 (ties), day 2024-01-(i+1), a title, tags i % 3 long, owner null for i % 4 == 0."""
    payload = {"rank": i % 5, "day": f"2024-01-{i + 1:02d}T12:00:00Z", "title": f"report number {i}",
               "tags": ["t"] * (i % 3), "owner": None if i % 4 == 0 else f"user{i}"}
    return {"id": base + i, "vector": unit_vector(i), "payload": payload}


async def collection(client, name: str = "docs-v1", count: int = 20, base: int = 0) -> None:
    await client.create_collection(name, dimension=DIMENSION, payload_indexes=INDEXES)
    await client.upsert(name, [point(i, base) for i in range(count)])


# -- payload indexes ----------------------------------------------------------------------------------
@pytest.mark.parametrize("backend_kind", ["edge", "qdrant"])
async def test_indexes_are_declared_listed_added_and_removed_through_the_gateway(rig, backend_kind):
    _, client = await rig.start(backend_kind)
    created = await client.create_collection("docs", dimension=DIMENSION, payload_indexes=INDEXES)
    assert [(i.key, i.type) for i in created.payload_indexes] == [("day", DATETIME), ("rank", INTEGER),
                                                                  ("title", TEXT)]
    title = created.payload_indexes[2]
    assert (title.text.tokenizer, title.text.lowercase) == (coll_pb.TextIndexParams.TOKENIZER_WORD, True)
    added = await client.create_payload_index("docs", "owner", KEYWORD)
    assert [i.key for i in added.payload_indexes] == ["day", "owner", "rank", "title"]
    removed = await client.delete_payload_index("docs", "rank")
    assert [i.key for i in (await client.get_collection("docs")).payload_indexes] == ["day", "owner", "title"]
    assert removed.payload_indexes == (await client.get_collection("docs")).payload_indexes
    with pytest.raises(NotFound):
        await client.delete_payload_index("docs", "rank")


async def test_a_bad_index_is_invalid_argument_naming_the_field_and_changes_nothing(rig):
    _, client = await rig.start()
    bad = [coll_pb.PayloadIndex(key="a", type=KEYWORD), coll_pb.PayloadIndex(key="a", type=INTEGER)]
    with pytest.raises(InvalidArgument) as raised:
        await client.create_collection("docs", dimension=DIMENSION, payload_indexes=bad)
    assert raised.value.field == "collection.payload_indexes[1].key"
    await collection(client, "docs")
    for index, field in ((coll_pb.PayloadIndex(key="x", type=coll_pb.PAYLOAD_INDEX_TYPE_UNSPECIFIED), "index.type"),
                         (coll_pb.PayloadIndex(key="x y", type=KEYWORD), "index.key"),
                         (coll_pb.PayloadIndex(key="x", type=TEXT, text=coll_pb.TextIndexParams(
                             min_token_length=9, max_token_length=3)), "index.text.max_token_length"),
                         (coll_pb.PayloadIndex(key="x", type=INTEGER, text=coll_pb.TextIndexParams()), "index.text")):
        with pytest.raises(InvalidArgument) as raised:
            await client._call(client.collection_stub.CreatePayloadIndex,
                               coll_pb.CreatePayloadIndexRequest(collection="docs", index=index), 10)
        assert raised.value.field == field
    assert [i.key for i in (await client.get_collection("docs")).payload_indexes] == ["day", "rank", "title"]


async def test_a_canary_prepared_from_primary_gets_primarys_indexes(tmp_path):
    backend = EdgeBackend(tmp_path / "edge")
    try:
        indexes = (PayloadIndex("day", PayloadIndexType.DATETIME), PayloadIndex("rank", PayloadIndexType.INTEGER))
        await backend.create_collection(spec("docs-v1", payload_indexes=indexes))
        canary = await create_canary(backend, None, "docs-v1", "docs-v2", CanaryOverrides(hnsw_m=8))
        assert canary.payload_indexes == indexes
        assert (await backend.get_collection("docs-v2")).spec.payload_indexes == indexes
    finally:
        await backend.close()


# -- filters on the wire ---------------------------------------------------------------------------
async def test_the_new_filter_kinds_work_in_search_count_scroll_and_delete(rig):
    _, client = await rig.start()
    await collection(client, "docs")
    january_first_week = filter_of({
        "must": [{"field": {"key": "day", "datetime_range": {"gte": "2024-01-01T00:00:00Z",
                                                             "lt": "2024-01-08T00:00:00+00:00"}}}],
        "min_should": {"conditions": [{"is_null": {"key": "owner"}},
                                      {"field": {"key": "tags", "values_count": {"gte": 2}}},
                                      {"field": {"key": "title", "text": "REPORT number"}}], "min_count": 2}})
    # days 1-7 are ids 0-6; of those, null owner: 0, 4; two tags: 2, 5; all match the text
    expected = [0, 2, 4, 5]
    hits = await client.search("docs", vector=unit_vector(0), limit=20, filter=january_first_week)
    assert sorted(p.id.num for p in hits.points) == expected
    assert (await client.count_points("docs", filter=january_first_week)).count == len(expected)
    scrolled = await client.scroll_points("docs", filter=january_first_week)
    assert [p.id.num for p in scrolled.points] == expected
    await client.delete("docs", filter=filter_of({"must": [{"is_empty": {"key": "owner"}}]}))
    assert (await client.count_points("docs")).count == 15


@pytest.mark.parametrize(("document", "field"), [
    ({"must": [{"field": {"key": "rank", "integer": 1}}, {"has_id": {"ids": [{"num": 1}]}},
               {"field": {"key": "day", "datetime_range": {"gt": "last tuesday"}}}]},
     "filter.must[2].field.datetime_range.gt"),
    ({"should": [{"field": {"key": "title", "text": " "}}]}, "filter.should[0].field.text"),
    ({"min_should": {"conditions": [{"is_null": {"key": "owner"}}], "min_count": 3}}, "filter.min_should.min_count"),
    ({"must_not": [{"field": {"key": "tags", "values_count": {}}}]}, "filter.must_not[0].field.values_count"),
    ({"must": [{"filter": {"min_should": {"conditions": [{"is_empty": {"key": ""}}], "min_count": 1}}}]},
     "filter.must[0].filter.min_should.conditions[0].is_empty.key"),
])
async def test_a_bad_new_filter_is_invalid_argument_naming_its_path_on_every_rpc(rig, document, field):
    _, client = await rig.start()
    await collection(client, "docs")
    bad = filter_of(document)
    for call in (client.search("docs", vector=unit_vector(0), filter=bad), client.count_points("docs", filter=bad),
                 client.scroll_points("docs", filter=bad), client.delete("docs", filter=bad)):
        with pytest.raises(InvalidArgument) as raised:
            await call
        assert raised.value.field == field
    assert (await client.count_points("docs")).count == 20


async def test_filter_limits_cover_the_new_kinds(rig):
    _, client = await rig.start(max_payload_bytes=1000)
    await collection(client, "docs")
    nested: dict = {"is_null": {"key": "owner"}}
    for _ in range(9):
        nested = {"filter": {"min_should": {"conditions": [nested], "min_count": 1}}}
    with pytest.raises(InvalidArgument, match="nest at most"):
        await client.count_points("docs", filter=filter_of({"must": [nested]}))
    many = {"min_should": {"conditions": [{"is_empty": {"key": "owner"}}] * 300, "min_count": 1}}
    with pytest.raises(InvalidArgument, match="at most 256 conditions") as raised:
        await client.count_points("docs", filter=filter_of(many))
    assert raised.value.field == "filter.min_should.conditions[256]"
    with pytest.raises(InvalidArgument) as raised:
        await client.count_points("docs", filter=filter_of({"must": [{"field": {"key": "title", "text": "x" * 2000}}]}))
    assert raised.value.field == "filter.must[0].field.text"


# -- reading points -------------------------------------------------------------------------------
async def test_an_ordered_scroll_pages_through_ties_giving_every_point_once_in_order(rig):
    _, client = await rig.start()
    await collection(client, "docs", count=23)
    for descending in (False, True):
        seen, token, pages = [], "", 0
        while True:
            page = await client.scroll_points("docs", page_size=3, page_token=token, order_by="rank",
                                              descending=descending, with_payload=True)
            seen += [(p.payload["rank"], p.id.num) for p in page.points]
            pages += 1
            if not (token := page.next_page_token):
                break
        ranks = [rank for rank, _ in seen]
        assert sorted(i for _, i in seen) == list(range(23))  # every point once, ties across pages included
        assert ranks == sorted(ranks, reverse=descending)
        assert pages >= 8


async def test_a_scroll_by_id_pages_with_a_token_bound_to_its_query(rig):
    _, client = await rig.start()
    await collection(client, "docs", count=7)
    first = await client.scroll_points("docs", page_size=4, with_vector=True)
    assert [p.id.num for p in first.points] == [0, 1, 2, 3]
    assert not first.points[0].HasField("payload") and len(first.points[0].vector.values) == DIMENSION
    second = await client.scroll_points("docs", page_size=4, page_token=first.next_page_token, with_vector=True)
    assert [p.id.num for p in second.points] == [4, 5, 6] and second.next_page_token == ""
    with pytest.raises(InvalidArgument) as raised:  # the same token with another query
        await client.scroll_points("docs", page_size=4, page_token=first.next_page_token)
    assert raised.value.field == "page_token"
    with pytest.raises(InvalidArgument) as raised:
        await client.scroll_points("docs", order_by="title")  # a text index cannot order
    assert raised.value.field == "order_by.key"


async def test_get_points_returns_the_found_ones_in_the_order_asked(rig):
    _, client = await rig.start()
    await collection(client, "docs", count=5)
    got = await client.get_points("docs", [3, 42, 1])
    assert [(p.id.num, p.payload["rank"]) for p in got.points] == [(3, 3), (1, 1)]
    assert got.route.collection == "docs-v1" or got.route.collection == "docs"
    with pytest.raises(InvalidArgument) as raised:
        await client.get_points("docs", [1, "not-a-uuid"])
    assert raised.value.field == "ids[1]"
    with pytest.raises(InvalidArgument) as raised:
        await client.get_points("docs", [])
    assert raised.value.field == "ids"


# -- during a rollout -------------------------------------------------------------------------------
async def test_during_a_rollout_reads_go_to_primary_unless_the_canary_is_named(rig):
    from tests.gateway.test_arm_pages import rollout

    server, client = await rig.start()
    await collection(client, "docs-v1", count=6)
    await collection(client, "docs-v2", count=4, base=100)
    await client.update_alias("docs", "docs-v1")
    await rollout(client)
    counted = await client.count_points("docs")
    assert (counted.count, counted.route.collection, counted.route.rollout) == (6, "docs-v1", "r1")
    canary = await client.count_points("docs", arm=common_pb2.ARM_CANARY)
    assert (canary.count, canary.route.collection, canary.route.arm) == (4, "docs-v2", common_pb2.ARM_CANARY)
    page = await client.scroll_points("docs", page_size=2, arm=common_pb2.ARM_CANARY)
    assert [p.id.num for p in page.points] == [100, 101]
    with pytest.raises(InvalidArgument):  # a canary page token does not read primary
        await client.scroll_points("docs", page_size=2, page_token=page.next_page_token)
    got = await client.get_points("docs", [1, 101], arm=common_pb2.ARM_CANARY)
    assert [p.id.num for p in got.points] == [101]
    labels = {"rpc": "CountPoints", "collection": "docs", "code": "OK"}
    assert await counted_sample(server, "searchgw_requests_total", {**labels, "arm": "canary"}) == 1
    assert await counted_sample(server, "searchgw_requests_total", {**labels, "arm": "primary"}) == 1


async def test_an_index_change_during_a_rollout_reaches_both_arms(rig):
    from tests.gateway.test_arm_pages import rollout

    _, client = await rig.start()
    await collection(client, "docs-v1", count=3)
    await collection(client, "docs-v2", count=3)
    await client.update_alias("docs", "docs-v1")
    await rollout(client)
    await client.create_payload_index("docs", "owner", KEYWORD)
    for name in ("docs-v1", "docs-v2"):
        assert "owner" in [i.key for i in (await client.get_collection(name)).payload_indexes]
    await client.delete_payload_index("docs-v2", "rank")  # naming either arm changes both
    for name in ("docs-v1", "docs-v2"):
        assert "rank" not in [i.key for i in (await client.get_collection(name)).payload_indexes]


async def test_an_index_change_the_canary_fails_is_undone_on_primary(rig):
    """The canary's engine failing is injected (FaultInjectingBackend): a real engine will not fail on cue."""
    from searchgw.errors import Unavailable
    from searchgw.gateway.backends import FaultKind
    from tests.gateway.test_arm_pages import rollout

    server, client = await rig.start()
    await collection(client, "docs-v1", count=3)
    await collection(client, "docs-v2", count=3)
    await client.update_alias("docs", "docs-v1")
    await rollout(client)
    server.backend.inject("docs-v2", error=FaultKind.UNAVAILABLE,
                          operations={"create_payload_index", "delete_payload_index"})
    before = [(i.key, i.type) for i in (await client.get_collection("docs-v1")).payload_indexes]
    for change in (client.create_payload_index("docs", "owner", KEYWORD),
                   client.create_payload_index("docs", "rank", KEYWORD),  # a replacement, put back as it was
                   client.delete_payload_index("docs", "day")):
        with pytest.raises(Unavailable):
            await change
        assert [(i.key, i.type) for i in (await client.get_collection("docs-v1")).payload_indexes] == before


async def test_reading_the_canary_without_a_rollout_is_a_failed_precondition(rig):
    _, client = await rig.start()
    await collection(client, "docs", count=2)
    with pytest.raises(FailedPrecondition):
        await client.count_points("docs", arm=common_pb2.ARM_CANARY)


# -- the CLI ----------------------------------------------------------------------------------------
async def test_the_cli_indexes_fields_and_counts_scrolls_and_gets_points(rig):
    import json

    from tests.gateway.test_cli import searchgw

    server, client = await rig.start()
    await collection(client, "docs", count=12)
    addr = ("--addr", server.address, "--output", "json")
    code, out, err = await searchgw("collections", "index", "docs", "owner", "--type", "keyword", *addr)
    assert code == 0, err
    assert [i["key"] for i in json.loads(out)["payload_indexes"]] == ["day", "owner", "rank", "title"]
    code, out, err = await searchgw("points", "count", "docs", "--filter", '{"must": [{"is_null": {"key": "owner"}}]}',
                                    *addr)
    assert (code, json.loads(out)["count"]) == (0, "3"), err  # ids 0, 4, 8 (uint64 is a string in JSON)
    code, out, err = await searchgw("points", "scroll", "docs", "--order-by", "day", "--descending", "--limit", "5",
                                    *addr)
    assert code == 0, err
    assert [p["id"]["num"] for p in json.loads(out)["points"]] == ["11", "10", "9", "8", "7"]
    code, out, err = await searchgw("points", "get", "docs", "2", "99", "--addr", server.address)
    assert code == 0, err
    assert out.splitlines()[0].split() == ["ID", "PAYLOAD"] and out.splitlines()[1].startswith("2 ")
    code, out, err = await searchgw("points", "scroll", "docs", "--order-by", "owner", "--addr", server.address)
    assert code != 0 and "order_by.key" in err
