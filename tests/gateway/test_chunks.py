"""Chunk ids and surplus filters (pure), and the ingest rules for chunking."""

from __future__ import annotations

import uuid

import pytest

from searchgw.errors import InvalidArgument
from searchgw.gateway.backends import FieldCondition, Filter, Range
from searchgw.gateway.backends.types import ScoredPoint
from searchgw.gateway.chunks import (
    CHUNK_NAMESPACE,
    DOCUMENTS_PER_FILTER,
    check_reserved_keys,
    chunk_id,
    chunk_payload,
    surplus_filters,
)
from searchgw.gateway.ingest import IngestOptions, validate
from searchgw.gateway.rules import MAX_FILTER_CONDITIONS, checked_filter, point_id
from searchgw.gateway.services.convert import point_groups_to_proto

DOC = "0b9e4a8c-1f2d-4e3a-9b7c-6d5e4f3a2b1c"


def test_chunk_ids_are_valid_point_ids_fixed_by_document_and_number():
    # Pinned: a changed namespace would give every stored chunk a new id (re-ingests would duplicate).
    assert chunk_id(7, 0) == str(uuid.uuid5(CHUNK_NAMESPACE, "7/0")) == "651c3e6e-83d4-5d56-a8fe-08727241405c"
    assert chunk_id(DOC, 3) == str(uuid.uuid5(CHUNK_NAMESPACE, f"{DOC}/3"))
    ids = {chunk_id(document, number) for document in (7, 70, DOC) for number in range(50)}
    assert len(ids) == 150  # no two chunks share an id
    assert all(point_id("id", i) == i for i in ids)  # canonical UUIDs: what the engines store
    with pytest.raises(ValueError):
        chunk_id(7, -1)


def test_a_chunk_payload_keeps_the_document_payload_and_adds_the_reserved_keys():
    assert chunk_payload({"lang": "en"}, 7, 2, "text") == {
        "lang": "en", "_searchgw_text": "text", "_searchgw_doc": 7, "_searchgw_chunk": 2}


def test_surplus_filters_select_each_documents_chunks_from_its_new_count_within_the_filter_limits():
    counts = [(i, i % 5) for i in range(150)] + [(DOC, 3)]
    filters = surplus_filters(counts)
    assert len(filters) == 3 and sum(len(f.should) for f in filters) == 151
    assert filters[2].should[-1] == Filter(must=(FieldCondition("_searchgw_doc", keyword=DOC),
                                                 FieldCondition("_searchgw_chunk", range=Range(gte=3))))
    assert filters[0].should[1].must[0] == FieldCondition("_searchgw_doc", integer=1)
    assert 3 * DOCUMENTS_PER_FILTER <= MAX_FILTER_CONDITIONS
    for f in filters:
        checked_filter("filter", f)  # within the engines' filter limits


def test_the_reserved_keys_are_refused_naming_them():
    check_reserved_keys("points[0].payload", {"doc": 1})
    with pytest.raises(InvalidArgument) as caught:
        check_reserved_keys("points[2].payload", {"_searchgw_chunk": 1})
    assert caught.value.field == "points[2].payload._searchgw_chunk"


def test_group_ids_reach_the_wire_exactly():
    hits = [ScoredPoint("a", 0.9, group_id="x"), ScoredPoint("b", 0.8, group_id="x"),
            ScoredPoint("c", 0.7, group_id=7), ScoredPoint("d", 0.6, group_id=2**63)]
    groups = point_groups_to_proto(hits)
    assert [(g.id.WhichOneof("kind"), len(g.hits)) for g in groups] == [
        ("string_value", 2), ("number_value", 1), ("string_value", 1)]
    assert groups[1].id.number_value == 7 and groups[2].id.string_value == str(2**63)


def test_ingest_with_chunking_refuses_records_with_vectors(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"id": 1, "text": "long"}\n{"id": 2, "text": "t", "vector": [0.1]}\n')
    found = validate(path, IngestOptions(chunk_tokens=0))
    assert found.good == 1 and [p.line for p in found.problems] == [2]
    assert "--chunk-tokens" in found.problems[0].message
    assert validate(path, IngestOptions()).good == 2
    assert IngestOptions(chunk_tokens=64).key() != IngestOptions().key()  # a checkpoint of other options is void
