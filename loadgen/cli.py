"""`searchgw loadgen`: drive a running server with load, then print what it did (and write JSON)."""

from __future__ import annotations

import argparse
import os
import pathlib
import sys

from searchgw.loadgen._config import ENV_PREFIX, LoadConfig
from searchgw.loadgen._errors import LoadgenError
from searchgw.loadgen._progress import ProgressLine
from searchgw.loadgen._run import run_load_sync
from searchgw import settings as settings_mod

_EXAMPLES = """\
examples:
  searchgw loadgen --target 127.0.0.1:50051 --concurrency 16 --duration-s 30
  searchgw loadgen --mode open --rate 500 --processes 2 --keys zipf --json run.json
  searchgw loadgen --rpc embed --target 127.0.0.1:50061 --batch-size 8 --mode open --rate 50
  searchgw loadgen --vector --dimension 384 --canary-arm canary --tls-ca ca.pem --token "$TOKEN"
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "loadgen", help="load generator for Search, Embed and Upsert",
        description="Drive a running server with closed- or open-loop load and report latency "
                    "percentiles, status codes and arms.",
        epilog=_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=pathlib.Path, help="YAML config file (section 'loadgen')")
    parser.add_argument("--json", nargs="?", const="-", metavar="FILE",
                        help="write the JSON report to FILE (to stdout when FILE is left out; "
                             "the table then goes to stderr)")
    parser.add_argument("--quiet", action="store_true", help="no live progress line on stderr")
    settings_mod.add_arguments(parser, LoadConfig, env_prefix=ENV_PREFIX)
    parser.set_defaults(run=_run)


def config_from(args: argparse.Namespace) -> LoadConfig:
    file_values = settings_mod.load_config_file(args.config).get("loadgen", {})
    return settings_mod.build(LoadConfig, args, env_prefix=ENV_PREFIX, environ=os.environ, file_section=file_values)


def _run(args: argparse.Namespace) -> int:
    try:
        config = config_from(args)
    except settings_mod.SettingsError as exc:
        print(f"searchgw loadgen: {exc}", file=sys.stderr)
        return 2
    progress = None if args.quiet else ProgressLine(sys.stderr)
    try:
        report = run_load_sync(config, on_progress=progress)
    except LoadgenError as exc:
        print(f"searchgw loadgen: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("searchgw loadgen: interrupted", file=sys.stderr)
        return 130
    finally:
        if progress is not None:
            progress.close()
    json_to_stdout = args.json == "-"
    print(report.format_table(), file=sys.stderr if json_to_stdout else sys.stdout)
    if json_to_stdout:
        print(report.to_json())
    elif args.json:
        pathlib.Path(args.json).write_text(report.to_json() + "\n")
    return 0
