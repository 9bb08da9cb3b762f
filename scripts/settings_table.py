"""Print the README's settings tables (Markdown) from the settings classes themselves.

    python scripts/settings_table.py           # print them
    python scripts/settings_table.py --write   # put them into README.md between the settings markers

tests/test_readme.py checks that README.md holds exactly this output.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
import sys

from searchgw.embedder.settings import ENV_PREFIX as EMBEDDER_ENV, EmbedderSettings
from searchgw.gateway.settings import ENV_PREFIX as GATEWAY_ENV, GatewaySettings


def _default(field: dataclasses.Field) -> str:
    value = field.default
    if field.metadata.get("secret") and value:
        return "(secret)"
    if isinstance(value, pathlib.Path):
        return f"`{value}`".replace(str(pathlib.Path.home()), "~")
    if value in ("", None, ()):
        return "–"
    return f"`{value}`"


def table(cls: type, env_prefix: str) -> str:
    rows = ["| flag | environment | default | meaning |", "|---|---|---|---|"]
    for field in dataclasses.fields(cls):
        flag = field.metadata.get("flag") or "--" + field.name.replace("_", "-")
        meaning = field.metadata.get("help", "").replace("|", "\\|")
        rows.append(f"| `{flag}` | `{env_prefix}{field.name.upper()}` | {_default(field)} | {meaning} |")
    return "\n".join(rows)


def tables() -> str:
    return (
        "### `searchgw serve` (gateway)\n\n" + table(GatewaySettings, GATEWAY_ENV) + "\n\n"
        "### `searchgw embedder serve` (and the embedder that `serve --with-embedder` starts)\n\n"
        + table(EmbedderSettings, EMBEDDER_ENV) + "\n"
    )


def write_readme(readme: pathlib.Path) -> None:
    text = readme.read_text()
    updated, count = re.subn(r"(<!-- settings:begin.*?-->\n).*?(<!-- settings:end -->)",
                             lambda m: m.group(1) + tables() + m.group(2), text, flags=re.S)
    if count != 1:
        raise SystemExit(f"{readme}: the settings markers are missing")
    readme.write_text(updated)


if __name__ == "__main__":
    if "--write" in sys.argv[1:]:
        write_readme(pathlib.Path(__file__).resolve().parent.parent / "README.md")
    else:
        print(tables(), end="")
