"""One status → error mapper (`searchgw.rpc.status`) for every client: what a server raised is what the
client catches, read from the status's structured details, not from its text.

Real grpc.aio servers on loopback, wired as ours are (DomainErrorInterceptor), whose handlers raise
the error a test names; the typed GatewayClient and the EmbedderClient call them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from searchgw import errors
from searchgw.embedder.client import EmbedderClient
from searchgw.gateway.client import GatewayClient
from searchgw.rpc import DomainErrorInterceptor
from searchgw.rpc.status import error_from_status, status_for
from searchgw.v1 import collection_service_pb2 as coll_pb
from searchgw.v1 import collection_service_pb2_grpc as coll_grpc
from searchgw.v1 import embed_service_pb2 as embed_pb
from searchgw.v1 import embed_service_pb2_grpc as embed_grpc

class Scripted:
    """What the servers' handlers do next: raise `error`, or run `behaviour(context)` (to abort by hand)."""

    def __init__(self) -> None:
        self.error: BaseException | None = None
        self.behaviour: Callable[[grpc.aio.ServicerContext], Awaitable[None]] | None = None

    async def act(self, context: grpc.aio.ServicerContext) -> None:
        if self.behaviour is not None:
            await self.behaviour(context)
        if self.error is not None:
            raise self.error


class FailingCollections(coll_grpc.CollectionServiceServicer):
    def __init__(self, script: Scripted) -> None:
        self._script = script

    async def GetCollection(self, request: coll_pb.GetCollectionRequest,
                            context: grpc.aio.ServicerContext) -> coll_pb.GetCollectionResponse:
        await self._script.act(context)
        return coll_pb.GetCollectionResponse()


class FailingEmbedder(embed_grpc.EmbedServiceServicer):
    def __init__(self, script: Scripted) -> None:
        self._script = script

    async def Embed(self, request: embed_pb.EmbedRequest, context: grpc.aio.ServicerContext) -> embed_pb.EmbedResponse:
        await self._script.act(context)
        return embed_pb.EmbedResponse()


Served = tuple["Scripted", GatewayClient, EmbedderClient]


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    script = Scripted()
    server = grpc.aio.server(interceptors=[DomainErrorInterceptor()])
    coll_grpc.add_CollectionServiceServicer_to_server(FailingCollections(script), server)
    embed_grpc.add_EmbedServiceServicer_to_server(FailingEmbedder(script), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    gateway = GatewayClient(f"127.0.0.1:{port}")
    embedder = EmbedderClient(f"127.0.0.1:{port}")
    try:
        yield script, gateway, embedder
    finally:
        await gateway.close()
        await embedder.close()
        await server.stop(None)


async def caught(call: Awaitable[object]) -> errors.SearchgwError:
    with pytest.raises(errors.SearchgwError) as info:
        await call
    return info.value


# -- INVALID_ARGUMENT: the field comes from BadRequest, never from the text ---------------------------------

async def test_the_field_is_the_one_the_details_name_even_with_colons_in_it(served: Served) -> None:
    script, gateway, _ = served
    field = 'points[2].payload["time: utc"]'  # text parsing would stop at the first ": "
    script.error = errors.InvalidArgument(field, "must be a string: got 12")
    error = await caught(gateway.get_collection("docs"))
    assert type(error) is errors.InvalidArgument
    assert (error.code_name, error.field, error.description) == ("INVALID_ARGUMENT", field, "must be a string: got 12")
    assert error.message == f"{field}: must be a string: got 12" == str(error)
    assert error.reason == "INVALID_ARGUMENT"  # the ErrorInfo reason the server sent


async def test_details_win_over_a_message_that_says_otherwise(served: Served) -> None:
    script, gateway, _ = served
    violation = error_details_pb2.BadRequest.FieldViolation(field="points[2].vector", description="has 3 values")
    packed = any_pb2.Any()
    packed.Pack(error_details_pb2.BadRequest(field_violations=[violation]))
    decoy = status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message="decoy: not the field", details=[packed])

    async def abort(context: grpc.aio.ServicerContext) -> None:
        await context.abort_with_status(rpc_status.to_status(decoy))

    script.behaviour = abort
    error = await caught(gateway.get_collection("docs"))
    assert isinstance(error, errors.InvalidArgument)
    assert (error.field, error.description, error.message) == ("points[2].vector", "has 3 values",
                                                               "decoy: not the field")


async def test_without_details_the_plain_message_is_all_there_is(served: Served) -> None:
    script, gateway, _ = served

    async def abort(context: grpc.aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "looks: like a field")

    script.behaviour = abort
    error = await caught(gateway.get_collection("docs"))
    assert isinstance(error, errors.InvalidArgument)
    assert (error.field, error.description, error.message, error.reason) == ("", "looks: like a field",
                                                                             "looks: like a field", "")


# -- every code maps to its documented domain error -------------------------------------------------------

CASES = [
    (errors.InvalidArgument("texts[3]", "is empty"), errors.InvalidArgument, "INVALID_ARGUMENT"),
    (errors.NotFound("collection 'x' does not exist"), errors.NotFound, "NOT_FOUND"),
    (errors.AlreadyExists("collection 'x' exists"), errors.AlreadyExists, "ALREADY_EXISTS"),
    (errors.FailedPrecondition("rollout r1 is active"), errors.FailedPrecondition, "FAILED_PRECONDITION"),
    (errors.ResourceExhausted("queue full", retry_after=0.25), errors.ResourceExhausted, "RESOURCE_EXHAUSTED"),
    (errors.ResourceExhausted("queue full"), errors.ResourceExhausted, "RESOURCE_EXHAUSTED"),
    (errors.DeadlineExceeded("too late"), errors.DeadlineExceeded, "DEADLINE_EXCEEDED"),
    (errors.Unavailable("backend down"), errors.Unavailable, "UNAVAILABLE"),
    (errors.Unauthenticated("unknown bearer token", reason="INVALID_TOKEN"), errors.Unauthenticated,
     "UNAUTHENTICATED"),
    (errors.PermissionDenied("needs admin", reason="MISSING_SCOPE", metadata={"scope": "admin"}),
     errors.PermissionDenied, "PERMISSION_DENIED"),
    (RuntimeError("a bug"), errors.SearchgwError, "INTERNAL"),
    (NotImplementedError(), errors.SearchgwError, "UNIMPLEMENTED"),
]
IDS = ["invalid", "not-found", "exists", "precondition", "exhausted-retry", "exhausted", "deadline", "unavailable",
       "unauthenticated", "denied", "internal", "unimplemented"]


@pytest.mark.parametrize(("raised", "kind", "code"), CASES, ids=IDS)
async def test_the_gateway_client_raises_the_error_the_server_raised(
        served: Served, raised: BaseException, kind: type[errors.SearchgwError], code: str) -> None:
    script, gateway, _ = served
    script.error = raised
    error = await caught(gateway.get_collection("docs"))
    assert type(error) is kind and error.code_name == code
    if isinstance(raised, errors.SearchgwError):
        assert (error.message, error.reason, error.metadata) == (raised.message, raised.reason or code,
                                                                 raised.metadata)
    if isinstance(raised, errors.ResourceExhausted):
        assert isinstance(error, errors.ResourceExhausted)
        assert error.retry_after == raised.retry_after  # from RetryInfo; None without one


@pytest.mark.parametrize(("raised", "kind", "code"), CASES, ids=IDS)
async def test_the_embedder_client_reports_a_dependency_failure_to_its_own_caller(
        served: Served, raised: BaseException, kind: type[errors.SearchgwError], code: str) -> None:
    script, _, embedder = served
    script.error = raised
    error = await caught(embedder.embed(["hi"], field="points[0].text"))
    if kind is errors.InvalidArgument:  # about our caller's request: its field
        assert isinstance(error, errors.InvalidArgument) and error.field == "points[0].text"
        assert error.description == "embedder: texts[3]: is empty"
    elif kind is errors.SearchgwError:  # the embedder failing is not our caller's fault
        assert type(error) is errors.Unavailable and error.message.startswith("embedder: ")
    else:
        assert isinstance(raised, errors.SearchgwError)
        assert type(error) is kind and error.message == f"embedder: {raised.message}"
    if isinstance(raised, errors.ResourceExhausted):
        assert isinstance(error, errors.ResourceExhausted) and error.retry_after == raised.retry_after


async def test_a_client_side_deadline_is_deadline_exceeded(served: Served) -> None:
    script, gateway, _ = served

    async def stall(context: grpc.aio.ServicerContext) -> None:
        await asyncio.sleep(5)

    script.behaviour = stall
    error = await caught(gateway.get_collection("docs", timeout=0.2))
    assert type(error) is errors.DeadlineExceeded


async def test_an_unreachable_server_is_unavailable() -> None:
    async with GatewayClient("127.0.0.1:1") as client:
        error = await caught(client.get_collection("docs", timeout=5))
    assert type(error) is errors.Unavailable and error.message


# -- the codec on its own ---------------------------------------------------------------------------------

@pytest.mark.parametrize("raised", [case[0] for case in CASES if isinstance(case[0], errors.SearchgwError)],
                         ids=[i for case, i in zip(CASES, IDS) if isinstance(case[0], errors.SearchgwError)])
def test_status_for_and_error_from_status_round_trip(raised: errors.SearchgwError) -> None:
    back = error_from_status(status_for(raised))
    assert type(back) is type(raised)
    assert (back.code_name, back.message, back.reason, back.metadata) == (
        raised.code_name, raised.message, raised.reason or raised.code_name, raised.metadata)
    for attribute in ("field", "description", "retry_after"):
        assert getattr(back, attribute, None) == getattr(raised, attribute, None)


def test_a_status_code_without_a_domain_error_keeps_its_name() -> None:
    for code in ("CANCELLED", "UNKNOWN", "ABORTED", "OUT_OF_RANGE", "DATA_LOSS", "INTERNAL"):
        error = error_from_status(status_pb2.Status(code=getattr(code_pb2, code), message="m"))
        assert type(error) is errors.SearchgwError and (error.code_name, error.message) == (code, "m")
    assert errors.SearchgwError.code_name == "UNKNOWN"  # the class keeps its own
