"""The README's tour, run verbatim from a fresh shell against a gateway started as `./scripts/run` does.

The gateway is `searchgw serve --with-embedder --demo` on free ports with its own data directory. The
tour runs in `bash -e` with an environment that has no virtualenv activated and no `.venv/bin` on PATH
(the tour's first line activates it), from a scratch directory that holds `.venv` and `docs` as in a
checkout. The one change made to the tour's text: its gateway address becomes the test gateway's.
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess

import pytest

ROOT = pathlib.Path(__file__).parents[1]
TOUR_ADDRESS = "127.0.0.1:50051"


def tour() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"^## A tour\n\n```bash\n(.*?)^```", text, re.S | re.M)
    assert match, "README.md has no tour"
    return match.group(1)


@pytest.fixture
def gateway(tmp_path):
    log = (tmp_path / "gateway.log").open("w")
    process = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "searchgw"), "serve", "--with-embedder", "--demo", "--data-dir",
         str(tmp_path / "data"), "--port", "0", "--metrics-port", "0", "--log-format", "text"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=log, text=True,
        env={**os.environ, "SEARCHGW_EMBEDDER_METRICS_PORT": "0"})  # the in-process embedder's, free too
    try:
        line = process.stdout.readline()
        assert line.startswith("gateway serving on "), (tmp_path / "gateway.log").read_text()
        yield line.split()[3]
    finally:
        process.terminate()
        process.wait(timeout=60)
        log.close()


@pytest.mark.slow
def test_the_readme_tour_runs_verbatim_in_a_fresh_shell(gateway, tmp_path):
    script = tour()
    assert TOUR_ADDRESS in script and script.startswith("source .venv/bin/activate")
    script = script.replace(TOUR_ADDRESS, gateway)
    work = tmp_path / "checkout"
    work.mkdir()
    (work / ".venv").symlink_to(ROOT / ".venv")
    (work / "docs").symlink_to(ROOT / "docs")
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    result = subprocess.run(["bash", "-e", "-c", script + "wait\n"], cwd=work, env=env, capture_output=True,
                            text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output and "command not found" not in output
    assert "docs-v1" in result.stdout                                          # collections list
    assert "upserted 12 points into docs-v2" in result.stdout                  # ingest
    assert re.search(r"^state\s+RUNNING\s+stage 1/4\s+weight 5%", result.stdout, re.M)  # start, status
    assert re.search(r"PAUSED .*investigating", result.stdout)                 # watch, one line per decision
    assert re.search(r"^\S+ \S+\s+BAKE_STARTED ", result.stdout, re.M)         # promote: the bake
    assert re.search(r"^\S+ \S+\s+UNDONE ", result.stdout, re.M)               # ... until it ends (undo)
    assert (work / "run.json").is_file()                                       # loadgen's report
    # Without the tour's first line, the bare command is not found: why the tour activates .venv.
    bare = subprocess.run(["bash", "-c", "searchgw --help"], cwd=work, env=env, capture_output=True, text=True)
    assert bare.returncode == 127


def test_the_tours_commands_exist_as_written():
    """Each `searchgw ...` line of the tour parses (a renamed flag breaks the tour before any run)."""
    from searchgw.cli import build_parser

    parser = build_parser()
    for line in tour().splitlines():
        for command in re.split(r"\s&&\s", line.split("  #")[0].rstrip(" &")):
            if command.startswith("searchgw "):
                argv = [a.strip('"') for a in re.findall(r'"[^"]*"|\S+', command)][1:]
                argv = [os.path.expandvars(a).replace("$SEARCHGW_ADDR", TOUR_ADDRESS) for a in argv]
                parser.parse_args(argv)

