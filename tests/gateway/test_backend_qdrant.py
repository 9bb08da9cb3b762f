"""What only the Qdrant backend (qdrant-client) has: local path mode, and an unreachable or silent server."""

from __future__ import annotations

import socket

import pytest

from searchgw.errors import Unavailable
from searchgw.gateway.backends import QdrantBackend, SearchQuery
from tests.gateway.backend_helpers import DIM, filled


# -- the Qdrant backend -------------------------------------------------------------------------
async def test_qdrant_local_path_mode_keeps_collections_and_the_embedding_model(tmp_path):
    backend = QdrantBackend(str(tmp_path / "qdrant"))
    await filled(backend, count=4)
    await backend.update_alias("docs", "c")
    await backend.close()
    reopened = QdrantBackend(str(tmp_path / "qdrant"))
    try:
        info = await reopened.get_collection("docs")
        assert (info.spec.embedding_model, info.points_count, info.aliases) == ("model-a", 4, ("docs",))
    finally:
        await reopened.close()


@pytest.mark.parametrize("prefer_grpc", [True, False], ids=["grpc", "rest"])
async def test_qdrant_server_that_refuses_connections_is_unavailable(prefer_grpc):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    backend = QdrantBackend(f"http://127.0.0.1:{port}", timeout=1, prefer_grpc=prefer_grpc)
    try:
        with pytest.raises(Unavailable):
            await backend.search("docs", SearchQuery(vector=[0.1] * DIM))
    finally:
        await backend.close()


async def test_qdrant_server_that_never_answers_times_out_as_unavailable():
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        backend = QdrantBackend(f"http://127.0.0.1:{silent.getsockname()[1]}", timeout=1, prefer_grpc=False)
        try:
            with pytest.raises(Unavailable):
                await backend.list_aliases()
        finally:
            await backend.close()
