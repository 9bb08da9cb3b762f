"""The gateway's per-call cost against bare servers, quickly: the loop issue 16.1 was worked in.

    .venv/bin/python -m bench.bench_hotpath [--rounds 3] [--seconds 3] [--sizes 1000] [--label step]
                                            [--record docs-steps.jsonl] [--profile stacks.txt]

In one run, rounds interleaved (every configuration once per round, each keeping its best round), as
bench_gateway_load does but without the 20 000-point HNSW build or the rollback scenarios:
(a) the bare grpc.aio echo server, (b) the bare server doing the backend query, (c) the gateway with
no rollout and with a rollout at 50 %, at 16 callers and at 1 caller. Printed: calls/s and the ratios
the issue's table quotes ((c) / (b), (c) / (a), p50 (c) − p50 (b) at one caller), and the server CPU
per call of each (this process: what a loaded machine distorts least), with (c) − (b) in µs.

`--overhead` measures the gateway's own cost instead: echo against the gateway over an instant backend
(every search answers 11 fixed hits at once, no engine, no executor), so gateway CPU/call − echo
CPU/call is what the gateway itself spends per call (its interceptor, servicer, core, conversions,
metrics), free of the engine's noise. Run it on two commits to compare them.

`--record FILE` appends the run's figures as one JSON line under `--label`, so a series of code
changes can be compared step by step (docs/benchmarks.md's hot-path table is made from such lines).
`--profile FILE` then loads the rollout configuration for `--profile-seconds` more while py-spy
(if installed) samples the thread holding the interpreter lock in this process, and writes its
collapsed stacks there.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import LoadRunner, Machine, configure_like_production, loadavg_text, print_table
from bench._gateway import Durations, SharedBackend, analysis, build_dataset, gateway_settings
from bench.bench_gateway_load import BackendSearch, EchoSearch, Run, Target, load_config, measure, start_bare_server
from searchgw.gateway.backends import EdgeBackend, ScoredPoint
from searchgw.gateway.client import GatewayClient, stage
from searchgw.gateway.server import create_server

CONCURRENCY = 16


class InstantBackend:
    """The backend, but every search answers the same hits at once (no engine, no executor)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.kind = inner.kind
        self._hits = [ScoredPoint(id=i, score=1.0 - i / 100) for i in range(1, 12)]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def search(self, collection: str, query: Any) -> list[ScoredPoint]:
        return self._hits[:query.limit]

    async def close(self) -> None:
        pass


def summarise_overhead(runs: list[Run]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for concurrency in (CONCURRENCY, 1):
        echo = next(r for r in runs if (r.kind, r.concurrency) == ("echo", concurrency))
        for run_ in runs:
            if run_.kind != "echo" and run_.concurrency == concurrency:
                out[f"{run_.kind} x{concurrency}"] = {"own_cpu_us": run_.cpu_us_per_call - echo.cpu_us_per_call,
                                                     "vs_echo": run_.calls_per_s / echo.calls_per_s,
                                                     "p50_delta_ms": run_.p(0.5) - echo.p(0.5)}
    return out


def summarise(runs: list[Run], sizes: list[int]) -> dict[str, Any]:
    def run(kind: str, size: int, concurrency: int) -> Run:
        return next(r for r in runs if (r.kind, r.size, r.concurrency) == (kind, size, concurrency))

    out: dict[str, Any] = {}
    echo = run("echo", 0, CONCURRENCY)
    for size in sizes:
        bare, bare1 = run("backend", size, CONCURRENCY), run("backend", size, 1)
        for kind in ("gateway", "gateway+rollout"):
            gateway, gateway1 = run(kind, size, CONCURRENCY), run(kind, size, 1)
            out[f"{kind} {size}"] = {
                "vs_bare": gateway.calls_per_s / bare.calls_per_s,
                "vs_echo": gateway.calls_per_s / echo.calls_per_s,
                "p50_delta_ms_1": gateway1.p(0.5) - bare1.p(0.5),
                "cpu_us": gateway.cpu_us_per_call,
                "cpu_delta_us": gateway.cpu_us_per_call - bare.cpu_us_per_call,
            }
    return out


async def run(args: argparse.Namespace) -> None:
    configure_like_production()
    durations = Durations(load_s=args.seconds, warmup_s=0.5, rounds=args.rounds, routing_calls=0,
                          rollback_phases=())
    machine = Machine.now()
    print(f"hot-path benchmark, {machine.line()}, {loadavg_text()}")
    runner = LoadRunner()
    with tempfile.TemporaryDirectory(prefix="bench-hotpath-") as tmp:
        root = Path(tmp)
        backend = EdgeBackend(root / "edge")
        servers: list[Any] = []
        try:
            datasets = {size: await build_dataset(backend, size) for size in args.sizes}
            echo, echo_address = await start_bare_server(EchoSearch())
            bare, bare_address = await start_bare_server(BackendSearch(backend))
            gateway = await create_server(gateway_settings(root / "gateway"), backend=SharedBackend(backend))
            servers += [echo, bare]
            async with GatewayClient(gateway.address) as client:
                for dataset in datasets.values():
                    await client.create_rollout(f"bench-{dataset.size}", dataset.rollout, dataset.canary,
                                                analysis=analysis(10.0, 60.0, 50),
                                                stages=[stage(50, 30 * 24 * 3600.0, 0), stage(100)])
            targets = [Target("echo", 0, echo_address, "any")]
            if args.overhead:
                instant = await create_server(gateway_settings(root / "instant"), backend=InstantBackend(backend))
                servers.append(instant)
                async with GatewayClient(instant.address) as client:
                    for dataset in datasets.values():
                        await client.create_rollout(f"instant-{dataset.size}", dataset.rollout, dataset.canary,
                                                    analysis=analysis(10.0, 60.0, 50),
                                                    stages=[stage(50, 30 * 24 * 3600.0, 0), stage(100)])
                dataset = next(iter(datasets.values()))
                targets += [Target("gateway", dataset.size, instant.address, dataset.plain),
                            Target("gateway+rollout", dataset.size, instant.address, dataset.rollout)]
            for dataset in ([] if args.overhead else datasets.values()):
                targets += [Target("backend", dataset.size, bare_address, dataset.plain),
                            Target("gateway", dataset.size, gateway.address, dataset.plain),
                            Target("gateway+rollout", dataset.size, gateway.address, dataset.rollout)]
            runs = await measure(runner, targets, (CONCURRENCY, 1), durations)
            load_end = loadavg_text()
            if args.profile:
                await profile(runner, targets[-1], durations, args.profile, args.profile_seconds, args.native)
            await gateway.stop(0)
            if args.overhead:
                await servers.pop().stop(0)
        finally:
            for server in servers:
                await server.stop(0)
            await backend.close()
            runner.close()
    rows = []
    for run_ in sorted(runs, key=lambda r: (-r.concurrency, r.size, r.kind)):
        rows.append([f"{run_.kind} {run_.size or ''} x{run_.concurrency}", f"{run_.calls_per_s:.0f}",
                     f"{run_.p(0.5):.2f}", f"{run_.cpu_us_per_call:.0f}",
                     " ".join(f"{x:.0f}" for x in run_.rounds)])
    print_table(rows, ["", "calls/s", "p50 ms", "server CPU µs/call", "rounds"])
    if args.overhead:
        summary = summarise_overhead(runs)
        print(f"the gateway's own cost per call, over an instant backend ({load_end} at the end):")
        for name, figures in summary.items():
            print(f"  {name:<24} CPU/call over echo {figures['own_cpu_us']:+.0f} µs, calls/s {figures['vs_echo']:.2f}x "
                  f"echo, p50 {figures['p50_delta_ms']:+.2f} ms over echo")
    else:
        summary = summarise(runs, list(args.sizes))
        print(f"ratios ({load_end} at the end of the measured rounds):")
    for name, figures in ({} if args.overhead else summary).items():
        print(f"  {name:<22} (c)/(b) {figures['vs_bare']:.2f}x  (c)/(a) {figures['vs_echo']:.2f}x  "
              f"p50 delta at 1 caller {figures['p50_delta_ms_1']:+.2f} ms  "
              f"CPU/call {figures['cpu_us']:.0f} µs ({figures['cpu_delta_us']:+.0f} µs over (b))")
    if args.record:
        with open(args.record, "a", encoding="utf-8") as out:
            out.write(json.dumps({"label": args.label, "overhead": args.overhead, "date": machine.date, "load_end": load_end,
                                  "rounds": args.rounds, "seconds": args.seconds, "figures": summary}) + "\n")


async def profile(runner: LoadRunner, target: Target, durations: Durations, path: str, seconds: float,
                  native: bool = False) -> None:
    """Load `target` for `seconds` while py-spy samples this process (collapsed stacks into `path`)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        print("py-spy is not installed (pip install py-spy): no profile")
        return
    config = load_config(target, CONCURRENCY, Durations(seconds + 2, 0.5, 1, 0, ()), seed=7)
    load = asyncio.ensure_future(runner.run(config))
    await asyncio.sleep(1.5)
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        spy, "record", "-p", str(os.getpid()), "-d", str(int(seconds)), "-r", "250", "-f", "raw", "--gil", "-o", path,
        *(["--native"] if native else ["--nonblocking"]), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    await process.wait()
    await load
    print(f"profile: {path} ({time.monotonic() - started:.0f} s of {target.kind} {target.size} x{CONCURRENCY})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000])
    parser.add_argument("--overhead", action="store_true", help="echo against the gateway over an instant backend")
    parser.add_argument("--label", default="")
    parser.add_argument("--record", help="append this run's figures as a JSON line to this file")
    parser.add_argument("--profile", help="collapsed py-spy stacks of the gateway under load, into this file")
    parser.add_argument("--profile-seconds", type=float, default=10.0)
    parser.add_argument("--native", action="store_true", help="py-spy --native: C and Cython frames too (grpc)")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
