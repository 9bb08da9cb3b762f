"""Real server processes for fault tests: started with the CLI, ready when they print their address,
and killed with SIGKILL like the kernel's OOM killer or a node failure would."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import signal
import socket
import sys

from tests.conftest import MODEL_CACHE

ROOT = pathlib.Path(__file__).resolve().parents[2]
#: How long a server process may take to print its address (loading the model included).
START_TIMEOUT_S = 120.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def spawn_until_ready(module: str, args: list[str], ready_prefix: str, log_path: pathlib.Path,
                            timeout_s: float) -> tuple[asyncio.subprocess.Process, str]:
    """`python -m module *args` in a child process (stderr to `log_path`), and the first line it prints,
    which must start with `ready_prefix`; otherwise the child is killed and RuntimeError shows its log."""
    log = open(log_path, "ab")  # noqa: SIM115 - the child holds it; closed when we return
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", module, *args, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=log,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    finally:
        log.close()
    assert process.stdout is not None
    try:  # the only wait on a subprocess: bounded, and it ends as soon as the line comes
        line = (await asyncio.wait_for(process.stdout.readline(), timeout_s)).decode()
    except BaseException:
        process.kill()
        await process.wait()
        raise
    if not line.startswith(ready_prefix):
        process.kill()
        await process.wait()
        raise RuntimeError(f"{module} {' '.join(args[:2])} did not start ({line!r}); see {log_path}:\n"
                           f"{log_path.read_text()[-3000:]}")
    return process, line


class ServerProcess:
    """A `searchgw` server in a child process; its logs go to `log_path`."""

    def __init__(self, process: asyncio.subprocess.Process, address: str, log_path: pathlib.Path) -> None:
        self.process = process
        self.address = address
        self.log_path = log_path

    @classmethod
    async def start(cls, args: list[str], ready_prefix: str, log_path: pathlib.Path) -> ServerProcess:
        process, line = await spawn_until_ready("searchgw.cli", args, ready_prefix, log_path, START_TIMEOUT_S)
        address = line.removeprefix(ready_prefix).split()[0]
        return cls(process, address, log_path)

    async def kill(self) -> None:
        """SIGKILL: no handler runs, nothing is flushed or closed by the process itself."""
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGKILL)
        await self.process.wait()

    async def stop(self) -> None:
        if self.process.returncode is None:
            await self.kill()


async def start_embedder(port: int, log_path: pathlib.Path) -> ServerProcess:
    return await ServerProcess.start(
        ["embedder", "serve", "--port", str(port), "--metrics-port", "-1", "--cache-dir", str(MODEL_CACHE),
         "--intra-op-threads", "1", "--log-format", "text", "--grace-period-s", "0"],
        "embedder serving on ", log_path)


async def start_gateway(data_dir: pathlib.Path, log_path: pathlib.Path, *extra: str) -> ServerProcess:
    return await ServerProcess.start(
        ["serve", "--port", "0", "--metrics-port", "-1", "--data-dir", str(data_dir), "--log-format", "text",
         *extra], "gateway serving on ", log_path)
