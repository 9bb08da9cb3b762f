"""The VectorBackend contract for payload indexes, the richer filter kinds and reading points (count with
a filter, ordered scrolls, retrieve by id): run on both real engines.

Like test_backend_contract.py, it takes the `backend` fixture (the embedded qdrant-edge backend, and
qdrant-client's local mode), and tests/gateway/test_qdrant_remote.py runs it once more against the
Qdrant-protocol test server over gRPC. No mocks: every filter is evaluated by a real engine.
"""

from __future__ import annotations

import pytest

from searchgw.errors import InvalidArgument, NotFound
from searchgw.gateway.backends import (
    DatetimeRange,
    EdgeBackend,
    FieldCondition,
    Filter,
    HasId,
    IsEmpty,
    IsNull,
    MinShould,
    OrderBy,
    PayloadIndex,
    PayloadIndexType,
    Point,
    Range,
    SearchQuery,
    TextIndexParams,
    Tokenizer,
    ValuesCount,
)
from tests.gateway.backend_helpers import DIM, spec, unit_vectors

#: Ten points with payloads that every new filter kind can tell apart.
DOCS = [
    {"title": "Quarterly revenue report", "published": "2024-01-05T10:00:00Z", "tags": ["finance", "q1"],
     "rank": 3, "owner": "ana"},
    {"title": "Revenue forecast", "published": "2024-02-10T08:30:00+01:00", "tags": ["finance"], "rank": 7,
     "owner": None},
    {"title": "Team offsite notes", "published": "2024-03-01T00:00:00Z", "tags": [], "rank": 1, "owner": "bo"},
    {"title": "Hiring plan", "published": "2024-03-15T12:00:00Z", "tags": ["hr", "plan", "q1"], "rank": 9},
    {"title": "revenue by region", "published": "2024-04-20T09:00:00Z", "tags": ["finance", "regions"],
     "rank": 5, "owner": "ana"},
    {"title": "Security review", "published": "2023-12-31T23:59:59Z", "tags": ["security"], "rank": 2,
     "owner": "cy"},
    {"title": "Roadmap", "published": "2024-06-01T00:00:00Z", "rank": 8, "owner": None},
    {"title": "Incident postmortem", "published": "2024-05-05T05:05:05Z", "tags": ["ops", "incident", "sev1", "q2"],
     "rank": 6, "owner": "bo"},
    {"title": "Budget", "published": "2024-01-31T00:00:00Z", "tags": ["finance", "q1"], "rank": 4, "owner": "dee"},
    {"title": "Launch checklist", "published": "2024-02-29T18:00:00Z", "tags": ["ops"], "rank": 10, "owner": "ed"},
]
INDEXES = (
    PayloadIndex("title", PayloadIndexType.TEXT, TextIndexParams(Tokenizer.WORD, lowercase=True)),
    PayloadIndex("published", PayloadIndexType.DATETIME),
    PayloadIndex("rank", PayloadIndexType.INTEGER),
    PayloadIndex("owner", PayloadIndexType.KEYWORD),
)


async def documents(backend, indexes=INDEXES):
    vectors = unit_vectors(len(DOCS))
    await backend.create_collection(spec(payload_indexes=indexes))
    await backend.upsert("c", [Point(id=i, vector=vectors[i], payload=doc) for i, doc in enumerate(DOCS)])
    return vectors


# -- payload indexes ------------------------------------------------------------------------------------
async def test_payload_indexes_declared_at_creation_read_back_sorted_with_text_defaults(backend):
    created = await backend.create_collection(spec(payload_indexes=(
        PayloadIndex("title", PayloadIndexType.TEXT),
        PayloadIndex("published", PayloadIndexType.DATETIME),
        PayloadIndex("n", PayloadIndexType.FLOAT),
        PayloadIndex("ok", PayloadIndexType.BOOL),
        PayloadIndex("ref", PayloadIndexType.UUID),
        PayloadIndex("city", PayloadIndexType.KEYWORD),
        PayloadIndex("meta.year", PayloadIndexType.INTEGER),
    )))
    expected = (
        PayloadIndex("city", PayloadIndexType.KEYWORD),
        PayloadIndex("meta.year", PayloadIndexType.INTEGER),
        PayloadIndex("n", PayloadIndexType.FLOAT),
        PayloadIndex("ok", PayloadIndexType.BOOL),
        PayloadIndex("published", PayloadIndexType.DATETIME),
        PayloadIndex("ref", PayloadIndexType.UUID),
        PayloadIndex("title", PayloadIndexType.TEXT, TextIndexParams()),
    )
    assert created.spec.payload_indexes == expected
    assert (await backend.get_collection("c")).spec.payload_indexes == expected


async def test_an_index_can_be_added_replaced_and_removed_later_and_reads_back_each_time(backend):
    await documents(backend, indexes=())
    prefix = PayloadIndex("title", PayloadIndexType.TEXT, TextIndexParams(Tokenizer.PREFIX, lowercase=False,
                                                                          min_token_length=2, max_token_length=20))
    info = await backend.create_payload_index("c", prefix)
    assert info.spec.payload_indexes == (prefix,) and info.points_count == len(DOCS)
    await backend.create_payload_index("c", PayloadIndex("rank", PayloadIndexType.INTEGER))
    replaced = await backend.create_payload_index("c", PayloadIndex("title", PayloadIndexType.KEYWORD))
    assert replaced.spec.payload_indexes == (PayloadIndex("rank", PayloadIndexType.INTEGER),
                                             PayloadIndex("title", PayloadIndexType.KEYWORD))
    after = await backend.delete_payload_index("c", "title")
    assert after.spec.payload_indexes == (PayloadIndex("rank", PayloadIndexType.INTEGER),)
    assert (await backend.get_collection("c")).spec.payload_indexes == after.spec.payload_indexes
    with pytest.raises(NotFound):
        await backend.delete_payload_index("c", "title")


async def test_an_index_through_an_alias_lands_on_its_collection(backend):
    await documents(backend, indexes=())
    await backend.update_alias("live", "c")
    await backend.create_payload_index("live", PayloadIndex("rank", PayloadIndexType.INTEGER))
    assert (await backend.get_collection("c")).spec.payload_indexes == (PayloadIndex("rank", PayloadIndexType.INTEGER),)


@pytest.mark.parametrize(("indexes", "field"), [
    ((PayloadIndex("a b", PayloadIndexType.KEYWORD),), "collection.payload_indexes[0].key"),
    ((PayloadIndex("a", "geo"),), "collection.payload_indexes[0].type"),  # type: ignore[arg-type]
    ((PayloadIndex("a", PayloadIndexType.KEYWORD), PayloadIndex("a", PayloadIndexType.INTEGER)),
     "collection.payload_indexes[1].key"),
    ((PayloadIndex("a", PayloadIndexType.KEYWORD, TextIndexParams()),), "collection.payload_indexes[0].text"),
    ((PayloadIndex("a", PayloadIndexType.TEXT, TextIndexParams(min_token_length=5, max_token_length=2)),),
     "collection.payload_indexes[0].text.max_token_length"),
])
async def test_a_bad_index_at_creation_is_refused_naming_it_and_nothing_is_created(backend, indexes, field):
    with pytest.raises(InvalidArgument) as raised:
        await backend.create_collection(spec(payload_indexes=indexes))
    assert raised.value.field == field
    assert await backend.list_collections() == []


async def test_a_bad_index_added_later_is_refused_and_the_indexes_stay(backend):
    await documents(backend)
    with pytest.raises(InvalidArgument) as raised:
        await backend.create_payload_index("c", PayloadIndex("t", PayloadIndexType.TEXT,
                                                             TextIndexParams(min_token_length=-1)))
    assert raised.value.field == "index.text.min_token_length"
    assert (await backend.get_collection("c")).spec.payload_indexes == tuple(sorted(INDEXES, key=lambda i: i.key))


# -- the new filter kinds -------------------------------------------------------------------------------
def field(key: str, **test) -> FieldCondition:
    return FieldCondition(key, **test)


@pytest.mark.parametrize(("filter", "expected"), [
    # full text: every token, case-folded by the index
    (Filter(must=(field("title", text="revenue"),)), [0, 1, 4]),
    (Filter(must=(field("title", text="REVENUE report"),)), [0]),
    # datetime ranges, offsets honoured (document 1 is 07:30 UTC)
    (Filter(must=(field("published", datetime_range=DatetimeRange(gte="2024-02-10T07:30:00Z",
                                                                  lt="2024-03-15T12:00:00Z")),)), [1, 2, 9]),
    (Filter(must=(field("published", datetime_range=DatetimeRange(lt="2024-01-01T00:00:00+00:00")),)), [5]),
    (Filter(must=(field("published", datetime_range=DatetimeRange(gt="2024-05-05T07:05:05+02:00")),)), [6]),
    # is-null: present and null; is-empty: missing, null or []
    (Filter(must=(IsNull("owner"),)), [1, 6]),
    (Filter(must=(IsEmpty("owner"),)), [1, 3, 6]),
    (Filter(must=(IsEmpty("tags"),)), [2, 6]),
    (Filter(must_not=(IsEmpty("owner"),)), [0, 2, 4, 5, 7, 8, 9]),
    # values count
    (Filter(must=(field("tags", values_count=ValuesCount(gte=3)),)), [3, 7]),
    (Filter(must=(field("tags", values_count=ValuesCount(lt=2, gt=0)),)), [1, 5, 9]),
    # min_should: at least two of three, alone and nested inside a clause
    (Filter(min_should=MinShould((field("title", text="revenue"), field("rank", range=Range(gte=5)),
                                  field("owner", keyword="ana")), 2)), [0, 1, 4]),
    (Filter(must=(field("rank", range=Range(lte=5)),), min_should=MinShould(
        (HasId((0, 2, 4)), field("owner", keyword="ana"), IsEmpty("tags")), 2)), [0, 2, 4]),
    (Filter(should=(Filter(min_should=MinShould((field("owner", keyword="bo"), field("title", text="notes")), 2)),
                    HasId((9,)))), [2, 9]),
])
async def test_the_new_filter_kinds_select_the_matching_points(backend, filter, expected):
    vectors = await documents(backend)
    hits = await backend.search("c", SearchQuery(vector=vectors[0], limit=len(DOCS), filter=filter))
    assert sorted(hit.id for hit in hits) == expected
    assert await backend.count("c", filter) == len(expected)


async def test_full_text_matches_without_an_index_too(backend):
    vectors = await documents(backend, indexes=())
    hits = await backend.search("c", SearchQuery(vector=vectors[0], limit=10,
                                                 filter=Filter(must=(field("title", text="forecast"),))))
    assert sorted(hit.id for hit in hits) == [1]


@pytest.mark.parametrize(("filter", "path"), [
    (Filter(must=(HasId((1,)), field("published", datetime_range=DatetimeRange(gt="yesterday")))),
     "filter.must[1].field.datetime_range.gt"),
    (Filter(must=(field("published", datetime_range=DatetimeRange()),)), "filter.must[0].field.datetime_range"),
    (Filter(should=(field("title", text="  "),)), "filter.should[0].field.text"),
    (Filter(must=(field("tags", values_count=ValuesCount(gte=-1)),)), "filter.must[0].field.values_count.gte"),
    (Filter(must=(IsNull("a b"),)), "filter.must[0].is_null.key"),
    (Filter(min_should=MinShould((HasId((1,)),), 2)), "filter.min_should.min_count"),
    (Filter(min_should=MinShould((), 1)), "filter.min_should.conditions"),
    (Filter(min_should=MinShould((IsEmpty(""),), 1)), "filter.min_should.conditions[0].is_empty.key"),
])
async def test_a_bad_new_filter_is_refused_naming_the_exact_field(backend, filter, path):
    vectors = await documents(backend)
    for call in (backend.search("c", SearchQuery(vector=vectors[0], filter=filter)), backend.count("c", filter),
                 backend.scroll("c", filter=filter), backend.delete_points("c", filter=filter)):
        with pytest.raises(InvalidArgument) as raised:
            await call
        assert raised.value.field == path
    assert await backend.count("c") == len(DOCS)  # the delete deleted nothing


# -- reading points -------------------------------------------------------------------------------------
async def test_count_with_a_filter_is_exact(backend):
    await documents(backend)
    assert await backend.count("c") == 10
    assert await backend.count("c", Filter(must=(field("rank", range=Range(gt=5)),))) == 5
    assert await backend.count("c", Filter(must=(HasId((1, 2, 99)),))) == 2


@pytest.mark.parametrize(("descending", "expected"), [(False, [2, 5, 0, 8, 4, 7, 1, 6, 3, 9]),
                                                      (True, [9, 3, 6, 1, 7, 4, 8, 0, 5, 2])])
async def test_an_ordered_scroll_follows_an_integer_index_from_its_start(backend, descending, expected):
    await documents(backend)
    page = await backend.scroll("c", limit=4, order_by=OrderBy("rank", descending=descending))
    assert [p.id for p in page.points] == expected[:4]
    assert page.order_values == tuple(DOCS[i]["rank"] for i in expected[:4])
    assert page.next_offset is None
    rest = await backend.scroll("c", limit=20, order_by=OrderBy("rank", descending=descending,
                                                                start_from=page.order_values[-1]))
    assert [p.id for p in rest.points] == expected[3:]  # start_from is inclusive


async def test_an_ordered_scroll_follows_a_datetime_index_and_a_filter(backend):
    await documents(backend)
    finance = Filter(must=(field("tags", any_keyword=("finance",)),))
    page = await backend.scroll("c", limit=10, filter=finance, order_by=OrderBy("published"))
    assert [p.id for p in page.points] == [0, 8, 1, 4]
    later = await backend.scroll("c", limit=10, filter=finance,
                                 order_by=OrderBy("published", start_from=page.order_values[2]))
    assert [p.id for p in later.points] == [1, 4]


async def test_ordering_needs_a_range_index_on_the_key(backend):
    await documents(backend)
    for key, kind in (("owner", "a keyword index"), ("missing", "no index")):
        with pytest.raises(InvalidArgument, match=kind) as raised:
            await backend.scroll("c", order_by=OrderBy(key))
        assert raised.value.field == "order_by.key"


async def test_a_scroll_leaves_out_payloads_and_vectors_when_asked(backend):
    await documents(backend)
    bare = await backend.scroll("c", limit=3, with_payload=False, with_vector=False)
    assert [(p.id, p.payload, p.vector.size) for p in bare.points] == [(0, {}, 0), (1, {}, 0), (2, {}, 0)]
    assert bare.next_offset == 3
    full = await backend.scroll("c", limit=1)
    assert (full.points[0].payload, full.points[0].vector.shape) == (DOCS[0], (DIM,))


async def test_retrieve_returns_the_points_in_the_order_asked_and_leaves_out_missing_ids(backend):
    vectors = await documents(backend)
    points = await backend.retrieve("c", [7, 99, 2, 7])
    assert [(p.id, p.payload) for p in points] == [(7, DOCS[7]), (2, DOCS[2])]
    assert all(p.vector.size == 0 for p in points)
    with_vectors = await backend.retrieve("c", [3], with_payload=False, with_vector=True)
    assert with_vectors[0].payload == {}
    assert with_vectors[0].vector.tolist() == pytest.approx(vectors[3].tolist(), abs=1e-6)
    assert await backend.retrieve("c", []) == []
    with pytest.raises(InvalidArgument) as raised:
        await backend.retrieve("c", [1, "not-a-uuid"])
    assert raised.value.field == "ids[1]"


# -- the embedded backend keeps its index declarations --------------------------------------------------
async def test_edge_indexes_survive_a_restart_and_a_snapshot_restore(tmp_path):
    opened = EdgeBackend(tmp_path / "edge")
    try:
        await documents(opened)
        await opened.create_payload_index("c", PayloadIndex("tags", PayloadIndexType.KEYWORD))
        await opened.delete_payload_index("c", "owner")
        declared = (await opened.get_collection("c")).spec.payload_indexes
        snapshot = await opened.create_snapshot("c")
    finally:
        await opened.close()
    reopened = EdgeBackend(tmp_path / "edge")
    try:
        assert (await reopened.get_collection("c")).spec.payload_indexes == declared
        restored = await reopened.restore_snapshot(snapshot.name, "r")
        assert restored.spec.payload_indexes == declared
        page = await reopened.scroll("r", limit=2, order_by=OrderBy("published", descending=True))
        assert [p.id for p in page.points] == [6, 7]  # the restored engine has the datetime index
    finally:
        await reopened.close()
