"""The test server as a child process, to SIGKILL and restart on the same port and data directory."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path

from tests.faults.processes import spawn_until_ready

#: How long the process may take to print its address.
START_TIMEOUT_S = 30.0
_READY_PREFIX = "qdrant test server on "


class QdrantServerProcess:
    """`python -m tests.qdrant_server` in a child process; its log goes to `log_path`."""

    def __init__(self, process: asyncio.subprocess.Process, port: int, data_dir: Path) -> None:
        self.process = process
        self.port = port
        self.data_dir = data_dir

    @property
    def url(self) -> str:
        """The location `QdrantBackend` takes (see QdrantTestServer.url)."""
        return f"http://127.0.0.1:{self.port}?grpc_port={self.port}"

    @classmethod
    async def start(cls, data_dir: Path, log_path: Path, *, port: int = 0, hold: tuple[str, ...] = (),
                    fail_queries_on: tuple[str, ...] = ()) -> QdrantServerProcess:
        """Start it and wait (bounded) for the line that says it serves."""
        arguments = ["--port", str(port), "--data-dir", str(data_dir)]
        for name in hold:
            arguments += ["--hold", name]
        for name in fail_queries_on:
            arguments += ["--fail-queries-on", name]
        process, line = await spawn_until_ready("tests.qdrant_server", arguments, _READY_PREFIX, log_path,
                                                START_TIMEOUT_S)
        return cls(process, int(line.rsplit(":", 1)[1]), data_dir)

    async def next_line(self, timeout: float = START_TIMEOUT_S) -> str:
        """The next line it prints (`held Points/Query` for a held call)."""
        return (await asyncio.wait_for(self.process.stdout.readline(), timeout)).decode().strip()

    async def kill(self) -> None:
        """SIGKILL: nothing is flushed or closed by the process itself."""
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGKILL)
        await self.process.wait()

    async def stop(self) -> None:
        if self.process.returncode is None:
            await self.kill()
