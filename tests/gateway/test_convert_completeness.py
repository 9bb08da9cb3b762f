"""Every message the gateway's services accept or return has its converter (as qdrant-client's test does).

Driven by the proto descriptors: the messages reachable from the gateway's RPCs (SearchService,
CollectionService, RolloutService), field by field. Each one must either

- appear in the signature of a function in `gateway/services/convert.py` (a converter to or from it), or
- be an RPC's own request or response (the servicer unpacks and packs those field by field), or
- be listed below with a reason: a part read and written inside its parent's converter (and the parent
  has one), or a pass-through the servicer handles itself.

So a new message fails here until it gets a converter or an entry saying why it needs none.
"""

from __future__ import annotations

import inspect
import typing

import pytest
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message

from searchgw.gateway.services import convert
from searchgw.v1 import collection_service_pb2, experiment_service_pb2, rollout_service_pb2, search_service_pb2

#: The proto files whose services the gateway serves.
GATEWAY_FILES = (search_service_pb2, collection_service_pb2, rollout_service_pb2, experiment_service_pb2)

#: Messages converted inside the converter of another message: message → that parent message.
PARTS = {
    "searchgw.v1.Condition": "searchgw.v1.Filter",  # a filter's clauses (filter_from_proto / filter_to_proto)
    "searchgw.v1.PointIdList": "searchgw.v1.Filter",  # a has_id condition's ids
    "searchgw.v1.KeywordList": "searchgw.v1.FieldCondition",  # an any_keyword match
    "searchgw.v1.Range": "searchgw.v1.FieldCondition",  # a range match
    "searchgw.v1.QuantizationSearchParams": "searchgw.v1.SearchParams",  # search_params_from_proto
    "searchgw.v1.DatetimeRange": "searchgw.v1.FieldCondition",  # a datetime_range match
    "searchgw.v1.ValuesCount": "searchgw.v1.FieldCondition",  # a values_count match
    "searchgw.v1.MinShould": "searchgw.v1.Filter",  # a filter's min_should clause
    "searchgw.v1.IsNullCondition": "searchgw.v1.Filter",  # an is_null condition
    "searchgw.v1.IsEmptyCondition": "searchgw.v1.Filter",  # an is_empty condition
    "searchgw.v1.TextIndexParams": "searchgw.v1.PayloadIndex",  # a text index's params
    "searchgw.v1.HnswConfig": "searchgw.v1.Collection",  # collection_spec_from_proto / collection_to_proto
    "searchgw.v1.ScalarQuantization": "searchgw.v1.Collection",
    "searchgw.v1.Stage": "searchgw.v1.Rollout",  # rollout_from_proto / rollout_to_proto
    # experiment_from_proto / experiment_to_proto
    "searchgw.v1.ExperimentArm": "searchgw.v1.Experiment",
    "searchgw.v1.ExperimentPolicy": "searchgw.v1.Experiment",
    "searchgw.v1.ArmResult": "searchgw.v1.Experiment",
    "searchgw.v1.OutcomeCount": "searchgw.v1.Experiment",
    "searchgw.v1.VariantVerdict": "searchgw.v1.Experiment",
    "searchgw.v1.ComparisonTest": "searchgw.v1.Experiment",
    "searchgw.v1.ExperimentDecision": "searchgw.v1.Experiment",
    "searchgw.v1.DifferingId": "searchgw.v1.QualityReport",  # quality_report_to_proto
    "google.protobuf.Value": "google.protobuf.Struct",  # payloads (payload_from_proto / payload_to_proto)
    "google.protobuf.ListValue": "google.protobuf.Struct",
    "google.protobuf.Struct.FieldsEntry": "google.protobuf.Struct",
}

#: Messages a servicer reads or builds itself, with the reason no converter is needed.
PASS_THROUGH = {
    "searchgw.v1.Alias": "two names; ListAliases builds it from the alias → collection mapping (services/collection.py)",
    "searchgw.v1.PointInput": "Upsert reads each point field by field, naming points[i] in errors (services/search.py); "
                              "its id and payload go through point_id_from_proto / payload_from_proto",
}


def _rpc_envelopes() -> set[str]:
    return {
        message.full_name
        for module in GATEWAY_FILES
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
        for message in (method.input_type, method.output_type)
    }


def _reachable() -> set[str]:
    """Every message the gateway's RPCs carry, at any depth (envelopes included)."""
    seen: set[str] = set()

    def walk(message: Descriptor) -> None:
        if message.full_name in seen:
            return
        seen.add(message.full_name)
        for field in message.fields:
            if field.message_type is not None:
                walk(field.message_type)

    for module in GATEWAY_FILES:
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                walk(method.input_type)
                walk(method.output_type)
    return seen


def _converted() -> dict[str, list[str]]:
    """message full name → the convert.py functions whose signature names it."""
    found: dict[str, list[str]] = {}
    for name, function in vars(convert).items():
        if not inspect.isfunction(function) or function.__module__ != convert.__name__:
            continue
        for hint in typing.get_type_hints(function).values():
            for candidate in (hint, *typing.get_args(hint)):
                if isinstance(candidate, type) and issubclass(candidate, Message):
                    found.setdefault(candidate.DESCRIPTOR.full_name, []).append(name)
    return found


def test_the_gateway_rpcs_carry_messages_at_all():
    """Guards the walk itself: it must find the services and the messages inside their envelopes."""
    assert len(_rpc_envelopes()) >= 20
    assert {"searchgw.v1.Filter", "searchgw.v1.Rollout", "searchgw.v1.Collection"} <= _reachable()


def test_rpc_envelopes_are_each_rpcs_own_request_or_response():
    """The servicer unpacks envelopes itself only because each belongs to one RPC (buf STANDARD lint)."""
    assert all(name.endswith(("Request", "Response")) for name in _rpc_envelopes())


@pytest.mark.parametrize("message", sorted(_reachable() - _rpc_envelopes()))
def test_every_message_the_gateway_carries_has_a_converter_or_a_stated_reason(message):
    converted = _converted()
    if message in PARTS:
        parent = PARTS[message]
        assert parent in converted, f"{message} is converted inside {parent}'s converter, but {parent} has none"
    else:
        assert message in converted or message in PASS_THROUGH, (
            f"{message} has no converter in gateway/services/convert.py: add one (a function whose signature "
            f"names it), or list it in PARTS / PASS_THROUGH here with the reason it needs none")


def test_the_allow_lists_name_only_carried_messages_without_their_own_converter():
    """No stale entries: each listed message is still carried, and is not converted on its own."""
    carried, converted = _reachable(), _converted()
    for message in (*PARTS, *PASS_THROUGH):
        assert message in carried, f"{message} is no longer carried by any gateway RPC: drop its entry"
        assert message not in converted, f"{message} now has a converter ({converted.get(message)}): drop its entry"
    assert not set(PARTS) & set(PASS_THROUGH)
