"""Chunked upserts, collapse to one hit per document, and no silent truncation — through a real gateway
over gRPC, the real embedder (model and tokenizer) and both real engines."""

from __future__ import annotations

import json

import pytest

from searchgw.errors import InvalidArgument
from searchgw.gateway.chunks import CHUNK_PAYLOAD_KEY, DOC_PAYLOAD_KEY, chunk_id
from searchgw.gateway.client import stage
from searchgw.gateway.rules import TEXT_PAYLOAD_KEY
from searchgw.v1 import search_service_pb2 as search_pb
from tests.gateway.test_cli import searchgw
from tests.gateway.test_gateway import policy
from tests.gateway.test_model_canary import model_rig  # noqa: F401 - a fixture
from tests.rigs import two_arms

UUID_DOC = "0b9e4a8c-1f2d-4e3a-9b7c-6d5e4f3a2b1c"


def paragraphs(topic: str, count: int) -> str:
    """A long text about `topic`: `count` sentences of ~25 tokens each."""
    return " ".join(f"Sentence {i} of the {topic} handbook explains how the {topic} team plans, reviews and "
                    f"ships its {topic} work every quarter." for i in range(count))


CHUNKING = search_pb.Chunking(enabled=True)


async def stored(server, collection: str) -> dict:
    """Every point of a collection: id → payload (read from the backend)."""
    page = await server.backend.scroll(collection, limit=10_000)
    return {point.id: point.payload for point in page.points}


@pytest.fixture(params=["edge", "qdrant"])
async def gateway(request, rig):
    server, client = await rig.start(request.param)
    await client.create_collection("docs")
    return server, client


async def test_a_long_text_is_written_as_chunks_with_derived_ids_and_the_parent_in_the_payload(gateway):
    server, client = gateway
    text = paragraphs("billing", 40)
    response = await client.upsert("docs", [{"id": 7, "text": text, "payload": {"lang": "en"}},
                                            {"id": UUID_DOC, "text": "a short note"}], chunking=CHUNKING)
    chunks = response.point_chunks[0]
    assert chunks >= 4 and list(response.point_chunks) == [chunks, 1] and response.chunks == chunks + 1
    assert response.upserted == 2
    points = await stored(server, "docs")
    assert set(points) == {chunk_id(7, i) for i in range(chunks)} | {chunk_id(UUID_DOC, 0)}
    for number in range(chunks):
        payload = points[chunk_id(7, number)]
        assert (payload[DOC_PAYLOAD_KEY], payload[CHUNK_PAYLOAD_KEY], payload["lang"]) == (7, number, "en")
        assert payload[TEXT_PAYLOAD_KEY] in text  # a real substring of the document
    assert points[chunk_id(UUID_DOC, 0)][DOC_PAYLOAD_KEY] == UUID_DOC
    assert points[chunk_id(UUID_DOC, 0)][TEXT_PAYLOAD_KEY] == "a short note"


async def test_a_shorter_rewrite_replaces_the_chunks_and_leaves_no_surplus(gateway):
    server, client = gateway
    await client.upsert("docs", [{"id": 3, "text": "an unchunked earlier version of document 3"}])
    first = await client.upsert("docs", [{"id": 3, "text": paragraphs("search", 60)},
                                         {"id": 4, "text": paragraphs("routing", 30)}], chunking=CHUNKING)
    assert (await client.get_collection("docs")).points_count == first.chunks
    assert 3 not in await stored(server, "docs")  # the unchunked point with the document's id is gone
    second = await client.upsert("docs", [{"id": 3, "text": paragraphs("search", 15)}], chunking=CHUNKING)
    kept = second.point_chunks[0]
    assert kept < first.point_chunks[0]
    points = await stored(server, "docs")
    assert {p for p, payload in points.items() if payload[DOC_PAYLOAD_KEY] == 3} == {chunk_id(3, i) for i in range(kept)}
    assert len(points) == kept + first.point_chunks[1]  # document 4 untouched
    assert all(payload[TEXT_PAYLOAD_KEY] in paragraphs("search", 15) for payload in points.values()
               if payload[DOC_PAYLOAD_KEY] == 3)


async def test_a_search_collapses_chunks_to_one_hit_per_document(gateway):
    server, client = gateway
    topics = ["billing", "search", "routing", "snapshots"]
    await client.upsert("docs", [{"id": i, "text": paragraphs(topic, 30)} for i, topic in enumerate(topics)],
                        chunking=CHUNKING)
    flat = await client.search("docs", text="how the search team ships its work", limit=10)
    document_of = {point: payload[DOC_PAYLOAD_KEY] for point, payload in (await stored(server, "docs")).items()}
    flat_documents = [document_of[hit.id.uuid] for hit in flat.points]
    assert len(set(flat_documents)) < len(flat_documents)  # ungrouped: chunks, several of one document
    grouped = await client.search("docs", text="how the search team ships its work", limit=3,
                                  group_by=DOC_PAYLOAD_KEY, with_payload=True)
    documents = [point.payload.fields[DOC_PAYLOAD_KEY].number_value for point in grouped.points]
    assert len(documents) == 3 == len(set(documents)) and documents[0] == 1  # the search handbook first
    assert [group.id.number_value for group in grouped.groups] == documents
    assert all(len(group.hits) == 1 for group in grouped.groups) and not grouped.next_page_token
    two = await client.search("docs", text="routing", limit=4, group_by=DOC_PAYLOAD_KEY, group_size=2)
    assert [len(group.hits) for group in two.groups] == [2, 2, 2, 2]
    assert two.groups[0].id.number_value == 2 and len(two.points) == 8


async def test_a_text_over_the_model_limit_is_refused_naming_the_field_never_truncated(gateway):
    server, client = gateway
    long = paragraphs("billing", 20)
    points = [{"id": i, "text": f"short {i}"} for i in range(5)]
    points[3]["text"] = long
    with pytest.raises(InvalidArgument) as caught:
        await client.upsert("docs", points)
    assert caught.value.field == "points[3].text"
    assert "tokens, over the model's limit of 256 tokens" in caught.value.description
    assert (await client.get_collection("docs")).points_count == 0  # nothing written
    with pytest.raises(InvalidArgument) as caught:
        await client.search("docs", text=long)
    assert caught.value.field == "text" and "limit of 256 tokens" in caught.value.description


@pytest.mark.parametrize(("points", "chunking", "field"), [
    ([{"id": 1, "text": "x"}], search_pb.Chunking(enabled=True, max_tokens=300), "chunking.max_tokens"),
    ([{"id": 1, "text": "x"}], search_pb.Chunking(enabled=True, max_tokens=40, overlap_tokens=38),
     "chunking.overlap_tokens"),
    ([{"id": 1, "vector": [0.1] * 384}], CHUNKING, "points[0].vector"),
    ([{"id": 1, "text": "a"}, {"id": 1, "text": "b"}], CHUNKING, "points[1].id"),
    ([{"id": 1, "text": "a", "payload": {DOC_PAYLOAD_KEY: 9}}], CHUNKING, f"points[0].payload.{DOC_PAYLOAD_KEY}"),
    ([{"id": 1, "text": "a", "payload": {CHUNK_PAYLOAD_KEY: 0}}], None, f"points[0].payload.{CHUNK_PAYLOAD_KEY}"),
])
async def test_bad_chunked_writes_are_refused_naming_the_field_and_write_nothing(gateway, points, chunking, field):
    _, client = gateway
    with pytest.raises(InvalidArgument) as caught:
        await client.upsert("docs", points, chunking=chunking)
    assert caught.value.field == field
    assert (await client.get_collection("docs")).points_count == 0


async def test_a_grouped_search_has_one_page_and_bounded_groups(gateway):
    _, client = gateway
    with pytest.raises(InvalidArgument) as caught:
        await client.search("docs", text="x", group_by=DOC_PAYLOAD_KEY, limit=20, group_size=100)
    assert caught.value.field == "group_size" and "2000 hits; at most 1000" in caught.value.description
    with pytest.raises(InvalidArgument) as caught:
        await client.search("docs", text="x", group_size=2)
    assert caught.value.field == "group_size"
    with pytest.raises(InvalidArgument) as caught:
        await client.search("docs", text="x", group_by=DOC_PAYLOAD_KEY, page_token="abc")
    assert caught.value.field == "page_token"


async def test_during_a_rollout_chunks_go_to_both_arms_and_surplus_leaves_both(rig):
    server, client = await rig.start()
    await two_arms(client, [{"id": 100, "text": "a plain passage"}])
    await client.create_rollout("r1", "docs", "docs-v2", analysis=policy(), stages=[stage(50, 3600, 0)])
    first = await client.upsert("docs", [{"id": 1, "text": paragraphs("search", 40)}], chunking=CHUNKING)
    assert sorted(first.collections) == ["docs-v1", "docs-v2"]
    await client.upsert("docs", [{"id": 1, "text": paragraphs("search", 12)}], chunking=CHUNKING)
    arms = [await stored(server, name) for name in ("docs-v1", "docs-v2")]
    assert arms[0] == arms[1]
    assert len(arms[0]) == 1 + len([p for p in arms[0].values() if p.get(DOC_PAYLOAD_KEY) == 1]) < 1 + first.chunks


async def test_ingest_with_chunking_reports_chunks_and_a_shorter_rerun_deletes_the_surplus(rig, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    server, client = await rig.start()
    await client.create_collection("docs")
    data = tmp_path / "docs.jsonl"
    addr = ("--addr", server.address)

    def write(texts: dict) -> None:
        data.write_text("".join(json.dumps({"id": key, "text": text}) + "\n" for key, text in texts.items()))

    write({"handbook": paragraphs("billing", 40), "note": "a short note"})
    code, out, err = await searchgw("ingest", str(data), "--collection", "docs", "--chunk-tokens", "128",
                                    "--chunk-overlap", "16", "--output", "json", *addr)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["written"] == 2 and summary["chunks"] > 8
    assert (await client.get_collection("docs")).points_count == summary["chunks"]

    write({"handbook": paragraphs("billing", 10), "note": "a short note"})
    code, out, err = await searchgw("ingest", str(data), "--collection", "docs", "--chunk-tokens", "128",
                                    "--chunk-overlap", "16", *addr)
    assert code == 0, err
    points = await stored(server, "docs")
    assert out.startswith(f"upserted 2 points into docs as {len(points)} chunks")
    assert len(points) < summary["chunks"]
    numbers = sorted(p[CHUNK_PAYLOAD_KEY] for p in points.values() if p[TEXT_PAYLOAD_KEY] != "a short note")
    assert numbers == list(range(len(points) - 1))  # chunks 0..n-1 of the shorter document, nothing more

    write({"handbook": paragraphs("billing", 40)})
    code, out, err = await searchgw("ingest", str(data), "--collection", "docs", *addr)  # no chunking: refused
    assert code == 2 and f"{data}:1: INVALID_ARGUMENT: " in err and "limit of 256 tokens" in err


async def test_a_model_canary_chunks_each_arm_with_its_own_model(model_rig):
    # docs-v1 (the default model) and docs-v2 (the same weights named minilm-canary): each arm's text is
    # cut by its own model's ChunkText and embedded by it; the response counts primary's chunks.
    _, server, client = model_rig
    before = {name: await server.backend.count(name) for name in ("docs-v1", "docs-v2")}
    response = await client.upsert("docs", [{"id": 900, "text": paragraphs("search", 40)}], chunking=CHUNKING)
    assert sorted(response.collections) == ["docs-v1", "docs-v2"] and response.chunks >= 4
    for name in ("docs-v1", "docs-v2"):
        assert await server.backend.count(name) == before[name] + response.chunks
