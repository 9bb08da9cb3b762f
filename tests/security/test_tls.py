"""TLS and mutual TLS on a real grpc.aio server opened with `security.bind`."""

from __future__ import annotations

import contextlib

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from searchgw.rpc import DomainErrorInterceptor
from searchgw.security import AuthInterceptor, bind, channel_credentials, load_token_store, server_credentials
from searchgw.settings import SettingsError
from tests.security.certs import make_pki
from tests.security.helpers import write_token_file

HEALTH_CHECK = health_pb2.HealthCheckRequest(service="")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@contextlib.asynccontextmanager
async def health_server(*, cert=None, key=None, client_ca=None, interceptors=(), handlers=()):
    """A server with the health service (SERVING) and `handlers`, opened with `bind`; yields its address."""
    server = grpc.aio.server(interceptors=list(interceptors))
    if handlers:
        server.add_generic_rpc_handlers(tuple(handlers))
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    port = bind(server, "127.0.0.1:0", cert=cert, key=key, client_ca=client_ca)
    assert port > 0
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


async def check(address: str, credentials: grpc.ChannelCredentials | None, metadata=()):
    channel = (grpc.aio.secure_channel(address, credentials) if credentials is not None
               else grpc.aio.insecure_channel(address))
    async with channel:
        return await health_pb2_grpc.HealthStub(channel).Check(HEALTH_CHECK, metadata=metadata, timeout=5)


async def refused_code(address: str, credentials: grpc.ChannelCredentials | None) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await check(address, credentials)
    return caught.value.code()


@pytest.fixture
async def mtls(pki):
    async with health_server(cert=pki.server_cert, key=pki.server_key, client_ca=pki.ca_cert) as address:
        yield address


async def test_mutual_tls_serves_a_client_with_a_certificate_from_the_ca(mtls, pki):
    response = await check(mtls, channel_credentials(pki.ca_cert, pki.client_cert, pki.client_key))
    assert response.status == health_pb2.HealthCheckResponse.SERVING


async def test_mutual_tls_refuses_a_client_without_a_certificate(mtls, pki):
    assert await refused_code(mtls, channel_credentials(pki.ca_cert)) is grpc.StatusCode.UNAVAILABLE


async def test_mutual_tls_refuses_a_certificate_from_another_ca(mtls, pki):
    credentials = channel_credentials(pki.ca_cert, pki.other_client_cert, pki.other_client_key)
    assert await refused_code(mtls, credentials) is grpc.StatusCode.UNAVAILABLE


async def test_mutual_tls_refuses_plain_text_clients(mtls):
    assert await refused_code(mtls, None) is grpc.StatusCode.UNAVAILABLE


async def test_server_tls_serves_clients_without_certificates(pki):
    async with health_server(cert=pki.server_cert, key=pki.server_key) as address:
        response = await check(address, channel_credentials(pki.ca_cert))
        assert response.status == health_pb2.HealthCheckResponse.SERVING
        assert await refused_code(address, None) is grpc.StatusCode.UNAVAILABLE


async def test_client_refuses_a_server_its_ca_did_not_sign(pki):
    async with health_server(cert=pki.server_cert, key=pki.server_key) as address:
        assert await refused_code(address, channel_credentials(pki.other_ca_cert)) is grpc.StatusCode.UNAVAILABLE


async def test_bind_without_certificates_opens_a_plain_text_port():
    async with health_server() as address:
        assert (await check(address, None)).status == health_pb2.HealthCheckResponse.SERVING


async def _echo(request: bytes, context) -> bytes:
    return request


ECHO = "/test.v1.EchoService/Echo"
ECHO_SERVICE = grpc.method_handlers_generic_handler(
    "test.v1.EchoService", {"Echo": grpc.unary_unary_rpc_method_handler(_echo)})


async def test_mutual_tls_and_bearer_token_together(pki, tmp_path):
    """The gateway → embedder set-up: a client certificate and a token on the same call."""
    tokens = load_token_store(write_token_file(tmp_path / "tokens.yaml", {"gateway": ("gw-token", ["read"])}))
    auth = AuthInterceptor(tokens, {ECHO: "read"}, None)
    async with health_server(cert=pki.server_cert, key=pki.server_key, client_ca=pki.ca_cert,
                             interceptors=[DomainErrorInterceptor(), auth], handlers=[ECHO_SERVICE]) as address:
        credentials = channel_credentials(pki.ca_cert, pki.client_cert, pki.client_key)
        async with grpc.aio.secure_channel(address, credentials) as channel:
            echo = channel.unary_unary(ECHO)
            assert await echo(b"hi", metadata=(("authorization", "Bearer gw-token"),), timeout=5) == b"hi"
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await echo(b"hi", timeout=5)
            assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
            # health stays open to a client that passed the TLS handshake but has no token
            response = await health_pb2_grpc.HealthStub(channel).Check(HEALTH_CHECK, timeout=5)
            assert response.status == health_pb2.HealthCheckResponse.SERVING


async def test_key_without_certificate_is_a_settings_error(pki):  # grpc.aio.server needs a loop
    server = grpc.aio.server()
    with pytest.raises(SettingsError, match="set both or neither"):
        bind(server, "127.0.0.1:0", cert=None, key=pki.server_key, client_ca=None)
    with pytest.raises(SettingsError, match="mutual TLS is TLS first"):
        bind(server, "127.0.0.1:0", cert=None, key=None, client_ca=pki.ca_cert)
    with pytest.raises(SettingsError, match="set both or neither"):
        channel_credentials(pki.ca_cert, pki.client_cert, None)


def test_unreadable_or_non_pem_files_are_settings_errors_naming_the_file(pki, tmp_path):
    missing = tmp_path / "missing.pem"
    with pytest.raises(SettingsError, match="missing.pem: cannot read"):
        server_credentials(missing, pki.server_key, None)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(SettingsError, match="garbage.pem: not a PEM file with a CERTIFICATE block"):
        server_credentials(pki.server_cert, pki.server_key, garbage)
    with pytest.raises(SettingsError, match="server.pem: not a PEM file with a PRIVATE KEY block"):
        server_credentials(pki.server_cert, pki.server_cert, None)
    with pytest.raises(SettingsError, match="garbage.pem"):
        channel_credentials(garbage)
