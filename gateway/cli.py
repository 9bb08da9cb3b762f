"""Gateway subcommands of `searchgw`: serve, and the client commands over GatewayClient.

    searchgw serve [--with-embedder] [--embedder-addr H:P] [--backend edge|qdrant] [--data-dir D] ...
    searchgw search "text" [--collection docs] [--limit 5] [--routing-key K]
    searchgw ingest FILE --collection C            (JSONL, CSV or Parquet; see gateway.ingest)
    searchgw collections list|get|create|delete|optimize|alias|snapshot|snapshots|restore|delete-snapshot|prune-snapshots ...
    searchgw rollout start|prepare|validate|status|list|history|watch|pause|resume|promote|abort|undo ...

The client options (--addr, --token, --tls-*, --timeout, --output) go before or after the operation.
A mistake in the command line or in what it sends is one line on stderr and exit status 2; a gateway
that cannot do what was asked (unreachable, overloaded, failing) is one line and exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as _dt
import json
import logging
import math
import os
import pathlib
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from google.protobuf import json_format

from searchgw import settings as settings_mod
from searchgw.errors import SearchgwError

log = logging.getLogger("searchgw.gateway")

EXIT_FAILED = 1
EXIT_USAGE = 2
#: Status codes that mean the command asked for something wrong (exit 2), not that the gateway failed.
_CALLER_CODES = frozenset({"INVALID_ARGUMENT", "NOT_FOUND", "ALREADY_EXISTS", "FAILED_PRECONDITION", "OUT_OF_RANGE",
                           "UNAUTHENTICATED", "PERMISSION_DENIED"})
OUTPUTS = ("table", "json", "yaml")
_RAW = argparse.RawDescriptionHelpFormatter


class UsageError(Exception):
    """A mistake in the command line or its files: one line naming the flag, exit status 2."""


# -- parsing helpers -------------------------------------------------------------------------------
def _whole_number_from(minimum: int):
    """An argparse type: a whole number no smaller than `minimum`."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value}; must be {minimum} or more")
        return value
    return parse


_positive_int = _whole_number_from(1)
_non_negative_int = _whole_number_from(0)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text}; must be a number more than 0")
    return value


_SECONDS = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$")
_UNITS = {None: 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def _seconds(text: str) -> float:
    """'300', '300s', '5m', '1.5h', '7d', '250ms' as seconds."""
    match = _SECONDS.match(text.strip())
    if not match:
        raise ValueError(text)
    return float(match.group(1)) * _UNITS[match.group(2)]


def _non_negative_seconds(text: str) -> float:
    try:
        return _seconds(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (seconds, or with s, m, h, d, ms)") from None


_STAGES_FORM = "WEIGHT[%][:MIN_DURATION[:MIN_REQUESTS]],... e.g. 5%:300:100,25%:10m:500,100%"


def parse_stages(text: str) -> list[dict[str, Any]]:
    """`--stages` as Stage dicts in the proto's JSON form; 5%:300:100 and 5:300:100 mean the same."""
    stages = []
    for part in text.split(","):
        pieces = part.strip().split(":")
        if not pieces[0] or len(pieces) > 3:
            raise argparse.ArgumentTypeError(f"{part.strip()!r} is not {_STAGES_FORM}")
        weight_text = pieces[0].strip().removesuffix("%")
        try:
            weight = float(weight_text)
            seconds = _seconds(pieces[1]) if len(pieces) > 1 and pieces[1].strip() else 0.0
            requests = int(pieces[2]) if len(pieces) > 2 and pieces[2].strip() else 0
        except ValueError:
            raise argparse.ArgumentTypeError(f"{part.strip()!r} is not {_STAGES_FORM}") from None
        if not 0 < weight <= 100:
            raise argparse.ArgumentTypeError(f"{part.strip()!r}: the weight must be more than 0% and at most 100%")
        if requests < 0:
            raise argparse.ArgumentTypeError(f"{part.strip()!r}: MIN_REQUESTS must not be negative")
        stages.append({"weight_percent": weight, "min_duration": f"{seconds:g}s", "min_requests": str(requests)})
    return stages


def _default_stages_text() -> str:
    from searchgw.gateway.rollout.model import DEFAULT_STAGES

    return ",".join(f"{s.weight_percent:g}%:{s.min_duration_s:g}:{s.min_requests}" for s in DEFAULT_STAGES)


# -- client options (accepted before or after the operation) ---------------------------------------
_CLIENT_DEFAULTS = {
    "addr": lambda: os.environ.get("SEARCHGW_ADDR", "127.0.0.1:50051"),
    "token": lambda: os.environ.get("SEARCHGW_TOKEN", ""),
    "tls_ca": lambda: os.environ.get("SEARCHGW_TLS_CA"),
    "tls_cert": lambda: os.environ.get("SEARCHGW_TLS_CERT"),
    "tls_key": lambda: os.environ.get("SEARCHGW_TLS_KEY"),
    "timeout": lambda: 30.0,
    "output": lambda: "table",
}


def _add_client_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("gateway options (before or after the operation)")
    s = argparse.SUPPRESS  # unset here must not hide a value given at another level
    group.add_argument("--addr", default=s, metavar="HOST:PORT", help="gateway host:port [env SEARCHGW_ADDR; default 127.0.0.1:50051]")
    group.add_argument("--timeout", type=_positive_float, default=s, metavar="SECONDS", help="deadline of each call, seconds [30]")
    group.add_argument("--token", default=s, help="bearer token [env SEARCHGW_TOKEN]")
    group.add_argument("--tls-ca", default=s, metavar="FILE", help="PEM CA of the gateway's certificate: connect with TLS "
                                                   "[env SEARCHGW_TLS_CA]")
    group.add_argument("--tls-cert", default=s, metavar="FILE", help="client certificate for mutual TLS [env SEARCHGW_TLS_CERT]")
    group.add_argument("--tls-key", default=s, metavar="FILE", help="key of --tls-cert [env SEARCHGW_TLS_KEY]")
    group.add_argument("-o", "--output", choices=OUTPUTS, default=s,
                       help="table (default, for people), json or yaml (the full messages, for scripts)")


def _client_options(args: argparse.Namespace) -> None:
    for name, default in _CLIENT_DEFAULTS.items():
        if not hasattr(args, name):
            setattr(args, name, default())


def _command(subparsers, name: str, help_text: str, examples: str, *, client: bool = True) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".",
                                   epilog="examples:\n" + examples, formatter_class=_RAW)
    if client:
        _add_client_options(parser)
    return parser


def _operations(parser: argparse.ArgumentParser, dest: str = "op"):
    return parser.add_subparsers(dest=dest, required=True, metavar="OPERATION", title="operations")


def _operation(ops, name: str, help_text: str, example: str) -> argparse.ArgumentParser:
    parser = ops.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".",
                            epilog=f"example:\n  {example}", formatter_class=_RAW)
    _add_client_options(parser)
    return parser


def register(subparsers: argparse._SubParsersAction) -> None:
    from searchgw.gateway.ingest import FORMATS
    from searchgw.gateway.settings import ENV_PREFIX, GatewaySettings

    serve = _command(subparsers, "serve", "run the gateway (and optionally an in-process embedder)",
                     "  searchgw serve --with-embedder --demo\n"
                     "  searchgw serve --embedder-addr embedder:50061 --backend qdrant --qdrant-url http://qdrant:6333",
                     client=False)
    serve.add_argument("--config", help="YAML config file (sections 'gateway' and 'embedder')")
    settings_mod.add_arguments(serve, GatewaySettings, env_prefix=ENV_PREFIX)
    serve.set_defaults(run=_serve)

    search = _command(subparsers, "search", "search a collection by text (or by vector)",
                      '  searchgw search "how do I roll back a canary?"\n'
                      '  searchgw search "pause a rollout" --collection docs --limit 3 --routing-key user-42\n'
                      "  searchgw search --vector '[0.1, 0.2, 0.3, 0.4]' --collection vecs -o json")
    search.add_argument("text", nargs="?", help="the query text (embedded with the collection's model)")
    search.add_argument("--vector", help="search by this vector instead of a text: a JSON array of numbers")
    search.add_argument("--collection", default="docs", help="collection or alias to search [docs]")
    search.add_argument("--limit", type=_positive_int, default=5, help="hits to return [5]")
    search.add_argument("--routing-key", default="", help="key that picks the rollout arm (e.g. a user id); "
                                                          "default: the gateway's fallback")
    search.add_argument("--force-arm", choices=("primary", "canary"),
                        help="serve from this arm of a rollout (x-canary-arm; kept out of the analysis)")
    search.add_argument("--mode", choices=("dense", "sparse", "hybrid"), default="dense",
                        help="rank by the embedding (dense), BM25 (sparse) or both fused (hybrid); sparse and "
                             "hybrid need a TEXT and a collection created with --bm25 [dense]")
    search.add_argument("--fusion", choices=("rrf", "dbsf"), default="rrf",
                        help="how hybrid fuses the two lists: reciprocal rank or distribution-based score [rrf]")
    search.add_argument("--rrf-k", type=_non_negative_int, default=0, help="RRF's k; 0: 60 [0]")
    search.add_argument("--json", dest="output", action="store_const", const="json", default=argparse.SUPPRESS,
                        help="same as --output json")
    search.set_defaults(run=lambda a: _client(a, _search))

    ingest = _command(
        subparsers, "ingest", "embed and upsert a JSONL, CSV or Parquet file, checked before anything is written",
        "  searchgw ingest passages.jsonl --collection docs-v2     # {\"id\": 1, \"text\": \"...\"} per line\n"
        "  searchgw ingest faq.csv --collection faq --id-field question_id\n"
        "  searchgw ingest dump.parquet --collection docs-v2 --id-from-content --continue\n\n"
        "ids: every record needs one, from --id-field (default 'id'): an unsigned integer or a UUID is\n"
        "used as it is, any other string becomes a UUID5 of it (the field stays in the payload).\n"
        "--id-from-content makes the id a UUID5 of the text (of the vector when there is no text).\n"
        "Ids never come from line numbers, so running a file again replaces the same points.\n\n"
        "checking: the whole file is read first; each bad record is reported as FILE:LINE: problem\n"
        "and nothing is written (exit 2), unless --continue: then the good ones are written.\n\n"
        "resuming: after each batch a checkpoint (--checkpoint) records how far the run got. If a run\n"
        "stops (Ctrl-C, a crash, the gateway failing), run the same command again: it continues after\n"
        "the last written batch (a batch sent twice replaces itself). --restart sends everything again.\n\n"
        "chunking: --chunk-tokens N writes each text as chunks of at most N tokens of the collection\n"
        "model's tokenizer (0: the model's limit, 256 for all-MiniLM-L6-v2), overlapping by\n"
        "--chunk-overlap tokens [32]. Chunk i of record D gets the id uuid5(namespace, \"D/i\") and the\n"
        "payload keys _searchgw_doc=D, _searchgw_chunk=i; a re-run replaces the chunks and deletes a\n"
        "shorter document's surplus ones. Without it a text over the model's limit is refused, never cut.")
    ingest.add_argument("file", type=pathlib.Path, help="the file; its format comes from the suffix "
                                                        "(.jsonl/.ndjson, .csv, .parquet) or --format")
    ingest.add_argument("--collection", required=True, help="collection or alias to write to (during a rollout, "
                                                            "both arms get every point)")
    ingest.add_argument("--format", choices=FORMATS, help="the file's format, when its suffix does not say")
    id_source = ingest.add_mutually_exclusive_group()
    id_source.add_argument("--id-field", default="id", help="the field holding each record's id [id]")
    id_source.add_argument("--id-from-content", action="store_true",
                           help="derive each id from the content: a UUID5 of the text (or of the vector)")
    ingest.add_argument("--text-field", default="text", help="the field with the text to embed [text]")
    ingest.add_argument("--vector-field", default="vector", help="the field with a ready vector, used instead "
                                                                 "of embedding the text [vector]")
    ingest.add_argument("--batch-size", type=_positive_int, default=64, help="points per Upsert call [64]")
    ingest.add_argument("--chunk-tokens", type=_non_negative_int, default=None, metavar="N",
                        help="write texts as chunks of at most N tokens, special tokens included (0: the "
                             "model's limit); records with vectors are then refused")
    ingest.add_argument("--chunk-overlap", type=_non_negative_int, default=None, metavar="N",
                        help="tokens a chunk repeats from the one before it, with --chunk-tokens [32]")
    ingest.add_argument("--continue", dest="keep_going", action="store_true",
                        help="write the good records even if some are bad; the bad ones are listed at the end")
    ingest.add_argument("--checkpoint", type=pathlib.Path,
                        help="the checkpoint file [~/.cache/searchgw/ingest/<file and collection>.json]")
    ingest.add_argument("--restart", action="store_true", help="ignore a checkpoint: send every record again")
    ingest.add_argument("--check", action="store_true", help="only check the file; write nothing")
    ingest.add_argument("--no-optimize", dest="optimize", action="store_false",
                        help="skip the index build at the end (the embedded engine scans until it is built)")
    ingest.set_defaults(run=lambda a: _client(a, _ingest))

    collections = _command(subparsers, "collections", "list, create, delete, alias and snapshot collections",
                           "  searchgw collections list\n  searchgw collections create docs-v2\n"
                           "  searchgw collections alias docs docs-v2")
    ops = _operations(collections)
    _operation(ops, "list", "list collections and aliases", "searchgw collections list")
    _operation(ops, "get", "describe a collection or alias", "searchgw collections get docs").add_argument(
        "name", help="collection or alias")
    create = _operation(ops, "create", "create an empty collection",
                        "searchgw collections create docs-v2 --embedding-model all-MiniLM-L6-v2")
    create.add_argument("name", help="the new collection's name")
    create.add_argument("--dimension", type=_non_negative_int, default=0,
                        help="vector length; 0: the embedding model's [0]")
    create.add_argument("--embedding-model", default="", help="model for its texts [the gateway's default]")
    create.add_argument("--bm25", action="store_true",
                        help="also index each point's text with BM25, for --mode sparse and hybrid searches")
    create.add_argument("--bm25-language", default="", help="BM25's stopwords and stemmer, e.g. german [english]")
    _operation(ops, "delete", "delete a collection and its points (not while an alias or a rollout uses it)",
               "searchgw collections delete docs-old").add_argument("name", help="the collection")
    optimize = _operation(ops, "optimize", "build the collection's index now (searches go on meanwhile)",
                          "searchgw collections optimize docs-v2 --background")
    optimize.add_argument("name", help="collection or alias")
    optimize.add_argument("--background", action="store_true",
                          help="return once the build has started; it runs to its end in the gateway")
    alias = _operation(ops, "alias", "point ALIAS at COLLECTION (one atomic switch)",
                       "searchgw collections alias docs docs-v2")
    alias.add_argument("alias", help="the alias (created when new)")
    alias.add_argument("collection", help="the collection it will mean")
    _operation(ops, "snapshot", "take a snapshot of a collection (or of an alias's target)",
               "searchgw collections snapshot docs").add_argument("name", help="collection or alias")
    _operation(ops, "snapshots", "list a collection's snapshots, oldest first",
               "searchgw collections snapshots docs-v1").add_argument("name", help="the collection")
    restore = _operation(ops, "restore", "restore SNAPSHOT into the new collection NEW_NAME",
                         "searchgw collections restore docs-v1-20250101T000000Z docs-restored")
    restore.add_argument("snapshot", help="a snapshot's name (see snapshots)")
    restore.add_argument("new_name", help="the collection to create (never overwritten)")
    delete_snapshot = _operation(ops, "delete-snapshot", "delete one of a collection's snapshots",
                                 "searchgw collections delete-snapshot docs-v1 docs-v1-2025-01-01-00-00-00-000000.snapshot")
    delete_snapshot.add_argument("name", help="the collection (or alias) the snapshot is of")
    delete_snapshot.add_argument("snapshot", help="a snapshot's name (see snapshots)")
    prune = _operation(ops, "prune-snapshots", "delete the snapshots a retention policy does not keep "
                                               "(the newest always stays)",
                       "searchgw collections prune-snapshots docs-v1 --keep-last 3 --max-age 7d")
    prune.add_argument("name", help="the collection (or alias)")
    prune.add_argument("--keep-last", type=_non_negative_int, default=0,
                       help="keep the newest N [0: no count rule]")
    prune.add_argument("--max-age", type=_non_negative_seconds, default=0.0,
                       help="keep those younger than this (e.g. 36h, 7d) [0: no age rule]; "
                            "a snapshot either rule keeps stays")
    index = _operation(ops, "index", "index a payload field (both arms during a rollout)",
                       "searchgw collections index docs published --type datetime\n"
                       "  searchgw collections index docs title --type text --tokenizer prefix --min-token-length 2")
    index.add_argument("name", help="collection or alias")
    index.add_argument("key", help="the payload key, dotted for nested fields")
    index.add_argument("--type", required=True, choices=tuple(_INDEX_TYPES), help="what the index holds")
    index.add_argument("--tokenizer", choices=tuple(_TOKENIZERS), help="text index: how texts split [word]")
    index.add_argument("--case-sensitive", action="store_true", help="text index: keep the tokens' case")
    index.add_argument("--min-token-length", type=_non_negative_int, default=0, help="text index: drop shorter tokens")
    index.add_argument("--max-token-length", type=_non_negative_int, default=0, help="text index: drop longer tokens")
    unindex = _operation(ops, "unindex", "remove a payload field's index", "searchgw collections unindex docs title")
    unindex.add_argument("name", help="collection or alias")
    unindex.add_argument("key", help="the indexed payload key")
    collections.set_defaults(run=lambda a: _client(a, _collections))

    points = _command(subparsers, "points", "count, page through and read the points of a collection",
                      "  searchgw points count docs --filter '{\"must\": [{\"field\": {\"key\": \"lang\", "
                      "\"keyword\": \"en\"}}]}'\n"
                      "  searchgw points scroll docs --order-by published --descending --limit 20 --payload\n"
                      "  searchgw points get docs 1 2 6f1c2d4e-8a3b-4c5d-9e7f-0a1b2c3d4e5f")
    pops = _operations(points)
    for name, help_text, example in (
            ("count", "count the points that match a filter (exact)", "searchgw points count docs"),
            ("scroll", "list points by id, or ordered by an indexed payload field; follows every page up to --limit",
             "searchgw points scroll docs --order-by published --descending --limit 20"),
            ("get", "read points by id (missing ids are left out)", "searchgw points get docs 1 2 3 --vector")):
        operation = _operation(pops, name, help_text, example)
        operation.add_argument("collection", help="collection or alias (primary during a rollout)")
        operation.add_argument("--arm", choices=("primary", "canary"), help="during a rollout, read this arm [primary]")
        if name == "get":
            operation.add_argument("ids", nargs="+", help="point ids: unsigned integers or UUIDs")
        else:
            operation.add_argument("--filter", type=_filter_json,
                                   help="a searchgw.v1.Filter as JSON (the proto's JSON form)")
        if name == "scroll":
            operation.add_argument("--order-by", default="", help="a payload key with an integer, float or "
                                                                  "datetime index [by id]")
            operation.add_argument("--descending", action="store_true", help="with --order-by: largest first")
            operation.add_argument("--limit", type=_positive_int, default=100, help="points to list at most [100]")
        if name != "count":
            operation.add_argument("--no-payload", dest="payload", action="store_false", help="leave payloads out")
            operation.add_argument("--vector", action="store_true", help="include each point's vector")
    points.set_defaults(run=lambda a: _client(a, _points))

    rollout = _command(subparsers, "rollout", "start, watch and steer canary rollouts",
                       "  searchgw rollout start r1 --collection docs --canary docs-v2\n"
                       "  searchgw rollout watch r1\n  searchgw rollout promote r1")
    rops = _operations(rollout)
    start = _operation(rops, "start", "start moving a collection's traffic to a canary collection (with only "
                                      "NAME: start a PREPARED rollout whose pre-flight passed)",
                       "searchgw rollout start r1 --collection docs --canary docs-v2 --stages 5%:300:100,50%:600:1000\n"
                       "  searchgw rollout start r1          (after 'rollout prepare' and 'rollout validate')")
    start.add_argument("name", nargs="?", help="a unique name (or 'name' in --spec)")
    start.add_argument("--spec", type=pathlib.Path,
                       help="YAML (or JSON) file shaped like a Rollout message: name, collection, canary_collection, "
                            "stages, analysis, auto_promote, ...; the flags override it")
    start.add_argument("--collection", help="the logical collection (alias) whose traffic moves")
    start.add_argument("--canary", help="the physical collection under test")
    start.add_argument("--primary", help="the physical primary collection [the alias's target]")
    start.add_argument("--stages", type=parse_stages,
                       help=f"{_STAGES_FORM.replace('%', '%%')}; MIN_DURATION in seconds or with s/m/h; default "
                            f"(the gateway's): {_default_stages_text().replace('%', '%%')}")
    start.add_argument("--auto-promote", action=argparse.BooleanOptionalAction, default=None,
                       help="promote by itself after the last stage [off: wait for 'promote']")
    start.add_argument("--bake", type=_non_negative_seconds, default=None,
                       help="after promotion, how long writes still reach the old collection and 'undo' is possible "
                            "(e.g. 10m; 0: no bake) [10m]")
    start.add_argument("--grace", type=_non_negative_seconds, default=None,
                       help="after the bake, how long the old collection waits for --old-collection (e.g. 24h) [24h]")
    start.add_argument("--old-collection", choices=("keep", "delete"), default=None,
                       help="what happens to the old collection after the grace period [keep]")
    _add_policy_flags(start)
    _add_quality_flags(start)
    start.add_argument("--reason", default="", help="why (StartRollout of a PREPARED rollout only)")
    prepare = _operation(rops, "prepare", "create the canary from primary's spec and backfill it from primary "
                                          "(writes reach both arms meanwhile; no searches reach the canary)",
                         "searchgw rollout prepare r1 --collection docs --canary docs-v2 --canary-model "
                         "all-MiniLM-L6-v2-int8 --wait")
    prepare.add_argument("name", help="a unique name")
    prepare.add_argument("--collection", required=True, help="the logical collection (alias) to roll out")
    prepare.add_argument("--canary", required=True, help="the new physical collection to create and fill")
    prepare.add_argument("--canary-model", default="", help="the canary's embedding model [primary's]; another "
                                                            "model re-embeds each point's stored text")
    prepare.add_argument("--canary-dimension", type=int, default=0, help="[primary's, or the canary model's]")
    prepare.add_argument("--canary-distance", choices=("cosine", "dot", "euclid", "manhattan"),
                         help="[primary's]")
    prepare.add_argument("--canary-hnsw-m", type=int, default=0, help="[primary's]")
    prepare.add_argument("--canary-ef-construct", type=int, default=0, help="[primary's]")
    prepare.add_argument("--batch-size", type=int, default=0, help="points per backfill page [256]")
    prepare.add_argument("--stages", type=parse_stages, help="the stages StartRollout will run [the gateway's]")
    prepare.add_argument("--auto-promote", action=argparse.BooleanOptionalAction, default=False,
                         help="promote by itself after the last stage [off]")
    prepare.add_argument("--wait", action="store_true", help="print the backfill's progress until it ends "
                                                             "(exit 1 unless it ends PREPARED)")
    prepare.add_argument("--interval", type=float, default=2.0, help="seconds between progress lines [2]")
    validate = _operation(rops, "validate", "run the pre-flight of a PREPARED rollout: counts, and the arms' "
                                            "top-k overlap on sample queries (exit 1 when it fails)",
                          'searchgw rollout validate r1 --query "how to roll back" --query "alias switch" --k 10')
    validate.add_argument("name", help="the rollout's name")
    validate.add_argument("--query", action="append", default=[],
                          help="a query text (repeatable) [a sample of primary's stored texts]")
    for flag, kind, text in (("k", int, "results compared per query [10]"),
                             ("sample-size", int, "stored texts sampled when no --query is given [20]"),
                             ("min-overlap-at-k", float, "the least mean overlap@k, 0..1 [0.6]"),
                             ("min-rbo", float, "the least mean rank-biased overlap, 0..1 [0.6]"),
                             ("rbo-p", float, "RBO's persistence p, in (0, 1) [0.9]"),
                             ("count-tolerance", int, "how far the point counts may differ [0]")):
        validate.add_argument(f"--{flag}", type=kind, default=None, help=text)
    for op, text, example in (
            ("status", "the rollout now: state, stage, weight, the last decision and both arms' numbers",
             "searchgw rollout status r1"),
            ("history", "every decision of the rollout, oldest first, one line each", "searchgw rollout history r1"),
            ("watch", "follow a rollout: one line per decision until it ends (Ctrl-C stops watching)",
             "searchgw rollout watch r1"),
            ("pause", "freeze the weight and the stage clock", 'searchgw rollout pause r1 --reason "investigating"'),
            ("resume", "continue a paused rollout in the same stage", "searchgw rollout resume r1"),
            ("promote", "point the collection at the canary now", "searchgw rollout promote r1"),
            ("abort", "send all traffic back to primary and end the rollout", "searchgw rollout abort r1"),
            ("undo", "while BAKING: point the collection back at the old one (no write lost)",
             "searchgw rollout undo r1 --reason \"recall dropped\"")):
        parser = _operation(rops, op, text, example)
        parser.add_argument("name", help="the rollout's name")
        if op in ("pause", "resume", "promote", "abort", "undo"):
            parser.add_argument("--reason", default="", help="why, stored with the decision")
    listing = _operation(rops, "list", "rollouts, newest first", "searchgw rollout list --collection docs")
    listing.add_argument("--collection", default="", help="only this logical collection's")
    rollout.set_defaults(run=lambda a: _client(a, _rollout))
    register_experiment(subparsers)


# -- the analysis policy's flags, from the proto (a field the proto gains gets its flag) -----------
_POLICY_HELP = {
    "interval": "how often a check runs", "window": "the sliding window both arms are measured over",
    "error_codes": "gRPC code names that count as errors, comma-separated",
    "max_error_rate": "highest canary error rate allowed, 0..1",
    "max_error_rate_delta": "how far the canary error rate may exceed primary's, 0..1",
    "max_latency_ratio": "canary latency may be at most primary's times this (plus the slack)",
    "latency_slack": "absolute latency slack", "min_requests_per_arm": "fewer requests make a check inconclusive",
    "max_consecutive_failures": "failed checks in a row that roll back",
    "max_total_failures": "failed checks in all that roll back", "latency_quantile": "the latency quantile compared",
}


def _policy_fields():
    from google.protobuf.descriptor import FieldDescriptor

    from searchgw.v1 import rollout_service_pb2 as roll_pb

    for field in roll_pb.AnalysisPolicy.DESCRIPTOR.fields:
        message_type = field.message_type if field.type == FieldDescriptor.TYPE_MESSAGE else None
        message = None if message_type is None else message_type.full_name
        if message == "google.protobuf.Duration":
            yield field, f"--{field.name.replace('_', '-')}-s", "duration"
        elif message is None:
            repeated = getattr(field, "is_repeated", None)
            if repeated is None:  # protobuf before 6 has only `label` (which the stubs of 6 and later lack)
                repeated = getattr(field, "label", None) == FieldDescriptor.LABEL_REPEATED
            yield field, f"--{field.name.replace('_', '-')}", ("list" if repeated else field.type)


def _add_policy_flags(parser: argparse.ArgumentParser) -> None:
    from google.protobuf.descriptor import FieldDescriptor

    group = parser.add_argument_group("analysis policy (AnalysisPolicy fields; unset: the spec's, else the "
                                      "gateway's defaults)")
    for field, flag, kind in _policy_fields():
        help_text = _POLICY_HELP.get(field.name, f"AnalysisPolicy.{field.name}")
        dest = f"policy__{field.name}"
        if kind == "duration":
            group.add_argument(flag, dest=dest, type=_non_negative_seconds, metavar="SECONDS",
                               help=help_text + " (or with s, m, h, ms)")
        elif kind == "list":
            group.add_argument(flag, dest=dest, metavar="A,B,...", help=help_text)
        elif kind == FieldDescriptor.TYPE_BOOL:
            group.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
            group.add_argument(flag, dest=dest, type=_policy_number(float), metavar="X", help=help_text)
        elif kind in (FieldDescriptor.TYPE_STRING,):
            group.add_argument(flag, dest=dest, metavar="TEXT", help=help_text)
        else:
            group.add_argument(flag, dest=dest, type=_policy_number(int), metavar="N", help=help_text)


#: AnalysisPolicy.quality's flags: --shadow-sample-rate, then --quality-<field> for the others.
_QUALITY_HELP = {
    "shadow_sample_rate": "share of searches also run on the other arm, off the request path (e.g. 0.05; 0: none)",
    "k": "depth compared (overlap@k, RBO)", "min_overlap": "a comparison below this overlap@k counts against the canary",
    "max_below_share": "the canary fails when more than this share is below (0.5: the median)",
    "min_samples": "no verdict on fewer comparisons per stage", "alpha": "the quality guard's false-rollback bound",
    "rbo_p": "rank-biased overlap's p",
}


def _quality_flag(name: str) -> str:
    return "--shadow-sample-rate" if name == "shadow_sample_rate" else f"--quality-{name.replace('_', '-')}"


def _add_quality_flags(parser: argparse.ArgumentParser,
                       title: str = "result quality (AnalysisPolicy.quality: shadow comparisons and their guard; "
                                    "docs/canary.md)") -> argparse._ArgumentGroup:
    group = parser.add_argument_group(title)
    for name, help_text in _QUALITY_HELP.items():
        kind = int if name in ("k", "min_samples") else float
        group.add_argument(_quality_flag(name), dest=f"quality__{name}", type=_policy_number(kind),
                           metavar="N" if kind is int else "X", help=help_text)
    return group


def _quality_from(args: argparse.Namespace) -> dict[str, Any]:
    return {name: value for name in _QUALITY_HELP
            if (value := getattr(args, f"quality__{name}", None)) is not None}


def _policy_number(kind: type) -> Callable[[str], float | int]:
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a{' whole' if kind is int else ''} number") from None
        if value < 0 or value != value:
            raise argparse.ArgumentTypeError(f"{text}; must not be negative")
        return value

    return parse


def rollout_from(args: argparse.Namespace):
    """The Rollout message `rollout start` sends: --spec, then every flag given over it."""
    from google.protobuf.json_format import ParseDict, ParseError

    from searchgw.v1 import rollout_service_pb2 as roll_pb

    document: dict[str, Any] = {}
    if args.spec is not None:
        document = _read_spec(args.spec)
    for flag, key in (("name", "name"), ("collection", "collection"), ("canary", "canary_collection"),
                      ("primary", "primary_collection")):
        value = getattr(args, flag)
        if value:
            _drop_key(document, key)
            document[key] = value
    if args.stages is not None:
        _drop_key(document, "stages")
        document["stages"] = args.stages
    if args.auto_promote is not None:
        _drop_key(document, "auto_promote")
        document["auto_promote"] = args.auto_promote
    promotion = {key: value for key, value in (
        ("bake_duration", None if args.bake is None else f"{args.bake:g}s"),
        ("grace_period", None if args.grace is None else f"{args.grace:g}s"),
        ("old_collection_action", None if args.old_collection is None
         else f"OLD_COLLECTION_ACTION_{args.old_collection.upper()}")) if value is not None}
    _override_section(document, "promotion", promotion, args.spec)
    policy = {}
    for field, flag, kind in _policy_fields():
        value = getattr(args, f"policy__{field.name}", None)
        if value is None:
            continue
        if kind == "duration":
            value = f"{value:g}s"
        elif kind == "list":
            value = [part.strip() for part in value.split(",") if part.strip()]
        policy[field.name] = value
    quality = _quality_from(args)
    if quality:
        section = document.get("analysis")
        spec_quality = section.get("quality") if isinstance(section, dict) else None
        merged = dict(spec_quality) if isinstance(spec_quality, dict) else {}
        for name in quality:
            _drop_key(merged, name)
        policy["quality"] = {**merged, **quality}
    _override_section(document, "analysis", policy, args.spec)
    try:
        rollout = ParseDict(document, roll_pb.Rollout())
    except ParseError as exc:
        where = f"--spec {args.spec}" if args.spec is not None else "rollout start"
        raise UsageError(f"{where}: {' '.join(str(exc).split())}") from None
    for flag, value in (("NAME", rollout.name), ("--collection", rollout.collection),
                        ("--canary", rollout.canary_collection)):
        if not value:
            raise UsageError(f"{flag}: required (or set it in --spec)")
    return rollout


def _override_section(document: dict[str, Any], section_name: str, values: dict[str, Any], spec: Any) -> None:
    """Flags win over the spec file: each of `values` replaces its key in `document[section_name]`."""
    if not values:
        return
    section = document.setdefault(section_name, {})
    if not isinstance(section, dict):
        raise UsageError(f"--spec {spec}: {section_name!r} must be a mapping")
    for name, value in values.items():
        _drop_key(section, name)
        section[name] = value


def _drop_key(document: dict, name: str) -> None:
    """Remove `name` in either of its JSON spellings (snake_case or lowerCamelCase)."""
    camel = re.sub(r"_([a-z])", lambda m: m.group(1).upper(), name)
    document.pop(name, None)
    document.pop(camel, None)


def _read_spec(path: pathlib.Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise UsageError(f"--spec {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"--spec {path}: not YAML: {' '.join(str(exc).split())}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"--spec {path}: expected a mapping (a Rollout's fields), got {type(data).__name__}")
    if isinstance(data.get("rollout"), dict) and len(data) == 1:  # a CreateRolloutRequest's shape
        data = data["rollout"]
    return data


# -- serve ---------------------------------------------------------------------------------
def _serve(args: argparse.Namespace) -> int:
    from searchgw.embedder.settings import ENV_PREFIX as EMBEDDER_ENV, EmbedderSettings
    from searchgw.gateway.settings import ENV_PREFIX, GatewaySettings
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
        return EXIT_USAGE
    configure_logging(settings.log_level, settings.log_format)
    if settings.workers > 1:  # several processes on one port (see gateway.workers)
        from searchgw.gateway.workers import run_workers

        return run_workers(settings)
    configure_tracing("searchgw-gateway", settings.tracing_exporter)
    return asyncio.run(run_gateway(settings, embedder_settings))


async def run_gateway(settings, embedder_settings, *, reuse_port: bool = False,
                      on_ready: Callable[[str, int | None], None] | None = None) -> int:
    """Serve until SIGTERM/SIGINT, then drain. `on_ready(address, metrics_port)` announces it (default:
    the `gateway serving on …` line); `reuse_port` for a worker of `--workers N`."""
    from searchgw.embedder.server import create_server as create_embedder
    from searchgw.gateway.server import create_server
    from searchgw.rpc.server import run_until_signalled

    embedder = None
    if embedder_settings is not None:
        embedder = await create_embedder(embedder_settings)
        await embedder.load()
        settings = dataclasses.replace(settings, embedder_addr=embedder.address)
    gateway = await create_server(settings, reuse_port=reuse_port)
    if settings.demo:
        await gateway.demo.ensure()

    async def stop() -> None:
        await gateway.stop()
        if embedder is not None:
            await embedder.stop()

    def announce() -> None:
        if on_ready is not None:
            on_ready(gateway.address, gateway.metrics_endpoint.port if gateway.metrics_endpoint else None)
            return
        print(f"gateway serving on {gateway.address}" + (f" (embedder on {embedder.address})" if embedder else ""),
              flush=True)

    await run_until_signalled(stop, on_ready=announce)
    return 0


# -- client commands -----------------------------------------------------------------------
def _client(args: argparse.Namespace, command) -> int:
    from searchgw.gateway.client import GatewayClient
    from searchgw import security

    _client_options(args)
    prog = f"searchgw {args.command}" + (f" {args.op}" if getattr(args, "op", None) else "")
    try:
        credentials = None
        if args.tls_ca:
            for flag, value in (("--tls-ca", args.tls_ca), ("--tls-cert", args.tls_cert), ("--tls-key", args.tls_key)):
                if value and not pathlib.Path(value).is_file():
                    raise UsageError(f"{flag}: no such file {value!r}")
            if bool(args.tls_cert) != bool(args.tls_key):
                raise UsageError("--tls-cert and --tls-key: give both or neither")
            credentials = security.channel_credentials(pathlib.Path(args.tls_ca),
                                                       args.tls_cert and pathlib.Path(args.tls_cert),
                                                       args.tls_key and pathlib.Path(args.tls_key))
        elif args.tls_cert or args.tls_key:
            raise UsageError("--tls-cert/--tls-key: need --tls-ca (mutual TLS is TLS first)")
        if not re.match(r"^\S+:\d+$|^(unix|dns|ipv4|ipv6):\S+$", args.addr):
            raise UsageError(f"--addr: {args.addr!r} is not host:port")
        metadata = (("authorization", f"Bearer {args.token}"),) if args.token else ()

        async def main() -> int:
            async with GatewayClient(args.addr, credentials=credentials, metadata=metadata) as client:
                return await command(client, args) or 0

        return asyncio.run(main())
    except UsageError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SearchgwError as exc:
        message = " ".join(exc.message.split())
        if exc.code_name == "UNAVAILABLE" and ("connect" in message.lower() or "dns" in message.lower()):
            message = f"cannot reach the gateway at {args.addr} (--addr, env SEARCHGW_ADDR): {message}"
        print(f"{prog}: {exc.code_name}: {message}", file=sys.stderr)
        return EXIT_USAGE if exc.code_name in _CALLER_CODES else EXIT_FAILED
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def _as_dict(message) -> dict:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def _emit(args, data: Any, table: Callable[[], Iterable[str]]) -> None:
    """Print `data` (a message or plain data) as --output says; `table()` gives the table's lines."""
    if args.output == "table":
        for line in table():
            print(line)
        return
    if hasattr(data, "DESCRIPTOR"):
        data = _as_dict(data)
    if args.output == "json":
        print(json.dumps(data, indent=2))
    else:
        import yaml

        print(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), end="")


def _columns(rows: Sequence[Sequence[str]], header: Sequence[str]) -> list[str]:
    """Left-aligned columns two spaces apart (the last one unpadded)."""
    table = [list(header), *[list(map(str, row)) for row in rows]]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row[:-1], widths)) + "  " + row[-1]
            if len(row) > 1 else row[0] for row in table]


# -- search ----------------------------------------------------------------------------------
async def _search(client, args) -> int:
    vector = None
    if args.vector is not None:
        try:
            vector = json.loads(args.vector)
            if not isinstance(vector, list) or not vector or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) for v in vector):
                raise ValueError
        except ValueError:
            raise UsageError(f"--vector: {args.vector!r} is not a JSON array of numbers, e.g. '[0.1, 0.2]'") from None
        if args.text is not None:
            raise UsageError("TEXT and --vector: give one of them, not both")
    elif args.text is None or not args.text.strip():
        raise UsageError("TEXT: the query is required (or --vector)")
    from searchgw.v1 import search_service_pb2 as search_pb

    mode = {"dense": search_pb.SEARCH_MODE_DENSE, "sparse": search_pb.SEARCH_MODE_SPARSE,
            "hybrid": search_pb.SEARCH_MODE_HYBRID}[getattr(args, "mode", "dense")]
    fusion = search_pb.Fusion(method=search_pb.FUSION_METHOD_DBSF if getattr(args, "fusion", "rrf") == "dbsf"
                              else search_pb.FUSION_METHOD_RRF, rrf_k=getattr(args, "rrf_k", 0))
    if vector is not None and mode != search_pb.SEARCH_MODE_DENSE:
        raise UsageError("--mode sparse and hybrid rank by BM25 over a TEXT; --vector searches are dense")
    response = await client.search(args.collection, text=args.text if vector is None else None, vector=vector,
                                   limit=args.limit, routing_key=args.routing_key, with_payload=True,
                                   force_arm=args.force_arm, timeout=args.timeout, mode=mode,
                                   fusion=fusion if mode == search_pb.SEARCH_MODE_HYBRID else None)

    def table() -> Iterable[str]:
        route = response.route
        yield (f"# {len(response.points)} hits from {route.collection}"
               + (f" (rollout {route.rollout}, {'canary' if route.arm == 2 else 'primary'}"
                  f"{', fallback' if route.fallback else ''})" if route.rollout else "")
               + (f" (experiment {route.experiment}, arm {route.variant})" if route.experiment else ""))
        if response.search_id:
            yield f"# search id {response.search_id}  (searchgw experiment report-outcome ID --kind KIND)"
        for point in response.points:
            ident = point.id.uuid or point.id.num
            text = point.payload.fields["text"].string_value if "text" in point.payload.fields else ""
            yield f"{point.score:.4f}  {ident}  {text}"

    _emit(args, response, table)
    return 0


# -- ingest ----------------------------------------------------------------------------------
async def _ingest(client, args) -> int:
    from tqdm import tqdm

    from searchgw.gateway import ingest

    if args.chunk_overlap is not None and args.chunk_tokens is None:
        raise UsageError("--chunk-overlap applies with --chunk-tokens")
    options = ingest.IngestOptions(id_field=args.id_field, id_from_content=args.id_from_content,
                                   text_field=args.text_field, vector_field=args.vector_field, format=args.format,
                                   chunk_tokens=args.chunk_tokens, chunk_overlap=args.chunk_overlap)
    path: pathlib.Path = args.file
    try:
        checked = await asyncio.to_thread(ingest.validate, path, options)
    except ingest.IngestError as exc:
        raise UsageError(str(exc)) from None
    for problem in checked.problems:
        print(problem.describe(path), file=sys.stderr)
    if args.check:
        print(f"{path}: {checked.good} good records, {len(checked.problems)} bad")
        return EXIT_USAGE if checked.problems else 0
    if checked.problems and not args.keep_going:
        raise UsageError(f"{len(checked.problems)} bad record(s) in {path}; nothing was written. Fix them, or "
                         f"--continue to write the {checked.good} good ones")
    if not checked.good:
        raise UsageError(f"{path}: no records to write")
    await client.get_collection(args.collection, timeout=args.timeout)  # NOT_FOUND before anything is sent

    checkpoint = ingest.Checkpoint(args.checkpoint or ingest.default_checkpoint_path(path, args.collection),
                                   path, args.collection, options)
    done = 0 if args.restart else checkpoint.load()
    if done >= checked.good:
        done = 0
    if done:
        print(f"resuming after {done} of {checked.good} records (checkpoint {checkpoint.path}; --restart sends "
              "everything again)", file=sys.stderr)

    from searchgw.v1 import search_service_pb2 as search_pb

    chunking = None
    if options.chunk_tokens is not None:
        chunking = search_pb.Chunking(enabled=True, max_tokens=options.chunk_tokens,
                                      overlap_tokens=options.chunk_overlap)

    async def upsert(points):
        response = await client.upsert(args.collection, points, timeout=args.timeout, chunking=chunking)
        return response.chunks

    with tqdm(total=checked.good, initial=done, desc=f"ingest {path.name}", unit="rec", file=sys.stderr,
              disable=None, dynamic_ncols=True) as bar:
        records = ingest.good_records(path, options, checked)
        try:
            report = await ingest.write(records, upsert, path=path, batch_size=args.batch_size, skip=done,
                                        keep_going=args.keep_going, checkpoint=checkpoint, on_progress=bar.update)
        except (KeyboardInterrupt, asyncio.CancelledError):
            print(f"searchgw ingest: interrupted; run the same command again to continue (checkpoint "
                  f"{checkpoint.path})", file=sys.stderr)
            return 130
    for problem in report.rejected:
        print(problem.describe(path), file=sys.stderr)
    if report.stopped:
        written = done + report.written
        print(f"searchgw ingest: stopped after {written} of {checked.good} records: {report.stopped}",
              file=sys.stderr)
        print(f"searchgw ingest: what was written stays; run the same command again to continue from there "
              f"(checkpoint {checkpoint.path})", file=sys.stderr)
        return EXIT_USAGE if re.search(r"\b(INVALID_ARGUMENT|NOT_FOUND|FAILED_PRECONDITION)\b", report.stopped) \
            else EXIT_FAILED
    checkpoint.clear()
    if args.optimize:
        await client.optimize_collection(args.collection, timeout=max(args.timeout, 600.0))
    skipped = len(checked.problems) + len(report.rejected)
    summary = {"collection": args.collection, "written": report.written, "resumed_after": done,
               "skipped": skipped, "indexed": bool(args.optimize),
               "problems": [p.describe(path) for p in [*checked.problems, *report.rejected]]}
    if chunking is not None:
        summary["chunks"] = report.chunks
    _emit(args, summary, lambda: [
        f"upserted {report.written} points into {args.collection}"
        + (f" as {report.chunks} chunks" if chunking is not None else "")
        + (f" (after {done} written by an earlier run)" if done else "")
        + (" and built its index" if args.optimize else "")
        + (f"; skipped {skipped} bad record(s), listed above" if skipped else "")])
    return 0


# -- collections -------------------------------------------------------------------------------
def _collection_lines(collection) -> list[str]:
    return [f"name         {collection.name}", f"dimension    {collection.dimension}",
            f"points       {collection.points_count}", f"model        {collection.embedding_model or '-'}",
            f"aliases      {', '.join(collection.aliases) or '-'}"] + [
                f"index        {index.key}: {_index_type_name(index.type)}" for index in collection.payload_indexes] + _bm25_lines(collection)


def _index_type_name(number: int) -> str:
    return next((name for name, value in _INDEX_TYPES.items() if value == number), str(number))


def _bm25_lines(collection) -> list[str]:
    if not collection.HasField("bm25"):
        return ["bm25         -"]
    bm25 = collection.bm25
    return [f"bm25         k1={bm25.k1:g} b={bm25.b:g} avg_len={bm25.avg_len:g} language={bm25.language}"]


def _time(stamp) -> str:
    if not stamp.seconds and not stamp.nanos:
        return "-"
    return stamp.ToDatetime(tzinfo=_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


async def _collections(client, args) -> int:
    from searchgw.gateway.client import every_page

    timeout = args.timeout
    if args.op == "list":  # every page of both listings
        collections = [c async for page in every_page(lambda token: client.list_collections(page_token=token,
                                                                                               timeout=timeout))
                       for c in page.collections]
        aliases = await client.list_aliases(timeout=timeout)
        data = {"collections": [_as_dict(c) for c in collections], "aliases": aliases}
        rows = [(c.name, str(c.dimension), str(c.points_count), c.embedding_model or "-", ",".join(c.aliases) or "-")
                for c in collections]
        _emit(args, data, lambda: _columns(rows, ("NAME", "DIM", "POINTS", "MODEL", "ALIASES")))
    elif args.op in ("get", "create", "optimize", "restore"):
        if args.op == "get":
            collection = await client.get_collection(args.name, timeout=timeout)
        elif args.op == "create":
            from searchgw.v1 import collection_service_pb2 as coll_pb

            bm25 = coll_pb.Bm25Config(language=args.bm25_language) if args.bm25 or args.bm25_language else None
            collection = await client.create_collection(args.name, dimension=args.dimension,
                                                        embedding_model=args.embedding_model, timeout=timeout,
                                                        bm25=bm25)
        elif args.op == "optimize":
            collection = (await client.optimize_collection_report(args.name, background=args.background,
                                                                  timeout=max(timeout, 600.0))).collection
        else:
            collection = await client.restore_snapshot(args.snapshot, args.new_name, timeout=max(timeout, 600.0))
        _emit(args, collection, lambda: _collection_lines(collection))
    elif args.op == "delete":
        await client.delete_collection(args.name, timeout=timeout)
        _emit(args, {"deleted": args.name}, lambda: [f"deleted {args.name}"])
    elif args.op == "alias":
        previous = await client.update_alias(args.alias, args.collection, timeout=timeout)
        _emit(args, {"alias": args.alias, "collection": args.collection, "previous_collection": previous},
              lambda: [f"{args.alias} -> {args.collection}" + (f" (was {previous})" if previous else "")])
    elif args.op == "snapshot":
        snapshot = await client.create_snapshot(args.name, timeout=max(timeout, 600.0))
        _emit(args, snapshot, lambda: _columns([_snapshot_row(snapshot)], _SNAPSHOT_HEADER))
    elif args.op == "snapshots":
        snapshots = [s async for page in every_page(lambda token: client.list_snapshots(args.name, page_token=token,
                                                                                         timeout=timeout))
                     for s in page.snapshots]
        _emit(args, {"snapshots": [_as_dict(s) for s in snapshots]},
              lambda: _columns([_snapshot_row(s) for s in snapshots], _SNAPSHOT_HEADER))
    elif args.op == "delete-snapshot":
        await client.delete_snapshot(args.name, args.snapshot, timeout=timeout)
        _emit(args, {"deleted": args.snapshot, "collection": args.name}, lambda: [f"deleted {args.snapshot}"])
    elif args.op in ("index", "unindex"):
        collection = await _payload_index(client, args)
        _emit(args, collection, lambda: _collection_lines(collection))
    elif args.op == "prune-snapshots":
        pruned = await client.prune_snapshots(args.name, keep_last=args.keep_last, max_age_s=args.max_age,
                                              timeout=max(timeout, 600.0))
        _emit(args, pruned, lambda: [f"deleted {s.name}" for s in pruned.deleted]
              + [f"kept {len(pruned.kept)}, deleted {len(pruned.deleted)}"])
    return 0


_SNAPSHOT_HEADER = ("NAME", "COLLECTION", "CREATED", "BYTES", "SHA256")
_INDEX_TYPES = {"keyword": 1, "integer": 2, "float": 3, "bool": 4, "datetime": 5, "uuid": 6, "text": 7}
_TOKENIZERS = {"word": 1, "whitespace": 2, "prefix": 3, "multilingual": 4}


async def _payload_index(client, args) -> Any:
    from searchgw.v1 import collection_service_pb2 as coll_pb

    if args.op == "unindex":
        return await client.delete_payload_index(args.name, args.key, timeout=args.timeout)
    text = None
    if args.type == "text":
        text = coll_pb.TextIndexParams(tokenizer=f"TOKENIZER_{(args.tokenizer or 'word').upper()}",
                                       lowercase=not args.case_sensitive, min_token_length=args.min_token_length,
                                       max_token_length=args.max_token_length)
    elif args.tokenizer or args.case_sensitive or args.min_token_length or args.max_token_length:
        raise SystemExit("--tokenizer, --case-sensitive and the token lengths are for --type text")
    return await client.create_payload_index(args.name, args.key,
                                             coll_pb.PayloadIndexType.Value(f"PAYLOAD_INDEX_TYPE_{args.type.upper()}"),
                                             text=text,
                                             timeout=max(args.timeout, 600.0))


def _filter_json(text: str):
    from searchgw.v1 import common_pb2

    try:
        return json_format.Parse(text, common_pb2.Filter())
    except json_format.ParseError as exc:
        raise argparse.ArgumentTypeError(f"not a searchgw.v1.Filter in JSON: {exc}") from None


def _point_row(point) -> tuple[str, ...]:
    kind = point.id.WhichOneof("kind")
    payload = json.dumps(json_format.MessageToDict(point.payload), ensure_ascii=False) if point.HasField("payload") \
        else "-"
    return (str(getattr(point.id, kind or "num")), payload[:100])


async def _points(client, args) -> int:
    from searchgw.v1 import common_pb2

    arm = {None: common_pb2.ARM_UNSPECIFIED, "primary": common_pb2.ARM_PRIMARY,
           "canary": common_pb2.ARM_CANARY}[args.arm]
    timeout = args.timeout
    if args.op == "count":
        counted = await client.count_points(args.collection, filter=args.filter, arm=arm, timeout=timeout)
        _emit(args, counted, lambda: [f"{counted.count} points in {counted.route.collection}"])
        return 0
    if args.op == "get":
        ids = [int(i) if i.isdigit() else i for i in args.ids]
        got = await client.get_points(args.collection, ids, with_payload=args.payload, with_vector=args.vector,
                                      timeout=timeout)
        _emit(args, got, lambda: _columns([_point_row(p) for p in got.points], ("ID", "PAYLOAD")))
        return 0
    found: list[Any] = []
    token = ""
    while len(found) < args.limit:
        page = await client.scroll_points(args.collection, filter=args.filter, page_size=min(args.limit - len(found),
                                                                                             1000),
                                          page_token=token, order_by=args.order_by, descending=args.descending,
                                          with_payload=args.payload, with_vector=args.vector, arm=arm,
                                          timeout=timeout)
        found.extend(page.points)
        token = page.next_page_token
        if not token:
            break
    _emit(args, {"points": [_as_dict(p) for p in found], "next_page_token": token},
          lambda: _columns([_point_row(p) for p in found], ("ID", "PAYLOAD")))
    return 0


def _snapshot_row(snapshot) -> tuple[str, ...]:
    return (snapshot.name, snapshot.collection, _time(snapshot.create_time), str(snapshot.size_bytes),
            snapshot.checksum or "-")


# -- rollouts ------------------------------------------------------------------------------------
def _enum_name(message, field: str) -> str:
    value = getattr(message, field)
    name = message.DESCRIPTOR.fields_by_name[field].enum_type.values_by_number[value].name
    return name.split("_", 1)[1] if "_" in name else name


def _percent(value: float) -> str:
    return f"{value:.4g}%"


def _stats(stats) -> str:
    latency = f", p {stats.latency_seconds * 1000:.1f} ms" if stats.HasField("latency_seconds") else ""
    return f"{stats.requests} req, {stats.errors} err ({stats.error_rate:.2%}){latency}"


def decision_line(decision) -> str:
    """One decision on one line: when, what, stage and weight, who, why, and both arms' numbers."""
    line = (f"{_time(decision.time)}  {_enum_name(decision, 'kind'):<18} stage {decision.stage + 1}  "
            f"{_percent(decision.weight_percent):>6}  by {decision.actor or '-'}: {' '.join(decision.reason.split())}")
    if decision.HasField("primary") or decision.HasField("canary"):
        line += f"  [primary {_stats(decision.primary)} | canary {_stats(decision.canary)}]"
    return line


def rollout_lines(rollout) -> list[str]:
    """The concise view of a rollout (the full decision list is `rollout history`)."""
    stages = len(rollout.stages)
    stage = rollout.stages[rollout.current_stage] if rollout.current_stage < stages else None
    elapsed = rollout.stage_elapsed.ToTimedelta().total_seconds()
    progress = ""
    if stage is not None:
        progress = (f"  (stage time {elapsed:.0f}s of {stage.min_duration.ToTimedelta().total_seconds():.0f}s, "
                    f"at least {stage.min_requests} canary requests)")
    lines = [
        f"rollout    {rollout.name}: {rollout.collection} from {rollout.primary_collection or '-'} "
        f"to {rollout.canary_collection}",
        f"state      {_enum_name(rollout, 'state')}  stage {rollout.current_stage + 1}/{stages}  "
        f"weight {_percent(rollout.weight_percent)}{progress}",
        f"failures   {rollout.consecutive_failures} in a row, {rollout.total_failures} in all; "
        f"auto-promote {'on' if rollout.auto_promote else 'off'}",
    ]
    if rollout.HasField("backfill"):
        lines.append(f"backfill   {backfill_line(rollout).split(': ', 1)[1]}")
    if rollout.HasField("preflight"):
        lines.append(f"preflight  {' '.join(rollout.preflight.summary.split())}")
    if rollout.HasField("bake_start_time"):
        bake = rollout.promotion.bake_duration.ToTimedelta().total_seconds()
        ended = (f", ended {_time(rollout.bake_end_time)}" if rollout.HasField("bake_end_time")
                 else f", {elapsed:.0f}s of {bake:.0f}s (undo possible)")
        lines.append(f"bake       started {_time(rollout.bake_start_time)}{ended}")
    if rollout.decisions:
        last = rollout.decisions[-1]
        lines.append(f"last       {_enum_name(last, 'kind')} {_time(last.time)} by {last.actor or '-'}: "
                     f"{' '.join(last.reason.split())}")
        check = next((d for d in reversed(rollout.decisions) if d.HasField("primary") or d.HasField("canary")), None)
        if check is not None:
            rows = [(arm, str(stats.requests), str(stats.errors), f"{stats.error_rate:.2%}",
                     f"{stats.latency_seconds * 1000:.1f} ms" if stats.HasField("latency_seconds") else "-")
                    for arm, stats in (("primary", check.primary), ("canary", check.canary))]
            lines.append(f"numbers    of the last check ({_time(check.time)}):")
            lines += ["           " + row for row in _columns(rows, ("ARM", "REQUESTS", "ERRORS", "ERROR RATE",
                                                                     "LATENCY"))]
        lines.append(f"decisions  {len(rollout.decisions)} (searchgw rollout history {rollout.name})")
    return lines


async def _rollout(client, args) -> int:
    from searchgw.gateway.client import every_page

    timeout = args.timeout
    if args.op == "start" and args.name and not (args.collection or args.canary or args.spec):
        rollout = await client.start_rollout(args.name, args.reason, timeout=timeout)  # a PREPARED rollout
        _emit(args, rollout, lambda: rollout_lines(rollout))
    elif args.op == "start":
        rollout = await client.create_rollout_message(rollout_from(args), timeout=timeout)
        _emit(args, rollout, lambda: rollout_lines(rollout))
    elif args.op == "prepare":
        return await _prepare(client, args)
    elif args.op == "validate":
        from searchgw.v1 import rollout_service_pb2 as roll_pb

        values = {name: getattr(args, name) for name in ("k", "sample_size", "min_overlap_at_k", "min_rbo", "rbo_p",
                                                         "count_tolerance") if getattr(args, name) is not None}
        policy = roll_pb.PreflightPolicy(**values) if values else None
        rollout = await client.validate_rollout(args.name, args.query, policy=policy, timeout=timeout)
        _emit(args, rollout, lambda: rollout_lines(rollout))
        return 0 if rollout.preflight.passed else 1
    elif args.op == "status":
        rollout = await client.get_rollout(args.name, timeout=timeout)
        _emit(args, rollout, lambda: rollout_lines(rollout))
    elif args.op == "history":
        rollout = await client.get_rollout(args.name, timeout=timeout)
        _emit(args, {"name": rollout.name, "decisions": [_as_dict(d) for d in rollout.decisions]},
              lambda: [decision_line(d) for d in rollout.decisions])
    elif args.op == "list":
        rollouts = [r async for page in every_page(lambda token: client.list_rollouts(
                        collection=args.collection, page_token=token, timeout=timeout)) for r in page.rollouts]
        rows = [(r.name, r.collection, r.canary_collection, _enum_name(r, "state"),
                 f"{r.current_stage + 1}/{len(r.stages)}", _percent(r.weight_percent), _time(r.update_time))
                for r in rollouts]
        _emit(args, {"rollouts": [_as_dict(r) for r in rollouts]},
              lambda: _columns(rows, ("NAME", "COLLECTION", "CANARY", "STATE", "STAGE", "WEIGHT", "UPDATED")))
    elif args.op == "watch":
        async for message in client.watch_rollout(args.name):
            if not message.HasField("decision"):
                rollout = message.rollout
                line = (f"{rollout.name}: {_enum_name(rollout, 'state')}, stage {rollout.current_stage + 1}/"
                        f"{len(rollout.stages)}, weight {_percent(rollout.weight_percent)}")
            else:
                line = decision_line(message.decision)
            if args.output == "table":
                print(line, flush=True)
            else:  # one compact document per message
                print(json.dumps(_as_dict(message)) if args.output == "json" else "---\n" + _yaml(message),
                      flush=True)
    else:
        action = getattr(client, f"{args.op}_rollout")
        rollout = await action(args.name, args.reason, timeout=timeout)
        _emit(args, rollout, lambda: rollout_lines(rollout))
    return 0


async def _prepare(client, args) -> int:
    from google.protobuf.json_format import ParseDict

    from searchgw.v1 import collection_service_pb2 as coll_pb
    from searchgw.v1 import rollout_service_pb2 as roll_pb

    canary = coll_pb.Collection(
        dimension=args.canary_dimension, embedding_model=args.canary_model,
        distance=f"DISTANCE_{args.canary_distance.upper()}" if args.canary_distance else "DISTANCE_UNSPECIFIED",
        hnsw=coll_pb.HnswConfig(m=args.canary_hnsw_m, ef_construct=args.canary_ef_construct))
    rollout = await client.prepare_rollout(args.name, args.collection, args.canary, canary=canary,
                                           stages=[ParseDict(s, roll_pb.Stage()) for s in args.stages or ()],
                                           auto_promote=args.auto_promote, batch_size=args.batch_size,
                                           timeout=args.timeout)
    if not args.wait:
        _emit(args, rollout, lambda: rollout_lines(rollout))
        return 0
    print(backfill_line(rollout), flush=True)
    while rollout.state == roll_pb.Rollout.STATE_PREPARING:
        await asyncio.sleep(args.interval)
        rollout = await client.get_rollout(args.name, timeout=args.timeout)
        print(backfill_line(rollout), flush=True)
    _emit(args, rollout, lambda: rollout_lines(rollout))
    return 0 if rollout.state == roll_pb.Rollout.STATE_PREPARED else 1


def backfill_line(rollout) -> str:
    """One progress line of a rollout's backfill, with its rate since it began."""
    b = rollout.backfill
    handled = b.copied + b.failed + b.superseded
    share = 1.0 if b.done else (handled / b.total if b.total else 0.0)
    elapsed = (b.update_time.ToMicroseconds() - b.start_time.ToMicroseconds()) / 1e6
    rate = f", {b.copied / elapsed:.0f} points/s" if elapsed > 0 else ""
    error = f"; retrying after: {b.last_error}" if b.last_error else ""
    return (f"{rollout.name} {_enum_name(rollout, 'state')}: backfill {handled}/{b.total} ({min(share, 1.0):.1%}), "
            f"{b.copied} copied ({b.reembedded} re-embedded), {b.failed} failed, {b.superseded} superseded"
            f"{rate}{error}")


def _yaml(message) -> str:
    import yaml

    return yaml.safe_dump(_as_dict(message), sort_keys=False, allow_unicode=True)


# -- experiments ----------------------------------------------------------------------------------
def _variant_arg(text: str) -> tuple[str, str, int]:
    """NAME=COLLECTION[:BPS] or COLLECTION (named v1, v2, ... in order)."""
    name, equals, rest = text.rpartition("=") if "=" in text else ("", "", text)
    collection, colon, bps = rest.partition(":")
    if not collection or (colon and not bps.isdigit()):
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=COLLECTION[:BASIS_POINTS] or COLLECTION")
    return name, collection, int(bps) if colon else 0


def register_experiment(subparsers: argparse._SubParsersAction) -> None:
    experiment = _command(subparsers, "experiment", "A/B(/n) experiments: split an alias between control and "
                                                    "variant collections and judge them on reported outcomes",
                          "  searchgw experiment create e1 --collection docs --variant m32=docs-m32 "
                          "--variant int8=docs-int8\n  searchgw experiment start e1\n  searchgw experiment get e1\n"
                          "  searchgw experiment conclude e1 --promote")
    eops = _operations(experiment)
    create = _operation(eops, "create", "create an experiment (it holds the alias: writes reach every arm; "
                                        "control serves until 'start')",
                        "searchgw experiment create e1 --collection docs --variant m32=docs-m32:3000 "
                        "--control-split-bps 7000")
    create.add_argument("name", help="a unique name")
    create.add_argument("--collection", required=True, help="the logical collection (alias) whose searches split")
    create.add_argument("--variant", type=_variant_arg, action="append", required=True, metavar="NAME=COLLECTION[:BPS]",
                        help="a variant (repeatable): its name, physical collection and share in basis points "
                             "[all shares 0: an even split]")
    create.add_argument("--control", default="", help="control's collection [what the alias points at]")
    create.add_argument("--control-split-bps", type=int, default=0, help="control's share in basis points")
    create.add_argument("--alpha", type=float, default=0.0, help="false-winner bound over the whole experiment [0.05]")
    create.add_argument("--goal", default="", help="the outcome kind that decides [conversion]")
    create.add_argument("--outcome-kinds", default="", help="comma-separated kinds clients may report "
                                                            "[click,conversion]")
    create.add_argument("--latency-threshold", type=_seconds, default=0.0,
                        help="searches slower than this count as slow (e.g. 100ms is 0.1) [0.1]")
    create.add_argument("--interval", type=_seconds, default=0.0, help="how often the tests are updated [5s]")
    quality = _add_quality_flags(create, "shadow quality (ExperimentPolicy.quality: a share of each variant's searches "
                                         "also runs on control, off the request path; docs/experiments.md)")
    quality.add_argument("--quality-guard", action="store_true",
                         help="a variant whose results differ from control's cannot win (off by default: turn it on "
                              "when a variant should rank like control, e.g. an index rebuild)")
    for op, text, example in (
            ("get", "the experiment: state, each arm's numbers, the tests and the verdict", "searchgw experiment get e1"),
            ("start", "split the traffic (or resume a paused experiment)", "searchgw experiment start e1"),
            ("pause", "send every search to control; outcomes of earlier searches still count",
             'searchgw experiment pause e1 --reason "incident"'),
            ("stop", "end the experiment without a conclusion", "searchgw experiment stop e1"),
            ("watch", "follow the experiment: one line per analysis or transition until it ends",
             "searchgw experiment watch e1"),
            ("conclude", "end the experiment with an arm (default: the winner); --promote points the alias at it",
             "searchgw experiment conclude e1 --promote")):
        parser = _operation(eops, op, text, example)
        parser.add_argument("name", help="the experiment's name")
        if op in ("start", "pause", "stop", "conclude"):
            parser.add_argument("--reason", default="", help="why, kept with the decision")
        if op == "conclude":
            parser.add_argument("--arm", default="", help="the arm to conclude with [the winner]")
            parser.add_argument("--promote", action="store_true", help="point the alias at the arm's collection")
    listing = _operation(eops, "list", "experiments, newest first", "searchgw experiment list --collection docs")
    listing.add_argument("--collection", default="", help="only this logical collection's")
    report = _operation(eops, "report-outcome", "report what users did with searches' results",
                        "searchgw experiment report-outcome SEARCH_ID --kind conversion --value 12.5")
    report.add_argument("search_id", nargs="+", help="SearchResponse.search_id (one or more)")
    report.add_argument("--kind", required=True, help="the outcome kind (one of the experiment's)")
    report.add_argument("--value", type=float, default=1.0, help="a value summed per arm [1]")
    experiment.set_defaults(run=lambda a: _client(a, _experiment))


def _number(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.3g}"


def experiment_lines(experiment) -> list[str]:
    arms = ", ".join(f"{a.arm}={a.collection}" for a in experiment.arms) or ", ".join(
        [f"control={experiment.control_collection}", *(f"{v.name}={v.collection}" for v in experiment.variants)])
    splits = [experiment.control_split_bps, *(v.split_bps for v in experiment.variants)]
    lines = [f"experiment {experiment.name}: {experiment.collection} split {arms} "
             f"({' / '.join(f'{b / 100:g}%' for b in splits)})",
             f"state      {_enum_name(experiment, 'state')}  alpha {experiment.policy.alpha:g}  goal "
             f"{experiment.policy.goal}",
             f"verdict    {' '.join(experiment.summary.split())}"]
    if experiment.concluded_arm:
        lines.append(f"concluded  with {experiment.concluded_arm}{' (promoted)' if experiment.promoted else ''}")
    kinds = list(experiment.policy.outcome_kinds)
    rows = []
    for arm in experiment.arms:
        counts = {o.kind: o for o in arm.outcomes}
        latency = arm.mean_latency.ToTimedelta().total_seconds() * 1000
        rows.append((arm.arm, str(arm.searches), str(arm.errors), str(arm.slow), f"{latency:.1f} ms",
                     *(f"{counts[k].count} ({counts[k].rate:.2%})" if k in counts else "0" for k in kinds)))
    lines += ["           " + row for row in _columns(rows, ("ARM", "SEARCHES", "ERRORS", "SLOW", "MEAN",
                                                             *(k.upper() for k in kinds)))]
    for verdict in experiment.verdicts:
        tests = "  ".join(f"{t.name} p={t.p_value:.3g}{'*' if t.rejected else ''} ratio={_number(t.estimate)} "
                          f"[{_number(t.lower)}, {_number(t.upper)}]" for t in verdict.tests)
        lines.append(f"tests      {verdict.arm} {_enum_name(verdict, 'status').lower()}: {tests}")
        if verdict.HasField("quality"):
            q = verdict.quality
            median = f"{q.median_overlap:.2f}" if q.HasField("median_overlap") else "-"
            rbo = f"{q.mean_rbo:.2f}" if q.HasField("mean_rbo") else "-"
            lines.append(f"quality    {verdict.arm}: overlap@{q.k} median {median}, mean RBO {rbo} over {q.samples} "
                         f"shadow comparisons{'; VETOED' if verdict.veto else ''}")
    return lines


async def _experiment(client, args) -> int:
    from searchgw.gateway.client import every_page
    from searchgw.v1 import rollout_service_pb2 as roll_pb

    timeout = args.timeout
    if args.op == "create":
        kinds = [k.strip() for k in args.outcome_kinds.split(",") if k.strip()]
        experiment = await client.create_experiment(
            args.name, args.collection, args.variant, control_collection=args.control,
            control_split_bps=args.control_split_bps, alpha=args.alpha, goal=args.goal, outcome_kinds=kinds,
            latency_threshold_s=args.latency_threshold, interval_s=args.interval,
            quality=roll_pb.QualityPolicy(**_quality_from(args)), quality_guard=args.quality_guard, timeout=timeout)
    elif args.op == "get":
        experiment = await client.get_experiment(args.name, timeout=timeout)
    elif args.op == "list":
        experiments = [e async for page in every_page(lambda token: client.list_experiments(
                           collection=args.collection, page_token=token, timeout=timeout)) for e in page.experiments]
        rows = [(e.name, e.collection, _enum_name(e, "state"), e.winner or "-", _time(e.update_time))
                for e in experiments]
        _emit(args, {"experiments": [_as_dict(e) for e in experiments]},
              lambda: _columns(rows, ("NAME", "COLLECTION", "STATE", "WINNER", "UPDATED")))
        return 0
    elif args.op == "watch":
        async for message in client.watch_experiment(args.name):
            e = message.experiment
            line = (f"{e.name}: {_enum_name(e, 'state')}, {sum(a.searches for a in e.arms)} searches; "
                    f"{' '.join(e.summary.split())}")
            print(line if args.output == "table" else json.dumps(_as_dict(message)), flush=True)
        return 0
    elif args.op == "report-outcome":
        response = await client.report_outcomes([(s, args.kind, args.value) for s in args.search_id],
                                                 timeout=timeout)
        outcome_rows = [(s[:16] + "…", _enum_name(r, "status")) for s, r in zip(args.search_id, response.results)]
        _emit(args, response, lambda: _columns(outcome_rows, ("SEARCH ID", "STATUS")))
        return 0 if response.accepted == len(args.search_id) else 1
    elif args.op == "conclude":
        experiment = await client.conclude_experiment(args.name, arm=args.arm, promote=args.promote,
                                                      reason=args.reason, timeout=timeout)
    else:
        experiment = await getattr(client, f"{args.op}_experiment")(args.name, args.reason, timeout=timeout)
    _emit(args, experiment, lambda: experiment_lines(experiment))
    return 0
