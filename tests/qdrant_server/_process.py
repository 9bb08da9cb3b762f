"""The test server as a child process, to SIGKILL and restart on the same port and data directory."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
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
    async def start(cls, data_dir: Path, log_path: Path, *, port: int = 0, hold: tuple[str, ...] = ()
                    ) -> QdrantServerProcess:
        """Start it and wait (bounded) for the line that says it serves."""
        arguments = ["--port", str(port), "--data-dir", str(data_dir)]
        for name in hold:
            arguments += ["--hold", name]
        with open(log_path, "ab") as log:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tests.qdrant_server", *arguments, cwd=ROOT, stdout=asyncio.subprocess.PIPE,
                stderr=log, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            line = (await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT_S)).decode()
        except BaseException:
            process.kill()
            await process.wait()
            raise
        if not line.startswith(_READY_PREFIX):
            process.kill()
            await process.wait()
            raise RuntimeError(f"the Qdrant test server did not start ({line!r}):\n{log_path.read_text()[-3000:]}")
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
