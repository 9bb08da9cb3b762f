"""The fault-injecting backend wrapper: injected errors and delays, per collection and operation."""

from __future__ import annotations

import pytest

from searchgw.errors import Unavailable
from searchgw.gateway.backends import FaultKind, Point, SearchQuery
from tests.gateway.backend_helpers import unit_vectors


QUERY = SearchQuery(vector=unit_vectors(1)[0], limit=2)


@pytest.mark.parametrize(("kind", "error"), [(FaultKind.UNAVAILABLE, Unavailable),
                                             (FaultKind.EXCEPTION, RuntimeError)])
async def test_an_injected_fault_fails_only_its_collection_until_cleared(faulty, kind, error):
    faulty.inject("canary", error=kind)
    with pytest.raises(error):
        await faulty.search("canary", QUERY)
    with pytest.raises(error):
        await faulty.upsert("canary", [Point(id=9, vector=unit_vectors(1)[0])])
    assert len(await faulty.search("primary", QUERY)) == 2
    assert faulty.hits["canary"] == 2
    faulty.clear("canary")
    assert len(await faulty.search("canary", QUERY)) == 2
    assert await faulty.count("canary") == 5  # the refused upsert wrote nothing


async def test_a_fault_can_be_limited_to_some_operations(faulty):
    faulty.inject("canary", error=FaultKind.UNAVAILABLE, operations={"search"})
    await faulty.upsert("canary", [Point(id=9, vector=unit_vectors(1)[0])])
    assert await faulty.count("canary") == 6
    with pytest.raises(Unavailable):
        await faulty.search("canary", QUERY)
    faulty.clear()
    await faulty.search("canary", QUERY)


async def test_an_injected_delay_waits_then_answers(faulty, sleeper):
    faulty.inject("canary", delay=0.25)
    assert await faulty.search("canary", QUERY) == await faulty.inner.search("canary", QUERY)
    assert sleeper.slept == [0.25]


async def test_a_fault_needs_something_to_do(faulty):
    with pytest.raises(ValueError):
        faulty.inject("canary")
    with pytest.raises(ValueError):
        faulty.inject("canary", error=FaultKind.UNAVAILABLE, operations={"serach"})
