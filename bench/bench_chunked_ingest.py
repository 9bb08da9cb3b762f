"""Chunked ingest throughput (issue 14.5): chunks/s with embedding, against unchunked ingest in the same run.

    .venv/bin/python -m bench.bench_chunked_ingest [--documents 120] [--rounds 2] [--quick]

In this process, on loopback: an embedder serving all-MiniLM-L6-v2 (fp32, the real model and
tokenizer) and a gateway on the embedded qdrant-edge engine. Three ingests through the gateway's
Upsert, interleaved round by round (A, B, C, A, B, C…) into fresh collections, best round of each:

- `short`: unchunked Upsert of short texts (~30 tokens), 64 per call — the everyday ingest;
- `full`: unchunked Upsert of texts of about one chunk each (~240 tokens), 32 per call — what the
  chunks cost to embed without chunking;
- `chunked`: Upsert with chunking (256 tokens, overlap 32) of documents of ~1 200 tokens, 8 per call:
  ChunkText, then every chunk embedded, written, and the surplus delete.

Printed: texts/s (chunks/s for `chunked`), tokens/s, and the ratios chunked / full (the price of
chunking itself: the ChunkText call, the overlap's extra tokens, the delete) and chunked / short.
The machine is shared (2 cores): read the ratios, not the absolute rates.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from searchgw.embedder.client import EmbedderClient
from searchgw.embedder.model import DEFAULT_MODEL_NAME, EmbeddingModel, default_model_dir
from searchgw.embedder.server import create_server as create_embedder
from searchgw.embedder.settings import EmbedderSettings
from searchgw.gateway.backends import EdgeBackend
from searchgw.gateway.client import GatewayClient
from searchgw.gateway.remote_embedder import RemoteEmbedder
from searchgw.gateway.server import create_server
from searchgw.gateway.settings import GatewaySettings
from searchgw.v1 import search_service_pb2 as search_pb

CACHE = Path(os.environ.get("SEARCHGW_TEST_MODEL_CACHE", Path.home() / ".cache" / "searchgw"))
WORDS = ("canary", "rollout", "vector", "search", "alias", "backfill", "primary", "stage", "model", "query",
         "latency", "error", "point", "payload", "snapshot", "gateway", "embedding", "shard", "index", "weight",
         "ledger", "invoice", "reconciled", "quarterly", "handbook", "policy", "incident", "review")


def words(seed: int, count: int) -> str:
    return " ".join(np.random.default_rng(seed).choice(WORDS, size=count))


@dataclass
class Run:
    name: str
    texts: int  # texts embedded (chunks for the chunked run)
    tokens: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.texts / self.seconds

    @property
    def token_rate(self) -> float:
        return self.tokens / self.seconds


async def ingest(client: GatewayClient, collection: str, points: list[dict], batch: int,
                 chunking: search_pb.Chunking | None) -> tuple[int, float]:
    """(texts embedded, seconds) for writing `points` in calls of `batch`."""
    await client.create_collection(collection)
    started = time.perf_counter()
    embedded = 0
    for start in range(0, len(points), batch):
        response = await client.upsert(collection, points[start:start + batch], chunking=chunking, timeout=600)
        embedded += response.chunks if chunking is not None else response.upserted
    seconds = time.perf_counter() - started
    await client.delete_collection(collection)
    return embedded, seconds


@dataclass
class ChunkedIngestResults:
    documents: int
    rounds: int
    load: float
    runs: dict[str, Run]

    @property
    def chunked_vs_full(self) -> float:
        return self.runs["chunked"].rate / self.runs["full"].rate

    @property
    def chunked_vs_short(self) -> float:
        return self.runs["chunked"].rate / self.runs["short"].rate


async def run(documents: int, rounds: int) -> ChunkedIngestResults:
    model = EmbeddingModel.load(default_model_dir(CACHE), DEFAULT_MODEL_NAME, intra_op_threads=2)
    # cache off: every round embeds (a repeated round would otherwise be answered from the LRU cache)
    embedder = await create_embedder(EmbedderSettings(port=0, metrics_port=-1, cache_dir=CACHE, cache_size=0,
                                                      log_format="text"))
    await embedder.load([model])

    def tokens(text: str) -> int:
        return model.chunk(text, model.spec.max_input_tokens, 32).tokens
    try:
        with tempfile.TemporaryDirectory() as tmp:
            embedder_client = EmbedderClient(embedder.address)
            server = await create_server(
                GatewaySettings(port=0, metrics_port=-1, data_dir=Path(tmp), log_format="text"),
                backend=EdgeBackend(Path(tmp) / "edge"),
                embedder=RemoteEmbedder(embedder_client, timeout_s=600.0))
            client = GatewayClient(server.address)
            long_docs = [{"id": i, "text": ". ".join(words(i * 10 + j, 40) for j in range(25))}
                         for i in range(documents)]
            chunk_count = sum(len(model.chunk(p["text"], 256, 32).chunks) for p in long_docs)
            # One chunk's worth of other text each: the first chunk of another random document.
            full = [{"id": i, "text": model.chunk(". ".join(words(10_000 + i * 10 + j, 40) for j in range(8)),
                                                  model.spec.max_input_tokens, 0).chunks[0].text}
                    for i in range(chunk_count)]
            assert max(tokens(p["text"]) for p in full) <= model.spec.max_input_tokens
            short = [{"id": i, "text": words(50_000 + i, 25)} for i in range(chunk_count)]
            token_counts = {
                "short": sum(tokens(p["text"]) for p in short),
                "full": sum(tokens(p["text"]) for p in full),
                "chunked": sum(tokens(p["text"]) for p in long_docs),
            }
            best: dict[str, Run] = {}
            for round_ in range(rounds):
                for name, points, batch, chunking in (
                        ("short", short, 64, None), ("full", full, 32, None),
                        ("chunked", long_docs, 8, search_pb.Chunking(enabled=True, max_tokens=256,
                                                                     overlap_tokens=32))):
                    embedded, seconds = await ingest(client, f"{name}-{round_}", points, batch, chunking)
                    run = Run(name, embedded, token_counts[name], seconds)
                    if name not in best or run.rate > best[name].rate:
                        best[name] = run
            await client.close()
            await server.stop(0)
            await embedder_client.close()
    finally:
        await embedder.stop(0)

    return ChunkedIngestResults(documents, rounds, os.getloadavg()[0], best)


def lines(results: ChunkedIngestResults) -> list[str]:
    """The results as text lines (also bench/report.py's section)."""
    runs = results.runs
    out = [f"{results.documents} documents of ~1 200 tokens → {runs['chunked'].texts} chunks; {results.rounds} "
           f"interleaved round(s), best of each; machine load {results.load:.1f} (2 cores shared)",
           f"{'run':<10} {'texts/s':>9} {'tokens/s':>10} {'texts':>7}"]
    for one in runs.values():
        unit = "chunks" if one.name == "chunked" else "texts"
        out.append(f"{one.name:<10} {one.rate:>9.1f} {one.token_rate:>10.0f} {one.texts:>7} {unit}")
    out.append(f"chunked / full  (chunks/s vs one-chunk texts/s, unchunked): {results.chunked_vs_full:.2f}x")
    out.append(f"chunked / short (chunks/s vs short texts/s, unchunked):     {results.chunked_vs_short:.2f}x")
    return out


def markdown(results: ChunkedIngestResults) -> str:
    """bench/report.py's section of docs/benchmarks.md."""
    return ("\n## Chunked ingest (`bench/bench_chunked_ingest.py`)\n\n"
            "Upsert with chunking (256 tokens, overlap 32) of long documents against unchunked Upserts of "
            "one-chunk-sized and of short texts, interleaved in the same run (docs/chunking.md).\n\n```\n"
            + "\n".join(lines(results)) + "\n```\n")


async def main(documents: int, rounds: int) -> int:
    print("\n".join(lines(await run(documents, rounds))))
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=int, default=120, help="long documents of the chunked run [120]")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds [2]")
    parser.add_argument("--quick", action="store_true", help="40 documents, 1 round")
    args = parser.parse_args()
    raise SystemExit(asyncio.run(main(40 if args.quick else args.documents, 1 if args.quick else args.rounds)))
