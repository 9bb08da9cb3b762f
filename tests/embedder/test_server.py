"""The embedding server over real gRPC on loopback with the real model."""

from __future__ import annotations

import asyncio
import urllib.request

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from searchgw.embedder.server import SERVICE_NAME, create_server
from searchgw.v1 import embed_service_pb2 as pb
from searchgw.v1 import embed_service_pb2_grpc as pb_grpc
from tests.conftest import embedder_settings

LONG_TEXT = "The quick brown fox jumps over the lazy dog near the riverbank. " * 60


@pytest.fixture(scope="module")
async def stub(embedder_server):
    async with grpc.aio.insecure_channel(embedder_server.address) as channel:
        yield pb_grpc.EmbedServiceStub(channel)


def vectors(response: pb.EmbedResponse) -> np.ndarray:
    return np.array([e.values for e in response.embeddings], dtype=np.float32)


async def test_embeddings_come_in_request_order_with_unit_length(stub):
    texts = ["first text", "a second, longer text about vector search", "third"]
    response = await stub.Embed(pb.EmbedRequest(texts=texts))
    got = vectors(response)
    assert got.shape == (3, 384) and response.dimension == 384
    assert response.model == "all-MiniLM-L6-v2"
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    for text, row in zip(texts, got):  # order: each row is its own text's embedding
        alone = vectors(await stub.Embed(pb.EmbedRequest(texts=[text])))[0]
        np.testing.assert_allclose(row, alone, atol=1e-5)
    assert response.usage.tokens > 0


async def test_a_paraphrase_scores_higher_than_an_unrelated_text(stub):
    texts = ["How do I reset my password?", "What are the steps to change my password?",
             "The cat sat on the warm windowsill all afternoon."]
    a, b, c = vectors(await stub.Embed(pb.EmbedRequest(texts=texts)))
    assert float(a @ b) > float(a @ c) + 0.3


async def test_a_text_alone_equals_the_same_text_inside_a_large_mixed_concurrent_batch(stub):
    probe = "canary analysis compares both arms on the same window"
    alone = vectors(await stub.Embed(pb.EmbedRequest(texts=[probe], truncate=True)))[0]
    fillers = [f"filler text number {i} " + "word " * (i % 50) for i in range(80)]
    calls = [stub.Embed(pb.EmbedRequest(texts=[text])) for text in fillers]
    calls.insert(40, stub.Embed(pb.EmbedRequest(texts=[probe + " "])))  # same tokens, not a cache hit
    big = stub.Embed(pb.EmbedRequest(texts=[*fillers[:30], probe, LONG_TEXT]))
    responses = await asyncio.gather(*calls, big)
    np.testing.assert_allclose(vectors(responses[40])[0], alone, atol=1e-5)
    np.testing.assert_allclose(vectors(responses[-1])[30], alone, atol=1e-5)


async def test_long_inputs_are_truncated_by_default_and_rejected_when_asked(stub):
    response = await stub.Embed(pb.EmbedRequest(texts=["short", LONG_TEXT]))
    assert response.usage.truncated_inputs == 1
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Embed(pb.EmbedRequest(texts=["short", LONG_TEXT], truncate=False))
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "texts[1]" in info.value.details() and "tokens" in info.value.details()


async def test_normalisation_can_be_turned_off(stub):
    raw = vectors(await stub.Embed(pb.EmbedRequest(texts=["unnormalised vector please"], normalize=False)))[0]
    assert abs(float(np.linalg.norm(raw)) - 1.0) > 1e-3


@pytest.mark.parametrize(
    ("texts", "field"),
    [([], "texts"), (["ok", "", "ok"], "texts[1]"), (["ok", "   "], "texts[1]")],
)
async def test_bad_input_is_invalid_argument_naming_the_field(stub, texts, field):
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Embed(pb.EmbedRequest(texts=texts))
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith(field + ":")


async def test_an_unknown_model_is_not_found(stub):
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Embed(pb.EmbedRequest(texts=["x"], model="no-such-model"))
    assert info.value.code() is grpc.StatusCode.NOT_FOUND


async def test_a_passed_deadline_is_deadline_exceeded(stub):
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Embed(pb.EmbedRequest(texts=[f"deadline text {i}" for i in range(200)]), timeout=0.001)
    assert info.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED


async def test_a_repeated_text_is_a_cache_hit_and_the_metrics_move(stub, embedder_server):
    text = "this sentence is embedded twice"
    first = await stub.Embed(pb.EmbedRequest(texts=[text]))
    second = await stub.Embed(pb.EmbedRequest(texts=[text]))
    assert (first.usage.cache_hits, second.usage.cache_hits) == (0, 1)
    np.testing.assert_array_equal(vectors(first), vectors(second))
    port = embedder_server.metrics_endpoint.port
    body = await asyncio.to_thread(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode())
    assert 'searchgw_embedder_requests_total{code="OK",rpc="Embed"}' in body
    assert "searchgw_embedder_cache_hits_total" in body
    assert "searchgw_embedder_batch_size_bucket" in body
    assert "searchgw_embedder_ready 1.0" in body


async def test_model_info_describes_the_served_model(stub):
    info = await stub.GetModelInfo(pb.GetModelInfoRequest())
    assert info.default_model == "all-MiniLM-L6-v2"
    [model] = info.models
    assert (model.dimension, model.max_input_tokens, model.pooling) == (384, 256, pb.POOLING_MEAN)
    assert model.normalize_default and model.execution_provider == "CPUExecutionProvider"
    assert model.batching.max_batch_size > 0


async def test_a_full_queue_answers_resource_exhausted(embedding_models):
    server = await create_server(embedder_settings(max_queue_size=2, max_batch_size=1, cache_size=0))
    await server.load(embedding_models)
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            stub = pb_grpc.EmbedServiceStub(channel)
            calls = [stub.Embed(pb.EmbedRequest(texts=[f"queued text {i} " + "pad " * 100]))
                     for i in range(24)]
            results = await asyncio.gather(*calls, return_exceptions=True)
        codes = {r.code() for r in results if isinstance(r, grpc.aio.AioRpcError)}
        assert codes == {grpc.StatusCode.RESOURCE_EXHAUSTED}
        assert any(isinstance(r, pb.EmbedResponse) for r in results)
    finally:
        await server.stop(0)


async def test_health_is_not_serving_until_loaded_and_again_when_the_worker_dies(embedding_models):
    server = await create_server(embedder_settings())
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            check = health_pb2.HealthCheckRequest(service=SERVICE_NAME)
            assert (await health.Check(check)).status == health_pb2.HealthCheckResponse.NOT_SERVING
            stub = pb_grpc.EmbedServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.Embed(pb.EmbedRequest(texts=["too early"]))
            assert info.value.code() is grpc.StatusCode.UNAVAILABLE
            await server.load(embedding_models)
            assert (await health.Check(check)).status == health_pb2.HealthCheckResponse.SERVING
            # A real fault: the inference thread pool goes away, so every model run fails.
            server.core._inference.shutdown(wait=True)
            for i in range(3):
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await stub.Embed(pb.EmbedRequest(texts=[f"after the worker died {i}"]))
                assert info.value.code() is grpc.StatusCode.UNAVAILABLE
            await asyncio.sleep(0)  # the health flip is scheduled on the loop
            assert (await health.Check(check)).status == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        await server.stop(0)


async def test_two_model_runners_answer_like_one(embedding_models, stub):
    """--model-runners 2: a second onnxruntime session runs batches beside the first; concurrent
    callers get the same vectors as from the one-session server."""
    server = await create_server(embedder_settings(model_runners=2, intra_op_threads=1, cache_size=0))
    await server.load(embedding_models)
    try:
        texts = [f"runner check {i} " + "word " * (i % 7) for i in range(24)]
        async with grpc.aio.insecure_channel(server.address) as channel:
            two = pb_grpc.EmbedServiceStub(channel)
            responses = await asyncio.gather(*(two.Embed(pb.EmbedRequest(texts=[text])) for text in texts))
        expected = vectors(await stub.Embed(pb.EmbedRequest(texts=texts)))
        np.testing.assert_allclose(np.concatenate([vectors(r) for r in responses]), expected, atol=1e-5)
    finally:
        await server.stop(0)
