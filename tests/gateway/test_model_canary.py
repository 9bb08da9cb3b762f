"""Embedding-model canaries (issue 12, item 4): arms in different vector spaces get a defined behaviour.

A real gateway over gRPC, the real embedded engine, and a real embedder serving two models: the default
one and the same weights under another name (`minilm-canary`). Two models of one dimension are the case
where a raw vector sent to the wrong arm would not fail but answer from the wrong space — the silent
wrong answer this behaviour rules out. (A second model of another dimension would need more weights than
the test environment holds; the dimension rule is the same code path, and CreateRollout's check is
tested with a canary of another dimension below.)
"""

from __future__ import annotations

import asyncio

import pytest

from searchgw.embedder.client import EmbedderClient
from searchgw.embedder.model.catalog import default_model_dir
from searchgw.embedder.server import create_server as create_embedder
from searchgw.errors import FailedPrecondition, InvalidArgument
from searchgw.gateway.client import stage
from searchgw.gateway.rollout.model import check_arm_spaces
from searchgw.v1 import common_pb2
from tests.conftest import MODEL_CACHE, embedder_settings
from tests.gateway.test_gateway import PASSAGE_POINTS, policy, query_vector
from tests.rigs import GatewayRig

CANARY_MODEL = "minilm-canary"


def _renamed_default_model(name: str):
    from searchgw.embedder.model.runtime import EmbeddingModel  # noqa: PLC0415

    return EmbeddingModel.load(default_model_dir(MODEL_CACHE), name, intra_op_threads=1)


@pytest.fixture
async def model_rig(tmp_path, embedding_models):
    """A gateway whose embedder serves the default model and CANARY_MODEL; docs → docs-v1 (default model),
    docs-v2 (CANARY_MODEL), both holding PASSAGE_POINTS, and rollout r1 sending every keyed search to docs-v2."""
    models = [*embedding_models, await asyncio.to_thread(_renamed_default_model, CANARY_MODEL)]
    embedder = await create_embedder(embedder_settings())
    await embedder.load(models)
    rig = GatewayRig(tmp_path, embedder.address)
    try:
        server, client = await rig.start()
        await client.create_collection("docs-v1")
        await client.create_collection("docs-v2", embedding_model=CANARY_MODEL)
        for name in ("docs-v1", "docs-v2"):
            await client.upsert(name, PASSAGE_POINTS)
        await client.update_alias("docs", "docs-v1")
        await client.create_rollout("r1", "docs", "docs-v2", analysis=policy(), stages=[stage(100, 3600, 0)])
        yield rig, server, client
    finally:
        await rig.close()
        await embedder.stop(0)


async def count(server, name: str) -> int:
    return await server.backend.count(name)


async def test_a_raw_vector_query_is_served_by_primary_and_kept_out_of_the_analysis(model_rig):
    rig, server, client = model_rig
    answers = [await client.search("docs", vector=query_vector(), limit=3, routing_key=f"user-{i}")
               for i in range(20)]

    assert {(a.route.arm, a.route.collection, a.route.rollout) for a in answers} == \
        {(common_pb2.ARM_PRIMARY, "docs-v1", "r1")}  # every key, though the canary has 100 %
    counted = server.metrics.registry.get_sample_value("searchgw_model_canary_vector_queries_total",
                                                       {"collection": "docs"})
    assert counted == 20
    rig.clock.advance(10.0)
    await server.controller.tick()
    check = (await client.get_rollout("r1")).decisions[-1]
    assert check.primary.requests == 0 and check.canary.requests == 0  # none reached the analysis


async def test_a_text_query_is_embedded_with_the_canarys_model_and_analysed(model_rig):
    rig, server, client = model_rig
    answer = await client.search("docs", text="how long should bread dough rise?", limit=1, routing_key="user-1",
                                 with_payload=True)
    assert (answer.route.arm, answer.route.collection) == (common_pb2.ARM_CANARY, "docs-v2")
    assert answer.points[0].payload["n"] == 0  # the bread passage, found in the canary's own space
    rig.clock.advance(10.0)
    await server.controller.tick()
    assert (await client.get_rollout("r1")).decisions[-1].canary.requests == 1


async def test_a_forced_canary_arm_serves_a_raw_vector_query_as_asked(model_rig):
    _, _, client = model_rig
    answer = await client.search("docs", vector=query_vector(), limit=1, force_arm="canary")
    assert (answer.route.arm, answer.route.collection) == (common_pb2.ARM_CANARY, "docs-v2")


async def test_a_raw_vector_upsert_is_refused_naming_the_field_and_nothing_is_written(model_rig):
    _, server, client = model_rig
    before = (await count(server, "docs-v1"), await count(server, "docs-v2"))

    with pytest.raises(InvalidArgument) as info:
        await client.upsert("docs", [{"id": 500, "text": "a text point"}, {"id": 501, "vector": query_vector(1)}])

    assert info.value.field == "points[1].vector"
    assert "'docs-v1': 384-d, model 'all-MiniLM-L6-v2'" in info.value.message
    assert f"'docs-v2': 384-d, model '{CANARY_MODEL}'" in info.value.message and "send text" in info.value.message
    assert (await count(server, "docs-v1"), await count(server, "docs-v2")) == before


async def test_a_text_upsert_reaches_both_arms_each_in_its_own_space(model_rig):
    _, server, client = model_rig
    response = await client.upsert("docs", [{"id": 600, "text": "Violins and a cello play in the evening."}])
    assert sorted(response.collections) == ["docs-v1", "docs-v2"]
    for arm in ("primary", "canary"):
        hit = await client.search("docs", text="string quartet concert", limit=2, force_arm=arm)
        assert 600 in {p.id.num for p in hit.points}


async def test_create_rollout_refuses_a_canary_in_another_space_without_a_model(rig):
    server, client = await rig.start()
    await client.create_collection("docs-v1")
    await client.create_collection("docs-v3", dimension=8)  # vectors only, another dimension
    await client.update_alias("docs", "docs-v1")

    with pytest.raises(FailedPrecondition) as info:
        await client.create_rollout("r1", "docs", "docs-v3")

    assert info.value.reason == "INCOMPATIBLE_ARMS"
    assert info.value.message.startswith("rollout.canary_collection: 'docs-v3' holds 8-d vectors with no embedding "
                                         "model and 'docs-v1' holds 384-d vectors of model 'all-MiniLM-L6-v2'")
    assert info.value.metadata["field"] == "rollout.canary_collection"
    assert server.router.table("docs") is None


@pytest.mark.parametrize("primary, canary, model_canary", [
    ((384, "a"), (384, "a"), False),
    ((8, ""), (8, ""), False),  # vectors only on both sides, one space
    ((384, "a"), (384, "b"), True),
    ((384, "a"), (768, "b"), True),
])
def test_arms_in_one_space_or_both_naming_their_model_are_compatible(primary, canary, model_canary):
    assert check_arm_spaces("p", primary, "c", canary) is model_canary


@pytest.mark.parametrize("primary, canary", [((384, "a"), (8, "")), ((8, ""), (384, "a")), ((8, ""), (16, ""))])
def test_arms_in_different_spaces_need_both_models(primary, canary):
    with pytest.raises(FailedPrecondition, match="rollout.canary_collection: 'c' holds"):
        check_arm_spaces("p", primary, "c", canary)
