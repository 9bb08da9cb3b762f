"""The edge backend's index build, in a process of its own (see `EdgeBackend.optimize`).

qdrant-edge's engine calls hold the interpreter lock for their whole length — `optimize()` (the HNSW
build: 14-18 s for 20k × 384 here, minutes for a million) and opening a shard too — so a build in
the gateway's process stops it answering anything. Here the build runs in a child interpreter
(`python -m searchgw.gateway.backends._index_build <dir>`) on a copy of the shard's directory:

1. the child opens the copy, optimizes it and prints one JSON line (`{"seconds": …, "optimized": …}`);
2. it then reads the journal from its stdin — the writes the parent acknowledged meanwhile, pickled
   as `(function, args)` pairs of the edge backend's write functions — applies them in order to the
   built shard, flushes and closes it, prints `{"replayed": n}` and exits.

So the only engine work left to the parent is opening the finished shard. The child lowers its own
priority (`nice` 10): on a busy machine the parent's searches come first. `BuildProcess` drives it
with asyncio's subprocess API (no thread waits on it); `kill` ends it at any step. No grpc here.
"""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from searchgw.errors import Unavailable

#: How much the child lowers its priority (the gateway's searches come first on a busy machine).
BUILD_NICENESS = 10

#: A write as the journal holds it: `function(engine, *args)`.
JournalEntry = tuple[Callable[..., Any], tuple[Any, ...]]


class BuildProcess:
    """One child process building the index of the shard copy at `path`."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process

    @classmethod
    async def start(cls, path: str) -> BuildProcess:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "searchgw.gateway.backends._index_build", path,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        return cls(process)

    async def built(self) -> tuple[float, bool]:
        """Wait for the build: (seconds, anything optimized)."""
        return (lambda r: (float(r["seconds"]), bool(r["optimized"])))(await self._line("the index build"))

    async def finish(self, journal: Sequence[JournalEntry]) -> None:
        """Hand the child the journal; return once it has applied it, flushed, closed and exited."""
        assert self._process.stdin is not None
        self._process.stdin.write(pickle.dumps(list(journal), protocol=pickle.HIGHEST_PROTOCOL))
        self._process.stdin.close()
        await self._line("the journal's replay")
        if await self._process.wait() != 0:
            raise await self._failed("the journal's replay")

    async def kill(self) -> None:
        if self._process.returncode is None:
            self._process.kill()
            await self._process.wait()

    async def _line(self, step: str) -> dict[str, Any]:
        assert self._process.stdout is not None
        line = await self._process.stdout.readline()
        if not line:
            await self._process.wait()
            raise await self._failed(step)
        result: dict[str, Any] = json.loads(line)
        return result

    async def _failed(self, step: str) -> Unavailable:
        assert self._process.stderr is not None
        tail = (await self._process.stderr.read()).decode(errors="replace").strip().splitlines()[-3:]
        return Unavailable(f"{step} failed in its process (exit {self._process.returncode}): {' | '.join(tail)}")


def _main(path: str) -> None:
    import qdrant_edge as qe

    try:
        os.nice(BUILD_NICENESS)
    except OSError:
        pass
    started = time.perf_counter()
    shard = qe.EdgeShard.load(path)
    optimized = shard.optimize()
    print(json.dumps({"seconds": time.perf_counter() - started, "optimized": bool(optimized)}), flush=True)
    journal: list[JournalEntry] = pickle.loads(sys.stdin.buffer.read())  # noqa: S301 - our own parent's
    for function, args in journal:
        function(shard, *args)
    shard.flush()
    shard.close()
    print(json.dumps({"replayed": len(journal)}), flush=True)


if __name__ == "__main__":
    _main(sys.argv[1])
