"""TLS and mutual TLS for servers and channels, from PEM files.

A server with `cert`/`key` serves TLS; adding `client_ca` makes it mutual: the handshake fails unless
the client presents a certificate that CA signed. Unreadable or non-PEM files are a `SettingsError`
at start-up, naming the file, rather than a handshake failure on the first call.
"""

from __future__ import annotations

from pathlib import Path

import grpc

from searchgw.settings import SettingsError


def _read_pem(path: Path, what: str, marker: bytes) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise SettingsError(f"{what} {path}: cannot read: {exc.strerror or exc}") from None
    if b"-----BEGIN " not in data or marker not in data:
        raise SettingsError(f"{what} {path}: not a PEM file with a {marker.decode()} block")
    return data


def _read_cert(path: Path, what: str) -> bytes:
    return _read_pem(path, what, b"CERTIFICATE")


def _read_key(path: Path, what: str) -> bytes:
    return _read_pem(path, what, b"PRIVATE KEY")


def server_credentials(cert: Path, key: Path, client_ca: Path | None) -> grpc.ServerCredentials:
    """TLS with `cert` (chain, leaf first) and `key`; with `client_ca`, client certificates are required."""
    pair = (_read_key(key, "TLS key"), _read_cert(cert, "TLS certificate"))
    if client_ca is None:
        return grpc.ssl_server_credentials([pair])
    return grpc.ssl_server_credentials(
        [pair], root_certificates=_read_cert(client_ca, "TLS client CA"), require_client_auth=True
    )


def channel_credentials(ca: Path | None, cert: Path | None = None, key: Path | None = None) -> grpc.ChannelCredentials:
    """TLS to a server whose certificate `ca` signed (None: the system roots); `cert`/`key` for mutual TLS."""
    if (cert is None) != (key is None):
        raise SettingsError("client TLS certificate and key: set both or neither")
    return grpc.ssl_channel_credentials(
        root_certificates=_read_cert(ca, "TLS CA") if ca is not None else None,
        private_key=_read_key(key, "TLS client key") if key is not None else None,
        certificate_chain=_read_cert(cert, "TLS client certificate") if cert is not None else None,
    )


def bind(server: grpc.aio.Server, address: str, *, cert: Path | None, key: Path | None,
         client_ca: Path | None) -> int:
    """Open `address` (host:port, port 0 picks one) with TLS when `cert`/`key` are set; returns the port."""
    if (cert is None) != (key is None):
        raise SettingsError("TLS certificate and key: set both or neither")
    if cert is None:
        if client_ca is not None:
            raise SettingsError("TLS client CA: needs a TLS certificate and key (mutual TLS is TLS first)")
        return server.add_insecure_port(address)
    assert key is not None  # set together with cert (checked above)
    return server.add_secure_port(address, server_credentials(cert, key, client_ca))
