"""Experiments end to end: a real gateway (edge backend, the session's embedder) on loopback, driven by its
gRPC client. The experiment's clocks are the rig's ManualClock (folds happen when the test advances it)."""

from __future__ import annotations

import asyncio
import random

import pytest

from searchgw.errors import AlreadyExists, FailedPrecondition, InvalidArgument
from searchgw.v1 import experiment_service_pb2 as exp_pb

VECTOR = [1.0, 0.0, 0.5, -1.0]
ARMS = ("docs-a", "docs-b", "docs-c", "docs-d")  # control, then three variants


async def four_collections(client, alias: str = "docs") -> None:
    for name in ARMS:
        await client.create_collection(name, dimension=4)
        await client.upsert(name, [{"id": i, "vector": [float(i), 1.0, 0.0, 0.5]} for i in range(1, 6)])
    await client.update_alias(alias, ARMS[0])


def sample(server, name: str, labels: dict[str, str]) -> float:
    return server.metrics.registry.get_sample_value(name, labels) or 0.0


async def fold(rig, server) -> exp_pb.Experiment:
    rig.clock.advance(1.0)
    await server.experiments.tick()
    return await rig.clients[0].get_experiment("exp")


async def test_a_three_variant_experiment_under_load_names_the_variant_that_converts_better(rig):
    """Control and variants b, d convert 10 % of searches; variant c converts 30 %. 1,600 keyed searches
    through the real server (32 at a time), each conversion reported against its search id. The verdict
    says "no winner yet" at first and names c once the evidence is there; the other variants are not named."""
    server, client = await rig.start()
    await four_collections(client)
    created = await client.create_experiment("exp", "docs", [("b", "docs-b", 0), ("c", "docs-c", 0),
                                                             ("d", "docs-d", 0)], interval_s=1.0)
    assert created.state == exp_pb.Experiment.STATE_CREATED
    assert [a.split_bps for a in created.variants] == [2500, 2500, 2500] and created.control_split_bps == 2500
    started = await client.start_experiment("exp", "go")
    assert started.winner == "" and started.summary.startswith("no winner yet")
    rates = {"control": 0.10, "b": 0.10, "c": 0.30, "d": 0.10}
    rng = random.Random(1203)
    seen: dict[str, int] = {}
    reported = 0
    verdicts = []
    gate = asyncio.Semaphore(32)

    async def one(key: str) -> tuple[str, str]:
        async with gate:
            response = await client.search("docs", vector=VECTOR, limit=3, routing_key=key)
        assert response.route.experiment == "exp"
        assert response.search_id
        return response.route.variant, response.search_id

    for round_ in range(4):
        answers = await asyncio.gather(*(one(f"user-{round_}-{i}") for i in range(400)))
        outcomes = []
        for variant, search_id in answers:
            seen[variant] = seen.get(variant, 0) + 1
            outcomes.append((search_id, "click"))
            if rng.random() < rates[variant]:
                outcomes.append((search_id, "conversion", 12.5))
        response = await client.report_outcomes(outcomes)
        assert response.accepted == len(outcomes)
        reported += sum(1 for o in outcomes if o[1] == "conversion")
        verdicts.append(await fold(rig, server))

    assert set(seen) == {"control", "b", "c", "d"} and all(count > 300 for count in seen.values()), seen
    final = verdicts[-1]
    print("\n".join(f"after {400 * (i + 1)} searches: {v.summary}" for i, v in enumerate(verdicts)))
    assert final.winner == "c", final.summary
    assert final.summary.startswith("winner c: conversion per search")
    assert verdicts[0].winner in ("", "c")  # never a wrong winner on the way
    assert all(v.winner in ("", "c") for v in verdicts)
    statuses = {v.arm: v.status for v in final.verdicts}
    assert statuses["c"] == exp_pb.VariantVerdict.STATUS_BETTER
    assert statuses["b"] != exp_pb.VariantVerdict.STATUS_BETTER and statuses["d"] != exp_pb.VariantVerdict.STATUS_BETTER
    better = next(t for t in next(v for v in final.verdicts if v.arm == "c").tests if t.name == "goal_better")
    assert better.alpha == pytest.approx(0.05 / 3) and better.p_value <= better.alpha and better.lower > 1.0
    # GetExperiment and Prometheus show the same counts
    arms = {a.arm: a for a in final.arms}
    assert {name: arms[name].searches for name in seen} == seen
    conversions = {name: next(o.count for o in arms[name].outcomes if o.kind == "conversion") for name in seen}
    assert sum(conversions.values()) == reported
    assert next(o.value_sum for o in arms["c"].outcomes if o.kind == "conversion") == 12.5 * conversions["c"]
    for name in seen:
        assert sample(server, "searchgw_experiment_searches_total", {"experiment": "exp", "arm": name,
                                                                      "code": "OK"}) == seen[name]
        assert sample(server, "searchgw_experiment_outcomes_total", {
            "experiment": "exp", "arm": name, "kind": "conversion", "status": "accepted"}) == conversions[name]
    assert sample(server, "searchgw_experiment_winner", {"experiment": "exp", "arm": "c"}) == 1
    # conclude with the winner, through the alias switch
    concluded = await client.conclude_experiment("exp", promote=True, reason="c converts better")
    assert concluded.state == exp_pb.Experiment.STATE_CONCLUDED and concluded.concluded_arm == "c" and concluded.promoted
    assert (await client.list_aliases())["docs"] == "docs-c"
    after = await client.search("docs", vector=VECTOR, routing_key="user-0-0")
    assert after.route.experiment == "" and after.route.collection == "docs-c" and after.search_id == ""


async def test_outcomes_are_accepted_once_per_kind_within_the_window_and_never_for_a_forged_id(rig):
    server, client = await rig.start(manual_wall_clock=True, outcome_ttl_s=60.0)
    await four_collections(client)
    await client.create_experiment("exp", "docs", ["docs-b"])
    await client.start_experiment("exp")
    search_id = (await client.search("docs", vector=VECTOR, routing_key="k1")).search_id
    statuses = (await client.report_outcomes([(search_id, "click"), (search_id, "click"),
                                              (search_id, "conversion")])).results
    assert [r.status for r in statuses] == [exp_pb.OutcomeResult.STATUS_ACCEPTED,
                                            exp_pb.OutcomeResult.STATUS_DUPLICATE,
                                            exp_pb.OutcomeResult.STATUS_ACCEPTED]
    forged = search_id[:-3] + ("AAA" if search_id[-3:] != "AAA" else "BBB")
    with pytest.raises(InvalidArgument) as refused:
        await client.report_outcomes([(search_id, "conversion"), (forged, "click")])
    assert refused.value.field == "outcomes[1].search_id"
    with pytest.raises(InvalidArgument) as refused:
        await client.report_outcomes([(search_id, "purchase")])
    assert refused.value.field == "outcomes[0].kind"
    with pytest.raises(InvalidArgument) as refused:
        await client.report_outcomes([(search_id, "click", float("nan"))])
    assert refused.value.field == "outcomes[0].value"
    late = (await client.search("docs", vector=VECTOR, routing_key="k2")).search_id
    rig.clock.advance(61.0)
    assert (await client.report_outcomes([(late, "click")])).results[0].status == exp_pb.OutcomeResult.STATUS_EXPIRED
    fresh = (await client.search("docs", vector=VECTOR, routing_key="k3")).search_id
    await client.stop_experiment("exp", "done")
    assert (await client.report_outcomes([(fresh, "click")])).results[0].status == exp_pb.OutcomeResult.STATUS_ENDED
    experiment = await client.get_experiment("exp")
    clicks = sum(o.count for a in experiment.arms for o in a.outcomes if o.kind == "click")
    assert clicks == 1  # the duplicate, the refused reports, the expired and the ended ones never counted


async def test_an_experiment_and_a_rollout_never_hold_one_alias_at_once_nor_is_an_arm_deleted(rig):
    server, client = await rig.start()
    await four_collections(client)
    await client.create_experiment("exp", "docs", ["docs-b"])
    with pytest.raises(FailedPrecondition) as refused:
        await client.create_rollout("r1", "docs", "docs-c")
    assert refused.value.reason == "EXPERIMENT_ACTIVE" and "exp" in refused.value.message
    with pytest.raises(AlreadyExists):
        await client.create_experiment("exp2", "docs", ["docs-c"])
    for delete in (lambda: client.delete_collection("docs-b"), lambda: client.update_alias("docs", "docs-c")):
        with pytest.raises(FailedPrecondition) as refused:
            await delete()  # an arm's collection, or the alias, while the experiment holds them
        assert refused.value.reason == "EXPERIMENT_ACTIVE"
    await client.stop_experiment("exp")
    await client.create_rollout("r1", "docs", "docs-c")
    with pytest.raises(FailedPrecondition) as refused:
        await client.create_experiment("exp3", "docs", ["docs-b"])
    assert refused.value.reason == "ROLLOUT_ACTIVE" and "r1" in refused.value.message


async def test_writes_and_payload_indexes_on_the_alias_reach_every_arm_while_the_experiment_holds_it(rig):
    server, client = await rig.start()
    await four_collections(client)
    await client.create_experiment("exp", "docs", ["docs-b", "docs-c"])
    await client.upsert("docs", [{"id": 99, "vector": [9.0, 9.0, 9.0, 9.0]}])
    for name in ARMS[:3]:
        assert (await client.get_collection(name)).points_count == 6, name
    assert (await client.get_collection("docs-d")).points_count == 5  # not in the experiment
    await client.delete("docs", ids=[99])
    for name in ARMS[:3]:
        assert (await client.get_collection(name)).points_count == 5, name
    # a payload index on the alias reaches every arm too (filters and ordering behave alike on each)
    from searchgw.v1 import collection_service_pb2 as coll_pb
    await client.create_payload_index("docs", "tag", coll_pb.PAYLOAD_INDEX_TYPE_KEYWORD)
    for name in ARMS[:3]:
        assert [i.key for i in (await client.get_collection(name)).payload_indexes] == ["tag"], name
    assert not (await client.get_collection("docs-d")).payload_indexes


async def test_a_key_keeps_its_arm_control_serves_while_paused_and_the_experiment_survives_a_restart(rig):
    server, client = await rig.start()
    await four_collections(client)
    await client.create_experiment("exp", "docs", ["docs-b", "docs-c"], interval_s=1.0)
    before = await client.search("docs", vector=VECTOR, routing_key="k")
    assert before.route.variant == "control" and before.search_id == ""  # CREATED: control, uncounted
    await client.start_experiment("exp")
    arms = {}
    for i in range(60):
        first = await client.search("docs", vector=VECTOR, routing_key=f"key-{i}")
        again = await client.search("docs", vector=VECTOR, routing_key=f"key-{i}")
        assert first.route.variant == again.route.variant and first.route.collection == again.route.collection
        arms[f"key-{i}"] = first.route.variant
    assert set(arms.values()) == {"control", "v1", "v2"}
    page1 = await client.search("docs", vector=VECTOR, limit=2, routing_key="key-0")
    page2 = await client.search("docs", vector=VECTOR, limit=2, routing_key="other", page_token=page1.next_page_token)
    assert page2.route.collection == page1.route.collection and page2.search_id == ""
    await fold(rig, server)
    await client.pause_experiment("exp", "look")
    paused = await client.search("docs", vector=VECTOR, routing_key="key-1")
    assert paused.route.collection == "docs-a" and paused.search_id == ""
    await client.start_experiment("exp", "again")
    counted = (await client.get_experiment("exp")).arms
    await rig.stop(server)
    server2, client2 = await rig.start()
    restored = await client2.get_experiment("exp")
    assert restored.state == exp_pb.Experiment.STATE_RUNNING
    assert [(a.arm, a.searches) for a in restored.arms] == [(a.arm, a.searches) for a in counted]
    assert [d.kind for d in restored.decisions] == ["created", "started", "paused", "resumed"]
    for key, variant in list(arms.items())[:20]:
        assert (await client2.search("docs", vector=VECTOR, routing_key=key)).route.variant == variant


async def test_bad_specs_are_refused_naming_the_field_and_conclude_needs_a_winner_or_an_arm(rig):
    server, client = await rig.start()
    await four_collections(client)
    with pytest.raises(InvalidArgument) as refused:
        await client.create_experiment("exp", "docs", [("b", "docs-b", 3000)], control_split_bps=3000)
    assert refused.value.field == "experiment.control_split_bps"
    with pytest.raises(InvalidArgument) as refused:
        await client.create_experiment("exp", "docs", [])
    assert refused.value.field == "experiment.variants"
    with pytest.raises(InvalidArgument) as refused:
        await client.create_experiment("exp", "docs", [("control", "docs-b", 0)])
    assert refused.value.field == "experiment.variants[0].name"
    with pytest.raises(InvalidArgument) as refused:
        await client.create_experiment("exp", "docs", ["docs-b"], goal="purchase")
    assert refused.value.field == "experiment.policy.goal"
    with pytest.raises(FailedPrecondition):
        await client.create_experiment("exp", "docs", ["docs-b"], control_collection="docs-c")
    with pytest.raises(FailedPrecondition) as refused:
        await client.create_experiment("exp", "docs-a", ["docs-b"])
    assert refused.value.reason == "NOT_AN_ALIAS"
    assert (await client.list_experiments()).experiments == []  # nothing half-made
    await client.create_experiment("exp", "docs", ["docs-b"])
    await client.start_experiment("exp")
    with pytest.raises(FailedPrecondition) as refused:
        await client.conclude_experiment("exp", promote=True)
    assert refused.value.reason == "NO_WINNER" and "no winner yet" in refused.value.message
    with pytest.raises(FailedPrecondition):
        await client.start_experiment("exp")  # already running
    kept = await client.conclude_experiment("exp", arm="control", reason="not worth it")
    assert kept.concluded_arm == "control" and not kept.promoted
    assert (await client.list_aliases())["docs"] == "docs-a"


async def test_watch_streams_the_experiment_after_each_fold_until_it_ends(rig):
    server, client = await rig.start()
    await four_collections(client)
    await client.create_experiment("exp", "docs", ["docs-b"], interval_s=1.0)
    await client.start_experiment("exp")
    seen = []

    async def watch():
        async for message in client.watch_experiment("exp"):
            seen.append(message.experiment)

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0.2)  # the stream is open (no clock can tell when the server registered it)
    await client.search("docs", vector=VECTOR, routing_key="k")
    await fold(rig, server)
    await client.stop_experiment("exp")
    await asyncio.wait_for(watcher, 10)
    assert seen[0].state == exp_pb.Experiment.STATE_RUNNING
    assert seen[-1].state == exp_pb.Experiment.STATE_STOPPED
    assert any(sum(a.searches for a in e.arms) == 1 for e in seen)


async def test_applications_with_a_write_token_report_outcomes_but_only_admins_steer_experiments(rig, tmp_path):
    from searchgw.errors import PermissionDenied
    from searchgw.gateway.client import GatewayClient
    from tests.security.helpers import write_token_file

    tokens = write_token_file(tmp_path / "tokens.yaml", {"app": ("app-secret", ["read", "write"]),
                                                         "ops": ("ops-secret", ["admin"])})
    server, _ = await rig.start(auth_tokens_file=tokens)
    ops = GatewayClient(server.address, metadata=(("authorization", "Bearer ops-secret"),))
    app = GatewayClient(server.address, metadata=(("authorization", "Bearer app-secret"),))
    try:
        await four_collections(ops)
        await ops.create_experiment("exp", "docs", ["docs-b"])
        await ops.start_experiment("exp")
        search_id = (await app.search("docs", vector=VECTOR, routing_key="k")).search_id
        assert (await app.report_outcomes([(search_id, "click")])).accepted == 1
        with pytest.raises(PermissionDenied):
            await app.get_experiment("exp")
        with pytest.raises(PermissionDenied):
            await app.conclude_experiment("exp", arm="control")
    finally:
        await ops.close()
        await app.close()
