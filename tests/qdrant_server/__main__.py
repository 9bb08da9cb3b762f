"""`python -m tests.qdrant_server --port 0 --data-dir D [--hold SERVICE/METHOD ...]`.

Prints `qdrant test server on HOST:PORT` once serving, and `held SERVICE/METHOD` each time a held call arrives
(held calls wait until the process dies). Stops on SIGTERM or SIGINT, flushing every shard.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import logging
import signal
import sys
import types
from pathlib import Path

READY_PREFIX = "qdrant test server on "


def _protocol_only() -> None:
    """Let `import qdrant_client.grpc` load the generated protocol modules without qdrant-client's
    package `__init__` (its client and 2 s of pydantic models): this process serves the protocol and
    never uses the client, and tests start it again and again."""
    if "qdrant_client" in sys.modules:
        return
    spec = importlib.util.find_spec("qdrant_client")
    assert spec is not None and spec.submodule_search_locations is not None, "qdrant-client is not installed"
    package = types.ModuleType("qdrant_client")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["qdrant_client"] = package


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.qdrant_server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--hold", action="append", default=[], metavar="RPC",
                        help="hold every call of this RPC (e.g. Points/Query) until the process dies; repeatable")
    parser.add_argument("--fail-queries-on", action="append", default=[], metavar="COLLECTION",
                        help="searches (Points/Query) of this collection answer UNAVAILABLE; repeatable")
    return parser.parse_args(argv)


async def _serve(arguments: argparse.Namespace) -> None:
    from tests.qdrant_server._server import QdrantTestServer

    server = QdrantTestServer(arguments.data_dir, host=arguments.host, port=arguments.port)
    if arguments.hold:
        server.faults.hold(*arguments.hold)
        server.faults.on_hold = lambda rpc: print(f"held {rpc}", flush=True)
    server.faults.failing_queries = frozenset(arguments.fail_queries_on)
    port = await server.start()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    print(f"{READY_PREFIX}{arguments.host}:{port}", flush=True)
    await stopping.wait()
    await server.stop(0)


def main(argv: list[str] | None = None) -> None:
    _protocol_only()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(_serve(_arguments(argv)))


if __name__ == "__main__":
    main()
