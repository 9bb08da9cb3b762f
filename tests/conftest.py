"""Shared fixtures: a real embedding server (session-wide: the model loads once) and real gateways.

Everything runs for real on 127.0.0.1 with port 0: gRPC servers, the ONNX model, the Qdrant engines.
"""

from __future__ import annotations

import os
import pathlib

import pytest

from searchgw.embedder.server import EmbedderServer, create_server as create_embedder
from searchgw.embedder.settings import EmbedderSettings

#: Where the default model's ONNX export is cached between test runs (built on first use).
MODEL_CACHE = pathlib.Path(os.environ.get("SEARCHGW_TEST_MODEL_CACHE", pathlib.Path.home() / ".cache" / "searchgw"))


def embedder_settings(**overrides) -> EmbedderSettings:
    values = dict(port=0, metrics_port=0, cache_dir=MODEL_CACHE, intra_op_threads=2, grace_period_s=1.0,
                  log_format="text")
    values.update(overrides)
    return EmbedderSettings(**values)


@pytest.fixture(scope="session")
async def embedder_server() -> EmbedderServer:
    server = await create_embedder(embedder_settings())
    await server.load()
    yield server
    await server.stop(0)


@pytest.fixture(scope="session")
def embedding_models(embedder_server):
    """The loaded models, to start more embedders without loading the weights again."""
    return embedder_server.core.models()


@pytest.fixture
async def rig(tmp_path, embedder_server):
    """Start real gateways (edge or qdrant backend, fault-injectable) on the session's embedder."""
    from tests.rigs import GatewayRig

    rig = GatewayRig(tmp_path, embedder_server.address)
    yield rig
    await rig.close()
