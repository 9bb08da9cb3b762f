"""The embedder dies under load (SIGKILL) and comes back on the same address.

While it is gone, every text search fails fast with UNAVAILABLE, well before its deadline (none hangs
waiting for a dead peer); vector searches do not need it and keep working. When a new embedder
serves on the same port, text searches succeed again by themselves: the gateway is not restarted,
its channel reconnects.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import pytest

from searchgw.gateway.client import GatewayClient
from searchgw.gateway.server import create_server
from searchgw.errors import SearchgwError
from tests.faults.processes import free_port, start_embedder
from tests.rigs import gateway_settings

DEADLINE_S = 3.0


@dataclass
class Outcomes:
    """Every search: when it started (monotonic), how long it took, and its status."""

    calls: list[tuple[float, float, str]] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def add(self, call: tuple[float, float, str]) -> None:
        async with self.changed:
            self.calls.append(call)
            self.changed.notify_all()

    async def wait_for(self, predicate, timeout_s: float) -> None:
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(predicate), timeout_s)

    def since(self, moment: float) -> list[tuple[float, float, str]]:
        return [c for c in self.calls if c[0] >= moment]

    def first_ok_after(self, moment: float) -> float | None:
        return next((start + took for start, took, code in self.calls if start >= moment and code == "OK"), None)


async def searcher(client: GatewayClient, outcomes: Outcomes, worker: int, stop: asyncio.Event) -> None:
    n = 0
    while not stop.is_set():
        n += 1
        started = time.monotonic()
        try:  # a fresh text each time: the embedder's cache answers nothing
            await client.search("docs", text=f"question {n} from worker {worker}", limit=3, timeout=DEADLINE_S)
            code = "OK"
        except SearchgwError as exc:
            code = exc.code_name
        await outcomes.add((started, time.monotonic() - started, code))


@pytest.mark.slow
async def test_text_searches_fail_fast_while_the_embedder_is_dead_and_recover_when_it_returns(tmp_path):
    port = free_port()
    embedder = await start_embedder(port, tmp_path / "embedder-1.log")
    gateway = await create_server(gateway_settings(tmp_path, embedder_addr=f"127.0.0.1:{port}", metrics_port=-1))
    client = GatewayClient(gateway.address)
    outcomes, stop = Outcomes(), asyncio.Event()
    workers: list[asyncio.Task] = []
    replacement = None
    try:
        await client.create_collection("docs")
        await client.create_collection("vecs", dimension=4)
        await client.upsert("docs", [{"id": i, "text": f"passage {i} about topic {i}"} for i in range(20)])
        await client.upsert("vecs", [{"id": 1, "vector": [1, 0, 0, 0]}])
        workers = [asyncio.create_task(searcher(client, outcomes, w, stop)) for w in range(2)]
        await outcomes.wait_for(lambda: sum(code == "OK" for *_, code in outcomes.calls) >= 20, 30)

        await embedder.kill()
        killed_at = time.monotonic()
        await outcomes.wait_for(lambda: len(outcomes.since(killed_at + 0.5)) >= 40, 30)
        vector = await client.search("vecs", vector=[1, 0, 0, 0], limit=1, timeout=DEADLINE_S)
        assert vector.points[0].id.num == 1  # what needs no embedder keeps working

        replacement = await start_embedder(port, tmp_path / "embedder-2.log")
        back_at = time.monotonic()
        await outcomes.wait_for(lambda: outcomes.first_ok_after(back_at) is not None, 60)
        recovered_after = outcomes.first_ok_after(back_at) - back_at
    finally:
        stop.set()
        await asyncio.gather(*workers, return_exceptions=True)
        await client.close()
        await gateway.stop(0)
        await embedder.stop()
        if replacement is not None:
            await replacement.stop()

    outage = [c for c in outcomes.calls if killed_at <= c[0] < back_at]
    failed = [c for c in outage if c[2] != "OK"]
    assert failed, "searches kept succeeding with the embedder dead"
    assert {code for *_, code in failed} == {"UNAVAILABLE"}, {code for *_, code in failed}
    slowest = max(took for _, took, _ in failed)
    assert slowest < DEADLINE_S, f"a failed search took {slowest:.2f}s: it waited for the dead embedder"
    # Failing fast, not merely before the deadline: a dead peer is noticed at once.
    took = sorted(took for _, took, _ in failed)
    assert took[len(took) // 2] < 0.25, f"median failure took {took[len(took) // 2]:.3f}s"
    assert recovered_after < 30, f"text searches recovered {recovered_after:.1f}s after the embedder returned"
    print(f"\noutage: {len(failed)} UNAVAILABLE, median {took[len(took) // 2] * 1000:.1f} ms, "
          f"slowest {slowest * 1000:.0f} ms; recovered {recovered_after:.1f} s after the new embedder served")
