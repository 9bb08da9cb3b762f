"""What a payload index buys: filtered counts and searches on the embedded backend, indexed against not.

    .venv/bin/python -m bench.bench_payload_index [--points 20000] [--rounds 30] [--quick]

Two edge collections in one data directory hold the same points (random 32-d vectors; payload: a
datetime `day`, an integer `rank`, a keyword `owner`, a `title` text); one declares indexes on the
four fields, the other none. Each round runs, on both collections interleaved (A, B, A, B …), an
exact CountPoints-style count and a top-10 search under a selective filter (a 3-day datetime range,
one owner, a full-text word). It prints the median time of each call per collection and the ratio
unindexed / indexed, measured in the same run: absolute times depend on the machine (and on what
else runs on it), the ratio much less.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from searchgw.gateway.backends import (
    CollectionSpec,
    DatetimeRange,
    EdgeBackend,
    FieldCondition,
    Filter,
    PayloadIndex,
    PayloadIndexType,
    Point,
    SearchQuery,
)

DIMENSION = 32
INDEXES = (PayloadIndex("day", PayloadIndexType.DATETIME), PayloadIndex("rank", PayloadIndexType.INTEGER),
           PayloadIndex("owner", PayloadIndexType.KEYWORD), PayloadIndex("title", PayloadIndexType.TEXT))
WORDS = ("canary", "rollout", "vector", "alias", "shard", "index", "query", "stage", "model", "batch")
FILTERS = {
    "datetime range": Filter(must=(FieldCondition("day", datetime_range=DatetimeRange(
        gte="2024-03-01T00:00:00Z", lt="2024-03-04T00:00:00Z")),)),
    "keyword": Filter(must=(FieldCondition("owner", keyword="user7"),)),
    "full text": Filter(must=(FieldCondition("title", text="canary"),)),
}


def points(count: int) -> list[Point]:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((count, DIMENSION)).astype(np.float32)
    start = np.datetime64("2024-01-01T00:00:00")
    return [Point(id=i, vector=vectors[i], payload={
        "day": str(start + np.timedelta64(int(rng.integers(0, 365 * 24 * 3600)), "s")) + "Z",
        "rank": int(rng.integers(0, 1000)), "owner": f"user{int(rng.integers(0, 500))}",
        "title": " ".join(rng.choice(WORDS, size=4)) if i % 50 else "a canary note"}) for i in range(count)]


async def timed(call) -> float:
    started = time.perf_counter()
    await call
    return time.perf_counter() - started


async def run(count: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        backend = EdgeBackend(Path(directory))
        try:
            data = points(count)
            for name, indexes in (("indexed", INDEXES), ("plain", ())):
                await backend.create_collection(CollectionSpec(name, DIMENSION, payload_indexes=indexes))
                for i in range(0, count, 1000):
                    await backend.upsert(name, data[i:i + 1000])
                await backend.optimize(name)
            query = np.random.default_rng(1).standard_normal(DIMENSION).astype(np.float32)
            print(f"{count} points, {rounds} rounds, interleaved; median seconds per call")
            print(f"{'filter':16} {'call':7} {'indexed':>10} {'plain':>10} {'plain/indexed':>14}")
            for label, filter in FILTERS.items():
                assert await backend.count("indexed", filter) == await backend.count("plain", filter)
                for call in ("count", "search"):
                    times: dict[str, list[float]] = {"indexed": [], "plain": []}
                    for _ in range(rounds):
                        for name in ("indexed", "plain"):
                            operation = (backend.count(name, filter) if call == "count" else
                                         backend.search(name, SearchQuery(vector=query, limit=10, filter=filter)))
                            times[name].append(await timed(operation))
                    indexed, plain = statistics.median(times["indexed"]), statistics.median(times["plain"])
                    print(f"{label:16} {call:7} {indexed:10.5f} {plain:10.5f} {plain / indexed:14.2f}")
        finally:
            await backend.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="5 000 points, 10 rounds")
    args = parser.parse_args()
    asyncio.run(run(5_000, 10) if args.quick else run(args.points, args.rounds))


if __name__ == "__main__":
    main()
