"""One live gateway per fuzz module (a real edge engine, the session's real embedder), set up with
rollouts on a vector and a text collection so writes reach two arms, and the invariants every
fuzzed call must keep."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from searchgw.gateway.client import stage
from searchgw.v1 import collection_service_pb2_grpc as coll_grpc
from searchgw.v1 import embed_service_pb2_grpc as embed_grpc
from searchgw.v1 import rollout_service_pb2_grpc as roll_grpc
from searchgw.v1 import search_service_pb2_grpc as search_grpc
from tests.rigs import GatewayRig

#: Codes that say the server, not the request, is at fault. With healthy dependencies and no injected
#: faults, no input may produce one (UNAVAILABLE would make clients retry a request that can never
#: succeed, and count against a canary in the rollout analysis).
SERVER_FAULTS = frozenset({grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.UNAVAILABLE,
                           grpc.StatusCode.DATA_LOSS, grpc.StatusCode.UNIMPLEMENTED})
#: Generous: the box is shared, and a slow answer is not what these tests look for.
TIMEOUT_S = 30.0

DIMENSION = 4
#: Collections the fuzz may name; the rollouts keep the first four from being deleted or repointed.
VECTOR_ARMS = ("vec-a", "vec-b")
TEXT_ARMS = ("txt-a", "txt-b")
PLAY = ("play-a", "play-b", "play-c")
KNOWN_COLLECTIONS = ("vecs", "docs", "play", *VECTOR_ARMS, *TEXT_ARMS, *PLAY, "missing")
#: Rollouts the fuzz must not end (other tests rely on writes reaching both arms).
PROTECTED_ROLLOUTS = ("fuzz-vectors", "fuzz-texts")


class Live:
    """The running servers, raw stubs on one channel each, and the invariant checks."""

    def __init__(self, rig: GatewayRig, server, embedder_address: str) -> None:
        self.rig = rig
        self.server = server
        self.channel = grpc.aio.insecure_channel(server.address)
        self.embedder_channel = grpc.aio.insecure_channel(embedder_address)
        self.search = search_grpc.SearchServiceStub(self.channel)
        self.collections = coll_grpc.CollectionServiceStub(self.channel)
        self.rollouts = roll_grpc.RolloutServiceStub(self.channel)
        self.embed = embed_grpc.EmbedServiceStub(self.embedder_channel)

    async def close(self) -> None:
        await self.channel.close()
        await self.embedder_channel.close()

    async def call(self, method, request, metadata=()) -> grpc.StatusCode:
        """Make the call; the status it ended with, after checking it is the client's to fix."""
        try:
            await method(request, timeout=TIMEOUT_S, metadata=metadata)
        except grpc.aio.AioRpcError as exc:
            assert_clients_fault(exc)
            return exc.code()
        return grpc.StatusCode.OK

    async def points_counts(self) -> dict[str, int]:
        counts = {}
        for name in (*VECTOR_ARMS, *TEXT_ARMS):
            info = await self.server.backend.inner.get_collection(name)
            counts[name] = info.points_count
        return counts

    async def assert_serving(self) -> None:
        for channel, services in ((self.channel, ("", "searchgw.v1.SearchService", "searchgw.v1.CollectionService",
                                                  "searchgw.v1.RolloutService")),
                                  (self.embedder_channel, ("", "searchgw.v1.EmbedService"))):
            stub = health_pb2_grpc.HealthStub(channel)
            for service in services:
                response = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=TIMEOUT_S)
                assert response.status == health_pb2.HealthCheckResponse.SERVING, service


def assert_clients_fault(exc: grpc.aio.AioRpcError) -> None:
    code, details = exc.code(), exc.details() or ""
    assert code not in SERVER_FAULTS, f"{code.name}: {details[:300]}"
    # A status too large for the trailers reaches the client as RESOURCE_EXHAUSTED about metadata,
    # instead of the error the server meant: error messages must not echo unbounded input.
    assert "metadata size" not in details, details[:300]
    assert len(details) < 2048, f"{len(details)}-character status message: {details[:200]}"


@pytest.fixture(scope="module")
async def live(tmp_path_factory, embedder_server):
    rig = GatewayRig(tmp_path_factory.mktemp("fuzz"), embedder_server.address)
    server, client = await rig.start()
    for name in (*VECTOR_ARMS, *PLAY):
        await client.create_collection(name, dimension=DIMENSION)
    for name in TEXT_ARMS:
        await client.create_collection(name)
    await client.update_alias("vecs", "vec-a")
    await client.update_alias("docs", "txt-a")
    await client.update_alias("play", "play-a")
    for name in VECTOR_ARMS:
        await client.upsert(name, [{"id": i, "vector": [1.0, i, 0.5, -1.0], "payload": {"n": i, "tags": ["x"]}}
                                   for i in range(1, 9)])
    for name in TEXT_ARMS:
        await client.upsert(name, [{"id": i, "text": f"passage number {i}", "payload": {"n": i}} for i in range(1, 5)])
    stages = [stage(50, 3600, 0), stage(100)]
    await client.create_rollout("fuzz-vectors", "vecs", "vec-b", stages=stages)
    await client.create_rollout("fuzz-texts", "docs", "txt-b", stages=stages)
    live = Live(rig, server, embedder_server.address)
    yield live
    await live.close()
    await rig.close()


@pytest.fixture
async def serving(live):
    """The live servers; after the test (a whole batch of examples) both must still be SERVING."""
    yield live
    await live.assert_serving()
