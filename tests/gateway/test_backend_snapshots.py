"""Snapshots: taken, listed, restored and refused, on the embedded backend and (when one is given) a Qdrant server."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
from dataclasses import replace
from pathlib import Path

import pytest

from searchgw.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, Unavailable
from searchgw.gateway.backends import (
    Distance,
    EdgeBackend,
    FaultKind,
    Point,
    QdrantBackend,
    SearchQuery,
    VectorBackend,
)
from tests.gateway.backend_helpers import filled, let_queue, spec, unit_vectors


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


async def test_a_deleted_snapshot_is_gone_and_the_others_stay(snapshotting):
    await filled(snapshotting, count=3)
    await snapshotting.update_alias("docs", "c")
    try:
        first, second = await snapshotting.create_snapshot("c"), await snapshotting.create_snapshot("c")
        await snapshotting.delete_snapshot("docs", first.name)  # through the alias, as listing goes
        assert [s.name for s in await snapshotting.list_snapshots("c")] == [second.name]
        with pytest.raises(NotFound):
            await snapshotting.delete_snapshot("c", first.name)
        with pytest.raises(NotFound):
            await snapshotting.restore_snapshot(first.name, "r")
    finally:
        await snapshotting.delete_alias("docs")


async def test_a_snapshot_is_deleted_only_through_its_own_collection(snapshotting):
    await filled(snapshotting, count=3)
    await filled(snapshotting, count=2, name="r")
    snapshot = await snapshotting.create_snapshot("c")
    for collection, name in (("r", snapshot.name), ("c", "c-2001-01-01-00-00-00-000000.snapshot"),
                             ("c", "no-such.snapshot")):
        with pytest.raises(NotFound):
            await snapshotting.delete_snapshot(collection, name)
    assert await snapshotting.list_snapshots("c") == [snapshot]


@pytest.mark.parametrize(("collection", "snapshot", "field"), [
    ("", "c-2001-01-01-00-00-00-000000.snapshot", "collection"),
    ("a/b", "c-2001-01-01-00-00-00-000000.snapshot", "collection"),
    ("c", "", "snapshot"),
    ("c", "../../catalog.json", "snapshot"),
    ("c", "x" * 600, "snapshot"),
])
async def test_a_delete_with_a_bad_name_is_refused_naming_the_field(backend, collection, snapshot, field):
    with pytest.raises(InvalidArgument) as info:
        await backend.delete_snapshot(collection, snapshot)
    assert info.value.field == field


async def test_edge_a_snapshot_being_restored_cannot_be_deleted_from_under_it(tmp_path):
    backend = EdgeBackend(tmp_path)
    try:
        await filled(backend, count=10)
        snapshot = await backend.create_snapshot("c")
        restoring = asyncio.ensure_future(backend.restore_snapshot(snapshot.name, "r"))
        await asyncio.sleep(0)  # the restore has begun unpacking
        with pytest.raises(FailedPrecondition):
            await backend.delete_snapshot("c", snapshot.name)
        assert (await restoring).points_count == 10
        await backend.delete_snapshot("c", snapshot.name)  # once the restore is over
        assert await backend.list_snapshots("c") == []
    finally:
        await backend.close()


async def test_edge_a_delete_removes_the_archive_and_its_checksum_and_keeps_other_files(tmp_path):
    backend = EdgeBackend(tmp_path)
    try:
        await filled(backend, count=3)
        first, second = await backend.create_snapshot("c"), await backend.create_snapshot("c")
        archive = snapshot_file(tmp_path, first.name)
        await backend.delete_snapshot("c", first.name)
        assert not archive.exists() and not archive.with_name(archive.name + ".sha256").exists()
        assert snapshot_file(tmp_path, second.name).is_file()
    finally:
        await backend.close()


async def test_edge_a_deleted_collections_snapshots_are_deleted_by_its_old_name(tmp_path):
    backend = EdgeBackend(tmp_path)
    try:
        await filled(backend, count=3)
        snapshot = await backend.create_snapshot("c")
        await backend.delete_collection("c")
        await backend.delete_snapshot("c", snapshot.name)
        with pytest.raises(NotFound):  # nothing left under that name
            await backend.list_snapshots("c")
        with pytest.raises(NotFound):
            await backend.delete_snapshot("c", snapshot.name)
    finally:
        await backend.close()


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
        with pytest.raises(FailedPrecondition, match="local mode"):
            await backend.delete_snapshot("c", "c-1-2001-01-01-00-00-00.snapshot")
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
                     lambda: backend.delete_snapshot("c", "c-1-2001-01-01-00-00-00.snapshot"),
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
    faulty.inject("primary", error=FaultKind.UNAVAILABLE, operations={"delete_snapshot"})
    with pytest.raises(Unavailable):
        await faulty.delete_snapshot("primary", snapshot.name)
    faulty.clear("primary")
    await faulty.delete_snapshot("primary", snapshot.name)
    assert await faulty.list_snapshots("primary") == []
