"""The embedder's settings that combine: runners and the threads of each onnxruntime session."""

from __future__ import annotations

import pytest

from searchgw.embedder.settings import EmbedderSettings
from searchgw.settings import SettingsError


def test_model_runners_share_the_cores_unless_threads_are_given(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    assert EmbedderSettings().threads_per_session() is None  # one session: onnxruntime's one per core
    assert EmbedderSettings(model_runners=2).threads_per_session() == 2
    assert EmbedderSettings(model_runners=8).threads_per_session() == 1
    assert EmbedderSettings(model_runners=2, intra_op_threads=3).threads_per_session() == 3
    with pytest.raises(SettingsError, match="--model-runners"):
        EmbedderSettings(model_runners=0)
