"""`searchgw serve --workers N` scaling (issue 16.5): one worker against two, in one run.

    .venv/bin/python -m bench.bench_workers [--seconds 5] [--rounds 3] [--callers 16]

Child processes: a redis-server (the shared rollout state), the Qdrant-protocol test server
(tests/qdrant_server, over the real engine) holding two 1 000-point x 384 collections behind an alias
with a rollout at 50 %, and `searchgw serve --backend qdrant --state redis://…` with `--workers 1`
and with `--workers 2` (each on its own port, both up for the whole run). A closed-loop client in a
process of its own spreads `--callers` over 8 connections (a private subchannel each, so the kernel's
SO_REUSEPORT hash sees 8 connections), keyed searches by vector, limit 10. Rounds interleave the two
setups; each keeps its best. Printed: calls/s of each, the ratio 2 workers / 1 worker, and the load
average (the test server is one Python process on the same cores: on a 2-core machine it, not the
gateway, may cap the ratio).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from bench._common import Machine, loadavg_text  # noqa: E402
from searchgw.gateway.client import GatewayClient, stage  # noqa: E402
from tests.faults.processes import ServerProcess  # noqa: E402
from tests.qdrant_server import QdrantServerProcess  # noqa: E402
from tests.redis_rig import RedisServer  # noqa: E402

DIM = 384
SIZE = 1_000
CONNECTIONS = 8


def _client_main(address: str, callers: int, seconds: float, result) -> None:
    import grpc  # noqa: PLC0415

    from searchgw.v1 import search_service_pb2 as pb  # noqa: PLC0415
    from searchgw.v1 import search_service_pb2_grpc as pb_grpc  # noqa: PLC0415

    async def main() -> int:
        rng = np.random.default_rng(1)
        vectors = rng.normal(size=(64, DIM)).astype(np.float32)
        requests = [pb.SearchRequest(collection="bench", limit=10, routing_key=f"user-{i}") for i in range(64)]
        for request, vector in zip(requests, vectors):
            request.vector.values.extend(vector.tolist())
        channels = [grpc.aio.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
                    for _ in range(CONNECTIONS)]
        stubs = [pb_grpc.SearchServiceStub(channel) for channel in channels]
        calls = 0
        end = time.monotonic() + seconds

        async def caller(index: int) -> None:
            nonlocal calls
            stub = stubs[index % CONNECTIONS]
            while time.monotonic() < end:
                await stub.Search(requests[random.randrange(64)], timeout=10)
                calls += 1

        await asyncio.gather(*(caller(i) for i in range(callers)))
        for channel in channels:
            await channel.close()
        return calls

    result.put(asyncio.run(main()))


def measure(address: str, callers: int, seconds: float) -> float:
    context = multiprocessing.get_context("spawn")
    result = context.Queue()
    process = context.Process(target=_client_main, args=(address, callers, seconds, result))
    process.start()
    calls = result.get(timeout=seconds + 120)
    process.join()
    return calls / seconds


async def run(args: argparse.Namespace) -> None:
    machine = Machine.now()
    print(f"workers benchmark, {machine.line()}, {loadavg_text()}")
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp:
        root = Path(tmp)
        redis = await RedisServer(root / "redis").start()
        qdrant = await QdrantServerProcess.start(root / "qdrant", root / "qdrant.log")
        gateways: dict[int, ServerProcess] = {}
        try:
            for workers in (1, 2):
                gateways[workers] = await ServerProcess.start(
                    ["serve", "--workers", str(workers), "--port", "0", "--metrics-port", "-1",
                     "--data-dir", str(root / f"gateway-{workers}"), "--log-format", "text", "--log-level", "error",
                     "--backend", "qdrant", "--qdrant-url", qdrant.url, "--state", redis.url],
                    "gateway serving on ", root / f"gateway-{workers}.log")
            async with GatewayClient(gateways[1].address) as client:
                rng = np.random.default_rng(7)
                for name in ("bench-v1", "bench-v2"):
                    await client.create_collection(name, dimension=DIM)
                    vectors = rng.normal(size=(SIZE, DIM)).astype(np.float32)
                    for start in range(0, SIZE, 250):
                        await client.upsert(name, [{"id": i + 1, "vector": vectors[i].tolist()}
                                                   for i in range(start, start + 250)])
                await client.update_alias("bench", "bench-v1")
                await client.create_rollout("bench-rollout", "bench", "bench-v2",
                                            stages=[stage(50, 30 * 24 * 3600.0, 0), stage(100)])
            await asyncio.sleep(1.0)  # the other gateways follow the rollout through Redis
            best = {1: 0.0, 2: 0.0}
            for round_ in range(args.rounds):
                for workers in (1, 2):
                    rate = await asyncio.to_thread(measure, gateways[workers].address, args.callers, args.seconds)
                    best[workers] = max(best[workers], rate)
                    print(f"  round {round_ + 1}: {workers} worker(s) {rate:.0f} calls/s ({loadavg_text()})")
        finally:
            for gateway in gateways.values():
                gateway.process.terminate()
                await gateway.process.wait()
            await qdrant.kill()
            await redis.stop()
    print(f"\n{args.callers} callers over {CONNECTIONS} connections, Search by vector (limit 10) through a rollout "
          f"at 50 %, backend: the Qdrant-protocol test server ({SIZE} points x{DIM} per arm)")
    print(f"  --workers 1: {best[1]:.0f} calls/s   --workers 2: {best[2]:.0f} calls/s   "
          f"ratio 2/1: {best[2] / best[1]:.2f}x   ({loadavg_text()} at the end; {os.cpu_count()} cores)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--callers", type=int, default=16)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
