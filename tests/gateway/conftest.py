"""Fixtures of the VectorBackend tests (test_backend_*.py): both real engines, and a fault-injecting wrapper."""

from __future__ import annotations

import pytest

from searchgw.gateway.backends import EdgeBackend, FaultInjectingBackend, QdrantBackend, VectorBackend
from tests.gateway.backend_helpers import RecordingSleep, filled


@pytest.fixture(params=["edge", "qdrant"])
async def backend(request, tmp_path) -> VectorBackend:
    if request.param == "edge":
        opened: VectorBackend = EdgeBackend(tmp_path / "edge")
    else:
        opened = QdrantBackend(":memory:")
    yield opened
    await opened.close()


@pytest.fixture
def sleeper() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
async def faulty(tmp_path, sleeper) -> FaultInjectingBackend:
    wrapped = FaultInjectingBackend(EdgeBackend(tmp_path), sleep=sleeper)
    await filled(wrapped, count=5, name="primary")
    await filled(wrapped, count=5, name="canary")
    yield wrapped
    await wrapped.close()
