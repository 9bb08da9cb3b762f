"""Index builds never freeze serving (issue 16.3): the edge backend builds in a child process on a copy
and swaps the built shard in, replaying the writes made meanwhile.

Real parts throughout: the engine, the child process (`_index_build.run_build`), the files. The
tests wrap the real builder only to *watch* it: to learn when the child runs, and to hold the end of
the build until the test has done what it wants to do meanwhile — events, no sleeps.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import numpy as np
import pytest

from searchgw.errors import NotFound, SearchgwError
from searchgw.gateway.backends import CollectionSpec, EdgeBackend, FieldCondition, Filter, Point, SearchQuery
from searchgw.gateway.backends._index_build import BuildProcess, JournalEntry
from searchgw.gateway.backends.edge import _recover_builds
from searchgw.gateway.backends.types import SearchParams

DIM = 16
POINTS = 2_000
#: Enough 384-d vectors to pass the engine's indexing threshold (10 MB of vectors): the build indexes.
INDEXED_DIM, INDEXED_POINTS = 384, 7_000


def unit(count: int, seed: int, dim: int = DIM) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((count, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


class WatchedBuilder:
    """The real child process, with a view: `started` is set once it runs, `child` is its build (done
    when the child has built the index); the backend hears of the build only once `release` is set."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.child: asyncio.Task[tuple[float, bool]] | None = None
        self.calls = 0
        self.replayed: list[JournalEntry] = []

    async def __call__(self, path: str) -> WatchedBuilder:
        self.calls += 1
        self.process = await BuildProcess.start(path)
        self.child = asyncio.ensure_future(self.process.built())
        self.started.set()
        return self

    async def built(self) -> tuple[float, bool]:
        result = await self.child
        await self.release.wait()
        return result

    async def finish(self, journal) -> None:
        self.replayed = list(journal)
        await self.process.finish(journal)

    async def kill(self) -> None:
        self.child.cancel()
        await self.process.kill()


async def _collection(backend: EdgeBackend, vectors: np.ndarray) -> None:
    # the smallest full-scan threshold: the built segment is searched through its HNSW graph; a small
    # graph (m 4, ef_construct 8) keeps the build short
    await backend.create_collection(CollectionSpec(name="c", dimension=vectors.shape[1], full_scan_threshold=10,
                                                   hnsw_m=4, hnsw_ef_construct=8))
    await backend.upsert("c", [Point(i, v, {"i": i}) for i, v in enumerate(vectors)])


async def _all_points(backend: EdgeBackend) -> dict[int, tuple[list[float], dict]]:
    found, offset = {}, None
    while True:
        page = await backend.scroll("c", offset=offset, limit=500)
        found.update({int(p.id): (np.round(p.vector, 5).tolist(), p.payload) for p in page.points})
        if page.next_offset is None:
            return found
        offset = page.next_offset


async def test_searches_are_answered_while_the_child_process_builds(tmp_path):
    builder = WatchedBuilder()
    backend = EdgeBackend(tmp_path, index_builder=builder)
    try:
        vectors = unit(INDEXED_POINTS, seed=1, dim=INDEXED_DIM)
        await _collection(backend, vectors)
        build = asyncio.ensure_future(backend.optimize("c"))
        await builder.started.wait()
        answered_while_building = 0
        while not builder.child.done() and answered_while_building < 20:  # the real child process runs
            hits = await backend.search("c", SearchQuery(vector=vectors[answered_while_building], limit=1))
            assert hits[0].id == answered_while_building
            answered_while_building += 1
        assert not builder.child.done()  # 20 searches answered and the build still running
        builder.release.set()
        report = await build
        assert report.optimized and report.build_seconds > 0
        assert report.searches_paused_seconds < report.seconds
        # the built shard serves every point (an exact search finds each stored vector; a search through
        # the small graph answers too)
        assert await backend.count("c") == INDEXED_POINTS
        for i in range(0, INDEXED_POINTS, 97):
            exact = await backend.search("c", SearchQuery(vector=vectors[i], limit=1, params=SearchParams(exact=True)))
            assert exact[0].id == i
            assert len(await backend.search("c", SearchQuery(vector=vectors[i], limit=3))) == 3
    finally:
        await backend.close()
    assert not (tmp_path / "builds" / "c").exists()  # no copy left behind


async def test_no_acknowledged_write_is_lost_across_the_swap(tmp_path):
    builder = WatchedBuilder()
    backend = EdgeBackend(tmp_path, index_builder=builder)
    vectors = unit(POINTS, seed=2)
    await _collection(backend, vectors)
    build = asyncio.ensure_future(backend.optimize("c"))
    await builder.started.wait()
    # writes acknowledged while the child builds the copy: new points, replaced points, deletes
    fresh = unit(300, seed=3)
    await backend.upsert("c", [Point(POINTS + i, v, {"new": i}) for i, v in enumerate(fresh)])
    await backend.upsert("c", [Point(i, fresh[i], {"replaced": True}) for i in range(50)])
    await backend.delete_points("c", ids=list(range(50, 100)))
    await backend.delete_points("c", filter=Filter(must=(FieldCondition("i", integer=150),)))
    await builder.child  # the build proper is over; writes go on until the swap holds them
    writer_acked: list[int] = []
    twenty_acked = asyncio.Event()

    async def writer() -> None:
        for n in range(200):
            await backend.upsert("c", [Point(10_000 + n, fresh[n], {"late": n})])
            writer_acked.append(10_000 + n)
            if len(writer_acked) == 20:
                twenty_acked.set()

    writing = asyncio.ensure_future(writer())
    await twenty_acked.wait()
    builder.release.set()  # the swap now happens while the writer writes
    report = await build
    await writing
    assert report.replayed_writes >= 4 + 20
    expected: dict[int, tuple[list[float], dict]] = {}
    for i, v in enumerate(vectors):
        expected[i] = (np.round(v, 5).tolist(), {"i": i})
    for i, v in enumerate(fresh):
        expected[POINTS + i] = (np.round(v, 5).tolist(), {"new": i})
    for i in range(50):
        expected[i] = (np.round(fresh[i], 5).tolist(), {"replaced": True})
    for i in [*range(50, 100), 150]:
        del expected[i]
    for n in range(200):
        expected[10_000 + n] = (np.round(fresh[n], 5).tolist(), {"late": n})
    assert await _all_points(backend) == expected
    await backend.close()
    reopened = EdgeBackend(tmp_path)  # and the swapped-in shard is what a restart opens
    try:
        assert await _all_points(reopened) == expected
    finally:
        await reopened.close()


async def test_a_second_optimize_joins_the_build_under_way(tmp_path):
    builder = WatchedBuilder()
    backend = EdgeBackend(tmp_path, index_builder=builder)
    try:
        await _collection(backend, unit(300, seed=4))
        first = asyncio.ensure_future(backend.optimize("c"))
        await builder.started.wait()
        second = asyncio.ensure_future(backend.optimize("c"))
        builder.release.set()
        assert await first == await second
        assert builder.calls == 1
    finally:
        await backend.close()


async def test_deleting_a_collection_stops_its_build_and_leaves_no_copy(tmp_path):
    builder = WatchedBuilder()
    backend = EdgeBackend(tmp_path, index_builder=builder)
    try:
        await _collection(backend, unit(POINTS, seed=5))
        build = asyncio.ensure_future(backend.optimize("c"))
        await builder.started.wait()
        await backend.delete_collection("c")
        with pytest.raises((asyncio.CancelledError, NotFound)):
            await build
        assert builder.child.done()  # the child process was killed (or had ended), not left running
        assert not (tmp_path / "builds" / "c").exists()
        assert not (tmp_path / "collections" / "c").exists()
    finally:
        await backend.close()


def test_a_swap_cut_short_between_its_renames_is_undone_at_the_next_open(tmp_path: Path):
    builds, collections = tmp_path / "builds", tmp_path / "collections"
    (builds / "c" / "retired").mkdir(parents=True)
    (builds / "c" / "retired" / "marker").write_text("serving")
    (builds / "c" / "shard").mkdir()
    (builds / "d" / "shard").mkdir(parents=True)  # a build whose collection is still in place
    (collections / "d").mkdir(parents=True)
    _recover_builds(builds, collections)
    assert (collections / "c" / "marker").read_text() == "serving"
    assert (collections / "d").is_dir()
    assert os.listdir(builds) == []


async def test_a_built_copy_that_does_not_open_leaves_the_collection_served_as_before(tmp_path):
    class BreakingBuilder(WatchedBuilder):
        async def finish(self, journal) -> None:
            await super().finish(journal)
            for wal in (Path(self.path) / "wal").iterdir():  # the built copy is damaged before the swap
                wal.write_bytes(b"\0garbage")
            (Path(self.path) / "edge_config.json").write_text("{not json")

        async def __call__(self, path: str) -> WatchedBuilder:
            self.path = path
            return await super().__call__(path)

    builder = BreakingBuilder()
    builder.release.set()
    backend = EdgeBackend(tmp_path, index_builder=builder)
    try:
        vectors = unit(POINTS, seed=6)
        await _collection(backend, vectors)
        before = await _all_points(backend)
        with pytest.raises(SearchgwError):
            await backend.optimize("c")
        assert await _all_points(backend) == before  # still served, every point there
        await backend.upsert("c", [Point(POINTS, vectors[0], {"after": True})])  # and writable
        assert await backend.count("c") == POINTS + 1
    finally:
        await backend.close()
    assert not (tmp_path / "builds" / "c").exists()


async def test_optimize_collection_reports_the_build_and_counts_it(rig):
    server, client = await rig.start()
    await client.create_collection("vec", dimension=DIM)
    await client.upsert("vec", [{"id": i, "vector": v.tolist()} for i, v in enumerate(unit(50, seed=7))])
    response = await client.optimize_collection_report("vec", timeout=120)
    assert response.collection.points_count == 50
    build = response.build
    assert build.duration.ToTimedelta().total_seconds() >= build.build_duration.ToTimedelta().total_seconds() > 0
    assert build.replayed_writes == 0
    registry = server.metrics.registry
    assert registry.get_sample_value("searchgw_index_builds_total", {"collection": "vec", "result": "ok"}) == 1
    assert registry.get_sample_value("searchgw_index_build_seconds_count", {"step": "build"}) == 1
    assert registry.get_sample_value("searchgw_index_builds_running") == 0
    background = await client.optimize_collection_report("vec", background=True, timeout=120)
    assert background.collection.points_count == 50 and not background.HasField("build")
