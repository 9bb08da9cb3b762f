"""Type-check the installed `searchgw` package with mypy (configuration: `[tool.mypy]` in pyproject.toml).

The folders `gateway/`, `embedder/` and `loadgen/` install as `searchgw.gateway`, `searchgw.embedder` and
`searchgw.loadgen` (setup.py's package_dir), and the editable install maps them with an import hook that
mypy cannot follow. So this script lays out the package as it installs — a tree of symbolic links under
`.mypy_cache/src/searchgw/` (each entry of `searchgw/` plus the three folders) — runs mypy on it with
`-p searchgw`, and prints mypy's report with the real file paths (`gateway/core.py`, not the link).

    python scripts/typecheck.py            # exit status 0 when mypy finds no errors
    python scripts/typecheck.py -- --no-incremental   # any further mypy arguments after --

tests/test_types.py runs it, so the type check is part of `./scripts/test`.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
#: The folders that install under the searchgw namespace (setup.py's _NESTED).
NESTED = ("gateway", "embedder", "loadgen")
TREE = ROOT / ".mypy_cache" / "src"


def build_tree() -> pathlib.Path:
    """(Re)create the link tree `TREE/searchgw/...` mirroring the installed package; return TREE."""
    package = TREE / "searchgw"
    package.mkdir(parents=True, exist_ok=True)
    wanted = {entry.name: entry for entry in (ROOT / "searchgw").iterdir() if entry.name != "__pycache__"}
    wanted.update({folder: ROOT / folder for folder in NESTED})
    for link in package.iterdir():
        if link.name not in wanted or not link.is_symlink() or pathlib.Path(os.readlink(link)) != wanted[link.name]:
            link.unlink()
    for name, target in wanted.items():
        link = package / name
        if not link.is_symlink():
            link.symlink_to(target, target_is_directory=target.is_dir())
    return TREE


def real_paths(report: str) -> str:
    """mypy names files by the path it found them at; name the files in the work tree instead."""
    prefix = f"{TREE / 'searchgw'}/"
    for folder in NESTED:
        report = report.replace(f"{prefix}{folder}/", f"{folder}/")
    report = report.replace(prefix, "searchgw/")
    relative = os.path.relpath(TREE / "searchgw", ROOT) + "/"
    for folder in NESTED:
        report = report.replace(f"{relative}{folder}/", f"{folder}/")
    return report.replace(relative, "searchgw/")


def run(extra: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run mypy over the package; the completed process carries the report with real paths in stdout."""
    tree = build_tree()
    env = dict(os.environ, MYPYPATH=str(tree))
    command = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
               "--cache-dir", str(ROOT / ".mypy_cache"), "-p", "searchgw", *(extra or [])]
    done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True)
    return subprocess.CompletedProcess(done.args, done.returncode, real_paths(done.stdout), real_paths(done.stderr))


def main(argv: list[str]) -> int:
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    done = run(extra)
    sys.stdout.write(done.stdout)
    sys.stderr.write(done.stderr)
    return done.returncode


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
