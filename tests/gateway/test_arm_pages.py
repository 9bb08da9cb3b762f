"""Search paging during a rollout: a next-page token is bound to the collection (and arm) that served
page 1, so a search without a routing key (a random key per call) pages through ONE collection.

Real gateway on loopback, real engines; the two arms hold different ids, so a page from the other arm shows.
"""

from __future__ import annotations

import pytest

from searchgw.errors import SearchgwError
from searchgw.gateway.client import stage
from searchgw.gateway.paging import PageTokens, SearchPage, fingerprint
from searchgw.gateway.routing import Arm
from searchgw.v1 import common_pb2
from tests.gateway.outcome_rig import RecordSpy, key_on, unit_vector

DIMENSION = 384
#: Each arm's points: primary's ids 1..10, canary's 101..110 (one collection's pages never name the other's ids).
COUNT = 10
LIMIT = 3


async def arms(client) -> None:
    for name, base in (("docs-v1", 0), ("docs-v2", 100)):
        await client.create_collection(name, dimension=DIMENSION)
        await client.upsert(name, [{"id": base + i + 1, "vector": unit_vector(i)} for i in range(COUNT)])
    await client.update_alias("docs", "docs-v1")


async def rollout(client, weight_percent: float = 50) -> None:
    from tests.gateway.test_gateway import policy
    await client.create_rollout("r1", "docs", "docs-v2", analysis=policy(),
                                stages=[stage(weight_percent, 3600, 0), stage(100)])


async def every_page(client, **kwargs) -> list:
    """Every page of one search (kwargs: routing_key, …), first to last."""
    pages, token = [], ""
    while True:
        page = await client.search("docs", vector=unit_vector(99), limit=LIMIT, page_token=token, **kwargs)
        pages.append(page)
        if not (token := page.next_page_token):
            return pages


async def test_unkeyed_paging_at_50_percent_gives_every_hit_once_from_one_collection(rig):
    server, client = await rig.start()
    await arms(client)
    await rollout(client)
    served = set()
    for _ in range(20):  # unbound, pages 2-4 each come from the other arm half the time: passes 1 in 8^20
        pages = await every_page(client)
        collections = {(p.route.collection, p.route.arm, p.route.rollout) for p in pages}
        assert len(collections) == 1, collections
        ((collection, arm, rollout_name),) = collections
        ids = [point.id.num for page in pages for point in page.points]
        base = 0 if collection == "docs-v1" else 100
        assert sorted(ids) == list(range(base + 1, base + COUNT + 1)), (collection, ids)
        assert rollout_name == "r1"
        served.add(arm)
    assert served == {common_pb2.ARM_PRIMARY, common_pb2.ARM_CANARY}  # random keys did reach both arms


async def test_a_later_page_is_served_by_its_arm_but_kept_out_of_the_analysis(rig):
    server, client = await rig.start()
    await arms(client)
    await rollout(client)
    spy = RecordSpy(server.controller)
    key = key_on(server, Arm.CANARY)
    first = await client.search("docs", vector=unit_vector(99), limit=LIMIT, routing_key=key)
    assert (first.route.collection, first.route.arm) == ("docs-v2", common_pb2.ARM_CANARY)
    assert [(r.arm, r.code_name) for r in spy.calls] == [(Arm.CANARY, "OK")]
    # page 2 with a key that routes to primary: the token wins, and the call is not a routing decision
    second = await client.search("docs", vector=unit_vector(99), limit=LIMIT, page_token=first.next_page_token,
                                 routing_key=key_on(server, Arm.PRIMARY))
    assert (second.route.collection, second.route.arm, second.route.rollout) == ("docs-v2", common_pb2.ARM_CANARY,
                                                                                 "r1")
    assert not {p.id.num for p in first.points} & {p.id.num for p in second.points}
    assert len(spy.calls) == 1


async def test_a_token_whose_collection_no_longer_serves_is_failed_precondition_naming_page_token(rig):
    server, client = await rig.start()
    await arms(client)
    await rollout(client)
    on_canary = await client.search("docs", vector=unit_vector(99), limit=LIMIT,
                                    routing_key=key_on(server, Arm.CANARY))
    on_primary = await client.search("docs", vector=unit_vector(99), limit=LIMIT,
                                     routing_key=key_on(server, Arm.PRIMARY))
    await client.abort_rollout("r1", "changed our mind")
    await client.delete_collection("docs-v2")
    with pytest.raises(SearchgwError) as info:
        await client.search("docs", vector=unit_vector(99), limit=LIMIT, page_token=on_canary.next_page_token)
    assert info.value.code_name == "FAILED_PRECONDITION"
    assert info.value.message.startswith("page_token:") and "start over without it" in info.value.message
    # primary still serves docs after the abort: its token goes on
    second = await client.search("docs", vector=unit_vector(99), limit=LIMIT, page_token=on_primary.next_page_token)
    assert second.route.collection == "docs-v1" and second.points
    # and started over without the token, the search answers
    assert (await client.search("docs", vector=unit_vector(99), limit=LIMIT)).route.collection == "docs-v1"


async def test_after_promotion_primarys_tokens_are_stale_and_the_canarys_go_on(rig):
    server, client = await rig.start()
    await arms(client)
    await rollout(client)
    on_canary = await client.search("docs", vector=unit_vector(99), limit=LIMIT,
                                    routing_key=key_on(server, Arm.CANARY))
    on_primary = await client.search("docs", vector=unit_vector(99), limit=LIMIT,
                                     routing_key=key_on(server, Arm.PRIMARY))
    await client.promote_rollout("r1")  # BAKING: the old collection still has every write, its pages go on
    during = await client.search("docs", vector=unit_vector(99), limit=LIMIT, page_token=on_primary.next_page_token)
    assert (during.route.collection, during.route.rollout) == ("docs-v1", "r1")
    await client.promote_rollout("r1")  # the bake ends: docs-v1 serves docs no more
    with pytest.raises(SearchgwError) as info:
        await client.search("docs", vector=unit_vector(99), limit=LIMIT, page_token=on_primary.next_page_token)
    assert info.value.code_name == "FAILED_PRECONDITION" and "page_token" in info.value.message
    second = await client.search("docs", vector=unit_vector(99), limit=LIMIT, page_token=on_canary.next_page_token)
    assert (second.route.collection, second.route.rollout) == ("docs-v2", "")
    assert {p.id.num for p in second.points} <= set(range(101, 111))


async def test_a_forged_or_altered_search_token_is_still_invalid_argument(rig):
    server, client = await rig.start()
    await arms(client)
    await rollout(client)
    first = await client.search("docs", vector=unit_vector(99), limit=LIMIT)
    query = fingerprint("docs", None, b"", LIMIT, None, None)
    forged = [
        PageTokens("not-the-secret").issue_search(SearchPage(LIMIT, "docs-v2", "canary", "r1"), query),
        first.next_page_token[:-2] + ("xx" if not first.next_page_token.endswith("xx") else "yy"),
    ]
    for token in forged:
        with pytest.raises(SearchgwError) as info:
            await client.search("docs", vector=unit_vector(99), limit=LIMIT, page_token=token)
        assert (info.value.code_name, info.value.field) == ("INVALID_ARGUMENT", "page_token")
    with pytest.raises(SearchgwError) as info:  # bound to the query still
        await client.search("docs", vector=unit_vector(98), limit=LIMIT, page_token=first.next_page_token)
    assert (info.value.code_name, info.value.field) == ("INVALID_ARGUMENT", "page_token")
