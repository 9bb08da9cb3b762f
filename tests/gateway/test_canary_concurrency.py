"""The canary's concurrency limit per rollout (issue 9, item 5): the overflow is answered by primary,
counted as a fallback and recorded for the canary as RESOURCE_EXHAUSTED.

A live gateway (real gRPC, qdrant-edge); the canary's searches are held in the fault injector's stall
until the test releases them, so "in flight" is exact and nothing sleeps. What the limit buys under
load is measured in bench/bench_slow_canary.py, not here.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from searchgw.gateway.core import CanarySlots
from searchgw.gateway.routing import Arm, RouteDecision
from searchgw.gateway.settings import GatewaySettings
from searchgw.errors import ResourceExhausted
from searchgw.settings import SettingsError
from searchgw.v1 import common_pb2
from tests.gateway.outcome_rig import OutcomeRig, search_error, start_rollout, two_arms, unit_vector


@pytest.fixture
async def outcome_rig(tmp_path, embedder_server):
    rig = OutcomeRig(tmp_path, embedder_server.address)
    yield rig
    await rig.close()


#: Calls that should be answered at once get this deadline, so that a broken limit fails the test
#: instead of hanging it on the stall.
ANSWER_AT_ONCE_S = 10.0


def fallbacks_of(server, collection: str = "docs") -> float:
    return server.metrics.registry.get_sample_value("searchgw_canary_fallbacks_total", {"collection": collection}) or 0


async def test_searches_over_the_canary_limit_are_answered_by_primary_and_recorded_resource_exhausted(outcome_rig):
    server, client, recorded = await outcome_rig.start(canary_max_concurrency=2)
    await two_arms(client)
    await start_rollout(client, 100)
    server.backend.inject("docs-v2", delay=1.0, operations={"search"})  # canary searches wait in the stall
    held = [asyncio.create_task(client.search("docs", vector=unit_vector(), routing_key=f"held-{i}"))
            for i in range(2)]
    await outcome_rig.stall.wait_held(2)
    overflow = await asyncio.gather(*(client.search("docs", vector=unit_vector(), routing_key=f"over-{i}",
                                                                    timeout=ANSWER_AT_ONCE_S)
                                      for i in range(3)))
    assert {(r.route.arm, r.route.collection, r.route.fallback) for r in overflow} == \
        {(common_pb2.ARM_PRIMARY, "docs-v1", True)}
    assert [(c.rollout, c.arm, c.code_name) for c in recorded.calls] == [("r1", Arm.CANARY, "RESOURCE_EXHAUSTED")] * 3
    assert sorted(c.key for c in recorded.calls) == ["over-0", "over-1", "over-2"]
    assert fallbacks_of(server) == 3
    assert server.core.canary_slots.in_flight("r1") == 2

    outcome_rig.stall.release()
    answered = await asyncio.gather(*held)
    assert {(r.route.arm, r.route.collection, r.route.fallback) for r in answered} == \
        {(common_pb2.ARM_CANARY, "docs-v2", False)}
    assert [c.code_name for c in recorded.calls[3:]] == ["OK", "OK"]
    assert server.core.canary_slots.in_flight("r1") == 0
    after = await client.search("docs", vector=unit_vector(), routing_key="after")  # the slots are free again
    assert after.route.arm == common_pb2.ARM_CANARY


async def test_a_cancelled_canary_search_gives_its_slot_back(outcome_rig):
    server, client, recorded = await outcome_rig.start(canary_max_concurrency=1)
    await two_arms(client)
    await start_rollout(client, 100)
    server.backend.inject("docs-v2", delay=1.0, operations={"search"})
    error = await search_error(client.search("docs", vector=unit_vector(), routing_key="gone", timeout=0.3))
    assert error.code_name == "DEADLINE_EXCEEDED"
    await recorded.wait_for(1)
    assert server.core.canary_slots.in_flight("r1") == 0
    server.backend.clear("docs-v2")
    answer = await client.search("docs", vector=unit_vector(), routing_key="next")
    assert (answer.route.arm, answer.route.fallback) == (common_pb2.ARM_CANARY, False)


async def test_without_fallback_the_overflow_is_the_callers_resource_exhausted(outcome_rig):
    server, client, recorded = await outcome_rig.start(canary_max_concurrency=1, canary_fallback=False)
    await two_arms(client)
    await start_rollout(client, 100)
    server.backend.inject("docs-v2", delay=1.0, operations={"search"})
    held = asyncio.create_task(client.search("docs", vector=unit_vector(), routing_key="held"))
    await outcome_rig.stall.wait_held(1)
    error = await search_error(client.search("docs", vector=unit_vector(), routing_key="over",
                                                            timeout=ANSWER_AT_ONCE_S))
    assert error.code_name == "RESOURCE_EXHAUSTED"
    assert [(c.arm, c.code_name, c.key) for c in recorded.calls] == [(Arm.CANARY, "RESOURCE_EXHAUSTED", "over")]
    assert fallbacks_of(server) == 0
    outcome_rig.stall.release()
    assert (await held).route.arm == common_pb2.ARM_CANARY


async def test_a_limit_of_zero_lets_every_canary_search_through(outcome_rig):
    server, client, recorded = await outcome_rig.start(canary_max_concurrency=0)
    await two_arms(client)
    await start_rollout(client, 100)
    server.backend.inject("docs-v2", delay=1.0, operations={"search"})
    held = [asyncio.create_task(client.search("docs", vector=unit_vector(), routing_key=f"k{i}")) for i in range(40)]
    await outcome_rig.stall.wait_held(40)
    outcome_rig.stall.release()
    answered = await asyncio.gather(*held)
    assert {r.route.arm for r in answered} == {common_pb2.ARM_CANARY}
    assert {c.code_name for c in recorded.calls} == {"OK"} and len(recorded.calls) == 40


def decision(arm: Arm, share: float, rollout: str = "r1") -> RouteDecision:
    return RouteDecision(arm, f"{rollout}-{arm.value}", rollout, True, f"{rollout}-primary", share)


def test_slots_are_counted_per_rollout_and_given_back():
    slots = CanarySlots(1)
    with slots.hold(decision(Arm.CANARY, 1.0, "r1")), slots.hold(decision(Arm.CANARY, 1.0, "r2")):
        assert (slots.in_flight("r1"), slots.in_flight("r2")) == (1, 1)
        with pytest.raises(ResourceExhausted, match="canary-max-concurrency"), slots.hold(decision(Arm.CANARY, 1.0)):
            pass
        assert slots.in_flight("r1") == 1
    assert (slots.in_flight("r1"), slots.in_flight("r2")) == (0, 0)


def test_a_burst_split_by_the_weight_is_not_refused_but_a_canary_holding_more_than_twice_its_share_is():
    slots = CanarySlots(4)
    with contextlib.ExitStack() as held:
        for _ in range(100):  # a burst of 200 at 50 %: about 100 on each arm
            held.enter_context(slots.hold(decision(Arm.PRIMARY, 0.5)))
            held.enter_context(slots.hold(decision(Arm.CANARY, 0.5)))
        assert (slots.in_flight("r1", Arm.PRIMARY), slots.in_flight("r1")) == (100, 100)
        for _ in range(100):  # a slow canary piles up: twice its share is the limit
            held.enter_context(slots.hold(decision(Arm.CANARY, 0.5)))
        with pytest.raises(ResourceExhausted):
            held.enter_context(slots.hold(decision(Arm.CANARY, 0.5)))
    assert slots.limit("r1", 0.1) == 4  # nothing in flight: the floor
    with contextlib.ExitStack() as held:
        for _ in range(90):
            held.enter_context(slots.hold(decision(Arm.PRIMARY, 0.1)))
        assert slots.limit("r1", 0.1) == pytest.approx(20.0)  # 2 × (0.1 / 0.9) × 90
        assert slots.limit("r1", 1.0) == 4  # at 100 % primary has no share to compare with: the floor
        assert slots.limit("r2", 0.1) == 4  # per rollout


def test_the_limit_is_a_setting_that_must_not_be_negative(tmp_path):
    assert GatewaySettings(data_dir=tmp_path).canary_max_concurrency > 0  # on by default
    assert GatewaySettings(data_dir=tmp_path, canary_max_concurrency=0).canary_max_concurrency == 0
    with pytest.raises(SettingsError, match="--canary-max-concurrency"):
        GatewaySettings(data_dir=tmp_path, canary_max_concurrency=-1)
