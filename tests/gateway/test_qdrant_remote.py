"""The `qdrant` backend over a real network: `QdrantBackend` (gRPC) against a Qdrant-protocol server.

The server is `tests.qdrant_server`, a test double that speaks Qdrant's own gRPC protocol over the
real engine (qdrant-edge), on 127.0.0.1 port 0 — in this process, or as a child process that is
SIGKILLed and restarted on the same data directory. Nothing is mocked: every call crosses a socket,
qdrant-client's gRPC transport and the server's proto decoding.

- The backend contract suite (tests/gateway/test_backend_contract.py and the contract tests of
  test_backend_snapshots.py) runs here unchanged, over the wire.
- Timeouts, a killed and restarted server, and gateways (in-process, and two `searchgw serve`
  processes) on top of the server.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
import os
import tarfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import grpc
import numpy as np
import pytest
import qdrant_edge as qe
from qdrant_client import grpc as qdrant
from qdrant_client.grpc import (
    collections_service_pb2_grpc,
    points_service_pb2_grpc,
    qdrant_pb2_grpc,
    snapshots_service_pb2_grpc,
)

from searchgw.errors import SearchgwError, Unavailable
from searchgw.gateway.backends import FieldCondition, Filter, Point, QdrantBackend, Range, SearchQuery
from searchgw.gateway.client import GatewayClient
from searchgw.v1 import common_pb2
from tests.faults.processes import ServerProcess, start_gateway
from tests.gateway import backend_helpers as contract
from tests.gateway import test_backend_contract, test_backend_contract_points, test_backend_snapshots
from tests.qdrant_server import QdrantServerProcess, QdrantTestServer

ResultT = TypeVar("ResultT")

# -- the contract, over the wire ----------------------------------------------------------------------
#: Contract tests that cannot run here, and why.
NOT_OVER_THIS_SERVER = {
    # `restore_snapshot` has the server download the archive over Qdrant's REST API
    # (`recover_snapshot` has no gRPC form); the test server speaks gRPC only.
    "test_a_restored_snapshot_has_the_spec_and_exactly_the_points_it_was_taken_with",
}

#: Where the backend contract's tests live.
CONTRACT_MODULES = (test_backend_contract, test_backend_snapshots, test_backend_contract_points)


def _contract_tests() -> dict[str, Callable[..., Any]]:
    """Every test of the backend contract module that takes the `backend` (or `snapshotting`) fixture."""
    found = {}
    for module in CONTRACT_MODULES:
        for name, function in vars(module).items():
            if not name.startswith("test_") or not inspect.iscoroutinefunction(function) or name in NOT_OVER_THIS_SERVER:
                continue
            if {"backend", "snapshotting"} & set(inspect.signature(function).parameters):
                found[name] = function
    return found


CONTRACT = _contract_tests()
# If the contract moves to another module, add it to CONTRACT_MODULES: this must never silently run nothing.
assert len(CONTRACT) >= 30, f"only {len(CONTRACT)} backend contract tests found in {CONTRACT_MODULES}"
globals().update(CONTRACT)  # collected here, where `backend` is the fixture below


@pytest.fixture
async def qdrant_server(tmp_path: Path) -> AsyncIterator[QdrantTestServer]:
    """A Qdrant-protocol server in this process on 127.0.0.1, port 0, over a fresh data directory."""
    server = QdrantTestServer(tmp_path / "qdrant")
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def backend(qdrant_server: QdrantTestServer) -> AsyncIterator[QdrantBackend]:
    """The product's QdrantBackend, talking gRPC to `qdrant_server`."""
    opened = QdrantBackend(qdrant_server.url, timeout=5)
    yield opened
    await opened.close()


@pytest.fixture
async def snapshotting(backend: QdrantBackend) -> QdrantBackend:
    """The contract's snapshot tests take this fixture: a backend whose server keeps snapshots."""
    return backend


#: The RPCs `QdrantBackend` makes (with prefer_grpc), which the test server implements.
BACKEND_RPCS = {
    "Collections/Create", "Collections/Delete", "Collections/Get", "Collections/List", "Collections/ListAliases",
    "Collections/UpdateAliases", "Points/Upsert", "Points/Delete", "Points/Query", "Points/Count", "Points/Scroll",
    "Snapshots/Create", "Snapshots/List",
}
LOW_OR_HIGH = Filter(should=(FieldCondition("i", range=Range(lt=2)), FieldCondition("i", range=Range(gt=3))))


async def test_every_backend_operation_uses_exactly_the_rpcs_the_server_implements(qdrant_server, backend):
    vectors = await contract.filled(backend, count=5)
    await backend.update_alias("docs", "c")
    await backend.search("docs", SearchQuery(vector=vectors[0], limit=2, filter=Filter(must=(LOW_OR_HIGH,))))
    page = await backend.scroll("docs", limit=3)  # a backfill's page: ids in order, vectors and payloads
    assert [p.id for p in page.points] == [0, 1, 2] and page.next_offset == 3
    np.testing.assert_allclose(page.points[1].vector, vectors[1], atol=1e-6)
    assert page.points[1].payload == {"i": 1}
    await backend.delete_points("docs", ids=[4])
    await backend.delete_points("docs", filter=Filter(must=(FieldCondition("i", range=Range(gte=3)),)))
    snapshot = await backend.create_snapshot("docs")
    assert [s.name for s in await backend.list_snapshots("c")] == [snapshot.name]
    assert abs(snapshot.create_time - time.time()) < 60  # the wire's UTC timestamp read as UTC
    await backend.optimize("docs")
    stranger = QdrantBackend(qdrant_server.url, timeout=5)  # knows no spec yet: it asks the server for one
    try:
        info = await stranger.get_collection("docs")
        assert (info.spec.name, info.spec.embedding_model, info.points_count, info.aliases) == ("c", "model-a", 3,
                                                                                              ("docs",))
        assert [c.spec.name for c in await stranger.list_collections()] == ["c"]
    finally:
        await stranger.close()
    await backend.delete_alias("docs")
    await backend.delete_collection("c")
    assert set(qdrant_server.calls) == BACKEND_RPCS


async def test_the_server_answers_like_qdrant_to_wrong_and_unsupported_requests(qdrant_server, backend):
    await contract.filled(backend, count=3)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{qdrant_server.port}") as channel:
        points = points_service_pb2_grpc.PointsStub(channel)
        health = await qdrant_pb2_grpc.QdrantStub(channel).HealthCheck(qdrant.HealthCheckRequest())
        assert health.title.startswith("qdrant - vector search engine")

        async def status(call: Awaitable[Any]) -> tuple[grpc.StatusCode, str]:
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await call
            return raised.value.code(), raised.value.details()

        nearest = qdrant.Query(nearest=qdrant.VectorInput(dense=qdrant.DenseVector(data=[0.1] * 8)))
        code, message = await status(points.Query(qdrant.QueryPoints(collection_name="nope", query=nearest)))
        assert (code, message) == (grpc.StatusCode.NOT_FOUND, "Not found: Collection `nope` doesn't exist!")
        short = qdrant.PointStruct(id=qdrant.PointId(num=1), vectors=qdrant.Vectors(
            vector=qdrant.Vector(dense=qdrant.DenseVector(data=[0.1] * 7))))
        code, message = await status(points.Upsert(qdrant.UpsertPoints(collection_name="c", points=[short])))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "expected dim: 8, got 7" in message
        code, message = await status(points.Query(qdrant.QueryPoints(
            collection_name="c", query=qdrant.Query(sample=qdrant.Sample.Random))))
        assert code == grpc.StatusCode.UNIMPLEMENTED and "queries other than nearest" in message
        document = qdrant.Query(nearest=qdrant.VectorInput(document=qdrant.Document(text="x", model="acme/splade")))
        code, message = await status(points.Query(qdrant.QueryPoints(collection_name="c", query=document, using="s")))
        assert code == grpc.StatusCode.UNIMPLEMENTED and "only qdrant/bm25" in message
        bm25 = qdrant.Query(nearest=qdrant.VectorInput(document=qdrant.Document(text="x", model="qdrant/bm25")))
        code, message = await status(points.Query(qdrant.QueryPoints(collection_name="c", query=bm25, using="bm25")))
        assert (code, message) == (grpc.StatusCode.INVALID_ARGUMENT, "Wrong input: Not existing vector name error: bm25")
        code, _ = await status(points.Recommend(qdrant.RecommendPoints(collection_name="c")))  # Get is served now
        assert code == grpc.StatusCode.UNIMPLEMENTED
        collections = collections_service_pb2_grpc.CollectionsStub(channel)
        code, message = await status(collections.Create(qdrant.CreateCollection(collection_name="x")))
        assert code == grpc.StatusCode.UNIMPLEMENTED and "one unnamed dense vector" in message
    assert await backend.count("c") == 3  # nothing refused wrote anything


async def test_the_other_implemented_rpcs_work_over_the_wire(qdrant_server, backend):
    await contract.filled(backend, count=2)
    await backend.update_alias("docs", "c")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{qdrant_server.port}") as channel:
        collections = collections_service_pb2_grpc.CollectionsStub(channel)
        exists = [(await collections.CollectionExists(qdrant.CollectionExistsRequest(collection_name=name))).result.exists
                  for name in ("c", "nope")]
        assert exists == [True, False]
        aliases = await collections.ListCollectionAliases(qdrant.ListCollectionAliasesRequest(collection_name="c"))
        assert [(a.alias_name, a.collection_name) for a in aliases.aliases] == [("docs", "c")]
        rename = qdrant.AliasOperations(rename_alias=qdrant.RenameAlias(old_alias_name="docs", new_alias_name="live"))
        await collections.UpdateAliases(qdrant.ChangeAliases(actions=[rename]))
        snapshots = snapshots_service_pb2_grpc.SnapshotsStub(channel)
        taken = await snapshots.Create(qdrant.CreateSnapshotRequest(collection_name="live"))
        await snapshots.Delete(qdrant.DeleteSnapshotRequest(collection_name="c",
                                                            snapshot_name=taken.snapshot_description.name))
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await snapshots.CreateFull(qdrant.CreateFullSnapshotRequest())
        assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED
        deleted = await collections.Delete(qdrant.DeleteCollection(collection_name="nope"))
        assert deleted.result is False  # Qdrant answers OK, result false
    assert await backend.list_aliases() == {"live": "c"}
    assert await backend.list_snapshots("c") == []


async def test_a_snapshot_taken_over_the_wire_holds_the_acknowledged_points(qdrant_server, backend, tmp_path):
    vectors = await contract.filled(backend, count=20)
    snapshot = await backend.create_snapshot("c")
    await backend.upsert("c", [Point(id=100, vector=vectors[0])])  # after the snapshot: not in it
    archive = qdrant_server.data_dir / "snapshots" / "c" / snapshot.name
    assert hashlib.sha256(archive.read_bytes()).hexdigest() == snapshot.checksum
    with tarfile.open(archive) as unpacked:
        unpacked.extractall(tmp_path / "unpacked", filter="data")
    for name, size in json.loads((tmp_path / "unpacked" / "sizes.json").read_text()).items():
        os.truncate(tmp_path / "unpacked" / name, size)  # the preallocated zeros the archive leaves out
    shard = qe.EdgeShard.load(str(tmp_path / "unpacked" / "shard"))
    try:
        assert shard.count(qe.CountRequest(exact=True)) == 20
        (hit,) = shard.query(qe.QueryRequest(limit=1, query=qe.Query.Nearest(vectors[7].tolist()), with_payload=True))
        assert (hit.id, hit.payload) == (7, {"i": 7})
    finally:
        shard.close()


async def test_messages_over_4_mib_cross_the_wire_both_ways(backend):
    await backend.create_collection(contract.spec())
    vectors = contract.unit_vectors(1000, seed=5)
    text = "x" * 6000  # 1000 points of ~6 kB: a 6 MB Upsert, and a 6 MB Query answer
    await backend.upsert("c", [Point(id=i, vector=v, payload={"text": text}) for i, v in enumerate(vectors)])
    hits = await backend.search("c", SearchQuery(vector=vectors[0], limit=1000, with_payload=True))
    assert len(hits) == 1000 and all(hit.payload == {"text": text} for hit in hits)


def test_a_qdrant_url_names_its_grpc_port_in_the_query_or_is_refused():
    backend = QdrantBackend("http://127.0.0.1:6333?grpc_port=7334")
    assert backend._client._client._grpc_port == 7334  # the server at http://127.0.0.1:6333, gRPC on 7334
    for bad in ("http://h:6333?grpc_port=0", "http://h:6333?grpc_port=x", "http://h:6333?tls=1",
                "http://h:6333?grpc_port=1&grpc_port=2"):
        with pytest.raises(ValueError, match="grpc_port"):
            QdrantBackend(bad)


# -- timeouts -----------------------------------------------------------------------------------------
async def test_a_stalled_search_fails_as_unavailable_within_the_backend_timeout(qdrant_server):
    backend = QdrantBackend(qdrant_server.url, timeout=1)
    try:
        vectors = await contract.filled(backend, count=5)
        qdrant_server.faults.hold("Points/Query")
        started = time.monotonic()
        with pytest.raises(Unavailable, match="DEADLINE_EXCEEDED"):
            await backend.search("c", SearchQuery(vector=vectors[2], limit=1))
        elapsed = time.monotonic() - started
        assert qdrant_server.faults.arrived == 1
        assert 0.9 <= elapsed < 2.5, elapsed
        qdrant_server.faults.release()
        assert [hit.id for hit in await backend.search("c", SearchQuery(vector=vectors[2], limit=1))] == [2]
    finally:
        await backend.close()


async def test_a_stalled_upsert_is_unavailable_and_undecided_and_its_retry_lands_once(qdrant_server):
    backend = QdrantBackend(qdrant_server.url, timeout=1)
    try:
        await contract.filled(backend, count=5)
        qdrant_server.faults.hold("Points/Upsert")
        batch = [Point(id=100 + i, vector=v) for i, v in enumerate(contract.unit_vectors(3, seed=3))]
        with pytest.raises(Unavailable, match="DEADLINE_EXCEEDED"):
            await backend.upsert("c", batch)
        qdrant_server.faults.release()
        await backend.upsert("c", batch)  # the retry docs/durability.md prescribes: ids make it idempotent
        assert await backend.count("c") == 8
    finally:
        await backend.close()


# -- a server killed mid-load ---------------------------------------------------------------------
async def eventually(call: Callable[[], Awaitable[ResultT]], *, within: float) -> tuple[ResultT, int]:
    """`call()`'s first answer that is not UNAVAILABLE, polled until `within` seconds pass; and the failures."""
    deadline = time.monotonic() + within
    failures = 0
    while True:
        try:
            return await call(), failures
        except SearchgwError as error:  # the backend's Unavailable, or the gateway client's
            failures += 1
            if error.code_name != "UNAVAILABLE" or time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.1)  # the poll interval: nothing announces that a client reconnected


@pytest.mark.slow
async def test_a_server_killed_mid_load_fails_calls_as_unavailable_then_searches_recover_after_a_restart(tmp_path):
    data_dir = tmp_path / "qdrant"
    server = await QdrantServerProcess.start(data_dir, tmp_path / "qdrant-1.log", hold=("Points/Query",))
    backend = QdrantBackend(server.url, timeout=5)
    try:
        vectors = await contract.filled(backend, count=50)
        await backend.update_alias("docs", "c")
        in_flight = [asyncio.create_task(backend.search("docs", SearchQuery(vector=vectors[i], limit=1)))
                     for i in range(4)]
        for _ in in_flight:
            assert await server.next_line() == "held Points/Query"
        await server.kill()  # four searches are in the server when it dies
        outcomes = await asyncio.gather(*in_flight, return_exceptions=True)
        assert all(isinstance(outcome, Unavailable) for outcome in outcomes), outcomes

        calls: list[Callable[[], Awaitable[Any]]] = [
            lambda: backend.search("docs", SearchQuery(vector=vectors[0], limit=1)),
            lambda: backend.count("docs"),
            lambda: backend.upsert("docs", [Point(id=1000, vector=vectors[0])]),
            lambda: backend.list_aliases(),
        ]
        for call in calls:  # while it is down: Unavailable, never anything unexpected
            with pytest.raises(Unavailable):
                await call()

        server = await QdrantServerProcess.start(data_dir, tmp_path / "qdrant-2.log", port=server.port)
        started = time.monotonic()
        hits, failures = await eventually(
            lambda: backend.search("docs", SearchQuery(vector=vectors[7], limit=1, with_payload=True)), within=20)
        recovered_in = time.monotonic() - started
        assert [(hit.id, hit.payload) for hit in hits] == [(7, {"i": 7})]
        assert await backend.count("docs") == 50  # the refused upsert never landed
        assert await backend.list_aliases() == {"docs": "c"}
        print(f"\nsearches recovered {recovered_in:.2f} s after the restart ({failures} polls failed Unavailable)")
    finally:
        await backend.close()
        await server.stop()


# -- gateways on the server -------------------------------------------------------------------------
PASSAGES = [
    "Knead the dough until smooth, then let the bread rise for an hour before baking.",
    "A canary rollout sends a small share of traffic to the new version first.",
    "The night train from Vienna reaches Venice early in the morning.",
    "Simmer the tomatoes with garlic and olive oil for twenty minutes.",
]


async def test_a_gateway_on_the_qdrant_backend_serves_text_searches_from_the_server(rig, qdrant_server):
    _, client = await rig.start("qdrant", qdrant_url=qdrant_server.url)
    await client.create_collection("docs-v1")
    await client.upsert("docs-v1", [{"id": i + 1, "text": text, "payload": {"text": text, "n": i}}
                                    for i, text in enumerate(PASSAGES)])
    await client.update_alias("docs", "docs-v1")
    question = "how long should bread dough rise?"
    response = await client.search("docs", text=question, limit=2, with_payload=True)
    assert response.points[0].payload.fields["text"].string_value == PASSAGES[0]
    assert response.route.collection == "docs-v1"
    later = common_pb2.Filter(must=[common_pb2.Condition(field=common_pb2.FieldCondition(
        key="n", range=common_pb2.Range(gte=2)))])
    filtered = await client.search("docs", text=question, limit=4, filter=later)
    assert sorted(point.id.num for point in filtered.points) == [3, 4]
    assert (await client.get_collection("docs")).points_count == 4
    assert {"Points/Upsert", "Points/Query", "Collections/UpdateAliases"} <= set(qdrant_server.calls)


@pytest.mark.slow
async def test_a_gateway_answers_unavailable_while_its_qdrant_server_is_down_then_recovers(rig, tmp_path):
    data_dir = tmp_path / "qdrant"
    server = await QdrantServerProcess.start(data_dir, tmp_path / "qdrant-1.log")
    try:
        _, client = await rig.start("qdrant", qdrant_url=server.url)
        await client.create_collection("kv", dimension=4)
        await client.upsert("kv", [{"id": i, "vector": [1.0, float(i), 0.0, 0.0]} for i in range(1, 11)])
        await server.kill()
        calls: list[Callable[[], Awaitable[Any]]] = [
            lambda: client.search("kv", vector=[1.0, 4.0, 0.0, 0.0], limit=1),
            lambda: client.upsert("kv", [{"id": 11, "vector": [1.0, 11.0, 0.0, 0.0]}]),
            lambda: client.get_collection("kv"),
        ]
        for call in calls:  # the gateway's status, never INTERNAL
            with pytest.raises(SearchgwError) as raised:
                await call()
            assert raised.value.code_name == "UNAVAILABLE", raised.value

        server = await QdrantServerProcess.start(data_dir, tmp_path / "qdrant-2.log", port=server.port)
        response, _ = await eventually(lambda: client.search("kv", vector=[1.0, 4.0, 0.0, 0.0], limit=1), within=20)
        assert [point.id.num for point in response.points] == [4]
        assert (await client.get_collection("kv")).points_count == 10
    finally:
        await server.stop()


async def _gateway(tmp_path: Path, name: str, qdrant_url: str) -> ServerProcess:
    return await start_gateway(tmp_path / name, tmp_path / f"{name}.log", "--backend", "qdrant",
                               "--qdrant-url", qdrant_url, "--qdrant-timeout-s", "5")


#: How long QdrantBackend trusts its snapshot of the alias names (its `names_ttl` default).
NAMES_TTL_S = inspect.signature(QdrantBackend).parameters["names_ttl"].default


@pytest.mark.slow
async def test_two_gateway_processes_on_one_server_see_each_others_writes_and_alias_switches(tmp_path, qdrant_server):
    first, second = await asyncio.gather(_gateway(tmp_path, "gateway-1", qdrant_server.url),
                                         _gateway(tmp_path, "gateway-2", qdrant_server.url))
    try:
        async with GatewayClient(first.address) as one, GatewayClient(second.address) as two:
            await one.create_collection("kv", dimension=4)
            await one.upsert("kv", [{"id": i, "vector": [1.0, float(i), 0.0, 0.0], "payload": {"i": i}}
                                    for i in range(1, 11)])
            hits = await two.search("kv", vector=[1.0, 4.0, 0.0, 0.0], limit=1, with_payload=True)
            assert [(p.id.num, p.payload.fields["i"].number_value) for p in hits.points] == [(4, 4.0)]
            await two.delete("kv", ids=[4])
            await two.update_alias("live", "kv")
            hits = await one.search("live", vector=[1.0, 4.0, 0.0, 0.0], limit=1)
            assert hits.points[0].id.num != 4 and hits.route.collection == "kv"
            assert (await one.get_collection("live")).points_count == 9
            assert await one.list_aliases() == {"live": "kv"}

            await two.create_collection("kv2", dimension=4)
            await two.upsert("kv2", [{"id": 99, "vector": [1.0, 4.0, 0.0, 0.0]}])
            await two.update_alias("live", "kv2")
            switched = time.monotonic()
            deadline = switched + NAMES_TTL_S + 5
            while (hits := await one.search("live", vector=[1.0, 4.0, 0.0, 0.0], limit=1)).route.collection == "kv":
                assert time.monotonic() < deadline, "the first gateway still reads the old alias target"
                await asyncio.sleep(0.1)  # the poll interval: nothing announces another process's switch
            assert [point.id.num for point in hits.points] == [99]
            print(f"\nthe other gateway followed the alias switch after {time.monotonic() - switched:.2f} s")
    finally:
        await asyncio.gather(first.stop(), second.stop())
