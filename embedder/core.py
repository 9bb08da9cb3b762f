"""EmbedderCore: validation, cache, tokenisation, dynamic batching and pooling for every served model.

No gRPC here: the servicer translates protos to `embed(...)` calls and results back.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import cast

import numpy as np

from searchgw.embedder.batching import DynamicBatcher
from searchgw.embedder.cache import LruCache
from searchgw.embedder.metrics import EmbedderMetrics
from searchgw.embedder.model import EmbeddingModel, Encoded, ModelSpec, normalize
from searchgw.embedder.settings import EmbedderSettings
from searchgw.errors import InvalidArgument, NotFound

log = logging.getLogger(__name__)

#: Above this many characters to tokenise, tokenisation leaves the event loop.
_INLINE_TOKENIZE_CHARS = 4096
#: How much of an unknown model's name an error repeats.
_SHOWN_NAME_CHARS = 64


@dataclass(frozen=True)
class CachedEmbedding:
    vector: np.ndarray  # pooled, not normalised; read-only
    n_tokens: int
    truncated: bool


@dataclass
class EmbedResult:
    vectors: np.ndarray  # [n, dimension] float32, request order
    model: str
    dimension: int
    tokens: int
    truncated_inputs: int
    cache_hits: int
    queue_seconds: float
    tokenize_seconds: float
    inference_seconds: float


@dataclass
class ServedModel:
    model: EmbeddingModel
    batcher: DynamicBatcher[Encoded]

    @property
    def spec(self) -> ModelSpec:
        return self.model.spec


def _reader(batcher: DynamicBatcher[Encoded]) -> Callable[[], float]:
    """The queue-depth gauge's reading of one batcher."""
    return lambda: batcher.queue_depth


class EmbedderCore:
    """Serves one or more models by name."""

    def __init__(
        self,
        models: Sequence[EmbeddingModel],
        settings: EmbedderSettings,
        metrics: EmbedderMetrics,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not models:
            raise ValueError("at least one model is required")
        self.settings = settings
        self.metrics = metrics
        self._clock = clock
        # One inference thread per runner (--model-runners, 1 by default) shared by all models: the cores
        # belong to onnxruntime's intra-op pools.
        self._inference = ThreadPoolExecutor(max_workers=settings.model_runners, thread_name_prefix="onnx")
        self._models: dict[str, ServedModel] = {}
        for model in models:
            name = model.spec.name
            if name in self._models:
                raise ValueError(f"two models are named {name!r}; name them with NAME=DIR")
            longest = model.spec.max_input_tokens
            if settings.max_batch_tokens < longest:
                raise ValueError(
                    f"--max-batch-tokens {settings.max_batch_tokens} is below model {name!r}'s max input of "
                    f"{longest} tokens: a long input could never be scheduled")
            batcher = DynamicBatcher(
                model.run, self._inference,
                max_batch_tokens=settings.max_batch_tokens, max_batch_size=settings.max_batch_size,
                max_queue_size=settings.max_queue_size, clock=clock,
                on_batch=functools.partial(metrics.observe_batch, name),
            )
            self._models[name] = ServedModel(model, batcher)
        self.default_model = settings.default_model or models[0].spec.name
        if self.default_model not in self._models:
            raise ValueError(f"--default-model {self.default_model!r} is not among the served models "
                             f"({', '.join(self._models)})")
        self._cache: LruCache[CachedEmbedding] = LruCache(settings.cache_size)
        for name, served in self._models.items():
            metrics.queue_depth.labels(name).set_function(_reader(served.batcher))

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """Give each model its extra runners (--model-runners: sessions of their own), start the batchers
        and warm every session up (first runs are slow) before serving."""
        loop = asyncio.get_running_loop()
        threads = self.settings.threads_per_session()
        for served in self._models.values():
            sessions = [served.model]
            for _ in range(self.settings.model_runners - 1):
                sibling = await asyncio.to_thread(served.model.with_own_session, threads)
                served.batcher.add_runner(sibling.run)
                sessions.append(sibling)
            served.batcher.start()
            warm = served.model.encode(["warm up", "a somewhat longer sentence to warm up the model " * 4], True)
            for session in sessions:
                for _ in range(2):
                    await loop.run_in_executor(self._inference, session.run, warm)

    async def stop(self) -> None:
        for served in self._models.values():
            await served.batcher.stop()
        self._inference.shutdown(wait=False, cancel_futures=True)

    @property
    def healthy(self) -> bool:
        return all(served.batcher.healthy for served in self._models.values())

    def add_health_listener(self, listener: Callable[[bool], object]) -> None:
        for served in self._models.values():
            served.batcher.add_health_listener(lambda _ok: listener(self.healthy))

    def models(self) -> list[EmbeddingModel]:
        return [served.model for served in self._models.values()]

    def specs(self) -> list[ModelSpec]:
        return [served.spec for served in self._models.values()]

    def batching_limits(self) -> tuple[int, int, int]:
        s = self.settings
        return s.max_batch_tokens, s.max_batch_size, s.max_queue_size

    # -- the request path ------------------------------------------------------------------
    def _validate(self, texts: Sequence[str]) -> None:
        if not texts:
            raise InvalidArgument("texts", "at least one text is required")
        if len(texts) > self.settings.max_texts_per_request:
            raise InvalidArgument("texts", f"{len(texts)} texts; at most {self.settings.max_texts_per_request} "
                                           "per request")
        limit = self.settings.max_text_chars
        for index, text in enumerate(texts):
            if not text or not text.strip():
                raise InvalidArgument(f"texts[{index}]", "must not be empty")
            if len(text) > limit:
                raise InvalidArgument(f"texts[{index}]", f"{len(text)} characters; at most {limit}")

    def _served(self, name: str) -> ServedModel:
        served = self._models.get(name or self.default_model)
        if served is None:
            # Echo at most a little of the name: status messages and details travel in HTTP/2 trailers,
            # which clients refuse beyond a few KiB (they would see RESOURCE_EXHAUSTED, not this).
            shown = name[:_SHOWN_NAME_CHARS]
            described = repr(shown) if shown == name else f"{shown!r}… ({len(name)} characters)"
            raise NotFound(f"model {described} is not served here; served: {', '.join(self._models)}",
                           reason="MODEL_NOT_FOUND", metadata={"model": shown})
        return served

    async def embed(
        self,
        texts: Sequence[str],
        *,
        model: str = "",
        truncate: bool | None = None,
        normalize_vectors: bool | None = None,
        deadline: float | None = None,
    ) -> EmbedResult:
        self._validate(texts)
        served = self._served(model)
        spec = served.spec
        truncate = True if truncate is None else truncate
        normalize_vectors = spec.normalize_default if normalize_vectors is None else normalize_vectors

        cached: list[CachedEmbedding | None] = [self._cache.get((spec.name, truncate, text)) for text in texts]
        misses = [i for i, entry in enumerate(cached) if entry is None]
        hits = len(texts) - len(misses)
        if hits:
            self.metrics.cache_hits.inc(hits)
        tokenize_seconds = queue_seconds = inference_seconds = 0.0
        if misses:
            self.metrics.cache_misses.inc(len(misses))
            miss_texts = [texts[i] for i in misses]
            started = self._clock()
            try:
                if sum(map(len, miss_texts)) > _INLINE_TOKENIZE_CHARS:
                    encoded = await asyncio.get_running_loop().run_in_executor(
                        None, served.model.encode, miss_texts, truncate)
                else:
                    encoded = served.model.encode(miss_texts, truncate)
            except InvalidArgument as exc:  # it names texts[i] of the cache misses: name the request's index
                position = int(exc.field.removeprefix("texts[").removesuffix("]"))
                raise InvalidArgument(f"texts[{misses[position]}]", exc.description) from None
            tokenize_seconds = self._clock() - started
            results = await served.batcher.submit(encoded, deadline=deadline)
            caching = self._cache.capacity > 0
            for index, item, result in zip(misses, encoded, results):
                # A copy: the batch's array is not kept alive by one row, and a cached vector is read-only.
                vector = result.vector.copy() if caching else result.vector
                vector.flags.writeable = False
                entry = CachedEmbedding(vector, item.n_tokens, item.truncated)
                cached[index] = entry
                if caching:
                    self._cache.put((spec.name, truncate, texts[index]), entry)
            queue_seconds = max(r.queue_seconds for r in results)
            inference_seconds = max(r.run_seconds for r in results)
        self.metrics.texts.labels(spec.name).inc(len(texts))
        complete = cast(list[CachedEmbedding], cached)  # every miss is filled in above
        vectors = complete[0].vector[None, :] if len(complete) == 1 else np.stack([e.vector for e in complete])
        if normalize_vectors:
            vectors = normalize(vectors)
        return EmbedResult(
            vectors=vectors, model=spec.name, dimension=spec.dimension,
            tokens=sum(entry.n_tokens for entry in complete),
            truncated_inputs=sum(entry.truncated for entry in complete),
            cache_hits=hits, queue_seconds=queue_seconds, tokenize_seconds=tokenize_seconds,
            inference_seconds=inference_seconds,
        )
