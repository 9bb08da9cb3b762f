"""What only the embedded backend (qdrant-edge) has: durability across restarts and kills, its data dir, and
micro-batching of searches.
"""

from __future__ import annotations

import asyncio
import signal
import sys

import pytest

from searchgw.errors import FailedPrecondition
from searchgw.gateway.backends import EdgeBackend, ScalarQuantization, SearchQuery
from searchgw.gateway.backends._batching import MicroBatcher
from tests.gateway.backend_helpers import REPO_ROOT, filled, let_queue, spec


# -- the embedded backend -----------------------------------------------------------------------
async def test_edge_reopened_after_close_has_everything_it_acknowledged(tmp_path):
    backend = EdgeBackend(tmp_path)
    vectors = await filled(backend, count=20, name="v1")
    quantized = spec("v2", scalar_quantization=ScalarQuantization(quantile=0.95, always_ram=True), hnsw_m=8)
    await backend.create_collection(quantized)
    await backend.update_alias("docs", "v1")
    await backend.close()

    reopened = EdgeBackend(tmp_path)
    try:
        assert await reopened.list_aliases() == {"docs": "v1"}
        assert (await reopened.get_collection("v2")).spec == quantized
        info = await reopened.get_collection("docs")
        assert (info.spec.name, info.spec.embedding_model, info.points_count) == ("v1", "model-a", 20)
        hits = await reopened.search("docs", SearchQuery(vector=vectors[7], limit=1, with_payload=True))
        assert (hits[0].id, hits[0].payload) == (7, {"i": 7})
    finally:
        await reopened.close()


_KILLED_WRITER = """
import asyncio, os, signal, sys
from searchgw.gateway.backends import CollectionSpec, EdgeBackend, Point

async def main(path):
    backend = EdgeBackend(path)
    await backend.create_collection(CollectionSpec(name="v1", dimension=4, embedding_model="m"))
    await backend.update_alias("docs", "v1")
    await backend.upsert("v1", [Point(id=i, vector=[1.0, float(i), 0.0, 0.0], payload={"i": i}) for i in range(100)])
    await backend.delete_points("v1", ids=[7])
    print("acknowledged", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # no close(), no flush: a crash

asyncio.run(main(sys.argv[1]))
"""


async def test_edge_keeps_acknowledged_writes_when_the_process_is_killed(tmp_path):
    writer = await asyncio.create_subprocess_exec(sys.executable, "-c", _KILLED_WRITER, str(tmp_path),
                                                  cwd=REPO_ROOT, stdout=asyncio.subprocess.PIPE,
                                                  stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(writer.communicate(), timeout=60)
    assert writer.returncode == -signal.SIGKILL, stderr.decode()
    assert stdout.decode().strip() == "acknowledged"

    backend = EdgeBackend(tmp_path)
    try:
        assert await backend.list_aliases() == {"docs": "v1"}
        assert await backend.count("docs") == 99
        hits = await backend.search("docs", SearchQuery(vector=[1.0, 8.0, 0.0, 0.0], limit=1, with_payload=True))
        assert (hits[0].id, hits[0].payload) == (8, {"i": 8})
    finally:
        await backend.close()


async def test_edge_refuses_a_data_dir_another_backend_holds(tmp_path):
    first = EdgeBackend(tmp_path)
    with pytest.raises(FailedPrecondition):
        EdgeBackend(tmp_path)
    await first.close()
    await EdgeBackend(tmp_path).close()


async def test_edge_replaces_a_shard_directory_left_by_an_interrupted_create(tmp_path):
    leftover = tmp_path / "collections" / "c"
    leftover.mkdir(parents=True)
    (leftover / "junk").write_text("half-made")
    backend = EdgeBackend(tmp_path)
    try:
        assert await backend.list_collections() == []
        await filled(backend, count=4)
        assert await backend.count("c") == 4
    finally:
        await backend.close()


# -- micro-batching -----------------------------------------------------------------------------
class GatedDoubler:
    """Doubles numbers; the first batch waits at a gate so the test decides what queues behind it."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.batches: list[list[int]] = []

    async def __call__(self, batch: list[int]) -> list[int]:
        self.batches.append(list(batch))
        if len(self.batches) == 1:
            await self.gate.wait()
        if any(n < 0 for n in batch):
            raise ValueError("negative")
        return [2 * n for n in batch]


async def test_an_idle_batcher_runs_a_request_alone_at_once():
    run = GatedDoubler()
    run.gate.set()
    batcher = MicroBatcher(run, max_batch_size=8)
    assert [await batcher.submit(1), await batcher.submit(2)] == [2, 4]
    assert run.batches == [[1], [2]]


async def test_requests_arriving_during_a_batch_run_together_as_the_next_batches():
    run = GatedDoubler()
    batcher = MicroBatcher(run, max_batch_size=3)
    first = asyncio.ensure_future(batcher.submit(0))
    await let_queue()
    rest = [asyncio.ensure_future(batcher.submit(n)) for n in range(1, 6)]
    await let_queue()
    run.gate.set()
    assert await asyncio.gather(first, *rest) == [0, 2, 4, 6, 8, 10]
    assert run.batches == [[0], [1, 2, 3], [4, 5]]
    assert (batcher.batches, batcher.requests) == (3, 6)


async def test_a_queued_request_whose_caller_left_is_skipped():
    run = GatedDoubler()
    batcher = MicroBatcher(run, max_batch_size=8)
    first = asyncio.ensure_future(batcher.submit(0))
    await let_queue()
    gone, kept = asyncio.ensure_future(batcher.submit(1)), asyncio.ensure_future(batcher.submit(2))
    await let_queue()
    gone.cancel()
    run.gate.set()
    assert await asyncio.gather(first, kept) == [0, 4]
    assert run.batches == [[0], [2]]


async def test_a_failed_batch_fails_each_of_its_requests_and_the_next_batch_still_runs():
    run = GatedDoubler()
    batcher = MicroBatcher(run, max_batch_size=2)
    first = asyncio.ensure_future(batcher.submit(0))
    await let_queue()
    queued = [asyncio.ensure_future(batcher.submit(n)) for n in (-1, 1, 2)]
    await let_queue()
    run.gate.set()
    results = await asyncio.gather(first, *queued, return_exceptions=True)
    assert results[0] == 0
    assert all(isinstance(r, ValueError) for r in results[1:3])
    assert results[3] == 4
    assert await batcher.submit(3) == 6  # idle again
