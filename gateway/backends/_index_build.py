"""The edge backend's index build, in a process of its own (see `EdgeBackend.optimize`).

qdrant-edge's `optimize()` holds the interpreter lock for the whole HNSW build (14-18 s for 20k × 384
here, minutes for a million), so a build in the gateway's process stops it answering anything. Here
the build runs in a child interpreter (`python -m searchgw.gateway.backends._index_build <dir>`) on a
copy of the shard's directory: the child loads the copy, optimizes it, flushes and closes it, and
prints one JSON line (`{"seconds": …, "optimized": …}`). The child lowers its own priority (`nice`
10), so on a busy machine the searches of the parent come first.

`run_build` starts the child with asyncio's subprocess API (no thread waits on it) and kills it when
cancelled. No grpc here.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

from searchgw.errors import Unavailable

#: How much the child lowers its priority (the gateway's searches come first on a busy machine).
BUILD_NICENESS = 10


async def run_build(path: str) -> tuple[float, bool]:
    """Build the index of the shard at `path` in a child process; (seconds, anything optimized).
    Unavailable if the child fails; a cancelled caller kills the child."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "searchgw.gateway.backends._index_build", path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        stdout, stderr = await process.communicate()
    except BaseException:
        if process.returncode is None:
            process.kill()
            await process.wait()
        raise
    if process.returncode != 0:
        tail = stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise Unavailable(f"the index build process exited with {process.returncode}: {' | '.join(tail)}")
    result = json.loads(stdout.decode().strip().splitlines()[-1])
    return float(result["seconds"]), bool(result["optimized"])


def _main(path: str) -> None:
    import qdrant_edge as qe

    try:
        os.nice(BUILD_NICENESS)
    except OSError:
        pass
    started = time.perf_counter()
    shard = qe.EdgeShard.load(path)
    optimized = shard.optimize()
    shard.flush()
    shard.close()
    print(json.dumps({"seconds": time.perf_counter() - started, "optimized": bool(optimized)}), flush=True)


if __name__ == "__main__":
    _main(sys.argv[1])
