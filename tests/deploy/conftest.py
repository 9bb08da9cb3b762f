"""Fixtures of the deploy tests."""

from __future__ import annotations

import pytest

from tests.deploy.manifests import ExportedMetrics


@pytest.fixture(scope="module")
def exported() -> ExportedMetrics:
    return ExportedMetrics.from_servers()
