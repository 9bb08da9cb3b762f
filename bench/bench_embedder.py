"""Embedding server benchmark (issue 2 §6): the server end to end against raw onnxruntime, one run.

    .venv/bin/python -m bench.bench_embedder [--quick] [--profile]

On the same texts — a set of ~13-token and a set of ~71-token texts (exact token counts, [CLS] and
[SEP] included; 4 096 distinct texts each) — it measures:

- raw: `EmbeddingModel` called directly from one thread (tokenize, onnxruntime with one intra-op
  thread per core as the server has, pool, normalise; no gRPC, no asyncio) at several batch sizes;
  the best is the ceiling. Batch 1's p50 is the floor of a single request.
- server: the embedding server (`embedder.server.create_server`, cache off, in this process) driven
  by loadgen (`rpc=embed`, one text per call) from a process of its own, with 1, 16 and 64
  concurrent callers (closed loop). The load generator's CPU share of the machine is reported: on
  2 cores it takes CPU from the model. So is this process's CPU time per text, raw and served.
- echo: a bare grpc.aio Embed answering one constant vector, one caller: the transport's floor.
- sentence-transformers' `encode` (in a subprocess, when torch is importable) for comparison.

Noise on a shared machine: the server runs come in rounds; before each round's runs of a text set a
raw window at the best batch size (and one at batch 1) is taken; every figure is the best of its
windows or rounds, and the ceiling is the best raw window of the whole run.

Targets (issue 16) at 64 concurrent callers: >= 0.95 x raw on ~71-token texts, >= 0.90 x raw on
~13-token texts; single-request p50 <= raw batch-1 p50 + the bare Embed round trip's p50 + 0.3 ms.
`--model-runners N` serves with N onnxruntime sessions running batches at once (the server loads its
own; raw stays the one session with a thread per core). `--profile` samples the server process with
py-spy during the 64-caller runs (py-spy must be installed) and prints the top frames.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import grpc
import numpy as np

from bench._common import LoadRunner, Machine, configure_like_production, load_average, loadavg_text, print_table
from bench._common import verdict
from searchgw.embedder.model import DEFAULT_MODEL_NAME, EmbeddingModel, default_model_dir, default_source_dir, normalize
from searchgw.embedder.server import EmbedderServer, create_server
from searchgw.embedder.settings import EmbedderSettings
from searchgw.loadgen import LatencyHistogram, LoadConfig, Report
from searchgw.loadgen._corpus import BUILTIN_QUERIES
from searchgw.v1 import embed_service_pb2, embed_service_pb2_grpc

MODEL_CACHE = Path(os.environ.get("SEARCHGW_BENCH_MODEL_CACHE", Path.home() / ".cache" / "searchgw"))
TEXT_SETS = (("short", 13), ("long", 71))  # (name, tokens per text, [CLS] and [SEP] included)
TEXTS_PER_SET = 4096
CONCURRENCIES = (1, 16, 64)
BATCH_SIZES = (1, 8, 16, 32, 64)
#: Targets at 64 concurrent callers, as a share of the raw ceiling.
TARGET_RATIO = {"short": 0.90, "long": 0.95}
#: Single-request p50 may exceed raw batch 1's p50 by the bare Embed round trip's p50 plus this much.
TARGET_ADDED_OVER_ECHO_MS = 0.3
EXTRA_WORDS = ("the", "a", "of", "and", "to", "in", "for", "with", "on", "by", "at", "from", "about", "into",
               "after", "before", "between", "through", "during", "without", "under", "over")


@dataclass(frozen=True)
class Durations:
    raw_s: float  # per batch size in the sweep, and per extra window
    load_s: float  # measured seconds per server run
    warmup_s: float
    rounds: int  # server runs per (text set, concurrency); the best counts
    sweeps: int  # passes over the raw batch sizes; each size keeps its best
    st_s: float  # sentence-transformers, per set

    @classmethod
    def for_mode(cls, quick: bool) -> Durations:
        return cls(raw_s=1.0, load_s=2.5, warmup_s=0.5, rounds=1, sweeps=1, st_s=1.5) if quick else \
            cls(raw_s=1.5, load_s=5.0, warmup_s=1.0, rounds=2, sweeps=2, st_s=4.0)


# -- texts ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TextSet:
    name: str
    tokens: int  # every text has exactly this many tokens, specials included
    texts: tuple[str, ...]


def _vocabulary() -> list[str]:
    words = {word for query in BUILTIN_QUERIES for word in query.split()}
    return sorted(words | set(EXTRA_WORDS))


def make_text_set(model: EmbeddingModel, name: str, tokens: int, count: int = TEXTS_PER_SET,
                  seed: int = 7) -> TextSet:
    """`count` distinct word salads of exactly `tokens` tokens each ([CLS] and [SEP] included).

    WordPiece splits on whitespace first, so a text's token count is 2 plus the sum of its words'
    counts: words are drawn at random and the last one is picked to land exactly on `tokens`.
    """
    vocabulary = _vocabulary()
    lengths = {word: n for word, n in zip(vocabulary, (e.n_tokens - 2 for e in model.encode(vocabulary, True)))}
    by_length: dict[int, list[str]] = {}
    for word, n in lengths.items():
        by_length.setdefault(n, []).append(word)
    rng = random.Random(seed)
    budget = tokens - 2
    texts: set[str] = set()
    while len(texts) < count:
        words: list[str] = []
        left = budget
        while left > 0:
            if left <= 3 and by_length.get(left):
                words.append(rng.choice(by_length[left]))
                break
            word = rng.choice(vocabulary)
            if lengths[word] <= left - 1 or lengths[word] == left:
                words.append(word)
                left -= lengths[word]
        texts.add(" ".join(words))
    ordered = sorted(texts)
    rng.shuffle(ordered)
    counts = {e.n_tokens for e in model.encode(ordered[:256], True)}
    if counts != {tokens}:
        raise AssertionError(f"text set {name}: token counts {sorted(counts)}, wanted {tokens}")
    return TextSet(name, tokens, tuple(ordered))


# -- raw onnxruntime -------------------------------------------------------------------------------
@dataclass
class RawResult:
    text_set: str
    texts_per_s: dict[int, float]  # by batch size, from the sweep
    batch1_ms: list[float]  # per-call latency at batch 1 (tokenize + run + pool + normalise)
    load: tuple[float, float, float]
    #: texts/s of the extra windows at the best batch size, taken between the server runs
    windows: list[float] = field(default_factory=list)
    #: batch-1 latencies of the extra batch-1 windows taken between the server runs
    batch1_windows: list[list[float]] = field(default_factory=list)
    #: CPU time of this process per text (all threads: onnxruntime's included), by batch size
    cpu_ms_per_text: dict[int, float] = field(default_factory=dict)

    @property
    def best_batch(self) -> int:
        return max(self.texts_per_s, key=self.texts_per_s.__getitem__)

    @property
    def ceiling(self) -> float:
        """The best the model did on these texts in the whole run: the sweep's best batch size, or any
        later window at that size (so a busy moment during the sweep does not lower the bar)."""
        return max([self.texts_per_s[self.best_batch], *self.windows])

    @property
    def batch1_best(self) -> list[float]:
        """The batch-1 window with the lowest median (the sweep's or a later one): the floor of one request."""
        return min([self.batch1_ms, *self.batch1_windows], key=lambda samples: float(np.median(samples)))

    @property
    def batch1_texts_per_s(self) -> float:
        """Texts/s one call at a time, from the best batch-1 window."""
        best = self.batch1_best
        return 1000 * len(best) / sum(best)

    @property
    def batch1_p50_ms(self) -> float:
        return float(np.percentile(self.batch1_best, 50))

    @property
    def batch1_p99_ms(self) -> float:
        return float(np.percentile(self.batch1_best, 99))


def embed_directly(model: EmbeddingModel, texts: Sequence[str]) -> np.ndarray:
    """What the server does for a batch, without the server: tokenize, run, pool, normalise."""
    return normalize(model.run(model.encode(texts, True)))


def measure_raw(model: EmbeddingModel, text_set: TextSet, *, batch_sizes: Sequence[int] = BATCH_SIZES,
                seconds: float = 3.0, offset: int = 0, repeats: int = 1) -> RawResult:
    """texts/s of `embed_directly` at each batch size, cycling through the set for `seconds` each; with
    `repeats` > 1 the sweep runs again (batch sizes interleaved with the other passes) and each batch
    size keeps its best pass. Batch 1's per-call latencies are kept per pass (the best pass counts)."""
    texts = text_set.texts
    rates: dict[int, float] = {}
    cpu_ms: dict[int, float] = {}
    batch1: list[list[float]] = []
    position = offset % len(texts)
    for _repeat in range(repeats):
        for batch in batch_sizes:

            def next_chunk() -> Sequence[str]:
                nonlocal position
                if position + batch > len(texts):
                    position = 0
                chunk = texts[position:position + batch]
                position += batch
                return chunk

            for _ in range(3):  # warm-up: first runs of a new shape are slow
                embed_directly(model, next_chunk())
            done = 0
            latencies: list[float] = []
            cpu_before = time.process_time()
            started = time.perf_counter()
            while (elapsed := time.perf_counter() - started) < seconds:
                began = time.perf_counter()
                embed_directly(model, next_chunk())
                if batch == 1:
                    latencies.append((time.perf_counter() - began) * 1e3)
                done += batch
            if done / elapsed > rates.get(batch, 0.0):
                rates[batch] = done / elapsed
                cpu_ms[batch] = (time.process_time() - cpu_before) * 1e3 / done
            if batch == 1:
                batch1.append(latencies)
    return RawResult(text_set.name, rates, batch1[0] if batch1 else [], load_average(), batch1_windows=batch1[1:],
                     cpu_ms_per_text=cpu_ms)


def raw_window(model: EmbeddingModel, text_set: TextSet, raw: RawResult, seconds: float, offset: int) -> None:
    """One more window at the best batch size (added to `raw.windows`) and one at batch 1 (its latencies
    added to `raw.batch1_windows`)."""
    window = measure_raw(model, text_set, batch_sizes=(raw.best_batch,), seconds=seconds, offset=offset)
    raw.windows.append(window.texts_per_s[raw.best_batch])
    window = measure_raw(model, text_set, batch_sizes=(1,), seconds=seconds / 2, offset=offset)
    raw.batch1_windows.append(window.batch1_ms)


# -- the server under loadgen ---------------------------------------------------------------------
@dataclass
class ServerRun:
    text_set: str
    concurrency: int
    report: Report  # of the best round
    load: tuple[float, float, float]
    rounds: list[float] = field(default_factory=list)  # texts/s of every round
    server_cpu_s: float = 0.0  # CPU time of the server's process (all threads) during the run, warm-up included
    model_runners: int = 1  # onnxruntime sessions running batches at once in the server

    @property
    def cpu_ms_per_text(self) -> float:
        texts = (self.report.calls + self.report.tally.warmup_calls) * self.report.config.batch_size
        return 1e3 * self.server_cpu_s / texts if texts else float("nan")

    @property
    def texts_per_s(self) -> float:
        return self.report.ok_per_s * self.report.config.batch_size

    @property
    def latency(self) -> LatencyHistogram:
        return self.report.latency

    def p(self, quantile: float) -> float:
        """Latency at `quantile` in ms; NaN when no call finished (a window shorter than one batch's run on a
        machine this busy)."""
        try:
            return self.latency.value_at(quantile) / 1e6
        except ValueError:
            return float("nan")


def write_queries(text_set: TextSet, directory: Path) -> Path:
    path = directory / f"texts-{text_set.name}.jsonl"
    with path.open("w", encoding="utf-8") as out:
        for text in text_set.texts:
            out.write(json.dumps({"text": text}) + "\n")
    return path


def server_settings(model_runners: int = 1) -> EmbedderSettings:
    """The embedder as deployed, minus what would help or disturb a benchmark: cache off (every text
    is embedded), no metrics endpoint, quiet logs."""
    return EmbedderSettings(port=0, metrics_port=-1, cache_dir=MODEL_CACHE, cache_size=0, grace_period_s=1.0,
                            log_format="text", log_level="warning", model_runners=model_runners)


async def measure_server(model: EmbeddingModel, text_sets: Sequence[TextSet], raw: dict[str, RawResult],
                         runner: LoadRunner, *, durations: Durations, concurrencies: Sequence[int] = CONCURRENCIES,
                         profile_dir: Path | None = None, log=print,
                         echoes: list[Report] | None = None, model_runners: int = 1,
                         compare_runners: int = 0, compared: list[ServerRun] | None = None) -> list[ServerRun]:
    """Start the server on `model`, then per round, per text set: a raw window at the best batch size
    (added to the ceiling), and one loadgen run per concurrency. Each configuration keeps its best round.
    With `compare_runners` > 1 a second server with that many model runners (sessions of its own) is
    measured at 1 and at the most callers right after, each round; its runs go to `compared`."""
    best: dict[tuple[str, int, int], ServerRun] = {}
    server = await create_server(server_settings(model_runners))
    # One runner serves the benchmark's own session (the raw one); more load sessions of their own.
    await server.load([model] if model_runners == 1 else None)
    other = None
    if compare_runners > 1 and compare_runners != model_runners and compared is not None:
        other = await create_server(server_settings(compare_runners))
        await other.load()

    async def measure(target: EmbedderServer, text_set: TextSet, queries: Path, concurrency: int, round_: int,
                      profile: Path | None) -> None:
        config = LoadConfig(target=target.address, rpc="embed", queries=queries, concurrency=concurrency,
                            processes=1, duration_s=durations.load_s, warmup_s=durations.warmup_s, deadline_s=30.0,
                            seed=11 + round_)
        profiler = start_profiler(profile, durations.warmup_s + durations.load_s) if profile is not None else None
        cpu_before = time.process_time()
        report = await runner.run(config)
        server_cpu_s = time.process_time() - cpu_before
        if profiler is not None:
            await asyncio.to_thread(profiler.wait)
        runners = target.settings.model_runners
        run = ServerRun(text_set.name, concurrency, report, load_average(), server_cpu_s=server_cpu_s,
                        model_runners=runners)
        run.rounds.append(run.texts_per_s)
        previous = best.get((text_set.name, concurrency, runners))
        if previous is not None:
            run.rounds[:0] = previous.rounds
            if previous.texts_per_s >= run.texts_per_s:
                previous.rounds = run.rounds
                return
        best[(text_set.name, concurrency, runners)] = run

    try:
        with tempfile.TemporaryDirectory(prefix="bench-embedder-") as tmp:
            queries = {text_set.name: write_queries(text_set, Path(tmp)) for text_set in text_sets}
            for round_ in range(durations.rounds):
                if echoes is not None:
                    echoes.append(await measure_echo(runner, queries[text_sets[0].name], durations))
                for text_set in text_sets:
                    await asyncio.to_thread(raw_window, model, text_set, raw[text_set.name], durations.raw_s,
                                            offset=1000 * (round_ + 1))
                    for concurrency in concurrencies:
                        profile = None
                        if profile_dir is not None and concurrency == max(concurrencies) and round_ == 0:
                            profile = profile_dir / f"embedder-{text_set.name}-c{concurrency}.txt"
                        await measure(server, text_set, queries[text_set.name], concurrency, round_, profile)
                    if other is not None:
                        for concurrency in sorted({min(concurrencies), max(concurrencies)}):
                            await measure(other, text_set, queries[text_set.name], concurrency, round_, None)
                log(f"  server round {round_ + 1}/{durations.rounds} done ({loadavg_text()})")
    finally:
        await server.stop(0)
        if other is not None:
            await other.stop(0)
    if other is not None and compared is not None:
        compared.extend(best[(text_set.name, concurrency, compare_runners)] for text_set in text_sets
                        for concurrency in sorted({min(concurrencies), max(concurrencies)}))
    return [best[(text_set.name, concurrency, model_runners)] for text_set in text_sets
            for concurrency in concurrencies]


class EchoEmbed(embed_service_pb2_grpc.EmbedServiceServicer):
    """A bare grpc.aio Embed that answers one constant 384-d embedding at once: the transport's floor."""

    def __init__(self, dimension: int = 384) -> None:
        vector = np.random.default_rng(0).standard_normal(dimension).astype(np.float32)
        self._response = embed_service_pb2.EmbedResponse(
            embeddings=[embed_service_pb2.Embedding(values=(vector / np.linalg.norm(vector)).tolist())],
            model=DEFAULT_MODEL_NAME, dimension=dimension)

    async def Embed(self, request, context):
        return self._response


async def measure_echo(runner: LoadRunner, queries: Path, durations: Durations) -> Report:
    """One caller against EchoEmbed: the p50 of a bare gRPC Embed round trip on this machine, now."""
    server = grpc.aio.server()
    embed_service_pb2_grpc.add_EmbedServiceServicer_to_server(EchoEmbed(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        return await runner.run(LoadConfig(target=f"127.0.0.1:{port}", rpc="embed", queries=queries, concurrency=1,
                                           processes=1, duration_s=min(durations.load_s, 3.0),
                                           warmup_s=durations.warmup_s, seed=5))
    finally:
        await server.stop(0)


# -- py-spy -----------------------------------------------------------------------------------------
def start_profiler(output: Path, seconds: float) -> subprocess.Popen | None:
    """py-spy sampling this process (all threads, native frames) for `seconds`, to `output`."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        print("  (py-spy not installed: no profile)")
        return None
    output.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([py_spy, "record", "--pid", str(os.getpid()), "--duration", str(max(1, round(seconds))),
                             "--rate", "200", "--format", "raw", "--output", str(output), "--threads", "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def summarize_profile(path: Path, top: int = 25) -> list[tuple[float, str]]:
    """(share of samples, frame) for the frames most often on a stack (inclusive), from py-spy's raw
    (collapsed-stack) output."""
    if not path.exists():
        return []
    inclusive: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        samples = int(count)
        total += samples
        for frame in set(stack.split(";")):
            inclusive[frame] = inclusive.get(frame, 0) + samples
    ranked = sorted(inclusive.items(), key=lambda item: -item[1])[:top]
    return [(samples / total, frame) for frame, samples in ranked]


# -- sentence-transformers (torch), in a subprocess -------------------------------------------------
def torch_available() -> bool:
    return importlib.util.find_spec("torch") is not None and importlib.util.find_spec("sentence_transformers") \
        is not None


def _st_measure(source_dir: str, text_sets: list[tuple[str, list[str]]], batch_sizes: dict[str, int],
                seconds: float) -> dict[str, dict[str, float]]:
    """In a fresh process: sentence-transformers' encode, texts/s per set, and its vectors for a check."""
    import torch  # noqa: PLC0415 - only here, in the subprocess
    from sentence_transformers import SentenceTransformer  # noqa: PLC0415

    torch.set_num_threads(os.cpu_count() or 1)
    model = SentenceTransformer(source_dir, device="cpu")
    results: dict[str, dict] = {}
    for name, texts in text_sets:
        batch = batch_sizes[name]
        model.encode(texts[:batch], batch_size=batch, normalize_embeddings=True)  # warm-up
        done, position = 0, 0
        started = time.perf_counter()
        while (elapsed := time.perf_counter() - started) < seconds:
            chunk = texts[position:position + batch * 4] or texts[:batch * 4]
            position = position + batch * 4 if position + batch * 8 <= len(texts) else 0
            model.encode(chunk, batch_size=batch, normalize_embeddings=True)
            done += len(chunk)
        vectors = model.encode(texts[:64], batch_size=batch, normalize_embeddings=True)
        results[name] = {"texts_per_s": done / elapsed, "batch_size": batch, "vectors": vectors.tolist()}
    return results


@dataclass
class StResult:
    texts_per_s: dict[str, float]
    batch_size: dict[str, int]
    min_cosine: dict[str, float]  # to our ONNX model's vectors, first 64 texts of each set


def measure_sentence_transformers(model: EmbeddingModel, text_sets: Sequence[TextSet], batch_sizes: dict[str, int],
                                  seconds: float) -> StResult | None:
    if not torch_available():
        return None
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        results = pool.submit(_st_measure, str(default_source_dir()), [(s.name, list(s.texts)) for s in text_sets],
                              batch_sizes, seconds).result()
    cosines = {}
    for text_set in text_sets:
        ours = embed_directly(model, text_set.texts[:64])
        theirs = np.asarray(results[text_set.name]["vectors"], dtype=np.float32)
        cosines[text_set.name] = float(np.min(np.sum(ours * theirs, axis=1)))
    return StResult({name: r["texts_per_s"] for name, r in results.items()},
                    {name: r["batch_size"] for name, r in results.items()}, cosines)


# -- the whole benchmark ------------------------------------------------------------------------------
@dataclass
class Target:
    name: str
    value: str
    goal: str
    ok: bool


@dataclass
class EmbedderResults:
    machine: Machine
    text_sets: list[TextSet]
    raw: dict[str, RawResult]
    server: list[ServerRun]
    st: StResult | None
    quick: bool
    profiles: dict[str, list[tuple[float, str]]] = field(default_factory=dict)
    #: one caller against a bare grpc.aio Embed (constant answer), once per round
    echoes: list[Report] = field(default_factory=list)
    #: the same runs with --model-runners N (N sessions of their own), at 1 and at the most callers
    compared: list[ServerRun] = field(default_factory=list)

    @property
    def echo_p50_ms(self) -> float:
        """The lowest p50 of the bare Embed round trip: the transport's share of a single request."""
        return min((r.latency.value_at(0.5) / 1e6 for r in self.echoes if r.calls), default=float("nan"))

    def run(self, text_set: str, concurrency: int) -> ServerRun:
        return next(r for r in self.server if r.text_set == text_set and r.concurrency == concurrency)

    def ratio(self, text_set: str, concurrency: int) -> float:
        return self.run(text_set, concurrency).texts_per_s / self.raw[text_set].ceiling

    def targets(self) -> list[Target]:
        top = max(r.concurrency for r in self.server)
        targets = []
        for name, _tokens in TEXT_SETS:
            if name not in self.raw:
                continue
            ratio = self.ratio(name, top)
            targets.append(Target(f"{name} texts ({self.text_set(name).tokens} tokens), "
                                  f"{top} callers: server / raw ceiling",
                                  f"{ratio:.2f}x", f">= {TARGET_RATIO[name]:.2f}x", ratio >= TARGET_RATIO[name]))
        for name, _tokens in TEXT_SETS:
            if name not in self.raw or not any(r.concurrency == 1 for r in self.server):
                continue
            added = self.run(name, 1).p(0.5) - self.raw[name].batch1_p50_ms
            allowed = self.echo_p50_ms + TARGET_ADDED_OVER_ECHO_MS
            targets.append(Target(f"{name} texts: single-request p50 - raw batch-1 p50 (bare gRPC Embed round trip "
                                  f"p50 here: {self.echo_p50_ms:.2f} ms)", f"{added:+.2f} ms",
                                  f"<= {self.echo_p50_ms:.2f} + {TARGET_ADDED_OVER_ECHO_MS} ms",
                                  added <= allowed))
        return targets

    def text_set(self, name: str) -> TextSet:
        return next(s for s in self.text_sets if s.name == name)


async def run(quick: bool = False, *, runner: LoadRunner | None = None, with_st: bool = True,
              profile_dir: Path | None = None, log=print, model_runners: int = 1,
              compare_runners: int = 2) -> EmbedderResults:
    """The whole embedder benchmark; `runner` may be shared with other benchmarks."""
    configure_like_production()
    durations = Durations.for_mode(quick)
    machine = Machine.now()
    log(f"embedder benchmark ({'quick' if quick else 'full'}), {machine.line()}, {loadavg_text()}")
    model = await asyncio.to_thread(EmbeddingModel.load, default_model_dir(MODEL_CACHE), DEFAULT_MODEL_NAME,
                                    intra_op_threads=os.cpu_count())
    text_sets = [make_text_set(model, name, tokens) for name, tokens in TEXT_SETS]
    raw = {}
    for text_set in text_sets:
        raw[text_set.name] = await asyncio.to_thread(measure_raw, model, text_set, seconds=durations.raw_s,
                                                     repeats=durations.sweeps)
        log(f"  raw {text_set.name}: best batch {raw[text_set.name].best_batch}, "
            f"{raw[text_set.name].ceiling:.0f} texts/s ({loadavg_text()})")
    own_runner = runner is None
    runner = runner or LoadRunner()
    try:
        echoes: list[Report] = []
        compared: list[ServerRun] = []
        server = await measure_server(model, text_sets, raw, runner, durations=durations, profile_dir=profile_dir,
                                      log=log, echoes=echoes, model_runners=model_runners,
                                      compare_runners=compare_runners, compared=compared)
    finally:
        if own_runner:
            runner.close()
    st = None
    if with_st:
        st = await asyncio.to_thread(measure_sentence_transformers, model, text_sets,
                                     {name: raw[name].best_batch for name in raw}, durations.st_s)
    profiles = {}
    if profile_dir is not None:
        for path in sorted(profile_dir.glob("embedder-*.txt")):
            profiles[path.stem] = summarize_profile(path)
    return EmbedderResults(machine, text_sets, raw, server, st, quick, profiles, echoes, compared)


def print_results(results: EmbedderResults) -> None:
    print(f"\nEmbedder, {results.machine.line()}; {loadavg_text()} at the end")
    for text_set in results.text_sets:
        raw = results.raw[text_set.name]
        print(f"\n{text_set.name} texts: {text_set.tokens} tokens each, {len(text_set.texts)} distinct; "
              f"load during raw {raw.load[0]:.2f}")
        rows = [[f"raw onnxruntime, batch {batch}", f"{rate:.0f}", f"{rate / raw.ceiling:.2f}x",
                 f"CPU {raw.cpu_ms_per_text.get(batch, float('nan')):.2f} ms/text"]
                for batch, rate in raw.texts_per_s.items()]
        rows.append(["raw batch 1 latency", "", "", f"p50 {raw.batch1_p50_ms:.2f} / p99 {raw.batch1_p99_ms:.2f} ms"])
        if raw.windows:
            rows.append([f"raw, batch {raw.best_batch}, windows between server runs",
                         " ".join(f"{w:.0f}" for w in raw.windows), "", f"ceiling used: {raw.ceiling:.0f} texts/s"])
        for run_ in (r for r in results.server if r.text_set == text_set.name):
            rows.append([f"server, {run_.concurrency} callers (load {run_.load[0]:.2f})", f"{run_.texts_per_s:.0f}",
                         f"{run_.texts_per_s / raw.ceiling:.2f}x",
                         f"p50 {run_.p(0.5):.2f} / p99 {run_.p(0.99):.2f} ms, server CPU {run_.cpu_ms_per_text:.2f} ms/text, "
                         f"loadgen CPU {100 * run_.report.cpu_share:.0f} %, rounds " + " ".join(f"{x:.0f}" for x in run_.rounds)])
        for run_ in (r for r in results.compared if r.text_set == text_set.name):
            rows.append([f"server, {run_.model_runners} model runners, {run_.concurrency} callers "
                         f"(load {run_.load[0]:.2f})", f"{run_.texts_per_s:.0f}", f"{run_.texts_per_s / raw.ceiling:.2f}x",
                         f"p50 {run_.p(0.5):.2f} / p99 {run_.p(0.99):.2f} ms, server CPU {run_.cpu_ms_per_text:.2f} ms/text"])
        if results.st is not None:
            rate = results.st.texts_per_s[text_set.name]
            rows.append([f"sentence-transformers encode, batch {results.st.batch_size[text_set.name]}", f"{rate:.0f}",
                         f"{rate / raw.ceiling:.2f}x", f"min cosine to ours {results.st.min_cosine[text_set.name]:.6f}"])
        print_table(rows, ["", "texts/s", "vs ceiling", "latency / notes"])
    print(f"\nbare grpc.aio Embed (constant answer), 1 caller: p50 "
          + " / ".join(f"{r.latency.value_at(0.5) / 1e6:.2f}" for r in results.echoes) + " ms per round")
    print("\nTargets")
    for target in results.targets():
        print(f"  {verdict(target.ok):<6} {target.name}: {target.value} (target {target.goal})")
    if results.st is None:
        print("  (torch / sentence-transformers not importable: no comparison)")
    for name, frames in results.profiles.items():
        print(f"\npy-spy, {name}: share of samples with the frame on the stack")
        for share, frame in frames:
            print(f"  {100 * share:5.1f} %  {frame}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs (a smoke test, ~1 minute)")
    parser.add_argument("--profile", action="store_true", help="py-spy the server during the 64-caller runs")
    parser.add_argument("--no-st", action="store_true", help="skip sentence-transformers")
    parser.add_argument("--model-runners", type=int, default=1,
                        help="serve with this many onnxruntime sessions running batches at once")
    parser.add_argument("--compare-runners", type=int, default=2,
                        help="also measure a server with this many model runners at 1 and 64 callers (0: no)")
    args = parser.parse_args()
    profile_dir = Path(tempfile.mkdtemp(prefix="bench-embedder-profile-")) if args.profile else None
    results = asyncio.run(run(args.quick, with_st=not args.no_st, profile_dir=profile_dir,
                              model_runners=args.model_runners, compare_runners=args.compare_runners))
    print_results(results)
    if profile_dir is not None:
        print(f"\nraw profiles in {profile_dir}")


if __name__ == "__main__":
    main()
