"""The README stays true: its two commands exist and its settings tables match the code."""

from __future__ import annotations

import os
import pathlib
import re
import runpy

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_the_settings_tables_match_the_settings_classes():
    tables = runpy.run_path(str(ROOT / "scripts" / "settings_table.py"))["tables"]()
    block = re.search(r"<!-- settings:begin.*?-->\n(.*)<!-- settings:end -->", README, re.S)
    assert block and block.group(1).strip() == tables.strip(), "run: python scripts/settings_table.py"


def test_the_two_commands_exist_and_ci_runs_the_test_command():
    assert "./scripts/run" in README and "./scripts/test" in README
    for script in ("scripts/run", "scripts/test", "scripts/bootstrap", ".ci/run"):
        assert os.access(ROOT / script, os.X_OK), script
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert ci[-1] == "./scripts/test"
