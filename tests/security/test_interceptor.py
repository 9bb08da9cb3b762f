"""AuthInterceptor on a real grpc.aio server, inside DomainErrorInterceptor as the servers wire it."""

from __future__ import annotations

import contextlib
import inspect
import logging
from types import SimpleNamespace

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from searchgw.rpc import DomainErrorInterceptor, ServingState, add_health_and_reflection, current_rpc
from searchgw.security import AuthInterceptor, RateLimiter, interceptors_for, load_token_store, peer_host
from searchgw.settings import SettingsError
from searchgw.v1 import embed_service_pb2 as pb
from searchgw.v1 import embed_service_pb2_grpc as pb_grpc
from searchgw.testing import ManualClock
from tests.security.helpers import write_token_file

EMBED = "/searchgw.v1.EmbedService/Embed"
MODEL_INFO = "/searchgw.v1.EmbedService/GetModelInfo"
COUNT = "/test.v1.StreamService/Count"
WRITE_COUNT = "/test.v1.StreamService/WriteCount"
SUM = "/test.v1.StreamService/Sum"
UNLISTED = "/test.v1.StreamService/Unlisted"
#: Embed needs read, GetModelInfo admin (in this test), the streams read; Unlisted is in no map.
SCOPES = {EMBED: "read", MODEL_INFO: "admin", COUNT: "read", WRITE_COUNT: "read", SUM: "write"}

TOKENS = {
    "reader": ("reader-secret-4f1c", ["read"]),
    "writer": ("writer-secret-9a2e", ["write"]),
    "ops": ("ops-secret-77d0", ["admin"]),
}


def bearer(name: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {TOKENS[name][0]}"),)


class StubEmbedder(pb_grpc.EmbedServiceServicer):
    """Answers without a model, and records the principal label it saw."""

    def __init__(self) -> None:
        self.principals: list[str | None] = []

    async def Embed(self, request, context):
        self.principals.append(current_rpc().labels.get("principal"))
        vectors = [pb.Embedding(values=[1.0]) for _ in request.texts]
        return pb.EmbedResponse(model="stub", dimension=1, embeddings=vectors)

    async def GetModelInfo(self, request, context):
        return pb.GetModelInfoResponse(default_model="stub")


async def _count(request: bytes, context):
    for i in range(int(request or b"0")):
        yield str(i).encode()


async def _write_count(request: bytes, context):
    for i in range(int(request or b"0")):
        await context.write(str(i).encode())


async def _sum(requests, context):
    total = 0
    async for item in requests:
        total += int(item)
    return str(total).encode()


async def _unlisted(request: bytes, context):
    return b"should not be reachable with auth on"


STREAM_SERVICE = grpc.method_handlers_generic_handler("test.v1.StreamService", {
    "Count": grpc.unary_stream_rpc_method_handler(_count),
    "WriteCount": grpc.unary_stream_rpc_method_handler(_write_count),
    "Sum": grpc.stream_unary_rpc_method_handler(_sum),
    "Unlisted": grpc.unary_unary_rpc_method_handler(_unlisted),
})


class Recorder:
    """An RpcObserver that keeps what DomainErrorInterceptor reports."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, str]]] = []

    def observe(self, method, code, seconds, labels):
        self.calls.append((method, code, dict(labels)))


#: How the two are wired: as two interceptors (the embedder), or as one (the gateway hands the
#: AuthInterceptor to DomainErrorInterceptor as its `admission`); every test here runs both ways.
WIRINGS = {"chained": lambda recorder, auth: [DomainErrorInterceptor(recorder), auth],
           "one interceptor": lambda recorder, auth: [DomainErrorInterceptor(recorder, admission=auth,
                                                                              tracing=True)]}
_wiring = ["chained"]


@pytest.fixture(autouse=True, params=list(WIRINGS))
def wiring(request):
    _wiring[0] = request.param
    yield request.param
    _wiring[0] = "chained"


@contextlib.asynccontextmanager
async def serving(auth: AuthInterceptor):
    recorder = Recorder()
    servicer = StubEmbedder()
    server = grpc.aio.server(interceptors=WIRINGS[_wiring[0]](recorder, auth))
    pb_grpc.add_EmbedServiceServicer_to_server(servicer, server)
    server.add_generic_rpc_handlers((STREAM_SERVICE,))
    state = ServingState(["searchgw.v1.EmbedService"])
    await add_health_and_reflection(server, state)
    await state.set_serving(True)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield SimpleNamespace(channel=channel, stub=pb_grpc.EmbedServiceStub(channel), recorder=recorder,
                              servicer=servicer)
    finally:
        await channel.close()
        await server.stop(None)


@pytest.fixture
def tokens(tmp_path):
    return load_token_store(write_token_file(tmp_path / "tokens.yaml", TOKENS))


@pytest.fixture
async def env(tokens):
    async with serving(AuthInterceptor(tokens, SCOPES, None)) as env:
        yield env


def status_of(exc: grpc.aio.AioRpcError) -> status_pb2.Status:
    for key, value in exc.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            return status_pb2.Status.FromString(value)
    raise AssertionError("no grpc-status-details-bin in the trailing metadata")


def detail(status: status_pb2.Status, kind):
    for packed in status.details:
        if packed.Is(kind.DESCRIPTOR):
            message = kind()
            packed.Unpack(message)
            return message
    raise AssertionError(f"no {kind.DESCRIPTOR.name} in the status details")


async def embed(env, metadata=()):
    return await env.stub.Embed(pb.EmbedRequest(texts=["hi"]), metadata=metadata, timeout=5)


async def refused(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


async def test_call_without_token_is_unauthenticated(env):
    exc = await refused(embed(env))
    assert exc.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "authorization: Bearer <token>" in exc.details()
    assert detail(status_of(exc), error_details_pb2.ErrorInfo).reason == "MISSING_TOKEN"
    assert env.servicer.principals == []


@pytest.mark.parametrize(("value", "secret"), [
    ("Bearer not-a-known-token", "not-a-known-token"),
    ("Bearer reader-secret-4f1", "reader-secret-4f1"),
    ("Bearer ", None),
    ("Basic cmVhZGVyOnNlY3JldA==", "cmVhZGVyOnNlY3JldA=="),
    ("reader-secret-4f1c", "reader-secret-4f1c"),
    ("Bearer reader-secret-4f1c extra", "reader-secret-4f1c"),
])
async def test_bad_or_malformed_token_is_unauthenticated_and_not_echoed(env, value, secret):
    exc = await refused(embed(env, (("authorization", value),)))
    assert exc.code() is grpc.StatusCode.UNAUTHENTICATED
    if secret is not None:
        assert secret not in exc.details()
        assert secret not in str(status_of(exc))
    assert env.servicer.principals == []


async def test_two_authorization_entries_are_refused(env):
    exc = await refused(embed(env, bearer("reader") + bearer("ops")))
    assert exc.code() is grpc.StatusCode.UNAUTHENTICATED


async def test_scheme_is_case_insensitive(env):
    response = await embed(env, (("authorization", f"bearer {TOKENS['reader'][0]}"),))
    assert response.model == "stub"


async def test_valid_token_is_served_and_its_principal_labels_the_call(env):
    response = await embed(env, bearer("reader"))
    assert response.model == "stub"
    assert env.servicer.principals == ["reader"]
    assert env.recorder.calls[-1] == (EMBED, "OK", {"principal": "reader"})


async def test_read_token_on_an_admin_method_is_permission_denied_naming_the_scope(env):
    exc = await refused(env.stub.GetModelInfo(pb.GetModelInfoRequest(), metadata=bearer("reader"), timeout=5))
    assert exc.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "'admin' scope" in exc.details()
    info = detail(status_of(exc), error_details_pb2.ErrorInfo)
    assert info.reason == "MISSING_SCOPE"
    assert info.metadata["scope"] == "admin"


async def test_write_token_does_not_reach_admin_methods_but_admin_reaches_all(env):
    exc = await refused(env.stub.GetModelInfo(pb.GetModelInfoRequest(), metadata=bearer("writer"), timeout=5))
    assert exc.code() is grpc.StatusCode.PERMISSION_DENIED
    assert (await embed(env, bearer("writer"))).model == "stub"
    assert (await embed(env, bearer("ops"))).model == "stub"
    info = await env.stub.GetModelInfo(pb.GetModelInfoRequest(), metadata=bearer("ops"), timeout=5)
    assert info.default_model == "stub"


async def test_method_missing_from_the_scope_map_is_denied_even_to_admin(env):
    call = env.channel.unary_unary(UNLISTED)(b"", metadata=bearer("ops"), timeout=5)
    exc = await refused(call)
    assert exc.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "no scope is configured" in exc.details()


async def test_streaming_responses_are_guarded_too(env):
    stream = env.channel.unary_stream(COUNT)
    exc = await refused(_collect(stream(b"3", timeout=5)))
    assert exc.code() is grpc.StatusCode.UNAUTHENTICATED
    assert await _collect(stream(b"3", metadata=bearer("reader"), timeout=5)) == [b"0", b"1", b"2"]


async def test_guarded_handlers_keep_their_shape(tokens):
    """gRPC runs a coroutine stream handler (context.write) differently from an async generator."""
    auth = AuthInterceptor(tokens, SCOPES, None)
    handlers = {COUNT: STREAM_SERVICE.service(SimpleNamespace(method=COUNT)),
                WRITE_COUNT: STREAM_SERVICE.service(SimpleNamespace(method=WRITE_COUNT))}

    async def continuation(details):
        return handlers[details.method]

    generator = await auth.intercept_service(continuation, SimpleNamespace(method=COUNT, invocation_metadata=()))
    writer = await auth.intercept_service(continuation, SimpleNamespace(method=WRITE_COUNT, invocation_metadata=()))
    assert inspect.isasyncgenfunction(generator.unary_stream)
    assert inspect.iscoroutinefunction(writer.unary_stream)


async def test_streaming_requests_are_guarded_too(env):
    call = env.channel.stream_unary(SUM)
    exc = await refused(call(iter([b"1", b"2"]), metadata=bearer("reader"), timeout=5))
    assert exc.code() is grpc.StatusCode.PERMISSION_DENIED
    exc = await refused(call(iter([b"1", b"2"]), timeout=5))
    assert exc.code() is grpc.StatusCode.UNAUTHENTICATED
    assert await call(iter([b"1", b"2"]), metadata=bearer("writer"), timeout=5) == b"3"


async def _collect(call):
    return [item async for item in call]


async def test_health_and_reflection_stay_open_without_a_token(env):
    health = health_pb2_grpc.HealthStub(env.channel)
    response = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    assert response.status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(env.channel)
    call = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                           timeout=5)
    services = [s.name for response in await _collect(call) for s in response.list_services_response.service]
    assert "searchgw.v1.EmbedService" in services


async def test_rate_limit_is_resource_exhausted_with_retry_info(tokens):
    clock = ManualClock()
    async with serving(AuthInterceptor(tokens, SCOPES, RateLimiter(2.0, 2, clock=clock))) as env:
        await embed(env, bearer("reader"))
        await embed(env, bearer("reader"))
        exc = await refused(embed(env, bearer("reader")))
        assert exc.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        status = status_of(exc)
        assert detail(status, error_details_pb2.RetryInfo).retry_delay.ToNanoseconds() == 500_000_000
        assert detail(status, error_details_pb2.ErrorInfo).reason == "RATE_LIMITED"
        # another principal has its own bucket, and health is never limited
        await embed(env, bearer("ops"))
        for _ in range(5):
            await health_pb2_grpc.HealthStub(env.channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        clock.advance(0.5)
        await embed(env, bearer("reader"))


async def test_rate_limit_applies_after_authentication(tokens):
    clock = ManualClock()
    async with serving(AuthInterceptor(tokens, SCOPES, RateLimiter(1.0, 1, clock=clock))) as env:
        for _ in range(3):  # refused calls take nothing from the bucket
            assert (await refused(embed(env))).code() is grpc.StatusCode.UNAUTHENTICATED
            exc = await refused(env.stub.GetModelInfo(pb.GetModelInfoRequest(), metadata=bearer("reader"), timeout=5))
            assert exc.code() is grpc.StatusCode.PERMISSION_DENIED
        await embed(env, bearer("reader"))


async def test_without_tokens_every_method_is_open_and_limited_per_peer_host():
    clock = ManualClock()
    async with serving(AuthInterceptor(None, SCOPES, RateLimiter(1.0, 1, clock=clock))) as env:
        assert await env.channel.unary_unary(UNLISTED)(b"", timeout=5) == b"should not be reachable with auth on"
        exc = await refused(embed(env))
        assert exc.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "127.0.0.1" in exc.details()
        clock.advance(1.0)
        await embed(env)
        assert env.servicer.principals == [None]  # the peer is not a principal label


async def test_tokens_never_reach_the_logs(env, caplog):
    caplog.set_level(logging.DEBUG)
    for name in TOKENS:
        await refused(env.stub.GetModelInfo(pb.GetModelInfoRequest(), metadata=bearer(name) if name != "ops" else
                                            (("authorization", "Bearer ops-secret-77d"),), timeout=5))
    logged = " ".join(f"{record.getMessage()} {record.__dict__}" for record in caplog.records)
    assert caplog.records
    for token, _scopes in TOKENS.values():
        assert token not in logged
    assert "ops-secret-77d" not in logged


def test_unknown_scope_in_the_method_map_is_a_programming_error(tokens):
    with pytest.raises(ValueError, match="superuser"):
        AuthInterceptor(tokens, {EMBED: "superuser"}, None)


@pytest.mark.parametrize(("peer", "host"), [
    ("ipv4:10.1.2.3:5000", "10.1.2.3"),
    ("ipv6:[::1]:5000", "::1"),
    ("ipv6:%5B2001:db8::1%5D:443", "2001:db8::1"),
    ("unix:/tmp/sock", "unix:/tmp/sock"),
    ("", "unknown"),
])
def test_peer_host_drops_the_port(peer, host):
    assert peer_host(peer) == host


def _settings(**values):
    base = dict(auth_tokens_file=None, rate_limit_rps=0.0, rate_limit_burst=0, tls_cert=None)
    base.update(values)
    return SimpleNamespace(**base)


def test_interceptors_for_is_empty_when_nothing_is_configured():
    assert interceptors_for(_settings(), SCOPES) == []


def test_interceptors_for_builds_one_interceptor_from_the_settings(tmp_path):
    path = write_token_file(tmp_path / "tokens.yaml", TOKENS)
    (only,) = interceptors_for(_settings(auth_tokens_file=path), SCOPES)
    assert isinstance(only, AuthInterceptor)
    assert only._tokens is not None and only._limiter is None
    (limited,) = interceptors_for(_settings(rate_limit_rps=2.5), SCOPES)
    assert limited._tokens is None and limited._limiter.burst == 3  # default burst: one second of calls
    (burst,) = interceptors_for(_settings(rate_limit_rps=2.5, rate_limit_burst=10), SCOPES)
    assert burst._limiter.burst == 10


def test_interceptors_for_refuses_a_bad_token_file_or_a_burst_without_rate(tmp_path):
    bad = tmp_path / "tokens.yaml"
    bad.write_text("tokens: [{name: ops}]\n")
    with pytest.raises(SettingsError, match=r"tokens\.yaml: tokens\[0\]"):
        interceptors_for(_settings(auth_tokens_file=bad), SCOPES)
    with pytest.raises(SettingsError, match="--rate-limit-burst"):
        interceptors_for(_settings(rate_limit_burst=5), SCOPES)


def test_interceptors_for_reads_both_servers_settings(tmp_path):
    from searchgw.embedder.settings import EmbedderSettings
    from searchgw.gateway.settings import GatewaySettings

    path = write_token_file(tmp_path / "tokens.yaml", TOKENS)
    for cls in (EmbedderSettings, GatewaySettings):
        (only,) = interceptors_for(cls(auth_tokens_file=path, rate_limit_rps=1.0), SCOPES)
        assert only._limiter.burst == 1
