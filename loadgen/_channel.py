"""The worker's channel: insecure, or TLS (server-verified or mutual) when any --tls-* option is set."""

from __future__ import annotations

import asyncio
import pathlib

import grpc

from searchgw.loadgen._config import LoadConfig
from searchgw.loadgen._errors import LoadgenError

__all__ = ["connect"]

_MAX_MESSAGE_BYTES = 32 * 1024 * 1024


def _read(path: pathlib.Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as exc:
        raise LoadgenError(f"{path}: {exc.strerror or exc}") from None


def open_channel(config: LoadConfig) -> grpc.aio.Channel:
    options: list[tuple[str, int | str]] = [("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
               ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES)]
    if not config.uses_tls:
        return grpc.aio.insecure_channel(config.target, options=options)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=_read(config.tls_ca), private_key=_read(config.tls_key),
        certificate_chain=_read(config.tls_cert))
    if config.tls_server_name:
        options.append(("grpc.ssl_target_name_override", config.tls_server_name))
    return grpc.aio.secure_channel(config.target, credentials, options=options)


async def connect(config: LoadConfig) -> grpc.aio.Channel:
    """A channel that is connected, so connection set-up is not part of any measured call."""
    channel = open_channel(config)
    try:
        await asyncio.wait_for(channel.channel_ready(), config.connect_timeout_s)
    except asyncio.TimeoutError:
        await channel.close()
        scheme = "TLS" if config.uses_tls else "plaintext"
        raise LoadgenError(f"cannot connect to {config.target} ({scheme}) within {config.connect_timeout_s:g} s") \
            from None
    return channel
