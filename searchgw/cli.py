"""The `searchgw` console script. Each package adds its own subcommands:

    searchgw embedder serve ...         the embedding server          (embedder.cli)
    searchgw serve ...                  the gateway (+ embedder)       (gateway.cli)
    searchgw collections|ingest|search|rollout ...                      (gateway.cli)
    searchgw loadgen ...                the load generator             (loadgen.cli)
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: Modules with a `register(subparsers)` function, in help order.
_COMMAND_MODULES = ("gateway.cli", "embedder.cli", "loadgen.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="searchgw", description="gRPC search gateway with canary routing")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
