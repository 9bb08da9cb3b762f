"""`searchgw embedder serve`: run the embedding server until SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from searchgw.embedder.server import create_server
from searchgw.embedder.settings import ENV_PREFIX, EmbedderSettings
from searchgw import settings as settings_mod
from searchgw.rpc.server import run_until_signalled
from searchgw.telemetry import configure_logging, configure_tracing

log = logging.getLogger("searchgw.embedder")


def register(subparsers: argparse._SubParsersAction) -> None:
    embedder = subparsers.add_parser("embedder", help="the ONNX embedding server")
    commands = embedder.add_subparsers(dest="embedder_command", required=True, metavar="COMMAND")
    serve = commands.add_parser("serve", help="serve searchgw.v1.EmbedService")
    serve.add_argument("--config", help="YAML config file (section 'embedder')")
    settings_mod.add_arguments(serve, EmbedderSettings, env_prefix=ENV_PREFIX)
    serve.set_defaults(run=_serve)


def settings_from(args: argparse.Namespace) -> EmbedderSettings:
    file_values = settings_mod.load_config_file(getattr(args, "config", None)).get("embedder", {})
    return settings_mod.build(EmbedderSettings, args, env_prefix=ENV_PREFIX, environ=os.environ,
                              file_section=file_values)


def _serve(args: argparse.Namespace) -> int:
    try:
        settings = settings_from(args)
    except settings_mod.SettingsError as exc:
        print(f"searchgw embedder serve: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    configure_tracing("searchgw-embedder", settings.tracing_exporter)
    return asyncio.run(_main(settings))


async def _main(settings: EmbedderSettings) -> int:
    server = await create_server(settings)
    try:
        await server.load()
    except ValueError as exc:  # a configuration the models cannot work with
        log.error("cannot serve: %s", exc)
        await server.stop(0)
        return 2
    await run_until_signalled(server.stop,
                              on_ready=lambda: print(f"embedder serving on {server.address}", flush=True))
    return 0
