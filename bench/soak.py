"""Soak (issue 6 §4): minutes of mixed traffic with a rollout advancing and one injected canary failure.

    .venv/bin/python -m bench.soak [--minutes 10] [--json soak.json]

What runs, all real and on this machine:

- the embedder as a process of its own (`searchgw embedder serve`, one inference thread);
- the gateway in this process (so the canary can be broken mid-run: `FaultInjectingBackend` over the
  embedded engine), with the rollout controller on the real clock;
- four load generators, each a process of its own (`loadgen`, open loop, keyed uniformly over
  1 000 users): text Search and vector Search on the logical collection `docs`, text Upsert
  (overwriting a pre-filled id space, so the data does not grow) and Embed straight to the embedder.

The timeline, as shares of the run: rollout r1 starts at once with short stages (10 %, 25 %, then
50 % held). At 40 % the canary's searches start failing (UNAVAILABLE, standing for an engine failure):
primary answers them (fallbacks), the analysis fails twice in a row and r1 rolls back. The fault is
cleared and rollout r2 takes the same canary through 10 %, 50 %, 100 % to an automatic promotion.

Reported: the resident memory (RSS) of the gateway process and of the embedder, sampled every 2 s —
the growth from the end of the warm-up to the end of the run (target < 5 %) and the trend over that
time; calls by status code for each load, as clients saw them and as the gateway counted them; and
the rollbacks (target: exactly one). Exit status 0 when every target is met.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench._common import LoadRunner, Machine, print_table, verdict
from searchgw.gateway.backends import EdgeBackend, FaultInjectingBackend, FaultKind
from searchgw.gateway.client import GatewayClient, stage
from searchgw.gateway.server import create_server
from searchgw.gateway.settings import GatewaySettings
from searchgw.loadgen import LoadConfig, Report
from searchgw.loadgen._corpus import BUILTIN_QUERIES
from searchgw.telemetry import configure_logging, configure_tracing
from searchgw.v1 import rollout_service_pb2 as roll_pb

MODEL_CACHE = Path(os.environ.get("SEARCHGW_BENCH_MODEL_CACHE", Path.home() / ".cache" / "searchgw"))
TARGET_GROWTH = 0.05
ID_SPACE = 500
SAMPLE_EVERY_S = 2.0
State = roll_pb.Rollout
Kind = roll_pb.Decision


# -- processes and memory -------------------------------------------------------------------------
def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def start_embedder(port: int, log_path: Path) -> asyncio.subprocess.Process:
    with open(log_path, "ab") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "searchgw.cli", "embedder", "serve", "--port", str(port), "--metrics-port", "-1",
            "--cache-dir", str(MODEL_CACHE), "--intra-op-threads", "1", "--log-format", "text",
            "--log-level", "warning", stdout=asyncio.subprocess.PIPE, stderr=log)
    line = (await asyncio.wait_for(process.stdout.readline(), 180)).decode()
    if not line.startswith("embedder serving on"):
        process.kill()
        raise RuntimeError(f"the embedder did not start: {line!r}; see {log_path}")
    return process


@dataclass
class MemorySamples:
    """(seconds since the load began, gateway RSS, embedder RSS)."""

    rows: list[tuple[float, int, int]] = field(default_factory=list)

    def after(self, t: float) -> list[tuple[float, int, int]]:
        return [row for row in self.rows if row[0] >= t]

    def summary(self, column: int, warmup_s: float) -> dict[str, float]:
        settled = self.after(warmup_s)
        values = [row[column] for row in settled]
        head, tail = values[:3], values[-3:]
        baseline, end = statistics.median(head), statistics.median(tail)
        times = [row[0] for row in settled]
        slope = _slope(times, values) if len(values) > 2 else 0.0
        return {"baseline_mb": baseline / 2**20, "end_mb": end / 2**20, "peak_mb": max(values) / 2**20,
                "growth": (end - baseline) / baseline, "trend_mb_per_min": slope * 60 / 2**20,
                "samples": len(values)}


def _slope(xs: list[float], ys: list[float]) -> float:
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mean_x) ** 2 for x in xs)
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / var if var else 0.0


async def sample_memory(samples: MemorySamples, embedder_pid: int, began: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        samples.rows.append((time.monotonic() - began, rss_bytes(os.getpid()), rss_bytes(embedder_pid)))
        try:
            await asyncio.wait_for(stop.wait(), SAMPLE_EVERY_S)
        except TimeoutError:
            pass


# -- the rollouts ---------------------------------------------------------------------------------
def policy(interval_s: float) -> roll_pb.AnalysisPolicy:
    """Errors decide; latency only when far off (a shared 2-core box is noisy)."""
    message = roll_pb.AnalysisPolicy(min_requests_per_arm=10, max_consecutive_failures=2, max_total_failures=3,
                                     max_latency_ratio=4.0)
    message.interval.FromMilliseconds(int(interval_s * 1000))
    message.window.FromMilliseconds(int(3 * interval_s * 1000))
    message.latency_slack.FromMilliseconds(100)
    return message


@dataclass
class Timeline:
    began: float
    events: list[tuple[float, str]] = field(default_factory=list)

    def note(self, what: str) -> None:
        at = time.monotonic() - self.began
        self.events.append((at, what))
        print(f"  [{at:7.1f} s] {what}", flush=True)


async def wait_state(client: GatewayClient, name: str, states: set[int], deadline: float) -> roll_pb.Rollout:
    while True:
        rollout = await client.get_rollout(name)
        if rollout.state in states or time.monotonic() > deadline:
            return rollout
        await asyncio.sleep(0.5)  # a benchmark's pacing: the controller runs on the real clock


async def orchestrate(server, client: GatewayClient, total_s: float, timeline: Timeline) -> None:
    interval = min(10.0, max(2.0, total_s / 40))
    await client.create_rollout("r1", "docs", "docs-v2", analysis=policy(interval),
                                stages=[stage(10, 0.1 * total_s), stage(25, 0.1 * total_s), stage(50, 3600)])
    timeline.note("r1 started: 10 % -> 25 % -> 50 % (held)")
    fail_at = timeline.began + 0.4 * total_s
    seen_stage = 0
    while time.monotonic() < fail_at:
        rollout = await client.get_rollout("r1")
        if rollout.current_stage != seen_stage:
            seen_stage = rollout.current_stage
            timeline.note(f"r1 advanced to stage {seen_stage + 1} ({rollout.weight_percent:g} %)")
        await asyncio.sleep(min(1.0, max(0.0, fail_at - time.monotonic())))
    server.backend.inject("docs-v2", error=FaultKind.UNAVAILABLE, operations={"search"})
    timeline.note("fault injected: every search on the canary docs-v2 fails (UNAVAILABLE)")
    rollout = await wait_state(client, "r1", {State.STATE_ROLLED_BACK}, time.monotonic() + 10 * interval + 30)
    timeline.note(f"r1 is {State.State.Name(rollout.state)} at {rollout.weight_percent:g} %")
    server.backend.clear("docs-v2")
    timeline.note("fault cleared")
    remaining = timeline.began + total_s - time.monotonic()
    step = max(interval, 0.15 * remaining)
    await client.create_rollout("r2", "docs", "docs-v2", analysis=policy(interval), auto_promote=True,
                                stages=[stage(10, step), stage(50, step), stage(100, step)])
    timeline.note(f"r2 started: 10 % -> 50 % -> 100 %, {step:.0f} s each, then promotion")
    rollout = await wait_state(client, "r2", {State.STATE_BAKING, State.STATE_PROMOTED, State.STATE_ROLLED_BACK,
                                              State.STATE_ABORTED},  # BAKING: promoted, the bake begins
                               timeline.began + total_s)
    timeline.note(f"r2 is {State.State.Name(rollout.state)} at stage {rollout.current_stage + 1}")


# -- the load -------------------------------------------------------------------------------------
def loads(gateway: str, embedder: str, total_s: float, seed: int) -> dict[str, LoadConfig]:
    common = dict(mode="open", duration_s=total_s, warmup_s=0.0, deadline_s=5.0, keys="uniform", key_count=1000,
                  progress_interval_s=5.0)
    return {
        "search text": LoadConfig(target=gateway, rpc="search", rate=15, seed=seed, **common),
        "search vector": LoadConfig(target=gateway, rpc="search", vector=True, rate=30, seed=seed + 1, **common),
        "upsert text": LoadConfig(target=gateway, rpc="upsert", rate=1, batch_size=2, id_space=ID_SPACE,
                                  seed=seed + 2, **common),
        "embed": LoadConfig(target=embedder, rpc="embed", rate=10, batch_size=4, seed=seed + 3, **common),
    }


async def run(args: argparse.Namespace) -> int:
    total_s = args.minutes * 60
    warmup_s = args.warmup_s if args.warmup_s is not None else min(0.5 * total_s, max(20.0, 0.2 * total_s))
    configure_logging("error", "text")
    configure_tracing("searchgw-soak", "none")
    machine = Machine.now()
    print(f"soak: {args.minutes:g} min on {machine.line()}; warm-up {warmup_s:.0f} s")
    with tempfile.TemporaryDirectory(prefix="searchgw-soak-") as scratch:
        scratch = Path(scratch)
        embedder_port = free_port()
        embedder = await start_embedder(embedder_port, scratch / "embedder.log")
        backend = FaultInjectingBackend(await asyncio.to_thread(EdgeBackend, scratch / "edge"))
        settings = GatewaySettings(port=0, metrics_port=-1, data_dir=scratch, controller_tick_s=0.5,
                                   embedder_addr=f"127.0.0.1:{embedder_port}", log_format="text", log_level="error")
        server = await create_server(settings, backend=backend)
        client = GatewayClient(server.address)
        runners = [LoadRunner() for _ in range(4)]
        try:
            for name in ("docs-v1", "docs-v2"):
                await client.create_collection(name)
                for at in range(0, ID_SPACE, 100):
                    await client.upsert(name, [{"id": i, "text": BUILTIN_QUERIES[i % len(BUILTIN_QUERIES)]}
                                               for i in range(at, at + 100)], timeout=120)
            await client.update_alias("docs", "docs-v1")
            configs = loads(server.address, f"127.0.0.1:{embedder_port}", total_s, args.seed)
            samples, stop = MemorySamples(), asyncio.Event()
            timeline = Timeline(time.monotonic())
            sampler = asyncio.create_task(sample_memory(samples, embedder.pid, timeline.began, stop))
            load = asyncio.gather(*(runner.run(config) for runner, config in zip(runners, configs.values())))
            timeline.note(f"load started: {', '.join(configs)}")
            await orchestrate(server, client, total_s, timeline)
            reports: list[Report] = await load
            timeline.note("load finished")
            stop.set()
            await sampler
            r1, r2 = await client.get_rollout("r1"), await client.get_rollout("r2")
            server_codes = _server_codes(server)
        finally:
            await client.close()
            await server.stop(0)
            for runner in runners:
                runner.close()
            embedder.send_signal(signal.SIGTERM)
            await embedder.wait()

    rollbacks = [d for r in (r1, r2) for d in r.decisions if d.kind == Kind.KIND_ROLLED_BACK]
    gateway_memory = samples.summary(1, warmup_s)
    embedder_memory = samples.summary(2, warmup_s)
    result = {
        "minutes": args.minutes, "warmup_s": warmup_s, "machine": machine.line(),
        "memory": {"gateway": gateway_memory, "embedder": embedder_memory},
        "client_codes": {name: {code: v["calls"] for code, v in report.to_dict()["codes"].items()}
                         for name, report in zip(configs, reports)},
        "client_fallbacks": {name: report.to_dict()["fallbacks"] for name, report in zip(configs, reports)},
        "gateway_codes": server_codes,
        "rollbacks": len(rollbacks),
        "rollouts": {r.name: State.State.Name(r.state) for r in (r1, r2)},
        "timeline": timeline.events,
    }
    ok = _print(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0 if ok else 1


def _server_codes(server) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for metric in server.metrics.registry.collect():
        if metric.name != "searchgw_requests":
            continue
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                rpc, code = sample.labels["rpc"], sample.labels["code"]
                counts.setdefault(rpc, {}).setdefault(code, 0)
                counts[rpc][code] += int(sample.value)
    return counts


def _print(result: dict) -> bool:
    print("\nmemory (RSS) from the end of the warm-up to the end of the run:")
    rows = []
    for process, m in result["memory"].items():
        rows.append([process, f"{m['baseline_mb']:.1f}", f"{m['end_mb']:.1f}", f"{m['peak_mb']:.1f}",
                     f"{100 * m['growth']:+.2f} %", f"{m['trend_mb_per_min']:+.2f}", str(m["samples"])])
    print_table(rows, ["process", "after warm-up MB", "end MB", "peak MB", "growth", "trend MB/min", "samples"])
    print("\ncalls by status code, as the clients saw them:")
    codes = sorted({code for by_code in result["client_codes"].values() for code in by_code})
    print_table([[name, *(str(by_code.get(code, 0)) for code in codes), str(result["client_fallbacks"][name])]
                 for name, by_code in result["client_codes"].items()], ["load", *codes, "fallbacks"])
    print("\ncalls by status code, as the gateway counted them (searchgw_requests_total):")
    codes = sorted({code for by_code in result["gateway_codes"].values() for code in by_code})
    print_table([[rpc, *(str(by_code.get(code, 0)) for code in codes)] for rpc, by_code in
                 sorted(result["gateway_codes"].items())], ["rpc", *codes])
    growth_ok = all(m["growth"] < TARGET_GROWTH for m in result["memory"].values())
    rollback_ok = result["rollbacks"] == 1
    client_errors = sum(n for by_code in result["client_codes"].values() for code, n in by_code.items() if code != "OK")
    print(f"\nrollouts: {result['rollouts']}; rollbacks: {result['rollbacks']}")
    print(f"targets: memory growth < {100 * TARGET_GROWTH:.0f} % ({verdict(growth_ok)}); "
          f"exactly one rollback ({verdict(rollback_ok)}); client-visible errors: {client_errors}")
    return growth_ok and rollback_ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the load (default 10)")
    parser.add_argument("--warmup-s", type=float, default=None,
                        help="seconds before the memory baseline (default: 20 %% of the run, at least 20 s)")
    parser.add_argument("--seed", type=int, default=6, help="seed of the load generators")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()
    if args.minutes <= 0:
        parser.error("--minutes must be positive")
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
