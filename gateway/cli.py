"""Gateway subcommands of `searchgw`: serve, and the client commands over GatewayClient.

    searchgw serve [--with-embedder] [--embedder-addr H:P] [--backend edge|qdrant] [--data-dir D] ...
    searchgw search "text" [--collection docs] [--limit 5] [--routing-key K]
    searchgw ingest FILE --collection C            (JSONL or CSV; embedded by the gateway in batches)
    searchgw collections list|get|create|delete|alias|optimize ...
    searchgw collections snapshot NAME | snapshots NAME | restore SNAPSHOT NEW_NAME
    searchgw rollout start|status|list|pause|resume|promote|abort|watch ...

Client commands reach the gateway at --addr (env SEARCHGW_ADDR, default 127.0.0.1:50051).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import dataclasses
import json
import logging
import os
import pathlib
import sys
from collections.abc import Iterator

from google.protobuf import json_format

from searchgw import settings as settings_mod
from searchgw.errors import SearchgwError

log = logging.getLogger("gateway")


def register(subparsers: argparse._SubParsersAction) -> None:
    from gateway.settings import ENV_PREFIX, GatewaySettings

    serve = subparsers.add_parser("serve", help="run the gateway (and optionally an in-process embedder)")
    serve.add_argument("--config", help="YAML config file (sections 'gateway' and 'embedder')")
    settings_mod.add_arguments(serve, GatewaySettings, env_prefix=ENV_PREFIX)
    serve.set_defaults(run=_serve)

    def client_parser(name: str, help_text: str) -> argparse.ArgumentParser:
        parser = subparsers.add_parser(name, help=help_text)
        parser.add_argument("--addr", default=os.environ.get("SEARCHGW_ADDR", "127.0.0.1:50051"),
                            help="gateway host:port [env SEARCHGW_ADDR]")
        parser.add_argument("--timeout", type=float, default=30.0, help="deadline of each call, seconds")
        parser.add_argument("--token", default=os.environ.get("SEARCHGW_TOKEN", ""),
                            help="bearer token [env SEARCHGW_TOKEN]")
        parser.add_argument("--tls-ca", default=os.environ.get("SEARCHGW_TLS_CA"),
                            help="PEM CA of the gateway's certificate: connect with TLS [env SEARCHGW_TLS_CA]")
        parser.add_argument("--tls-cert", default=os.environ.get("SEARCHGW_TLS_CERT"),
                            help="client certificate for mutual TLS [env SEARCHGW_TLS_CERT]")
        parser.add_argument("--tls-key", default=os.environ.get("SEARCHGW_TLS_KEY"),
                            help="key of --tls-cert [env SEARCHGW_TLS_KEY]")
        return parser

    search = client_parser("search", "search a collection by text")
    search.add_argument("text")
    search.add_argument("--collection", default="docs")
    search.add_argument("--limit", type=int, default=5)
    search.add_argument("--routing-key", default="")
    search.add_argument("--json", action="store_true", help="print the response as JSON")
    search.set_defaults(run=lambda a: _client(a, _search))

    ingest = client_parser("ingest", "embed and upsert a JSONL or CSV file in batches")
    ingest.add_argument("file", type=pathlib.Path)
    ingest.add_argument("--collection", required=True)
    ingest.add_argument("--batch-size", type=int, default=64)
    ingest.add_argument("--id-field", default="id")
    ingest.add_argument("--text-field", default="text")
    ingest.add_argument("--no-optimize", dest="optimize", action="store_false",
                        help="skip the index build at the end (the embedded engine scans until it is built)")
    ingest.set_defaults(run=lambda a: _client(a, _ingest))

    collections = client_parser("collections", "manage collections and aliases")
    ops = collections.add_subparsers(dest="op", required=True, metavar="OP")
    ops.add_parser("list")
    get = ops.add_parser("get")
    get.add_argument("name")
    create = ops.add_parser("create")
    create.add_argument("name")
    create.add_argument("--dimension", type=int, default=0, help="0: the embedding model's dimension")
    create.add_argument("--embedding-model", default="")
    delete = ops.add_parser("delete")
    delete.add_argument("name")
    optimize = ops.add_parser("optimize", help="build the collection's index now")
    optimize.add_argument("name")
    alias = ops.add_parser("alias", help="point ALIAS at COLLECTION")
    alias.add_argument("alias")
    alias.add_argument("collection")
    snapshot = ops.add_parser("snapshot", help="take a snapshot of a collection (or of an alias's target)")
    snapshot.add_argument("name")
    snapshots = ops.add_parser("snapshots", help="list a collection's snapshots, oldest first")
    snapshots.add_argument("name")
    restore = ops.add_parser("restore", help="restore SNAPSHOT into the new collection NEW_NAME")
    restore.add_argument("snapshot")
    restore.add_argument("new_name")
    collections.set_defaults(run=lambda a: _client(a, _collections))

    rollout = client_parser("rollout", "start and steer rollouts")
    rops = rollout.add_subparsers(dest="op", required=True, metavar="OP")
    start = rops.add_parser("start")
    start.add_argument("name")
    start.add_argument("--collection", required=True, help="the logical collection (alias)")
    start.add_argument("--canary", required=True, help="the physical canary collection")
    start.add_argument("--stages", default="5:60:100,25:120:200,50:300:500,100:0:0",
                       help="WEIGHT:MIN_SECONDS:MIN_REQUESTS,... (default 5%%,25%%,50%%,100%%)")
    start.add_argument("--auto-promote", action="store_true")
    for op in ("status", "pause", "resume", "promote", "abort", "watch"):
        parser = rops.add_parser(op)
        parser.add_argument("name")
        if op in ("pause", "resume", "promote", "abort"):
            parser.add_argument("--reason", default="")
    rops.add_parser("list")
    rollout.set_defaults(run=lambda a: _client(a, _rollout))


# -- serve ---------------------------------------------------------------------------------
def _serve(args: argparse.Namespace) -> int:
    from embedder.settings import ENV_PREFIX as EMBEDDER_ENV, EmbedderSettings
    from gateway.settings import ENV_PREFIX, GatewaySettings
    from searchgw.telemetry import configure_logging, configure_tracing

    try:
        config = settings_mod.load_config_file(args.config)
        settings = settings_mod.build(GatewaySettings, args, env_prefix=ENV_PREFIX, environ=os.environ,
                                      file_section=config.get("gateway", {}))
        embedder_settings = None
        if settings.with_embedder:  # in-process: loopback, a free port; the rest from env/config
            embedder_settings = settings_mod.build(EmbedderSettings, {}, env_prefix=EMBEDDER_ENV, environ=os.environ,
                                                   file_section=config.get("embedder", {}), host="127.0.0.1", port=0)
    except settings_mod.SettingsError as exc:
        print(f"searchgw serve: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    configure_tracing("searchgw-gateway", settings.tracing_exporter)
    return asyncio.run(_run_gateway(settings, embedder_settings))


async def _run_gateway(settings, embedder_settings) -> int:
    from embedder.server import create_server as create_embedder
    from gateway.demo import ensure_demo_collection
    from gateway.server import create_server
    from searchgw.rpc.server import run_until_signalled

    embedder = None
    if embedder_settings is not None:
        embedder = await create_embedder(embedder_settings)
        await embedder.load()
        settings = dataclasses.replace(settings, embedder_addr=embedder.address)
    gateway = await create_server(settings)
    if settings.demo:
        await ensure_demo_collection(gateway.core)
    async def stop() -> None:
        await gateway.stop()
        if embedder is not None:
            await embedder.stop()

    await run_until_signalled(stop, on_ready=lambda: print(
        f"gateway serving on {gateway.address}" + (f" (embedder on {embedder.address})" if embedder else ""),
        flush=True))
    return 0


# -- client commands -----------------------------------------------------------------------
def _client(args: argparse.Namespace, command) -> int:
    from gateway.client import GatewayClient
    from searchgw import security

    credentials = None
    if args.tls_ca:
        credentials = security.channel_credentials(pathlib.Path(args.tls_ca),
                                                   args.tls_cert and pathlib.Path(args.tls_cert),
                                                   args.tls_key and pathlib.Path(args.tls_key))
    metadata = (("authorization", f"Bearer {args.token}"),) if args.token else ()

    async def main() -> int:
        async with GatewayClient(args.addr, credentials=credentials, metadata=metadata) as client:
            return await command(client, args) or 0

    try:
        return asyncio.run(main())
    except SearchgwError as exc:
        print(f"searchgw: {exc.code_name}: {exc.message}", file=sys.stderr)
        return 1


def _print(message) -> None:
    print(json.dumps(json_format.MessageToDict(message, preserving_proto_field_name=True), indent=2))


async def _search(client, args) -> int:
    response = await client.search(args.collection, text=args.text, limit=args.limit,
                                   routing_key=args.routing_key, with_payload=True, timeout=args.timeout)
    if args.json:
        _print(response)
        return 0
    route = response.route
    print(f"# {len(response.points)} hits from {route.collection}"
          + (f" (rollout {route.rollout}, {'canary' if route.arm == 2 else 'primary'}"
             f"{', fallback' if route.fallback else ''})" if route.rollout else ""))
    for point in response.points:
        ident = point.id.uuid or point.id.num
        text = point.payload.fields["text"].string_value if "text" in point.payload.fields else ""
        print(f"{point.score:.4f}  {ident}  {text}")
    return 0


def _records(path: pathlib.Path, id_field: str, text_field: str) -> Iterator[dict]:
    with path.open(newline="") as handle:
        if path.suffix.lower() == ".csv":
            rows = csv.DictReader(handle)
        else:
            rows = (json.loads(line) for line in handle if line.strip())
        for number, row in enumerate(rows, start=1):
            if text_field not in row and "vector" not in row:
                raise SystemExit(f"{path}:{number}: neither {text_field!r} nor 'vector'")
            raw_id = row.get(id_field, number)
            ident = int(raw_id) if str(raw_id).isdigit() else str(raw_id)
            payload = {k: v for k, v in row.items() if k not in (id_field, "vector")}
            yield {"id": ident, "text": row.get(text_field), "vector": row.get("vector"), "payload": payload}


async def _ingest(client, args) -> int:
    from tqdm import tqdm

    batch: list[dict] = []
    written = 0
    with tqdm(desc=f"ingest {args.file.name}", unit="pt", file=sys.stderr) as bar:
        for record in _records(args.file, args.id_field, args.text_field):
            batch.append(record)
            if len(batch) == args.batch_size:
                await client.upsert(args.collection, batch, timeout=args.timeout)
                written += len(batch)
                bar.update(len(batch))
                batch = []
        if batch:
            await client.upsert(args.collection, batch, timeout=args.timeout)
            written += len(batch)
            bar.update(len(batch))
    if args.optimize:
        await client.optimize_collection(args.collection, timeout=max(args.timeout, 600.0))
    print(f"upserted {written} points into {args.collection}" + (" and built its index" if args.optimize else ""))
    return 0


async def _collections(client, args) -> int:
    if args.op == "list":
        response = await client.list_collections(timeout=args.timeout)
        aliases = await client.list_aliases(timeout=args.timeout)
        for c in response.collections:
            print(f"{c.name}\t{c.dimension}d\t{c.points_count} points\tmodel={c.embedding_model or '-'}"
                  f"\taliases={','.join(c.aliases) or '-'}")
        for alias, target in sorted(aliases.items()):
            print(f"alias {alias} -> {target}")
    elif args.op == "get":
        _print(await client.get_collection(args.name, timeout=args.timeout))
    elif args.op == "create":
        _print(await client.create_collection(args.name, dimension=args.dimension,
                                              embedding_model=args.embedding_model, timeout=args.timeout))
    elif args.op == "delete":
        await client.delete_collection(args.name, timeout=args.timeout)
        print(f"deleted {args.name}")
    elif args.op == "optimize":
        _print(await client.optimize_collection(args.name, timeout=max(args.timeout, 600.0)))
    elif args.op == "alias":
        previous = await client.update_alias(args.alias, args.collection, timeout=args.timeout)
        print(f"{args.alias} -> {args.collection}" + (f" (was {previous})" if previous else ""))
    elif args.op == "snapshot":
        _print(await client.create_snapshot(args.name, timeout=max(args.timeout, 600.0)))
    elif args.op == "snapshots":
        token = ""
        while True:
            page = await client.list_snapshots(args.name, page_token=token, timeout=args.timeout)
            for s in page.snapshots:
                print(f"{s.name}\t{s.create_time.ToJsonString()}\t{s.size_bytes} bytes\tsha256={s.checksum or '-'}")
            token = page.next_page_token
            if not token:
                break
    elif args.op == "restore":
        _print(await client.restore_snapshot(args.snapshot, args.new_name, timeout=max(args.timeout, 600.0)))
    return 0


def _parse_stages(text: str):
    from gateway.client import stage

    stages = []
    for part in text.split(","):
        weight, _, rest = part.partition(":")
        seconds, _, requests = rest.partition(":")
        stages.append(stage(float(weight), float(seconds or 0), int(requests or 0)))
    return stages


async def _rollout(client, args) -> int:
    if args.op == "start":
        _print(await client.create_rollout(args.name, args.collection, args.canary,
                                           stages=_parse_stages(args.stages), auto_promote=args.auto_promote,
                                           timeout=args.timeout))
    elif args.op == "status":
        _print(await client.get_rollout(args.name, timeout=args.timeout))
    elif args.op == "list":
        _print(await client.list_rollouts(timeout=args.timeout))
    elif args.op == "watch":
        async for message in client.watch_rollout(args.name):
            _print(message)
    else:
        action = getattr(client, f"{args.op}_rollout")
        _print(await action(args.name, args.reason, timeout=args.timeout))
    return 0
