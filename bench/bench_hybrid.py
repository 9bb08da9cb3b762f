"""Hybrid search latency: p50 / p99 of hybrid (dense + BM25, RRF) against dense, through the gateway.

    .venv/bin/python -m bench.bench_hybrid [--quick] [--points 20000]

One process: the real embedder (ONNX model, cache off, so every query is embedded) and a gateway on the
edge backend, over gRPC on loopback. The collection has 20 000 products of bench/_hybrid_corpus.py, with
a BM25 config; their dense vectors are random unit vectors sent as raw vectors with `bm25_text` (embedding
20 000 texts would take minutes and does not change what a query costs), and the HNSW index is built
before measuring. Queries are product codes and descriptions, each asked once per mode, the modes
interleaved (dense, hybrid, sparse; the order rotating per query) so that load from the other helpers on
the machine falls on all of them alike. The result is the ratio hybrid / dense of the percentiles,
measured in the same run; absolute milliseconds depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import configure_like_production, loadavg_text  # noqa: E402
from bench._hybrid_corpus import KINDS, many_products  # noqa: E402
from bench.bench_embedder import MODEL_CACHE  # noqa: E402
from searchgw.embedder.client import EmbedderClient  # noqa: E402
from searchgw.embedder.server import create_server as create_embedder  # noqa: E402
from searchgw.embedder.settings import EmbedderSettings  # noqa: E402
from searchgw.gateway.backends import EdgeBackend  # noqa: E402
from searchgw.gateway.client import GatewayClient  # noqa: E402
from searchgw.gateway.remote_embedder import RemoteEmbedder  # noqa: E402
from searchgw.gateway.server import create_server  # noqa: E402
from searchgw.gateway.settings import GatewaySettings  # noqa: E402
from searchgw.v1 import collection_service_pb2 as coll_pb  # noqa: E402
from searchgw.v1 import search_service_pb2 as search_pb  # noqa: E402

DIM = 384
BATCH = 500
MODES = {"dense": search_pb.SEARCH_MODE_DENSE, "hybrid": search_pb.SEARCH_MODE_HYBRID,
         "sparse": search_pb.SEARCH_MODE_SPARSE}


@dataclass(frozen=True)
class HybridResults:
    points: int
    queries: int
    #: mode → sorted latencies in seconds
    latencies: dict[str, list[float]]
    load_s: float
    index_s: float

    def percentile_ms(self, mode: str, quantile: float) -> float:
        values = self.latencies[mode]
        return values[min(len(values) - 1, int(len(values) * quantile))] * 1e3

    def ratio(self, quantile: float) -> float:
        return self.percentile_ms("hybrid", quantile) / self.percentile_ms("dense", quantile)

    def lines(self) -> list[str]:
        out = [f"{self.points} points, {self.queries} queries per mode, interleaved; loaded in {self.load_s:.1f} s, "
               f"indexed in {self.index_s:.1f} s ({loadavg_text()})",
               f"  {'mode':<8} {'p50 ms':>8} {'p99 ms':>8}"]
        for mode in MODES:
            out.append(f"  {mode:<8} {self.percentile_ms(mode, 0.5):>8.2f} {self.percentile_ms(mode, 0.99):>8.2f}")
        out.append(f"  hybrid / dense: p50 {self.ratio(0.5):.2f}x, p99 {self.ratio(0.99):.2f}x")
        return out


def queries(count: int, codes: list[str], seed: int = 99) -> list[str]:
    """Codes (alone or in a question) and descriptions, each text once: the embedder's cache is off anyway."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        if i % 2:
            out.append(f"where can I buy {rng.choice(codes)}? ({i})")
        else:
            noun, descriptions, paraphrase = KINDS[i % len(KINDS)]
            out.append(f"{rng.choice(descriptions)} {noun} {paraphrase} ({i})")
    return out


async def run(quick: bool, points: int = 20_000, log=print) -> HybridResults:
    count = 200 if quick else 1_000
    with tempfile.TemporaryDirectory(prefix="bench-hybrid-") as root:
        embedder = await create_embedder(EmbedderSettings(port=0, metrics_port=-1, cache_dir=MODEL_CACHE, cache_size=0,
                                                          grace_period_s=1.0, log_format="text"))
        await embedder.load()
        embedder_client = EmbedderClient(embedder.address)
        gateway = await create_server(
            GatewaySettings(port=0, metrics_port=-1, data_dir=Path(root), log_format="text", log_level="error"),
            backend=EdgeBackend(Path(root) / "edge"), embedder=RemoteEmbedder(embedder_client, timeout_s=30.0))
        client = GatewayClient(gateway.address)
        try:
            started = time.perf_counter()
            await client.create_collection("catalogue", bm25=coll_pb.Bm25Config(avg_len=15))
            rng = np.random.default_rng(20_000)
            catalogue = list(many_products(points))
            for start in range(0, points, BATCH):
                vectors = rng.standard_normal((min(BATCH, points - start), DIM)).astype(np.float32)
                vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
                await client.upsert("catalogue", [
                    {"id": product.id, "vector": vector.tolist(), "bm25_text": product.text}
                    for product, vector in zip(catalogue[start:start + BATCH], vectors, strict=True)], timeout=120)
            load_s = time.perf_counter() - started
            started = time.perf_counter()
            await client.optimize_collection("catalogue", timeout=600)
            index_s = time.perf_counter() - started
            log(f"loaded {points} points in {load_s:.1f} s, indexed in {index_s:.1f} s")
            texts = queries(count, [product.code for product in catalogue])
            for text in texts[:20]:  # warm-up: connections, the engine's first queries
                for mode in MODES.values():
                    await client.search("catalogue", text=text, mode=mode, limit=10)
            latencies: dict[str, list[float]] = {mode: [] for mode in MODES}
            names = list(MODES)
            for i, text in enumerate(texts):
                for mode in names[i % 3:] + names[:i % 3]:  # the order rotates
                    began = time.perf_counter()
                    await client.search("catalogue", text=text, mode=MODES[mode], limit=10)
                    latencies[mode].append(time.perf_counter() - began)
            return HybridResults(points, count, {mode: sorted(values) for mode, values in latencies.items()},
                                 load_s, index_s)
        finally:
            await client.close()
            await gateway.stop(0)
            await embedder_client.close()
            await embedder.stop(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 queries per mode instead of 1000")
    parser.add_argument("--points", type=int, default=20_000, help="collection size [20000]")
    args = parser.parse_args()
    configure_like_production()
    results = asyncio.run(run(args.quick, args.points))
    print("\n".join(results.lines()))


if __name__ == "__main__":
    main()
