"""Every input limit, one at a time: the violation is INVALID_ARGUMENT naming the field and the limit,
nothing is written, and the error message stays small whatever the input's size.

The last tests pin gaps that fuzzing found outside the core (undecodable bytes, NaN payloads,
huge names in messages, unsigned page tokens, unchecked names), now closed. (The fuzzing itself is in
tests/fuzz/; the embedder's limits are in tests/embedder/test_input_limits.py.)
"""

from __future__ import annotations

import base64
import json

import grpc
import pytest

from searchgw.embedder.server import create_server as create_embedder
from searchgw.gateway.rules import check_key
from searchgw.gateway.client import stage
from searchgw.gateway.settings import GatewaySettings
from searchgw.errors import InvalidArgument, SearchgwError
from searchgw.settings import SettingsError
from searchgw.v1 import common_pb2 as common_pb
from tests.conftest import embedder_settings
from tests.rigs import GatewayRig

VECTOR = [1.0, 0.0, 0.5, -1.0]
HUGE = "z" * 1_000_000


async def refused(call) -> SearchgwError:
    with pytest.raises(SearchgwError) as info:
        await call
    return info.value


async def vector_collection(client, name: str = "vec-a", count: int = 0) -> None:
    await client.create_collection(name, dimension=4)
    if count:
        await client.upsert(name, [{"id": i, "vector": VECTOR, "payload": {"n": i}} for i in range(1, count + 1)])


def key_filter(key: str) -> common_pb.Filter:
    return common_pb.Filter(must=[common_pb.Condition(field=common_pb.FieldCondition(key=key, keyword="x"))])


# -- payloads ------------------------------------------------------------------------------------

async def test_a_payload_over_max_payload_bytes_is_refused_naming_the_point_and_the_limit(rig):
    server, client = await rig.start(max_payload_bytes=1024)
    await vector_collection(client)
    error = await refused(client.upsert("vec-a", [
        {"id": 1, "vector": VECTOR, "payload": {"text": "fits"}},
        {"id": 2, "vector": VECTOR, "payload": {"text": "é" * 600}},  # 1 200 bytes of UTF-8
    ]))
    assert (error.code_name, error.field) == ("INVALID_ARGUMENT", "points[1].payload")
    assert "1024" in error.description
    assert (await client.get_collection("vec-a")).points_count == 0


async def test_the_reserved_text_key_with_a_raw_vector_is_refused_and_nothing_is_written(rig):
    # A backfill into a canary with another model re-embeds `_searchgw_text`: a client's own value next to
    # a raw vector would make the canary's vector from a text the primary's was not made from.
    server, client = await rig.start()
    await vector_collection(client)
    error = await refused(client.upsert("vec-a", [
        {"id": 1, "vector": VECTOR, "payload": {"n": 1}},
        {"id": 2, "vector": VECTOR, "payload": {"_searchgw_text": "not what the vector says"}},
    ]))
    assert (error.code_name, error.field) == ("INVALID_ARGUMENT", "points[1].payload._searchgw_text")
    assert (await client.get_collection("vec-a")).points_count == 0


async def test_a_payload_at_max_payload_bytes_is_written(rig):
    server, client = await rig.start(max_payload_bytes=1024)
    await vector_collection(client)
    payload = {"t": ""}
    payload["t"] = "x" * (1024 - len(json.dumps(payload, separators=(",", ":"))))
    await client.upsert("vec-a", [{"id": 1, "vector": VECTOR, "payload": payload}])
    assert (await client.get_collection("vec-a")).points_count == 1


# -- texts ---------------------------------------------------------------------------------------

async def test_an_upsert_text_over_max_text_chars_is_refused_before_it_is_embedded(rig):
    server, client = await rig.start(max_text_chars=50)
    await client.create_collection("txt")
    error = await refused(client.upsert("txt", [{"id": 1, "text": "fine"}, {"id": 2, "text": "w" * 51}]))
    assert (error.code_name, error.field) == ("INVALID_ARGUMENT", "points[1].text")
    assert "at most 50" in error.description and "embedder" not in error.description


async def test_an_upsert_with_more_texts_than_one_embedder_call_takes_is_split_across_calls(tmp_path,
                                                                                           embedding_models):
    embedder = await create_embedder(embedder_settings(max_texts_per_request=3, metrics_port=-1))
    await embedder.load(embedding_models)
    rig = GatewayRig(tmp_path, embedder.address)
    try:
        server, client = await rig.start(embed_batch_texts=3)
        await client.create_collection("txt")
        texts = [f"note {i} about {topic}" for i, topic in enumerate(
            ["bread", "trains", "violins", "tomatoes", "vectors", "rivers", "chess", "tea"])]
        response = await client.upsert("txt", [{"id": i, "text": t} for i, t in enumerate(texts)])
        assert response.upserted == 8
        hits = await client.search("txt", text=texts[5], limit=1)
        assert hits.points[0].id.num == 5
    finally:
        await rig.close()
        await embedder.stop(0)


# -- filters and ids ---------------------------------------------------------------------------------

@pytest.mark.parametrize("key", ["a[", "a..b", ".", "[0]", "a[-1]", "a[18446744073709551616]", "a b", "\x00"])
async def test_a_filter_key_the_engine_cannot_parse_is_invalid_argument_not_unavailable(rig, key):
    server, client = await rig.start()
    await vector_collection(client, count=3)
    for call in (client.search("vec-a", vector=VECTOR, filter=key_filter(key)),
                 client.delete("vec-a", filter=key_filter(key))):
        error = await refused(call)
        assert (error.code_name, error.field) == ("INVALID_ARGUMENT", "filter.must[0].field.key")
    assert (await client.get_collection("vec-a")).points_count == 3


async def test_a_bad_filter_key_during_a_rollout_neither_falls_back_nor_counts_against_the_canary(rig):
    server, client = await rig.start()
    await vector_collection(client, "vec-a", 3)
    await vector_collection(client, "vec-b", 3)
    await client.update_alias("vecs", "vec-a")
    await client.create_rollout("r1", "vecs", "vec-b", stages=[stage(50, 3600, 0), stage(100)])
    for i in range(20):
        error = await refused(client.search("vecs", vector=VECTOR, filter=key_filter("a[0"), routing_key=f"k{i}"))
        assert error.code_name == "INVALID_ARGUMENT"
    registry = server.metrics.registry
    assert not registry.get_sample_value("searchgw_canary_fallbacks_total", {"collection": "vecs"})
    assert not registry.get_sample_value("searchgw_requests_total", {"rpc": "Search", "collection": "vecs",
                                                                       "arm": "canary", "code": "UNAVAILABLE"})


@pytest.mark.parametrize("condition", [
    common_pb.Condition(has_id=common_pb.PointIdList(ids=[common_pb.PointId(num=i) for i in range(11)])),
    common_pb.Condition(field=common_pb.FieldCondition(key="tag", any_keyword=common_pb.KeywordList(
        keywords=[str(i) for i in range(11)]))),
], ids=["has_id", "any_keyword"])
async def test_a_filter_listing_more_than_max_filter_values_is_refused(rig, condition):
    server, client = await rig.start(max_filter_values=10)
    await vector_collection(client, count=2)
    error = await refused(client.search("vec-a", vector=VECTOR, filter=common_pb.Filter(must=[condition])))
    assert (error.code_name, error.field) == ("INVALID_ARGUMENT", "filter.must[0]")
    assert "10" in error.description


async def test_a_delete_listing_more_than_max_filter_values_ids_is_refused_and_deletes_nothing(rig):
    server, client = await rig.start(max_filter_values=10)
    await vector_collection(client, count=3)
    error = await refused(client.delete("vec-a", ids=list(range(11))))
    assert (error.code_name, error.field) == ("INVALID_ARGUMENT", "ids.ids")
    assert (await client.get_collection("vec-a")).points_count == 3


async def test_a_filter_keyword_longer_than_any_payload_is_refused(rig):
    server, client = await rig.start(max_payload_bytes=100)
    await vector_collection(client, count=1)
    filter_ = common_pb.Filter(should=[common_pb.Condition(field=common_pb.FieldCondition(key="t", keyword="k" * 101))])
    error = await refused(client.search("vec-a", vector=VECTOR, filter=filter_))
    assert (error.code_name, error.field) == ("INVALID_ARGUMENT", "filter.should[0].field.keyword")


# -- names, vectors, and what an error repeats ----------------------------------------------------------

@pytest.mark.parametrize("name", ["../etc", ".hidden", "a/b", "a b", "n" * 256, HUGE])
async def test_collection_names_of_data_calls_are_checked_before_anything_is_looked_up(rig, name):
    server, client = await rig.start()
    for call in (client.search(name, vector=VECTOR), client.upsert(name, [{"id": 1, "vector": VECTOR}]),
                 client.delete(name, ids=[1])):
        error = await refused(call)
        assert (error.code_name, error.field) == ("INVALID_ARGUMENT", "collection")
        assert "255" in error.description and len(str(error)) < 400


async def test_a_query_vector_longer_than_any_collection_is_refused(rig):
    server, client = await rig.start()
    await vector_collection(client)
    error = await refused(client.search("vec-a", vector=[0.5] * 65_537))
    assert (error.code_name, error.field) == ("INVALID_ARGUMENT", "vector.values")
    assert "65536" in error.description


async def test_a_huge_bad_point_id_is_refused_with_a_short_message(rig):
    server, client = await rig.start()
    await vector_collection(client)
    error = await refused(client.upsert("vec-a", [{"id": HUGE, "vector": VECTOR}]))
    assert (error.code_name, error.field) == ("INVALID_ARGUMENT", "points[0].id")
    assert len(str(error)) < 400

async def test_a_message_over_max_message_bytes_is_refused_by_grpc_with_resource_exhausted(rig):
    """Documented behaviour: gRPC itself refuses it before any handler runs; the gateway keeps serving."""
    server, client = await rig.start(max_message_bytes=64 * 1024)
    await vector_collection(client)
    error = await refused(client.upsert("vec-a", [{"id": 1, "vector": VECTOR, "payload": {"t": "x" * 70_000}}]))
    assert error.code_name == "RESOURCE_EXHAUSTED"
    await client.upsert("vec-a", [{"id": 1, "vector": VECTOR}])


# -- payload paths: the check is never wider than the engine ----------------------------------------

@pytest.mark.parametrize("key, ok", [
    ("city", True), ("meta.lang", True), ("tags[]", True), ("a[0][12].b", True), ('meta."content type"', True),
    ('"नाम"', True), ("é.ü", True), ("a-b_c", True), ('a.""', True),
    ("", False), ("a[", False), ("a..b", False), (".", False), ("a.", False), ("[0]", False), ("a[-1]", False),
    ("a[18446744073709551616]", False), ("a b", False), ('a."b', False), ("a\\b", False),
    ("नाम", False),  # a combining vowel sign: the engine takes it, the check wants it quoted
])
def test_payload_paths_follow_the_engines_grammar(key, ok):
    if ok:
        assert check_key("key", key) == key
    else:
        with pytest.raises(InvalidArgument) as info:
            check_key("key", key)
        assert info.value.field == "key"


# -- settings ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["max_payload_bytes", "max_filter_values", "embed_batch_texts"])
def test_the_new_limits_must_be_at_least_1(tmp_path, name):
    with pytest.raises(SettingsError, match=name.replace("_", "-")):
        GatewaySettings(data_dir=tmp_path, **{name: 0})


# -- gaps found by fuzzing outside the core, now closed -------------------------------------------------

async def test_a_payload_number_that_is_not_finite_is_invalid_argument(rig):
    server, client = await rig.start()
    await vector_collection(client)
    error = await refused(client.upsert("vec-a", [{"id": 1, "vector": VECTOR, "payload": {"x": float("nan")}}]))
    assert (error.code_name, error.field) == ("INVALID_ARGUMENT", "points[0].payload")


async def test_bytes_that_are_not_the_request_message_are_invalid_argument(rig):
    server, client = await rig.start()
    async with grpc.aio.insecure_channel(server.address) as channel:
        raw = channel.unary_unary("/searchgw.v1.SearchService/Search")
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await raw(b"\xff\xff\xff", timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_huge_unknown_name_gets_its_not_found_intact(rig):
    server, client = await rig.start()
    error = await refused(client.get_collection("k" * 20_000))
    assert error.code_name in ("NOT_FOUND", "INVALID_ARGUMENT")


async def test_collection_service_checks_names_like_the_data_calls(rig):
    server, client = await rig.start()
    error = await refused(client.get_collection("../etc"))
    assert (error.code_name, error.field) == ("INVALID_ARGUMENT", "name")


async def test_a_forged_list_rollouts_page_token_is_refused(rig):
    server, client = await rig.start()
    forged = base64.urlsafe_b64encode(json.dumps({"c": "", "t": -1e18, "n": "x"}).encode()).decode().rstrip("=")
    error = await refused(client.list_rollouts(page_token=forged))
    assert (error.code_name, error.field) == ("INVALID_ARGUMENT", "page_token")


async def test_a_forged_list_collections_page_token_is_refused(rig):
    server, client = await rig.start()
    error = await refused(client.list_collections(page_token="any-name-at-all"))
    assert (error.code_name, error.field) == ("INVALID_ARGUMENT", "page_token")
