"""The type check is part of the test suite: mypy over the whole installed package must report nothing.

Configuration: `[tool.mypy]` in pyproject.toml (strict on the domain rooms, `check_untyped_defs`
everywhere else). The check itself is `scripts/typecheck.py`, which lays the package out as it installs
(`searchgw.gateway` is the `gateway/` folder); mypy's cache in `.mypy_cache/` keeps a re-run quick.
"""

from __future__ import annotations

import importlib.util
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _typecheck_module():
    spec = importlib.util.spec_from_file_location("typecheck", ROOT / "scripts" / "typecheck.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mypy_reports_no_errors_in_the_package():
    done = _typecheck_module().run()
    assert done.returncode == 0, f"mypy found errors (python scripts/typecheck.py):\n{done.stdout}{done.stderr}"


def test_the_type_check_sees_the_server_folders_as_the_searchgw_package():
    """mypy must read gateway/, embedder/ and loadgen/ as searchgw.* (not skip them, nor treat them as Any)."""
    typecheck = _typecheck_module()
    tree = typecheck.build_tree() / "searchgw"
    for folder in typecheck.NESTED:
        assert (tree / folder).resolve() == ROOT / folder
        assert (tree / folder / "__init__.py").is_file()
    assert (tree / "errors.py").resolve() == ROOT / "searchgw" / "errors.py"
