"""Routing: stable buckets, monotone canary ranges, N-arm layouts, forced arms and key resolution."""

from __future__ import annotations

import pathlib
import secrets
import subprocess
import sys
from collections import Counter

import pytest

from searchgw.gateway.routing import (
    BUCKETS,
    UNROUTED,
    Arm,
    ArmRange,
    BucketLayout,
    KeySource,
    Router,
    RouteTable,
    bucket,
    parse_forced_arm,
    resolve_routing_key,
)
from searchgw.errors import InvalidArgument

KEYS = [f"user-{i}" for i in range(20_000)]


def router_at(weight_bps: int, salt: str = "fixed-salt") -> Router:
    return Router({"docs": RouteTable(rollout="r1", salt=salt, primary="docs-v1", canary="docs-v2",
                                      weight_bps=weight_bps)})


def canary_keys(router: Router) -> set[str]:
    return {key for key in KEYS if router.route("docs", key).arm is Arm.CANARY}


def test_bucket_values_never_change_between_releases():
    # A changed hash would move every user to another arm mid-rollout.
    assert [bucket("salt-a", key) for key in ("alice", "bob", "")] == [8716, 7607, 7835]
    assert bucket("0123456789abcdef", "user-42") == 2154


def test_bucket_is_in_range_and_salted():
    assert all(0 <= bucket("s", key) < BUCKETS for key in KEYS[:1000])
    assert [bucket("s1", k) for k in KEYS[:50]] != [bucket("s2", k) for k in KEYS[:50]]


def test_split_within_one_point_at_ten_percent():
    share = len(canary_keys(router_at(1_000, salt=secrets.token_hex(8)))) / len(KEYS)
    assert 0.09 <= share <= 0.11


def test_a_key_on_the_canary_stays_there_as_the_weight_grows():
    salt = secrets.token_hex(8)
    at_5, at_25, at_50 = (canary_keys(router_at(bps, salt)) for bps in (500, 2_500, 5_000))
    assert at_5 and at_5 <= at_25 <= at_50
    assert 0.04 <= len(at_5) / len(KEYS) <= 0.06
    assert 0.24 <= len(at_25) / len(KEYS) <= 0.26
    assert 0.49 <= len(at_50) / len(KEYS) <= 0.51


def test_a_new_salt_puts_different_users_on_the_canary():
    first = canary_keys(router_at(1_000, salt="rollout-one-salt"))
    second = canary_keys(router_at(1_000, salt="rollout-two-salt"))
    # Independent salts: about 10 % of the first canary is also in the second, not all of it.
    assert len(first & second) / len(first) < 0.2


def test_weights_have_basis_point_granularity():
    salt = "granular"
    for key in KEYS[:2_000]:
        b = bucket(salt, key)
        assert router_at(b + 1, salt).route("docs", key).arm is Arm.CANARY
        assert router_at(b, salt).route("docs", key).arm is Arm.PRIMARY
    assert not canary_keys(router_at(0, salt))
    assert len(canary_keys(router_at(BUCKETS, salt))) == len(KEYS)


def test_decision_names_the_physical_collection_and_the_rollout():
    router = router_at(5_000)
    decisions = {router.route("docs", key).arm: router.route("docs", key) for key in KEYS[:100]}
    assert decisions[Arm.CANARY].collection == "docs-v2"
    assert decisions[Arm.PRIMARY].collection == "docs-v1"
    assert all(d.rollout == "r1" and d.in_analysis and d.primary == "docs-v1" for d in decisions.values())


def test_forced_arm_is_served_but_kept_out_of_the_analysis():
    router = router_at(1)  # almost nobody is on the canary by key
    forced = router.route("docs", "user-1", Arm.CANARY)
    assert (forced.arm, forced.collection, forced.in_analysis) == (Arm.CANARY, "docs-v2", False)
    forced = router.route("docs", "user-1", Arm.PRIMARY)
    assert (forced.arm, forced.collection, forced.in_analysis) == (Arm.PRIMARY, "docs-v1", False)


def test_without_a_rollout_the_caller_uses_the_alias_target():
    router = router_at(5_000)
    assert router.route("other", "user-1") is UNROUTED
    assert router.route("other", "user-1", Arm.CANARY) is UNROUTED
    assert UNROUTED.collection is None and not UNROUTED.in_analysis and UNROUTED.rollout == ""
    assert router.write_targets("other") == ()
    assert router.write_targets("docs") == ("docs-v1", "docs-v2")


def test_replace_publishes_a_new_snapshot():
    router = Router()
    assert router.route("docs", "k") is UNROUTED
    table = RouteTable(rollout="r1", salt="s", primary="a", canary="b", weight_bps=BUCKETS)
    router.replace({"docs": table})
    assert router.table("docs") == table and router.tables() == {"docs": table}
    assert router.route("docs", "k").collection == "b"
    router.replace({})
    assert router.table("docs") is None


def test_n_arm_layout_splits_by_range():
    layout = BucketLayout.from_weights([("a", 5_000), ("b", 3_000), ("c", 2_000)])
    assert [layout.arm_at(b) for b in (0, 4_999, 5_000, 7_999, 8_000, 9_999)] == ["a", "a", "b", "b", "c", "c"]
    counts = Counter(layout.arm_at(bucket("ab-test", key)) for key in KEYS)
    for arm, share in (("a", 0.5), ("b", 0.3), ("c", 0.2)):
        assert abs(counts[arm] / len(KEYS) - share) <= 0.01


def test_n_arm_layout_with_reserved_ranges_keeps_each_variants_users():
    # Variants grow in place inside their own quarter; control holds the rest.
    def layout(b_bps: int, c_bps: int) -> BucketLayout[str]:
        return BucketLayout([ArmRange("b", 0, b_bps), ArmRange("control", b_bps, 2_500),
                             ArmRange("c", 2_500, 2_500 + c_bps), ArmRange("control", 2_500 + c_bps, BUCKETS)])

    def users(layout_: BucketLayout[str], arm: str) -> set[str]:
        return {key for key in KEYS if layout_.arm_at(bucket("exp", key)) == arm}

    small, large = layout(500, 500), layout(500, 2_000)
    assert users(small, "b") == users(large, "b")
    assert users(small, "c") <= users(large, "c")


def test_layouts_must_cover_every_bucket_once():
    with pytest.raises(ValueError):
        BucketLayout([ArmRange("a", 0, 100), ArmRange("b", 200, BUCKETS)])
    with pytest.raises(ValueError):
        BucketLayout.from_weights([("a", 5_000), ("b", 4_000)])
    with pytest.raises(ValueError):
        BucketLayout.canary("c", "p", BUCKETS + 1)
    empty_canary = BucketLayout.canary("c", "p", 0)
    assert {empty_canary.arm_at(b) for b in (0, 1, BUCKETS - 1)} == {"p"}


def test_routing_key_comes_from_the_request_then_metadata_then_fallback():
    assert resolve_routing_key("req", "meta", "ipv4:10.0.0.7:5000", "peer") == ("req", KeySource.REQUEST)
    assert resolve_routing_key("", "meta", "ipv4:10.0.0.7:5000", "peer") == ("meta", KeySource.METADATA)
    assert resolve_routing_key("", None, "ipv4:10.0.0.7:5000", "peer") == ("ipv4:10.0.0.7", KeySource.PEER)
    key, source = resolve_routing_key("", "", "ipv4:10.0.0.7:5000", "random")
    assert source is KeySource.RANDOM and key != resolve_routing_key("", "", "", "random")[0]


def test_peer_fallback_ignores_the_port_so_reconnects_stay_on_their_arm():
    assert resolve_routing_key("", "", "ipv6:[::1]:41000", "peer")[0] == "ipv6:[::1]"
    assert resolve_routing_key("", "", "ipv6:%5B::1%5D:41000", "peer")[0] == "ipv6:%5B::1%5D"
    assert resolve_routing_key("", "", "unix:/tmp/s.sock", "peer")[0] == "unix:/tmp/s.sock"
    assert resolve_routing_key("", "", "", "peer")[1] is KeySource.RANDOM


def test_routing_key_errors_name_the_field():
    with pytest.raises(InvalidArgument) as error:
        resolve_routing_key("k" * 1025, "", "", "random")
    assert error.value.field == "routing_key"
    with pytest.raises(InvalidArgument) as error:
        resolve_routing_key("", "k" * 1025, "", "random")
    assert error.value.field == "x-routing-key"
    with pytest.raises(ValueError):
        resolve_routing_key("", "", "", "sticky")


def test_forced_arm_header_is_parsed_strictly():
    assert parse_forced_arm(None) is None and parse_forced_arm("") is None
    assert parse_forced_arm("canary") is Arm.CANARY and parse_forced_arm(" Primary ") is Arm.PRIMARY
    with pytest.raises(InvalidArgument) as error:
        parse_forced_arm("blue")
    assert error.value.field == "x-canary-arm"


def test_routing_and_rollouts_do_not_import_grpc():
    code = "import sys, gateway.routing, gateway.rollout; sys.exit('grpc' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=pathlib.Path(__file__).parents[2]).returncode == 0
