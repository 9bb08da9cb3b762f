"""Every wire ⇄ domain converter round-trips, and filter limits are enforced before recursion."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from searchgw.gateway.backends import CollectionInfo, CollectionSpec, Distance, FieldCondition, Filter, HasId, Range
from searchgw.gateway.backends import ScalarQuantization
from searchgw.gateway.rollout import AnalysisPolicy, ArmStats, Decision, DecisionKind, Rollout, RolloutState, Stage
from searchgw.gateway.services import convert
from searchgw.errors import InvalidArgument
from searchgw.v1 import common_pb2


def test_filters_round_trip():
    value = Filter(
        must=(FieldCondition("topic", keyword="rollouts"), FieldCondition("year", integer=2024),
              FieldCondition("score", range=Range(gte=0.5, lt=2.0))),
        should=(FieldCondition("draft", boolean=False), FieldCondition("lang", any_keyword=("en", "de"))),
        must_not=(HasId((1, "0b6e9c1e-3f5c-4b8e-9a57-8d2f3e0c1a22")),
                  Filter(must=(FieldCondition("x", keyword="y"),))),
    )
    assert convert.filter_from_proto(convert.filter_to_proto(value)) == value


def test_the_new_filter_kinds_round_trip():
    from searchgw.gateway.backends import DatetimeRange, IsEmpty, IsNull, MinShould, ValuesCount

    value = Filter(
        must=(FieldCondition("title", text="canary rollout"),
              FieldCondition("day", datetime_range=DatetimeRange(gte="2024-01-01T00:00:00Z", lt="2024-02-01")),
              IsNull("owner")),
        should=(FieldCondition("tags", values_count=ValuesCount(gt=0, lte=3)), IsEmpty("notes")),
        min_should=MinShould((HasId((1, 2)), Filter(must_not=(IsEmpty("a"),)), FieldCondition("x", text="y")), 2),
    )
    assert convert.filter_from_proto(convert.filter_to_proto(value)) == value


def test_payload_indexes_and_orders_round_trip():
    from searchgw.gateway.backends import OrderBy, PayloadIndex, PayloadIndexType, TextIndexParams, Tokenizer

    for index in (PayloadIndex("a.b", PayloadIndexType.DATETIME),
                  PayloadIndex("t", PayloadIndexType.TEXT, TextIndexParams(Tokenizer.PREFIX, False, 2, 30))):
        assert convert.payload_index_from_proto(convert.payload_index_to_proto(index)) == index
    for order in (OrderBy("rank"), OrderBy("day", descending=True)):
        assert convert.order_by_from_proto(convert.order_by_to_proto(order)) == order
    spec = CollectionSpec(name="c", dimension=4, payload_indexes=(PayloadIndex("n", PayloadIndexType.FLOAT),))
    assert convert.collection_spec_from_proto(convert.collection_to_proto(CollectionInfo(spec, 0))).payload_indexes \
        == spec.payload_indexes


def test_a_too_deep_filter_is_refused_naming_where():
    message = common_pb2.Filter()
    inner = message
    for _ in range(convert.MAX_FILTER_DEPTH + 1):
        inner = inner.must.add().filter
    with pytest.raises(InvalidArgument) as info:
        convert.filter_from_proto(message)
    assert info.value.field.startswith("filter.must[0].filter")


def test_a_condition_without_a_test_is_refused_naming_it():
    message = common_pb2.Filter(must=[common_pb2.Condition(field=common_pb2.FieldCondition(key="k"))])
    with pytest.raises(InvalidArgument) as info:
        convert.filter_from_proto(message)
    assert info.value.field == "filter.must[0].field"


def test_payload_whole_numbers_come_back_as_integers():
    payload = {"n": 3, "x": 1.5, "nested": {"list": [1, 2.25, "a"]}, "flag": True, "none": None}
    assert convert.payload_from_proto(convert.payload_to_proto(payload)) == payload


def test_point_ids_round_trip_and_an_empty_one_is_refused():
    for value in (0, 2**64 - 1, "0b6e9c1e-3f5c-4b8e-9a57-8d2f3e0c1a22"):
        assert convert.point_id_from_proto(convert.point_id_to_proto(value), "id") == value
    with pytest.raises(InvalidArgument) as info:
        convert.point_id_from_proto(common_pb2.PointId(), "points[3].id")
    assert info.value.field == "points[3].id"


def test_collections_round_trip():
    spec = CollectionSpec(name="c", dimension=384, distance=Distance.DOT, hnsw_m=32, hnsw_ef_construct=200,
                          full_scan_threshold=5000, scalar_quantization=ScalarQuantization(0.95, True),
                          embedding_model="m")
    message = convert.collection_to_proto(CollectionInfo(spec, 12, ("a", "b")))
    assert convert.collection_spec_from_proto(message) == spec
    assert (message.points_count, list(message.aliases)) == (12, ["a", "b"])


def test_rollouts_round_trip_their_client_fields_and_show_every_output():
    rollout = Rollout(
        name="r", collection="docs", canary_collection="docs-v2", primary_collection="docs-v1",
        stages=(Stage(5.5, 60.0, 100), Stage(100.0)),
        analysis=AnalysisPolicy(interval_s=5.0, window_s=30.0, error_codes=("UNAVAILABLE",), max_error_rate=0.1,
                                max_error_rate_delta=0.02, max_latency_ratio=2.0, latency_slack_s=0.01,
                                min_requests_per_arm=20, max_consecutive_failures=2, max_total_failures=3,
                                latency_quantile=0.99),
        auto_promote=True, state=RolloutState.PAUSED, current_stage=1, weight_percent=100.0,
        decisions=(Decision(time=1700000000.5, kind=DecisionKind.CHECK_FAILED, reason="why", stage=1,
                            weight_percent=100.0, primary=ArmStats(100, 1, 0.01, 0.002),
                            canary=ArmStats(50, 10, 0.2, None), actor="controller", seq=1),),
        create_time=1700000000.0, update_time=1700000001.0, stage_elapsed_s=12.5, consecutive_failures=1,
        total_failures=2,
    )
    message = convert.rollout_to_proto(rollout)
    back = convert.rollout_from_proto(message)
    for name in ("name", "collection", "canary_collection", "primary_collection", "stages", "analysis",
                 "auto_promote"):
        assert getattr(back, name) == getattr(rollout, name), name
    assert message.state == message.STATE_PAUSED and message.weight_percent == 100.0
    decision = message.decisions[0]
    assert decision.kind == decision.KIND_CHECK_FAILED and decision.canary.errors == 10
    assert decision.primary.latency_seconds == pytest.approx(0.002) and not decision.canary.HasField("latency_seconds")
    assert message.stage_elapsed.ToNanoseconds() == 12_500_000_000


@pytest.mark.parametrize("size", [0, 1, 3, 31, 32, 384, 4096])
def test_a_vector_is_read_off_the_wire_as_float32_whatever_its_length(size):
    values = [float(i) / 7 - 3.5 for i in range(size)]
    array = convert.vector_from_proto(common_pb2.Vector(values=values))
    assert array.dtype == np.float32 and array.shape == (size,)
    assert array.tolist() == np.array(values, dtype=np.float32).tolist()


def test_a_vector_keeps_what_the_rules_refuse_and_reads_the_unpacked_encoding_too():
    nan = convert.vector_from_proto(common_pb2.Vector(values=[float("nan"), 1.0]))
    assert np.isnan(nan[0]) and nan[1] == 1.0  # the rules refuse it later, naming the field
    # proto3 parsers must accept repeated floats sent unpacked (one tag per value)
    unpacked = b"".join(b"\x0d" + struct.pack("<f", v) for v in (0.5, -2.0, 3.25))
    message = common_pb2.Vector.FromString(unpacked)
    assert convert.vector_from_proto(message).tolist() == [0.5, -2.0, 3.25]
