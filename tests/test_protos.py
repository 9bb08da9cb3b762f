"""The API's source of truth is protos/: the generated code must match it and buf must lint it clean."""

from __future__ import annotations

import filecmp
import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_generated_code_matches_the_protos(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--out", str(tmp_path)], check=True,
                   capture_output=True)
    fresh = tmp_path / "searchgw" / "v1"
    committed = ROOT / "searchgw" / "v1"
    names = sorted(p.name for p in fresh.iterdir() if p.is_file())
    assert names == sorted(p.name for p in committed.glob("*_pb2*")), "generated files differ in name"
    _, mismatch, errors = filecmp.cmpfiles(fresh, committed, names, shallow=False)
    assert not mismatch and not errors, f"stale generated code: {mismatch + errors}; run scripts/gen_protos.py"


def _buf() -> str:
    candidate = pathlib.Path(sys.executable).parent / "buf"
    found = str(candidate) if candidate.exists() else shutil.which("buf")
    assert found, "buf is not installed (pip install buf-bin; scripts/bootstrap dev installs it)"
    return found


def test_buf_lint_is_clean():
    result = subprocess.run([_buf(), "lint"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_buf_builds_the_module():
    result = subprocess.run([_buf(), "build", "-o", "/dev/null"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
