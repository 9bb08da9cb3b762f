"""What the model-canary check adds to a raw-vector search during a rollout (a script, not a test).

    .venv/bin/python -m bench.bench_model_canary [--quick]

During a rollout every routed raw-vector search asks whether the arms hold different vector spaces
(`SearchCore._model_canary`: the route table, then both arms' specs from the `CollectionSpecs` cache).
This prints its cost per search next to the route decision the same search already makes
(`Router.route`, the baseline), measured in the same run, as nanoseconds and as a ratio. Best of
several repeats, to keep other load out of it.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable

from searchgw.gateway.backends import CollectionInfo, CollectionSpec
from searchgw.gateway.core import CollectionSpecs, SearchCore
from searchgw.gateway.routing import Router, RouteTable

REPEATS = 5


class _Specs:
    """A backend that only describes collections (the cache asks once per name)."""

    async def get_collection(self, name: str) -> CollectionInfo:
        model = "model-b" if name.endswith("v2") else "model-a"
        return CollectionInfo(CollectionSpec(name=name, dimension=384, embedding_model=model), points_count=0)


async def _best_ns(body: Callable[[int], Awaitable[None]], calls: int) -> float:
    best = float("inf")
    for _ in range(REPEATS):
        started = time.perf_counter_ns()
        await body(calls)
        best = min(best, (time.perf_counter_ns() - started) / calls)
    return best


async def main(calls: int) -> None:
    router = Router({"docs": RouteTable(rollout="r1", salt="s", primary="docs-v1", canary="docs-v2",
                                        weight_bps=5_000)})
    core = SearchCore.__new__(SearchCore)  # only the two attributes the check reads
    core._router = router
    core._specs = CollectionSpecs(_Specs())  # type: ignore[arg-type]
    assert await core._model_canary("docs") is not None  # the specs are cached from here on

    async def route(n: int) -> None:
        for i in range(n):
            router.route("docs", "user-42")

    async def check(n: int) -> None:
        for i in range(n):
            await core._model_canary("docs")

    route_ns = await _best_ns(route, calls)
    check_ns = await _best_ns(check, calls)
    print(f"route decision (baseline)      {route_ns:8.0f} ns")
    print(f"model-canary check             {check_ns:8.0f} ns   ratio {check_ns / route_ns:.2f}× the route decision")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls")
    args = parser.parse_args()
    asyncio.run(main(20_000 if args.quick else 200_000))
