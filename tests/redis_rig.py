"""A real `redis-server` for tests: started on a free port with AOF on (appendfsync always), SIGKILLed
and restarted on the same directory like a crashed node. scripts/test installs Debian's redis-server."""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import shutil
import signal
import time

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from tests.faults.processes import free_port

#: How long redis-server may take to answer PING after it starts (replaying its AOF included).
START_TIMEOUT_S = 20.0


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found is None:
        raise RuntimeError("redis-server is not installed: scripts/test installs Debian's redis-server "
                           "(apt-get install redis-server) when it runs as root")
    return found


class RedisServer:
    """One redis-server process; `url` stays the same across `kill()` and `start()`."""

    def __init__(self, directory: pathlib.Path, port: int | None = None) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> RedisServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        log = open(self.directory / "redis.log", "ab")  # noqa: SIM115 - the child holds it
        try:
            self.process = await asyncio.create_subprocess_exec(
                redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.directory),
                stdout=log, stderr=log)
        finally:
            log.close()
        client = aioredis.Redis.from_url(self.url, socket_timeout=0.5, socket_connect_timeout=0.5, retry=None)
        deadline = time.monotonic() + START_TIMEOUT_S
        try:
            while True:
                try:
                    if await client.ping():
                        return self
                except (RedisError, OSError):
                    pass
                if self.process.returncode is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start; see {self.directory / 'redis.log'}:\n"
                                       f"{(self.directory / 'redis.log').read_text()[-2000:]}")
                await asyncio.sleep(0.02)  # polling a starting process, bounded by the deadline
        finally:
            await client.aclose()

    async def kill(self) -> None:
        """SIGKILL: what a node failure does (the AOF holds every write acknowledged before it)."""
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGKILL)
            await self.process.wait()

    async def stop(self) -> None:
        await self.kill()
