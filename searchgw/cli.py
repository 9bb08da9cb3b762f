"""The `searchgw` console script: the top floor, the one module that imports every server's commands.

    searchgw embedder serve ...         the embedding server          (searchgw.embedder.cli)
    searchgw serve ...                  the gateway (+ embedder)       (searchgw.gateway.cli)
    searchgw collections|ingest|search|rollout ...                      (searchgw.gateway.cli)
    searchgw loadgen ...                the load generator             (searchgw.loadgen.cli)

A command-line mistake is one line on stderr naming the flag, with exit status 2 (never a usage dump
or a traceback); `SEARCHGW_DEBUG=1` shows the traceback of an unexpected failure.
"""

from __future__ import annotations

import argparse
import os
import re
import sys

from searchgw.embedder import cli as embedder_cli
from searchgw.gateway import cli as gateway_cli
from searchgw.loadgen import cli as loadgen_cli

#: Modules with a `register(subparsers)` function, in help order.
_COMMAND_MODULES = (gateway_cli, embedder_cli, loadgen_cli)

_EPILOG = """examples:
  searchgw serve --with-embedder --demo          # a gateway with its embedder and a demo collection
  searchgw search "how do I roll back a canary?"
  searchgw collections list
  searchgw ingest passages.jsonl --collection docs-v2
  searchgw rollout start r1 --collection docs --canary docs-v2
  searchgw rollout watch r1
  searchgw loadgen --target 127.0.0.1:50051 --duration-s 30

Each command has its own --help (and each operation: searchgw rollout start --help).
exit status: 0 done; 1 the gateway could not do it (unreachable, failing); 2 a mistake in the command."""


class CommandLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line: `searchgw rollout start: --stages: ... (see --help)`."""

    def error(self, message: str):
        message = re.sub(r"^argument ", "", message)
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = CommandLineParser(prog="searchgw", description="gRPC search gateway with canary routing",
                               epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", title="commands")
    for module in _COMMAND_MODULES:
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    import prometheus_client

    prometheus_client.disable_created_metrics()  # every server this process runs
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print(f"searchgw {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: one line, unless asked for the traceback
        if os.environ.get("SEARCHGW_DEBUG"):
            raise
        print(f"searchgw {args.command}: unexpected error: {type(exc).__name__}: {exc} "
              "(SEARCHGW_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
