"""The gateway's per-call cost against bare servers, quickly: the loop issue 16.1 was worked in.

    .venv/bin/python -m bench.bench_hotpath [--rounds 3] [--seconds 3] [--sizes 1000] [--label step]
                                            [--record docs-steps.jsonl] [--profile stacks.txt]

In one run, rounds interleaved (every configuration once per round, each keeping its best round), as
bench_gateway_load does but without the 20 000-point HNSW build or the rollback scenarios:
(a) the bare grpc.aio echo server, (b) the bare server doing the backend query, (c) the gateway with
no rollout and with a rollout at 50 %, at 16 callers and at 1 caller. Printed: calls/s and the ratios
the issue's table quotes ((c) / (b), (c) / (a), p50 (c) − p50 (b) at one caller), and the server CPU
per call of each (this process: what a loaded machine distorts least), with (c) − (b) in µs.

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
from searchgw.gateway.backends import EdgeBackend
from searchgw.gateway.client import GatewayClient, stage
from searchgw.gateway.server import create_server

CONCURRENCY = 16


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
            for dataset in datasets.values():
                targets += [Target("backend", dataset.size, bare_address, dataset.plain),
                            Target("gateway", dataset.size, gateway.address, dataset.plain),
                            Target("gateway+rollout", dataset.size, gateway.address, dataset.rollout)]
            runs = await measure(runner, targets, (CONCURRENCY, 1), durations)
            load_end = loadavg_text()
            if args.profile:
                await profile(runner, targets[-1], durations, args.profile, args.profile_seconds)
            await gateway.stop(0)
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
    summary = summarise(runs, list(args.sizes))
    print(f"ratios ({load_end} at the end of the measured rounds):")
    for name, figures in summary.items():
        print(f"  {name:<22} (c)/(b) {figures['vs_bare']:.2f}x  (c)/(a) {figures['vs_echo']:.2f}x  "
              f"p50 delta at 1 caller {figures['p50_delta_ms_1']:+.2f} ms  "
              f"CPU/call {figures['cpu_us']:.0f} µs ({figures['cpu_delta_us']:+.0f} µs over (b))")
    if args.record:
        with open(args.record, "a", encoding="utf-8") as out:
            out.write(json.dumps({"label": args.label, "date": machine.date, "load_end": load_end,
                                  "rounds": args.rounds, "seconds": args.seconds, "figures": summary}) + "\n")


async def profile(runner: LoadRunner, target: Target, durations: Durations, path: str, seconds: float) -> None:
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
        "--nonblocking", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    await process.wait()
    await load
    print(f"profile: {path} ({time.monotonic() - started:.0f} s of {target.kind} {target.size} x{CONCURRENCY})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000])
    parser.add_argument("--label", default="")
    parser.add_argument("--record", help="append this run's figures as a JSON line to this file")
    parser.add_argument("--profile", help="collapsed py-spy stacks of the gateway under load, into this file")
    parser.add_argument("--profile-seconds", type=float, default=10.0)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
