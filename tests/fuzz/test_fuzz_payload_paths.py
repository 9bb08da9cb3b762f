"""Payload paths: the gateway's check is never wider than the engine (fuzzed with Hypothesis; the
example-based cases are in tests/gateway/test_input_limits.py)."""

from __future__ import annotations

import qdrant_edge as qe
from hypothesis import given
from hypothesis import strategies as st

from searchgw.gateway.rules import check_key
from searchgw.errors import InvalidArgument
from tests.fuzz import strategies as fz


def _engine_accepts(key: str) -> bool:
    try:
        qe.FieldCondition(key=key, match=qe.MatchValue("x"))
    except ValueError:
        return False
    return True


@fz.fuzz_settings(400)
@given(key=st.one_of(st.text(st.sampled_from('ab9_-.[]"\\ éा字\x00'), max_size=12), st.text(max_size=8)))
def test_every_payload_path_the_check_accepts_the_engine_accepts(key):
    try:
        check_key("key", key)
    except InvalidArgument:
        return
    assert _engine_accepts(key), key
