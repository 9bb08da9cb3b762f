"""Every routed search's ending is recorded for the arm that made the attempt (issue 9, item 1).

On a live gateway (real gRPC deadlines and cancellations, qdrant-edge, the real model): what the
rollout controller's `record` receives when an arm answers, fails, is cut off by the caller's
deadline, is left by its caller, or answers too late. Time is injected (see `outcome_rig`); the
deadlines are real gRPC deadlines.
"""

from __future__ import annotations

import asyncio

import pytest

from searchgw.embedder.client import EmbedderClient
from searchgw.embedder.model.catalog import default_model_dir
from searchgw.embedder.server import create_server as create_embedder
from searchgw.gateway.backends import FaultKind
from searchgw.gateway.remote_embedder import RemoteEmbedder
from searchgw.gateway.routing import Arm
from searchgw.v1 import common_pb2
from tests.conftest import MODEL_CACHE, embedder_settings
from tests.gateway.outcome_rig import (
    PATIENT_TIMEOUT_S,
    OutcomeRig,
    key_on,
    search_error,
    start_rollout,
    two_arms,
    unit_vector,
)

CALLER_TIMEOUT_S = 0.3


@pytest.fixture
async def outcome_rig(tmp_path, embedder_server):
    rig = OutcomeRig(tmp_path, embedder_server.address)
    yield rig
    await rig.close()


async def test_a_canary_that_misses_every_callers_deadline_has_every_call_recorded_deadline_exceeded(outcome_rig):
    server, client, recorded = await outcome_rig.start()
    await two_arms(client)
    await start_rollout(client, 100)
    server.backend.inject("docs-v2", delay=1.0, operations={"search"})  # held by the stall until cancelled
    keys = [f"user-{i}" for i in range(12)]
    errors = await asyncio.gather(*(search_error(client.search("docs", vector=unit_vector(), routing_key=key,
                                                               timeout=CALLER_TIMEOUT_S)) for key in keys))
    assert {e.code_name for e in errors} == {"DEADLINE_EXCEEDED"}
    calls = await recorded.wait_for(len(keys))
    assert [(c.rollout, c.arm, c.code_name) for c in calls] == [("r1", Arm.CANARY, "DEADLINE_EXCEEDED")] * len(keys)
    assert sorted(c.key for c in calls) == sorted(keys)
    assert all(c.latency_s > 0 for c in calls)
    assert outcome_rig.stall.held == 0  # every stalled search was cancelled, none left running


async def test_a_call_the_client_cancels_before_its_deadline_is_recorded_cancelled(outcome_rig):
    server, client, recorded = await outcome_rig.start()
    await two_arms(client)
    await start_rollout(client, 100)
    server.backend.inject("docs-v2", delay=1.0, operations={"search"})
    call = asyncio.create_task(client.search("docs", vector=unit_vector(), routing_key="leaver",
                                             timeout=PATIENT_TIMEOUT_S))
    await outcome_rig.stall.wait_held(1)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    [only] = await recorded.wait_for(1)
    assert (only.rollout, only.arm, only.code_name, only.key) == ("r1", Arm.CANARY, "CANCELLED", "leaver")


@pytest.mark.parametrize("arm", [Arm.CANARY, Arm.PRIMARY])
async def test_an_answer_ready_after_the_deadline_is_recorded_deadline_exceeded_and_not_sent(outcome_rig, arm):
    server, client, recorded = await outcome_rig.start()
    await two_arms(client)
    await start_rollout(client, 50)
    physical = "docs-v2" if arm is Arm.CANARY else "docs-v1"
    server.backend.inject(physical, delay=1.0, operations={"search"})
    outcome_rig.stall.jump_s = 2 * PATIENT_TIMEOUT_S  # the search "takes" longer than the caller waits
    key = key_on(server, arm)
    error = await search_error(client.search("docs", vector=unit_vector(), routing_key=key,
                                             timeout=PATIENT_TIMEOUT_S))
    assert error.code_name == "DEADLINE_EXCEEDED"  # the gateway's answer: its deadline passed before it
    [only] = await recorded.wait_for(1)
    assert (only.arm, only.code_name, only.key) == (arm, "DEADLINE_EXCEEDED", key)
    assert only.latency_s >= 2 * PATIENT_TIMEOUT_S  # the attempt's elapsed time on the gateway's clock


async def test_a_late_fallback_answer_is_not_sent_and_is_not_recorded_for_primary(outcome_rig):
    server, client, recorded = await outcome_rig.start()
    await two_arms(client)
    await start_rollout(client, 100)
    server.backend.inject("docs-v2", error=FaultKind.UNAVAILABLE, operations={"search"})
    server.backend.inject("docs-v1", delay=1.0, operations={"search"})
    outcome_rig.stall.jump_s = 2 * PATIENT_TIMEOUT_S
    error = await search_error(client.search("docs", vector=unit_vector(), routing_key="k",
                                             timeout=PATIENT_TIMEOUT_S))
    assert error.code_name == "DEADLINE_EXCEEDED"
    assert [(c.arm, c.code_name) for c in recorded.calls] == [(Arm.CANARY, "UNAVAILABLE")]


async def test_a_canary_failure_that_primary_answers_is_recorded_for_the_canary_only(outcome_rig):
    server, client, recorded = await outcome_rig.start()
    await two_arms(client)
    await start_rollout(client, 50)
    server.backend.inject("docs-v2", error=FaultKind.UNAVAILABLE, operations={"search"})
    canary_key, primary_key = key_on(server, Arm.CANARY), key_on(server, Arm.PRIMARY)
    fallback = await client.search("docs", vector=unit_vector(), routing_key=canary_key)
    routed = await client.search("docs", vector=unit_vector(), routing_key=primary_key)
    assert (fallback.route.arm, fallback.route.collection, fallback.route.fallback) == \
        (common_pb2.ARM_PRIMARY, "docs-v1", True)
    assert (routed.route.arm, routed.route.fallback) == (common_pb2.ARM_PRIMARY, False)
    assert [(c.arm, c.code_name, c.key) for c in recorded.calls] == \
        [(Arm.CANARY, "UNAVAILABLE", canary_key), (Arm.PRIMARY, "OK", primary_key)]


async def test_forced_arm_calls_cut_off_by_their_deadline_stay_out_of_the_analysis(outcome_rig):
    server, client, recorded = await outcome_rig.start()
    await two_arms(client)
    await start_rollout(client, 100)
    server.backend.inject("docs-v2", delay=1.0, operations={"search"})
    error = await search_error(client.search("docs", vector=unit_vector(), force_arm="canary",
                                             timeout=CALLER_TIMEOUT_S))
    assert error.code_name == "DEADLINE_EXCEEDED"
    await outcome_rig.stall.wait_held(0, at_most=True)  # the server's attempt was cancelled too
    assert recorded.calls == []


async def test_resource_exhausted_from_the_embedder_for_the_canarys_model_falls_back_and_is_recorded(
        outcome_rig, embedding_models):
    """A real RESOURCE_EXHAUSTED: the canary's model is served by a second embedder whose rate limit
    allows one call (spent on the model lookup when the canary collection is created)."""
    canary_model = "minilm-canary"
    models = [*embedding_models, await asyncio.to_thread(_load_renamed_default_model, canary_model)]
    limited = await create_embedder(embedder_settings(rate_limit_rps=0.001, rate_limit_burst=1))
    await limited.load(models)
    ample_client, limited_client = EmbedderClient(outcome_rig.embedder_address), EmbedderClient(limited.address)
    try:
        embedder = ModelDispatch(default=RemoteEmbedder(ample_client, timeout_s=10.0),
                                 by_model={canary_model: RemoteEmbedder(limited_client, timeout_s=10.0)})
        server, client, recorded = await outcome_rig.start(embedder=embedder)
        await two_arms(client, canary_model=canary_model)
        await start_rollout(client, 100)
        answer = await client.search("docs", text="how do I roll back a canary?", routing_key="u1")
        assert (answer.route.arm, answer.route.collection, answer.route.fallback) == \
            (common_pb2.ARM_PRIMARY, "docs-v1", True)
        assert [(c.arm, c.code_name, c.key) for c in recorded.calls] == [(Arm.CANARY, "RESOURCE_EXHAUSTED", "u1")]
        fallbacks = server.metrics.registry.get_sample_value("searchgw_canary_fallbacks_total", {"collection": "docs"})
        assert fallbacks == 1
    finally:
        await ample_client.close()
        await limited_client.close()
        await limited.stop(0)


def _load_renamed_default_model(name: str):
    from searchgw.embedder.model.runtime import EmbeddingModel  # noqa: PLC0415

    return EmbeddingModel.load(default_model_dir(MODEL_CACHE), name, intra_op_threads=1)


class ModelDispatch:
    """TextEmbedder that sends each model's texts to the embedder serving it (`default` otherwise)."""

    def __init__(self, *, default: RemoteEmbedder, by_model: dict[str, RemoteEmbedder]) -> None:
        self._default = default
        self._by_model = by_model

    def _for(self, model: str) -> RemoteEmbedder:
        return self._by_model.get(model, self._default)

    async def embed(self, texts, *, model, field, deadline, fields=None):
        return await self._for(model).embed(texts, model=model, field=field, deadline=deadline, fields=fields)

    async def chunk(self, texts, *, model, options, fields, options_field, deadline):
        return await self._for(model).chunk(texts, model=model, options=options, fields=fields,
                                            options_field=options_field, deadline=deadline)

    async def default_model(self) -> str:
        return await self._default.default_model()

    async def dimension_of(self, model: str) -> int:
        return await self._for(model).dimension_of(model)

