"""EmbedderSettings: every knob of the embedding server, built once at start-up."""

from __future__ import annotations

import os
import pathlib
from dataclasses import dataclass

from searchgw.settings import ServerSettings, SettingsError, setting

ENV_PREFIX = "SEARCHGW_EMBEDDER_"
DEFAULT_PORT = 50061
DEFAULT_METRICS_PORT = 9465


@dataclass(frozen=True)
class EmbedderSettings(ServerSettings):
    port: int = setting(DEFAULT_PORT, "gRPC port; 0 picks a free one and logs it")
    metrics_port: int = setting(DEFAULT_METRICS_PORT, "Prometheus port; 0 picks a free one, -1 turns it off")
    model_dir: tuple[str, ...] = setting(
        (), "model directories to serve, each DIR or NAME=DIR (model.onnx + tokenizer.json); "
            "empty serves the built-in all-MiniLM-L6-v2", flag="--model-dir")
    default_model: str = setting("", "the model used when a request names none (default: the first)")
    cache_dir: pathlib.Path = setting(pathlib.Path("~/.cache/searchgw").expanduser(),
                                      "where the built-in model's ONNX export is kept")
    max_batch_tokens: int = setting(16384, "padded token budget of one batch (longest input x inputs)")
    max_batch_size: int = setting(64, "most inputs in one model run")
    max_queue_size: int = setting(2048, "most inputs waiting for the model; more get RESOURCE_EXHAUSTED")
    intra_op_threads: int = setting(0, "onnxruntime threads per model run; 0 = one per core (divided among "
                                       "--model-runners)")
    model_runners: int = setting(1, "batches of one model that may run at once, each on an onnxruntime "
                                    "session of its own (one copy of the weights each)")
    cache_size: int = setting(20000, "embeddings kept in the LRU cache; 0 turns it off")
    max_texts_per_request: int = setting(512, "most texts in one Embed request")
    max_text_chars: int = setting(100_000, "most characters in one text")

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("max_batch_tokens", "max_batch_size", "max_queue_size", "max_texts_per_request",
                     "max_text_chars", "max_message_bytes", "model_runners"):
            if getattr(self, name) < 1:
                raise SettingsError(f"--{name.replace('_', '-')}: must be at least 1")
        if self.max_batch_size > self.max_queue_size:
            raise SettingsError("--max-batch-size: must not exceed --max-queue-size")
        if self.intra_op_threads < 0 or self.cache_size < 0:
            raise SettingsError("--intra-op-threads and --cache-size must not be negative")

    def threads_per_session(self) -> int | None:
        """onnxruntime intra-op threads of each session: --intra-op-threads, else the cores shared among
        --model-runners (None: onnxruntime's one per core)."""
        if self.intra_op_threads:
            return self.intra_op_threads
        if self.model_runners > 1:
            return max(1, (os.cpu_count() or 1) // self.model_runners)
        return None

    def model_sources(self) -> list[tuple[str | None, pathlib.Path]]:
        """(name or None, directory) for every --model-dir entry."""
        sources = []
        for entry in self.model_dir:
            name, sep, path = entry.partition("=")
            if not sep:
                name, path = "", entry
            sources.append((name or None, pathlib.Path(path).expanduser()))
        return sources
