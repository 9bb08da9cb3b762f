"""What the distribution installs: one top-level package, `searchgw`, with the servers nested in it.

Generic top-level names (`gateway`, `embedder`, `loadgen`) collide with other distributions in the same
environment; the folders keep their short names in the tree (see setup.py) but are only importable as
`searchgw.gateway`, `searchgw.embedder` and `searchgw.loadgen`.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]

_PROBE = """
import importlib.util, json
names = ["searchgw", "gateway", "embedder", "loadgen", "searchgw.gateway", "searchgw.embedder", "searchgw.loadgen"]
print(json.dumps({name: importlib.util.find_spec(name) is not None for name in names}))
"""


def test_the_servers_install_under_the_searchgw_namespace_only(tmp_path):
    # Run outside the checkout, so only what is installed is importable (not the folders in cwd).
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    probe = subprocess.run([sys.executable, "-c", _PROBE], cwd=tmp_path, env=env, capture_output=True,
                           text=True, check=True)
    found = json.loads(probe.stdout)
    assert found == {"searchgw": True, "gateway": False, "embedder": False, "loadgen": False,
                     "searchgw.gateway": True, "searchgw.embedder": True, "searchgw.loadgen": True}


def test_no_module_imports_a_server_by_its_bare_folder_name():
    offenders = []
    for folder in ("searchgw", "gateway", "embedder", "loadgen", "tests", "bench", "scripts"):
        for path in (ROOT / folder).rglob("*.py"):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                stripped = line.strip()
                if stripped.startswith(("import gateway", "import embedder", "import loadgen",
                                        "from gateway", "from embedder", "from loadgen")):
                    offenders.append(f"{path.relative_to(ROOT)}:{number}: {stripped}")
    assert not offenders, "\n".join(offenders)


def test_every_server_registers_its_commands_on_the_console_script():
    from searchgw.cli import build_parser

    parser = build_parser()
    commands = set(next(action for action in parser._actions if action.dest == "command").choices)
    assert {"serve", "search", "ingest", "collections", "rollout", "embedder", "loadgen"} <= commands
