"""The domain rooms never import grpc: each imports in a fresh interpreter where grpc cannot be imported.

The rooms are the ones named here and every path docs/architecture.md's layout table marks "no" in
its "may import grpc?" column (a package: the package and each of its modules), so the table cannot
claim a room is free of gRPC unless it is.
"""

from __future__ import annotations

import json
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent

#: The domain, by name, whatever the table says.
DOMAIN_ROOMS = (
    "searchgw.errors",
    "searchgw.settings",
    "searchgw.gateway.settings",
    "searchgw.gateway.rules",
    "searchgw.gateway.routing",
    "searchgw.gateway.rollout",
    "searchgw.gateway.backends",
    "searchgw.gateway.core",
    "searchgw.gateway.collections",
    "searchgw.gateway.snapshotting",
    "searchgw.gateway.paging",
    "searchgw.gateway.embedding",
    "searchgw.gateway.shadow",
    "searchgw.gateway.metrics",
    "searchgw.gateway.dependencies",
    "searchgw.gateway.demo",
    "searchgw.gateway.ingest",
    "searchgw.embedder.core",
    "searchgw.embedder.batching",
    "searchgw.embedder.cache",
    "searchgw.embedder.model",
    "searchgw.embedder.metrics",
)
#: Modules inside a grpc-free package that may import grpc, as the table's row says: qdrant-client
#: (the Qdrant server's client library) imports grpc, so the backend over it does.
EXCEPTIONS = frozenset({"searchgw.gateway.backends.qdrant"})

_PROBE = r"""
import importlib, importlib.abc, json, sys

class NoGrpc(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "grpc" or name.startswith(("grpc.", "grpc_")):
            raise ImportError(f"{name} is not importable here")
        return None

sys.meta_path.insert(0, NoGrpc())
failures = {}
for module in json.loads(sys.argv[1]):
    try:
        importlib.import_module(module)
    except Exception as exc:
        failures[module] = f"{type(exc).__name__}: {exc}"
leaked = sorted(name for name in sys.modules if name == "grpc" or name.startswith("grpc."))
print(json.dumps({"failures": failures, "leaked": leaked}))
"""


def _module_of(path: str) -> str:
    """`gateway/core.py` → `searchgw.gateway.core`; `embedder/model/` → `searchgw.embedder.model`."""
    dotted = path.rstrip("/").removesuffix(".py").replace("/", ".")
    return dotted if path.startswith("searchgw/") else f"searchgw.{dotted}"


def _expanded(path: str) -> list[str]:
    """The module a path names; for a package, the package and every module in it."""
    if not path.endswith("/"):
        return [_module_of(path)]
    folder = ROOT / path
    modules = [_module_of(path)]
    for file in sorted(folder.rglob("*.py")):
        relative = file.relative_to(ROOT).as_posix()
        if file.name != "__init__.py":
            modules.append(_module_of(relative))
        elif file.parent != folder:
            modules.append(_module_of(file.parent.relative_to(ROOT).as_posix() + "/"))
    return modules


def table_rooms() -> list[str]:
    """Every module docs/architecture.md's layout table says does not import grpc."""
    rooms: list[str] = []
    for line in (ROOT / "docs" / "architecture.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not re.match(r"no\b", cells[2]):
            continue
        paths = re.findall(r"`([^`]+)`", cells[0])
        folder = ""
        for path in paths:
            if "/" not in path.rstrip("/"):  # `cache.py` after `embedder/batching.py`: the same folder
                path = folder + path
            folder = path.rsplit("/", 1)[0] + "/" if "/" in path.rstrip("/") else ""
            rooms.extend(_expanded(path))
    return rooms


def test_the_table_names_the_domain_rooms():
    rooms = set(table_rooms())
    assert {"searchgw.gateway.core", "searchgw.gateway.rules", "searchgw.gateway.embedding",
            "searchgw.gateway.backends", "searchgw.embedder.core"} <= rooms, sorted(rooms)
    assert all(module.startswith("searchgw.") for module in rooms)


def test_every_domain_room_imports_without_grpc():
    modules = sorted((set(DOMAIN_ROOMS) | set(table_rooms())) - EXCEPTIONS)
    result = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(modules)], cwd=ROOT, capture_output=True,
                            text=True, timeout=300, check=True)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["failures"] == {}, json.dumps(report["failures"], indent=1)
    assert report["leaked"] == []


def test_the_probe_does_catch_a_module_that_imports_grpc():
    result = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(["searchgw.gateway.server"])], cwd=ROOT,
                            capture_output=True, text=True, timeout=300, check=True)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert "searchgw.gateway.server" in report["failures"]
