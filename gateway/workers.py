"""`searchgw serve --workers N`: N gateway processes serving one port, for a host with several cores.

A gateway's request path is Python on one interpreter lock; with a remote backend (`--backend qdrant`)
nothing ties a search to one process, so N processes can share the host's cores:

- The supervisor (the `searchgw serve` process) starts N worker processes (multiprocessing "spawn")
  and does no serving itself. Each worker is a whole gateway (`create_server`) with its own event loop,
  bound to the same host:port with SO_REUSEPORT (`grpc.so_reuseport`): the kernel spreads incoming
  connections over the workers (a connection stays with one worker; a client with one channel talks
  to one worker).
- The workers are replicas as several hosts' gateways are (docs/architecture.md, "Several replicas"):
  the rollout state is shared through `--state redis://…` (store, leadership, summed counts, the state
  feed), so every worker routes a key to the same arm. SQLite state belongs to one process, and the
  embedded `edge` backend to the process that opened its data directory: `--workers` > 1 with either
  is refused at start-up (GatewaySettings). So is `--with-embedder` (an embedder per worker).
- Page tokens must verify on every worker: without `--page-token-secret` the supervisor draws one
  random key for all of them.
- Metrics: each worker serves its own /metrics, on `--metrics-port` + its index (0, 1, …); with
  `--metrics-port 0` each picks a free port (logged), with -1 none. Every series is per process, as
  with several pods; sum over the workers' targets. (Prometheus' multiprocess mode was not chosen: it
  would change how every gauge of the rollout controller is exported.)
- Readiness: the supervisor prints `gateway serving on host:port (N workers)` once every worker serves.
- Shutdown: SIGTERM or SIGINT to the supervisor is passed on as SIGTERM to every worker, which drains
  as a single gateway does (NOT_SERVING, --drain-delay-s, GOAWAY, --grace-period-s for in-flight calls);
  the supervisor exits 0 when all of them did. A worker that dies on its own takes the others down
  (exit 1): the orchestrator restarts the pod, rather than the host serving on fewer cores unnoticed.
  Workers ask the kernel for SIGTERM if the supervisor dies (PR_SET_PDEATHSIG), and run in their own
  process group, so a terminal's Ctrl-C reaches them once, through the supervisor.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import logging
import multiprocessing
import os
import queue
import secrets
import signal
import socket
import sys
import threading
import time
from typing import Any

from searchgw.gateway.settings import GatewaySettings

log = logging.getLogger(__name__)

#: How long a worker may take to start serving.
START_TIMEOUT_S = 120.0
#: After the grace period and drain delay, how much longer a draining worker gets before SIGKILL.
STOP_MARGIN_S = 15.0
_PR_SET_PDEATHSIG = 1


def worker_settings(settings: GatewaySettings, index: int, port: int, secret: str) -> GatewaySettings:
    """Worker `index`'s settings: the shared port and page-token key, its own metrics port."""
    metrics_port = settings.metrics_port + index if settings.metrics_port > 0 else settings.metrics_port
    return dataclasses.replace(settings, port=port, metrics_port=metrics_port, page_token_secret=secret)


def _reserve_port(host: str) -> socket.socket:
    """A socket bound with SO_REUSEPORT to a free port of `host`, not listening: it holds the port while
    the workers bind it too (then closed). For `--port 0`."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    holder = socket.socket(family, socket.SOCK_STREAM)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind((host.strip("[]"), 0))
    return holder


def _die_with_parent() -> None:
    """SIGTERM this process when the supervisor dies (Linux); elsewhere nothing."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _worker_main(settings: GatewaySettings, index: int, ready: Any) -> None:
    """One worker: a whole gateway on the shared port, announcing itself on `ready`."""
    import asyncio  # noqa: PLC0415

    from searchgw.gateway.cli import run_gateway  # noqa: PLC0415
    from searchgw.telemetry import configure_logging, configure_tracing  # noqa: PLC0415

    os.setpgrp()  # a terminal's Ctrl-C goes to the supervisor, which passes it on once
    _die_with_parent()
    configure_logging(settings.log_level, settings.log_format)
    configure_tracing("searchgw-gateway", settings.tracing_exporter)

    def announce(address: str, metrics_port: int | None) -> None:
        ready.put((index, os.getpid(), address, metrics_port))

    sys.exit(asyncio.run(run_gateway(settings, None, reuse_port=True, on_ready=announce)))


def run_workers(settings: GatewaySettings, *, out=None) -> int:
    """Run `settings.workers` gateway processes on one port until SIGTERM/SIGINT; the exit code."""
    out = out or sys.stdout
    count = settings.workers
    holder = _reserve_port(settings.host) if settings.port == 0 else None
    port = holder.getsockname()[1] if holder is not None else settings.port
    secret = settings.page_token_secret or secrets.token_hex(32)
    context = multiprocessing.get_context("spawn")
    ready = context.Queue()
    workers = [context.Process(target=_worker_main, args=(worker_settings(settings, index, port, secret), index, ready),
                               name=f"searchgw-gateway-{index}") for index in range(count)]
    stopping = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stopping.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for worker in workers:
            worker.start()
        announced = _wait_until_serving(workers, ready, stopping)
        if holder is not None:
            holder.close()
            holder = None
        if announced is None:
            return _stop_all(workers, settings, failed=True)
        address = f"{'127.0.0.1' if settings.host in ('0.0.0.0', '::', '[::]') else settings.host}:{port}"
        log.info("gateway workers serving", extra={"address": address, "workers": count,
                                                   "pids": [pid for _, pid, _, _ in announced],
                                                   "metrics_ports": [m for _, _, _, m in announced]})
        print(f"gateway serving on {address} ({count} workers)", file=out, flush=True)
        failed = False
        while not stopping.wait(0.2):
            dead = [w for w in workers if not w.is_alive()]
            if dead:
                log.error("a gateway worker exited on its own; stopping the others",
                          extra={"worker": dead[0].name, "exit_code": dead[0].exitcode})
                failed = True
                break
        return _stop_all(workers, settings, failed=failed)
    finally:
        if holder is not None:
            holder.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _wait_until_serving(workers: list[Any], ready: Any, stopping: threading.Event) -> list[tuple] | None:
    """Every worker's announcement, or None if one died, a signal came or START_TIMEOUT_S passed."""
    announced: list[tuple] = []
    deadline = time.monotonic() + START_TIMEOUT_S
    while len(announced) < len(workers):
        if stopping.is_set() or time.monotonic() > deadline or any(not w.is_alive() for w in workers):
            log.error("gateway workers did not all start", extra={"serving": len(announced),
                                                                  "workers": len(workers)})
            return None
        with contextlib.suppress(queue.Empty):
            announced.append(ready.get(timeout=0.2))
    return sorted(announced)


def _stop_all(workers: list[Any], settings: GatewaySettings, *, failed: bool) -> int:
    """SIGTERM to every live worker (each drains), wait for them, SIGKILL the ones that overstay."""
    for worker in workers:
        if worker.is_alive() and worker.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signal.SIGTERM)
    deadline = time.monotonic() + settings.drain_delay_s + settings.grace_period_s + STOP_MARGIN_S
    for worker in workers:
        worker.join(max(0.0, deadline - time.monotonic()))
        if worker.is_alive():
            log.error("a gateway worker did not stop in time; killing it", extra={"worker": worker.name})
            worker.kill()
            worker.join()
    codes = [worker.exitcode for worker in workers]
    log.info("gateway workers stopped", extra={"exit_codes": codes})
    return 1 if failed or any(code != 0 for code in codes) else 0


__all__ = ["run_workers", "worker_settings"]
