"""`gateway.ingest`: ids that never come from positions, every bad record found before a write,
resumable runs. Reading and validation are pure; the writing tests use a real gateway."""

from __future__ import annotations

import datetime as dt
import json
import sys
import uuid

import pytest

from searchgw.gateway import ingest
from searchgw.gateway.ingest import INGEST_NAMESPACE, Checkpoint, IngestError, IngestOptions, Problem, Record

OPTIONS = IngestOptions()


def jsonl(tmp_path, *lines: str, name: str = "data.jsonl"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def problems(path, options=OPTIONS) -> list[str]:
    return [p.describe(path) for p in ingest.validate(path, options).problems]


def test_ids_are_used_as_given_or_derived_from_strings_never_from_positions(tmp_path):
    fixed = "0b0f4a57-9d3c-4e51-8a3b-2d8c1b2f3e4a"
    path = jsonl(tmp_path, '{"id": 7, "text": "a"}', '{"id": "12", "text": "b"}', f'{{"id": "{fixed}", "text": "c"}}',
                 '{"id": "doc-9", "text": "d"}')
    records = list(ingest.read(path, OPTIONS))
    assert [r.id for r in records] == [7, 12, fixed, str(uuid.uuid5(INGEST_NAMESPACE, "doc-9"))]
    assert "id" not in records[0].payload and records[3].payload["id"] == "doc-9"  # a derived id keeps its source
    assert records[0].payload == {"text": "a"}


def test_a_derived_id_is_the_same_on_every_run(tmp_path):
    path = jsonl(tmp_path, '{"text": "the same words"}', '{"text": "other words"}')
    options = IngestOptions(id_from_content=True)
    first = [r.id for r in ingest.read(path, options)]
    assert first == [r.id for r in ingest.read(path, options)]
    assert first[0] == str(uuid.uuid5(INGEST_NAMESPACE, "the same words")) == ingest.content_id("the same words", None)
    assert len(set(first)) == 2


def test_every_bad_line_is_reported_with_its_file_and_physical_line_number(tmp_path):
    path = jsonl(tmp_path,
                 '{"id": 1, "text": "fine"}',
                 "",                                   # blank lines are skipped but still counted
                 '{"text": "no id"}',
                 '{"id": 1, "text": "again"}',
                 "{not json",
                 "[1, 2]",
                 '{"id": -1, "text": "negative"}',
                 '{"id": 2.5, "text": "fractional"}',
                 '{"id": 3}',
                 '{"id": 4, "text": "   "}',
                 '{"id": 5, "vector": [1, 2]}',
                 '{"id": 6, "vector": [1, 2, 3]}',
                 '{"id": 7, "vector": [1, "x"]}',
                 '{"id": true, "text": "boolean id"}')
    found = problems(path)
    assert found == [
        f"{path}:3: no 'id' field; every record needs an id (--id-field NAME names another field, "
        "--id-from-content derives one from the text)",
        f"{path}:4: id 1 again (first on line 1); a second record would silently replace the first",
        f"{path}:5: not valid JSON: Expecting property name enclosed in double quotes (column 2)",
        f"{path}:6: is an array, not an object",
        f"{path}:7: 'id' is -1; integer ids run from 0 to 2^64-1",
        f"{path}:8: 'id' is float 2.5; an id is an unsigned integer or a string",
        f"{path}:9: neither 'text' nor 'vector'; a record needs one (see --text-field, --vector-field)",
        f"{path}:10: 'text' is empty",
        f"{path}:12: 'vector' has 3 values; line 11 has 2",
        f"{path}:13: vector[1] is 'x', not a finite number",
        f"{path}:14: 'id' is true; an id is an unsigned integer or a string",
    ]
    assert ingest.validate(path, OPTIONS).good == 2


def test_other_field_names_and_a_missing_field_name_it(tmp_path):
    path = jsonl(tmp_path, '{"key": "a", "body": "x"}', '{"id": 1, "body": "y"}')
    options = IngestOptions(id_field="key", text_field="body")
    assert problems(path, options) == [f"{path}:2: no 'key' field; every record needs an id (--id-field NAME "
                                       "names another field, --id-from-content derives one from the text)"]


def test_csv_lines_count_the_header_and_quoted_newlines_and_vectors_are_json(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text('id,text,vector,lang\n1,plain,,en\n2,"two\nlines",,en\n,no id,,en\n4,,"[1, 2]",\n5,x,1 2,de\n'
                    "6,too,many,cells,here\n")
    records = list(ingest.read(path, OPTIONS))
    good = [r for r in records if isinstance(r, Record)]
    assert [(r.line, r.id, r.text, r.vector) for r in good] == [(2, 1, "plain", None), (3, 2, "two\nlines", None),
                                                                (6, 4, None, [1.0, 2.0])]
    assert good[0].payload == {"text": "plain", "lang": "en"}
    assert [(p.line, p.message.split(";")[0]) for p in records if isinstance(p, Problem)] == [
        (5, "no 'id' field"), (7, "'vector' is not a JSON array of numbers"),
        (8, "1 more value(s) than the header has columns")]


def test_parquet_is_read_with_row_numbers_and_json_safe_values(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "data.parquet"
    table = pa.table({"id": [1, 2, None], "text": ["a", "b", "c"],
                      "day": [dt.date(2025, 1, 2), dt.date(2025, 1, 3), None], "score": [0.5, float("nan"), 1.0]})
    pq.write_table(table, path)
    items = list(ingest.read(path, OPTIONS))
    assert isinstance(items[0], Record) and items[0].payload == {"text": "a", "day": "2025-01-02", "score": 0.5}
    assert [(p.line, p.message) for p in items if isinstance(p, Problem)] == [
        (2, "score is nan; JSON has no NaN or infinity"),
        (3, "no 'id' field; every record needs an id (--id-field NAME names another field, --id-from-content "
            "derives one from the text)")]


def test_parquet_without_pyarrow_is_one_clear_line(tmp_path, monkeypatch):
    # pyarrow is installed here; hiding it is the only way to see what a user without it sees.
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    path = tmp_path / "data.parquet"
    path.write_bytes(b"PAR1")
    with pytest.raises(IngestError, match=r"^Parquet needs pyarrow: pip install 'searchgw\[parquet\]'$"):
        ingest.validate(path, OPTIONS)


@pytest.mark.parametrize(("name", "content", "message"), [
    ("missing.jsonl", None, "missing.jsonl: no such file"),
    ("data.txt", "x", "cannot tell the format from the suffix '.txt'"),
    ("empty.csv", "", "empty CSV file"),
    ("latin.jsonl", b"\xff\xfe{}", "not UTF-8 text"),
])
def test_a_file_that_cannot_be_read_is_one_message(tmp_path, name, content, message):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(IngestError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        ingest.validate(path, OPTIONS)


def test_a_checkpoint_holds_for_the_same_file_collection_and_options_only(tmp_path):
    path = jsonl(tmp_path, '{"id": 1, "text": "a"}')
    store = tmp_path / "state" / "checkpoint.json"
    Checkpoint(store, path, "docs", OPTIONS).save(40)
    assert Checkpoint(store, path, "docs", OPTIONS).load() == 40
    assert Checkpoint(store, path, "other", OPTIONS).load() == 0
    assert Checkpoint(store, path, "docs", IngestOptions(id_from_content=True)).load() == 0
    path.write_text('{"id": 1, "text": "changed"}\n')
    assert Checkpoint(store, path, "docs", OPTIONS).load() == 0
    Checkpoint(store, path, "docs", OPTIONS).clear()
    assert not store.exists()


# -- writing, against a real gateway -----------------------------------------------------------------
async def count(client, collection: str) -> int:
    return (await client.get_collection(collection)).points_count


async def test_a_run_that_crashes_resumes_from_its_checkpoint_without_duplicates(rig, tmp_path):
    server, client = await rig.start()
    await client.create_collection("vecs", dimension=2)
    path = jsonl(tmp_path, *(json.dumps({"id": f"doc-{i}", "vector": [1.0, i]}) for i in range(10)))
    checked = ingest.validate(path, OPTIONS)
    checkpoint = Checkpoint(tmp_path / "cp.json", path, "vecs", OPTIONS)
    sent: list[list] = []

    class Crash(Exception):
        """The process dying mid-run (a fault a test cannot cause for real in its own process)."""

    async def crashing_upsert(points):
        if len(sent) == 3:
            raise Crash
        await client.upsert("vecs", points)
        sent.append(points)

    with pytest.raises(Crash):
        await ingest.write(ingest.good_records(path, OPTIONS, checked), crashing_upsert, path=path, batch_size=3,
                           checkpoint=checkpoint)
    assert checkpoint.load() == 9 and await count(client, "vecs") == 9

    resent: list[list] = []

    async def upsert(points):
        await client.upsert("vecs", points)
        resent.append(points)

    report = await ingest.write(ingest.good_records(path, OPTIONS, checked), upsert, path=path, batch_size=3,
                                skip=checkpoint.load(), checkpoint=checkpoint)
    assert report.written == 1 and [p["id"] for batch in resent for p in batch] == [
        str(uuid.uuid5(INGEST_NAMESPACE, "doc-9"))]
    assert await count(client, "vecs") == 10
    # Everything sent again (say, the checkpoint was lost) replaces the same ten points.
    await ingest.write(ingest.good_records(path, OPTIONS, checked), upsert, path=path, batch_size=4)
    assert await count(client, "vecs") == 10


async def test_a_record_the_gateway_refuses_stops_the_run_or_with_continue_is_skipped(rig, tmp_path):
    server, client = await rig.start(max_payload_bytes=200)
    await client.create_collection("vecs", dimension=2)
    rows = [{"id": i, "vector": [1.0, i], "note": "x" * (500 if i == 4 else 1)} for i in range(8)]
    path = jsonl(tmp_path, *map(json.dumps, rows))
    checked = ingest.validate(path, OPTIONS)
    assert checked.good == 8  # the client cannot know the gateway's payload limit

    async def upsert(points):
        await client.upsert("vecs", points)

    report = await ingest.write(ingest.good_records(path, OPTIONS, checked), upsert, path=path, batch_size=3)
    assert report.written == 3
    assert report.stopped.startswith(f"{path}:5: INVALID_ARGUMENT: ") and "--max-payload-bytes" in report.stopped

    report = await ingest.write(ingest.good_records(path, OPTIONS, checked), upsert, path=path, batch_size=3,
                                skip=3, keep_going=True)
    assert (report.written, report.stopped) == (4, "")
    assert [(p.line, p.message.split(":")[0]) for p in report.rejected] == [(5, "refused by the gateway")]
    assert await count(client, "vecs") == 7


async def test_an_unreachable_gateway_stops_the_run_with_its_code(rig, tmp_path):
    path = jsonl(tmp_path, '{"id": 1, "vector": [1, 2]}')
    checked = ingest.validate(path, OPTIONS)

    async def upsert(points):
        from searchgw.errors import Unavailable

        raise Unavailable("the gateway is gone")  # a fault: stands for a dead connection

    report = await ingest.write(ingest.good_records(path, OPTIONS, checked), upsert, path=path, batch_size=3)
    assert (report.written, report.stopped) == (0, "UNAVAILABLE: the gateway is gone")

