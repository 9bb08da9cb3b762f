"""EmbedServicer: translates searchgw.v1.EmbedService calls to EmbedderCore and back."""

from __future__ import annotations

import time
from collections.abc import Callable

from searchgw.embedder.core import EmbedderCore
from searchgw.errors import Unavailable
from searchgw.v1 import embed_service_pb2 as pb
from searchgw.v1 import embed_service_pb2_grpc as pb_grpc

_POOLING = {"mean": pb.POOLING_MEAN, "cls": pb.POOLING_CLS, "max": pb.POOLING_MAX}


class EmbedServicer(pb_grpc.EmbedServiceServicer):
    """Thin translator. `core` is None until the models are loaded and warm (then UNAVAILABLE)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.core: EmbedderCore | None = None
        self._clock = clock

    def _ready_core(self) -> EmbedderCore:
        if self.core is None:
            raise Unavailable("the model is still loading; wait for the health service to say SERVING")
        return self.core

    async def Embed(self, request: pb.EmbedRequest, context) -> pb.EmbedResponse:
        core = self._ready_core()
        remaining = context.time_remaining()
        result = await core.embed(
            request.texts,
            model=request.model,
            truncate=request.truncate if request.HasField("truncate") else None,
            normalize_vectors=request.normalize if request.HasField("normalize") else None,
            deadline=None if remaining is None else self._clock() + remaining,
        )
        # Filled in place: one message tree, no intermediate sub-messages copied into it.
        response = pb.EmbedResponse(model=result.model, dimension=result.dimension)
        embeddings = response.embeddings
        for row in result.vectors.tolist():
            embeddings.add().values.extend(row)
        usage = response.usage
        usage.tokens = result.tokens
        usage.truncated_inputs = result.truncated_inputs
        usage.cache_hits = result.cache_hits
        timings = response.timings
        timings.queue.FromNanoseconds(int(result.queue_seconds * 1e9))
        timings.tokenization.FromNanoseconds(int(result.tokenize_seconds * 1e9))
        timings.inference.FromNanoseconds(int(result.inference_seconds * 1e9))
        return response

    async def GetModelInfo(self, request: pb.GetModelInfoRequest, context) -> pb.GetModelInfoResponse:
        core = self._ready_core()
        max_tokens, max_size, max_queue = core.batching_limits()
        limits = pb.BatchingLimits(max_batch_tokens=max_tokens, max_batch_size=max_size, max_queue_size=max_queue)
        return pb.GetModelInfoResponse(
            default_model=core.default_model,
            models=[
                pb.ModelInfo(name=spec.name, dimension=spec.dimension, max_input_tokens=spec.max_input_tokens,
                             pooling=_POOLING.get(spec.pooling, pb.POOLING_UNSPECIFIED),
                             normalize_default=spec.normalize_default, execution_provider=spec.execution_provider,
                             batching=limits, source=str(spec.source))
                for spec in core.specs()
            ],
        )
