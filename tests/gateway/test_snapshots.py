"""Snapshots end to end: CreateSnapshot, ListSnapshots and RestoreSnapshot through a real gateway on the
embedded backend, with real text embedded by the session's embedder.

What a snapshot must give back: the collection as it was when the snapshot was taken (its points,
its spec and embedding model), in a new collection, never over an existing one.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import sys
import time

import pytest

from searchgw.errors import SearchgwError
from searchgw.v1 import collection_service_pb2 as coll_pb

BEFORE = [
    "Knead the dough until smooth, then let the bread rise for an hour before baking.",
    "The night train from Vienna reaches Venice early in the morning.",
    "A string quartet has two violins, a viola and a cello.",
    "Simmer the tomatoes with garlic and olive oil for twenty minutes.",
]
AFTER = [
    "Glaciers carve U-shaped valleys as they slowly move downhill.",
    "A goalkeeper may handle the ball only inside the penalty area.",
]


def points(texts: list[str], first_id: int) -> list[dict]:
    return [{"id": first_id + i, "text": text, "payload": {"text": text}} for i, text in enumerate(texts)]


async def expect_error(code: str, call) -> SearchgwError:
    with pytest.raises(SearchgwError) as info:
        await call
    assert info.value.code_name == code, info.value.message
    return info.value


async def test_a_restored_snapshot_answers_with_the_points_of_snapshot_time_only(rig):
    server, client = await rig.start("edge")
    await client.create_collection("docs-v1")
    await client.upsert("docs-v1", points(BEFORE, 1))
    await client.update_alias("docs", "docs-v1")

    started = time.time()
    snapshot = await client.create_snapshot("docs")  # through the alias: a snapshot of its target
    await client.upsert("docs-v1", points(AFTER, 101))
    await client.delete("docs-v1", ids=[2])

    assert (snapshot.collection, snapshot.size_bytes > 0, len(snapshot.checksum)) == ("docs-v1", True, 64)
    assert started - 1 <= snapshot.create_time.ToNanoseconds() / 1e9 <= time.time() + 1
    listed = await client.list_snapshots("docs-v1")
    assert list(listed.snapshots) == [snapshot] and not listed.next_page_token

    restored = await client.restore_snapshot(snapshot.name, "docs-restored")
    original = await client.get_collection("docs-v1")
    assert (restored.name, restored.points_count, list(restored.aliases)) == ("docs-restored", 4, [])
    assert (restored.dimension, restored.embedding_model, restored.distance) == (
        original.dimension, original.embedding_model, original.distance) == (384, "all-MiniLM-L6-v2",
                                                                              coll_pb.DISTANCE_COSINE)
    assert original.points_count == 5

    everything = await client.search("docs-restored", text="anything", limit=20, with_payload=True)
    assert sorted(p.id.num for p in everything.points) == [1, 2, 3, 4]
    assert {p.payload.fields["text"].string_value for p in everything.points} == set(BEFORE)
    glacier = await client.search("docs-restored", text="how do glaciers shape valleys?", limit=1, with_payload=True)
    assert glacier.points[0].payload.fields["text"].string_value in BEFORE  # the later point is not there
    bread = await client.search("docs-restored", text="how long should bread dough rise?", limit=1, with_payload=True)
    assert bread.points[0].payload.fields["text"].string_value == BEFORE[0]
    assert bread.route.collection == "docs-restored"
    live = await client.search("docs", text="how do glaciers shape valleys?", limit=1, with_payload=True)
    assert live.points[0].payload.fields["text"].string_value == AFTER[0]  # the source kept its later writes


async def test_a_restore_onto_a_taken_name_is_already_exists_and_changes_nothing(rig):
    server, client = await rig.start("edge")
    await client.create_collection("docs-v1")
    await client.upsert("docs-v1", points(BEFORE, 1))
    await client.create_collection("docs-v2")
    await client.update_alias("docs", "docs-v2")
    snapshot = await client.create_snapshot("docs-v1")
    for taken in ("docs-v1", "docs-v2", "docs"):
        await expect_error("ALREADY_EXISTS", client.restore_snapshot(snapshot.name, taken))
    assert (await client.get_collection("docs-v2")).points_count == 0
    assert await client.list_aliases() == {"docs": "docs-v2"}


async def test_an_unknown_snapshot_is_not_found(rig):
    server, client = await rig.start("edge")
    await client.create_collection("docs-v1")
    snapshot = await client.create_snapshot("docs-v1")
    for unknown in ("docs-v1-2001-01-01-00-00-00-000000.snapshot", "other-" + snapshot.name, "nothing.snapshot"):
        await expect_error("NOT_FOUND", client.restore_snapshot(unknown, "copy"))
    await expect_error("NOT_FOUND", client.create_snapshot("no-such-collection"))
    await expect_error("NOT_FOUND", client.list_snapshots("no-such-collection"))
    await expect_error("NOT_FOUND", client.get_collection("copy"))


@pytest.mark.parametrize(("call", "field"), [
    (lambda c: c.create_snapshot(""), "name"),
    (lambda c: c.create_snapshot("../catalog.json"), "name"),
    (lambda c: c.list_snapshots(""), "collection"),
    (lambda c: c.list_snapshots("a/b"), "collection"),
    (lambda c: c.restore_snapshot("", "copy"), "snapshot"),
    (lambda c: c.restore_snapshot("../../catalog.json", "copy"), "snapshot"),
    (lambda c: c.restore_snapshot("x" * 600, "copy"), "snapshot"),
    (lambda c: c.restore_snapshot("docs-v1-2001-01-01-00-00-00-000000.snapshot", ""), "collection"),
    (lambda c: c.restore_snapshot("docs-v1-2001-01-01-00-00-00-000000.snapshot", "../escape"), "collection"),
    (lambda c: c.restore_snapshot("docs-v1-2001-01-01-00-00-00-000000.snapshot", "x" * 256), "collection"),
    (lambda c: c.delete_snapshot("", "docs-v1-2001-01-01-00-00-00-000000.snapshot"), "collection"),
    (lambda c: c.delete_snapshot("a/b", "docs-v1-2001-01-01-00-00-00-000000.snapshot"), "collection"),
    (lambda c: c.delete_snapshot("docs-v1", ""), "snapshot"),
    (lambda c: c.delete_snapshot("docs-v1", "../../catalog.json"), "snapshot"),
], ids=["create-empty", "create-path", "list-empty", "list-path", "restore-empty", "restore-path", "restore-long",
        "into-empty", "into-path", "into-long", "delete-empty-collection", "delete-path-collection",
        "delete-empty", "delete-path"])
async def test_a_bad_name_is_invalid_argument_naming_the_field(rig, call, field):
    server, client = await rig.start("edge")
    error = await expect_error("INVALID_ARGUMENT", call(client))
    assert error.field == field


async def test_snapshots_are_listed_oldest_first_a_page_at_a_time(rig):
    server, client = await rig.start("edge")
    await client.create_collection("docs-v1")
    taken = [await client.create_snapshot("docs-v1") for _ in range(3)]
    first = await client.list_snapshots("docs-v1", page_size=2)
    second = await client.list_snapshots("docs-v1", page_size=2, page_token=first.next_page_token)
    assert [s.name for s in [*first.snapshots, *second.snapshots]] == [s.name for s in taken]
    assert first.next_page_token and not second.next_page_token
    assert [s.create_time.ToNanoseconds() for s in taken] == sorted(s.create_time.ToNanoseconds() for s in taken)
    error = await expect_error("INVALID_ARGUMENT", client.list_snapshots("docs-v1", page_token="bogus"))
    assert error.field == "page_token"


async def test_snapshots_and_restored_collections_survive_a_gateway_restart(rig):
    server, client = await rig.start("edge")
    await client.create_collection("docs-v1")
    await client.upsert("docs-v1", points(BEFORE, 1))
    snapshot = await client.create_snapshot("docs-v1")
    await client.restore_snapshot(snapshot.name, "docs-restored")
    await client.delete_collection("docs-v1")
    await rig.stop(server)

    server, client = await rig.start("edge")
    assert (await client.get_collection("docs-restored")).points_count == 4
    assert [s.name for s in (await client.list_snapshots("docs-v1")).snapshots] == [snapshot.name]
    again = await client.restore_snapshot(snapshot.name, "docs-v1")  # the deleted source, back under its name
    assert (again.points_count, again.embedding_model) == (4, "all-MiniLM-L6-v2")
    hit = await client.search("docs-v1", text="which instruments play in a quartet?", limit=1, with_payload=True)
    assert hit.points[0].payload.fields["text"].string_value == BEFORE[2]


async def searchgw(address: str, *args: str) -> tuple[int, str, str]:
    """Run the `searchgw collections` CLI against the gateway at `address`."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "searchgw.cli", "collections", "--addr", address, *args,
        cwd=pathlib.Path(__file__).parents[2], stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
    return process.returncode, stdout.decode(), stderr.decode()


async def test_the_cli_snapshots_lists_and_restores(rig):
    server, client = await rig.start("edge")
    await client.create_collection("docs-v1")
    await client.upsert("docs-v1", points(BEFORE, 1))

    code, out, err = await searchgw(server.address, "snapshot", "docs-v1", "--output", "json")
    assert code == 0, err
    snapshot = json.loads(out)
    assert snapshot["collection"] == "docs-v1" and snapshot["name"].startswith("docs-v1-")
    code, out, err = await searchgw(server.address, "snapshots", "docs-v1")
    assert code == 0, err
    assert out.splitlines()[1].split()[0] == snapshot["name"]  # under the table's header
    code, out, err = await searchgw(server.address, "restore", snapshot["name"], "docs-copy", "-o", "json")
    assert code == 0, err
    assert (json.loads(out)["name"], json.loads(out)["points_count"]) == ("docs-copy", "4")  # uint64: a JSON string
    code, out, err = await searchgw(server.address, "restore", snapshot["name"], "docs-copy")
    assert code == 2 and "ALREADY_EXISTS" in err  # the command asked for something that cannot be


async def test_a_deleted_snapshot_is_gone_and_an_unknown_one_is_not_found(rig):
    server, client = await rig.start("edge")
    await client.create_collection("docs-v1")
    await client.upsert("docs-v1", points(BEFORE, 1))
    first, second = await client.create_snapshot("docs-v1"), await client.create_snapshot("docs-v1")
    await client.delete_snapshot("docs-v1", first.name)
    assert [s.name for s in (await client.list_snapshots("docs-v1")).snapshots] == [second.name]
    await expect_error("NOT_FOUND", client.delete_snapshot("docs-v1", first.name))
    await expect_error("NOT_FOUND", client.restore_snapshot(first.name, "copy"))
    await expect_error("NOT_FOUND", client.delete_snapshot("no-such-collection", second.name))


async def test_the_cli_deletes_a_snapshot(rig):
    server, client = await rig.start("edge")
    await client.create_collection("docs-v1")
    await client.upsert("docs-v1", points(BEFORE, 1))
    snapshot = await client.create_snapshot("docs-v1")
    code, out, err = await searchgw(server.address, "delete-snapshot", "docs-v1", snapshot.name, "-o", "json")
    assert code == 0, err
    assert json.loads(out) == {"deleted": snapshot.name, "collection": "docs-v1"}
    assert not (await client.list_snapshots("docs-v1")).snapshots
    code, out, err = await searchgw(server.address, "delete-snapshot", "docs-v1", snapshot.name)
    assert code == 2 and "NOT_FOUND" in err


async def test_prune_snapshots_keeps_the_policys_and_refuses_a_policy_that_keeps_nothing(rig):
    server, client = await rig.start("edge")
    await client.create_collection("docs-v1")
    await client.upsert("docs-v1", points(BEFORE, 1))
    taken = [await client.create_snapshot("docs-v1") for _ in range(3)]
    error = await expect_error("INVALID_ARGUMENT", client.prune_snapshots("docs-v1"))
    assert error.field == "keep_last"
    request = coll_pb.PruneSnapshotsRequest(collection="docs-v1", keep_last=1)
    request.max_age.seconds = -5
    error = await expect_error("INVALID_ARGUMENT", client._call(client.collection_stub.PruneSnapshots, request, None))
    assert error.field == "max_age"  # a negative duration on the wire
    pruned = await client.prune_snapshots("docs-v1", keep_last=2, max_age_s=0)
    assert [s.name for s in pruned.deleted] == [taken[0].name]
    assert [s.name for s in pruned.kept] == [s.name for s in taken[1:]]
    pruned = await client.prune_snapshots("docs-v1", max_age_s=7 * 86400)  # all younger than a week
    assert not pruned.deleted and len(pruned.kept) == 2
    code, out, err = await searchgw(server.address, "prune-snapshots", "docs-v1", "--keep-last", "1",
                                    "--max-age", "0", "-o", "json")
    assert code == 0, err
    assert [s["name"] for s in json.loads(out)["deleted"]] == [taken[1].name]
    code, out, err = await searchgw(server.address, "prune-snapshots", "docs-v1")
    assert code == 2 and "keep_last" in err


async def test_the_snapshot_rpcs_need_the_admin_scope():
    from searchgw.gateway.server import METHOD_SCOPES

    service = coll_pb.DESCRIPTOR.services_by_name["CollectionService"].full_name
    for rpc in ("CreateSnapshot", "ListSnapshots", "RestoreSnapshot", "DeleteSnapshot", "PruneSnapshots"):
        assert METHOD_SCOPES[f"/{service}/{rpc}"] == "admin"


def test_a_snapshot_round_trips_through_its_converters():
    from searchgw.gateway.backends import SnapshotInfo
    from searchgw.gateway.services.convert import snapshot_from_proto, snapshot_to_proto

    info = SnapshotInfo(name="docs-v1-2023-11-14-22-13-20-250000.snapshot", collection="docs-v1", size_bytes=12_345,
                        create_time=1_700_000_000.25, checksum="ab" * 32)
    message = snapshot_to_proto(info)
    assert message.create_time.ToJsonString() == "2023-11-14T22:13:20.250Z"
    assert snapshot_from_proto(message) == info
