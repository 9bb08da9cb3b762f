"""Generated and mutated requests against both RPCs of the live embedder (the session's server).

Whatever arrives, the answer is embeddings or a status that blames the request, error messages stay
small, and the embedder is still SERVING after each test's batch of examples.
"""

from __future__ import annotations

import math

import grpc
from hypothesis import given
from hypothesis import strategies as st

from searchgw.v1 import embed_service_pb2 as embed_pb
from tests.fuzz import strategies as fz
from tests.fuzz.conftest import TIMEOUT_S, assert_clients_fault


@fz.fuzz_settings(80)
@given(request=st.one_of(fz.embed_requests(), fz.embed_requests().flatmap(fz.mutated)))
async def test_embed_answers_every_request_with_a_clients_error_or_one_finite_vector_per_text(serving, request):
    try:
        response = await serving.embed.Embed(request, timeout=TIMEOUT_S)
    except grpc.aio.AioRpcError as exc:
        assert_clients_fault(exc)
        return
    assert len(response.embeddings) == len(request.texts)
    assert all(len(e.values) == response.dimension for e in response.embeddings)
    assert all(math.isfinite(v) for e in response.embeddings for v in e.values)


@fz.fuzz_settings(20)
@given(request=fz.mutated(embed_pb.GetModelInfoRequest()))
async def test_get_model_info_ignores_whatever_the_request_carries(serving, request):
    response = await serving.embed.GetModelInfo(request, timeout=TIMEOUT_S)
    assert response.default_model in {m.name for m in response.models}
