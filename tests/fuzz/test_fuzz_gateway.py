"""Generated and mutated requests against every RPC of a live gateway.

Whatever arrives, the answer is OK or a status that blames the request (never INTERNAL, UNKNOWN or
UNAVAILABLE while everything behind the gateway is healthy), every error message stays small, the
gateway is still SERVING after each test's batch of examples, and a failed write leaves no trace:
the point counts of both arms of each rollout are what they were before it.
"""

from __future__ import annotations

import asyncio
import base64

import grpc
from google.protobuf import descriptor_pool, message_factory
from hypothesis import given
from hypothesis import strategies as st

from searchgw.gateway.services import CollectionServicer, RolloutServicer, SearchServicer
from searchgw.v1 import collection_service_pb2 as coll_pb
from searchgw.v1 import collection_service_pb2_grpc as coll_grpc
from searchgw.v1 import rollout_service_pb2 as roll_pb
from searchgw.v1 import rollout_service_pb2_grpc as roll_grpc
from searchgw.v1 import search_service_pb2 as search_pb
from searchgw.v1 import search_service_pb2_grpc as search_grpc
from tests.fuzz import strategies as fz
from tests.fuzz.conftest import DIMENSION, KNOWN_COLLECTIONS, PROTECTED_ROLLOUTS, TIMEOUT_S, assert_clients_fault

OK = grpc.StatusCode.OK
#: Printable ASCII: what gRPC lets a client put in a metadata value at all.
metadata_values = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=1100)


@fz.fuzz_settings(150)
@given(request=fz.search_requests(KNOWN_COLLECTIONS, DIMENSION),
       routing_header=st.one_of(st.none(), metadata_values),
       arm_header=st.one_of(st.none(), st.sampled_from(["primary", "canary", "CANARY ", ""]), metadata_values))
async def test_search_answers_every_request_with_a_clients_error_or_hits(serving, request, routing_header,
                                                                        arm_header):
    metadata = []
    if routing_header is not None:
        metadata.append(("x-routing-key", routing_header))
    if arm_header is not None:
        metadata.append(("x-canary-arm", arm_header))
    await serving.call(serving.search.Search, request, metadata=tuple(metadata))


@fz.fuzz_settings(40)
@given(request=fz.search_requests(("vecs", "vec-a"), DIMENSION), mutate=st.booleans(), data=st.data())
async def test_page_tokens_are_refused_when_forged_or_moved_to_another_query(serving, request, mutate, data):
    request.ClearField("page_token")
    try:
        first = await serving.search.Search(request, timeout=TIMEOUT_S)
    except grpc.aio.AioRpcError as exc:
        assert_clients_fault(exc)
        return
    if not first.next_page_token:
        return
    follow = search_pb.SearchRequest()
    follow.CopyFrom(request)
    follow.page_token = first.next_page_token
    if mutate:
        token = bytearray(first.next_page_token.encode())
        token[data.draw(st.integers(0, len(token) - 1))] ^= 1 << data.draw(st.integers(0, 6))
        follow.page_token = token.decode("ascii", "replace")
    else:
        follow.limit = request.limit + 1  # the token belongs to the other query
    code = await serving.call(serving.search.Search, follow)
    if follow.limit != request.limit or _token_bytes(follow.page_token) != _token_bytes(first.next_page_token):
        assert code == grpc.StatusCode.INVALID_ARGUMENT


def _token_bytes(token: str) -> bytes | None:
    """What a token decodes to (a flipped unused bit of the last base64 character changes nothing)."""
    try:
        return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except ValueError:
        return None


@fz.fuzz_settings(100)
@given(request=st.one_of(fz.upsert_requests(KNOWN_COLLECTIONS, DIMENSION),
                         fz.upsert_requests(KNOWN_COLLECTIONS, DIMENSION).flatmap(fz.mutated)))
async def test_a_failed_upsert_writes_nothing_to_either_arm(serving, request):
    before = await serving.points_counts()
    code = await serving.call(serving.search.Upsert, request)
    if code != OK:
        assert await serving.points_counts() == before


@fz.fuzz_settings(60)
@given(request=st.one_of(fz.delete_requests(KNOWN_COLLECTIONS),
                         fz.delete_requests(KNOWN_COLLECTIONS).flatmap(fz.mutated)))
async def test_a_failed_delete_removes_nothing(serving, request):
    if request.WhichOneof("selector") == "filter" and request.filter.ByteSize() == 0:
        request.filter.must.add().has_id.ids.add(num=10**15)  # an empty filter matches every point: keep the data
    before = await serving.points_counts()
    code = await serving.call(serving.search.Delete, request)
    if code != OK:
        assert await serving.points_counts() == before


def _collection_calls(live):
    known = KNOWN_COLLECTIONS
    stub = live.collections
    name = fz.names(*known, bounded=True)
    return st.one_of(
        fz.collections(known).map(lambda c: (stub.CreateCollection, coll_pb.CreateCollectionRequest(collection=c))),
        name.map(lambda n: (stub.GetCollection, coll_pb.GetCollectionRequest(name=n))),
        st.builds(lambda size, token: (stub.ListCollections, coll_pb.ListCollectionsRequest(page_size=size,
                                                                                            page_token=token)),
                  fz.uint(32), fz.bounded_text),
        name.map(lambda n: (stub.DeleteCollection, coll_pb.DeleteCollectionRequest(name=n))),
        st.builds(lambda a, c: (stub.UpdateAlias, coll_pb.UpdateAliasRequest(alias=a, collection=c)), name, name),
        name.map(lambda n: (stub.DeleteAlias, coll_pb.DeleteAliasRequest(alias=n))),
        st.just((stub.ListAliases, coll_pb.ListAliasesRequest())),
        name.map(lambda n: (stub.OptimizeCollection, coll_pb.OptimizeCollectionRequest(name=n))),
    )


@fz.fuzz_settings(120)
@given(data=st.data())
async def test_collection_service_answers_every_request_with_a_clients_error_or_a_result(serving, data):
    method, request = data.draw(_collection_calls(serving))
    if data.draw(st.booleans()):
        request = data.draw(fz.mutated(request))
    await serving.call(method, request)


ROLLOUT_NAMES = ("r1", "r2", "r3")


def _rollout_calls(live):
    stub = live.rollouts
    name = fz.names(*ROLLOUT_NAMES, bounded=True)
    reason = st.one_of(fz.short_text, st.sampled_from(["y" * 1000, "y" * 1001]))

    def transition(rpc, message):
        return st.builds(lambda n, r: (getattr(stub, rpc), message(name=n, reason=r)), name, reason)

    return st.one_of(
        fz.rollouts(ROLLOUT_NAMES, ("play", "play-a", "play-b", "play-c", "vecs", "vec-b")).map(
            lambda r: (stub.CreateRollout, roll_pb.CreateRolloutRequest(rollout=r))),
        st.one_of(name, st.sampled_from(PROTECTED_ROLLOUTS)).map(
            lambda n: (stub.GetRollout, roll_pb.GetRolloutRequest(name=n))),
        st.builds(lambda size, token, c: (stub.ListRollouts, roll_pb.ListRolloutsRequest(
            page_size=size, page_token=token, collection=c)), fz.uint(32), fz.bounded_text,
        fz.names("play", "vecs", bounded=True)),
        transition("PauseRollout", roll_pb.PauseRolloutRequest),
        transition("ResumeRollout", roll_pb.ResumeRolloutRequest),
        transition("PromoteRollout", roll_pb.PromoteRolloutRequest),
        transition("AbortRollout", roll_pb.AbortRolloutRequest),
    )


@fz.fuzz_settings(120)
@given(data=st.data())
async def test_rollout_service_answers_every_request_with_a_clients_error_or_a_result(serving, data):
    method, request = data.draw(_rollout_calls(serving))
    if data.draw(st.booleans()):
        request = data.draw(fz.mutated(request))
    if getattr(request, "name", "") in PROTECTED_ROLLOUTS and not isinstance(request, roll_pb.GetRolloutRequest):
        return
    await serving.call(method, request)


@fz.fuzz_settings(30)
@given(name=fz.names(*ROLLOUT_NAMES, *PROTECTED_ROLLOUTS, bounded=True))
async def test_watch_rollout_opens_or_refuses_cleanly_for_any_name(serving, name):
    call = serving.rollouts.WatchRollout(roll_pb.WatchRolloutRequest(name=name), timeout=TIMEOUT_S)
    try:
        first = await asyncio.wait_for(call.read(), 5.0)
        assert first is grpc.aio.EOF or first.rollout.name == name
    except grpc.aio.AioRpcError as exc:
        assert_clients_fault(exc)
    finally:
        call.cancel()


# -- every method, by its descriptor: a new RPC is fuzzed the day it is added ---------------------------

_SERVICERS = {
    "searchgw.v1.SearchService": (SearchServicer, search_grpc.SearchServiceServicer),
    "searchgw.v1.CollectionService": (CollectionServicer, coll_grpc.CollectionServiceServicer),
    "searchgw.v1.RolloutService": (RolloutServicer, roll_grpc.RolloutServiceServicer),
}


def _methods(live):
    """(path, request class, response class, streaming) of every method the gateway implements.

    Methods still inherited from the generated base (an RPC on its way in) are left out until
    their servicer overrides them."""
    pool = descriptor_pool.Default()
    found = []
    for service_name, (servicer, generated) in _SERVICERS.items():
        service = pool.FindServiceByName(service_name)
        for method in service.methods:
            if getattr(servicer, method.name) is getattr(generated, method.name):
                continue
            found.append((f"/{service.full_name}/{method.name}",
                          message_factory.GetMessageClass(method.input_type),
                          message_factory.GetMessageClass(method.output_type),
                          method.server_streaming))
    return found


@fz.fuzz_settings(150)
@given(data=st.data())
async def test_every_gateway_method_survives_arbitrary_messages(serving, data):
    path, request_class, response_class, streaming = data.draw(st.sampled_from(_methods(serving)))
    request = data.draw(fz.mutated(request_class()))
    if getattr(request, "name", "") in PROTECTED_ROLLOUTS:
        return
    if isinstance(request, search_pb.DeleteRequest) and request.WhichOneof("selector") == "filter":
        request.filter.must.add().has_id.ids.add(num=10**15)  # an empty filter matches every point: keep the data
    before = await serving.points_counts()
    factory = serving.channel.unary_stream if streaming else serving.channel.unary_unary
    method = factory(path, request_serializer=request_class.SerializeToString,
                     response_deserializer=response_class.FromString)
    try:
        if streaming:
            call = method(request, timeout=TIMEOUT_S)
            try:
                await asyncio.wait_for(call.read(), 5.0)
            finally:
                call.cancel()
        else:
            await method(request, timeout=TIMEOUT_S)
    except grpc.aio.AioRpcError as exc:
        assert_clients_fault(exc)
        if path.endswith(("/Upsert", "/Delete")):
            assert await serving.points_counts() == before
