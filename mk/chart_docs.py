"""Generate the values table of the chart README from the `# --` comments in values.yaml.

The comments are the single place where a value is documented (the convention of
helm-docs, which cannot be installed here); this script copies them into
charts/vaultsync/README.md between two markers, so the README never drifts from the
values. `--check` exits non-zero, without writing, when the README is stale or a
value has no `# --` comment; the chart tests run it that way.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parent.parent / "charts" / "vaultsync"
BEGIN = "<!-- values-table:begin -->"
END = "<!-- values-table:end -->"
KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_]+):")


@dataclass(frozen=True)
class Value:
    """One documented value: its dotted path, its default and what the comment says."""

    path: str
    default: Any
    description: str


def documented_values(values_file: Path) -> tuple[list[Value], list[str]]:
    """Every documented value and every key that no `# --` comment covers."""
    defaults = yaml.safe_load(values_file.read_text())
    documented: list[Value] = []
    undocumented: list[str] = []
    stack: list[tuple[int, str, bool]] = []  # (indent, key, covered by a comment)
    comment: list[str] | None = None
    for line in values_file.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("# --"):
            comment = [stripped[4:].strip()]
            continue
        if stripped.startswith("#"):
            if comment is not None:
                comment.append(stripped[1:].strip())
            continue
        match = KEY_LINE.match(line)
        if not match:
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        covered = any(entry[2] for entry in stack)
        path = ".".join([entry[1] for entry in stack] + [match["key"]])
        if comment is not None and not covered:
            documented.append(Value(path, _lookup(defaults, path), " ".join(comment)))
        elif not covered and not _has_children(defaults, path):
            undocumented.append(path)
        stack.append((indent, match["key"], covered or comment is not None))
        comment = None
    return documented, undocumented


def _lookup(tree: Any, path: str) -> Any:
    for part in path.split("."):
        tree = tree[part]
    return tree


def _has_children(tree: Any, path: str) -> bool:
    value = _lookup(tree, path)
    return isinstance(value, dict) and bool(value)


def _type_name(value: Any) -> str:
    names = {bool: "bool", int: "int", float: "float", str: "string", list: "list", dict: "object"}
    return names.get(type(value), "string")


def table(values: list[Value]) -> str:
    rows = ["| Key | Type | Default | Description |", "| --- | --- | --- | --- |"]
    for value in values:
        default = json.dumps(value.default).replace("|", "\\|")
        description = value.description.replace("|", "\\|")
        rows.append(f"| `{value.path}` | {_type_name(value.default)} | `{default}` | {description} |")
    return "\n".join(rows)


def render(readme: str, values: list[Value]) -> str:
    head, rest = readme.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{table(values)}\n{END}{tail}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the README is stale")
    args = parser.parse_args()
    values, undocumented = documented_values(CHART / "values.yaml")
    if undocumented:
        print(f"values without a '# --' comment: {', '.join(undocumented)}", file=sys.stderr)
        return 1
    readme_file = CHART / "README.md"
    readme = readme_file.read_text()
    wanted = render(readme, values)
    if args.check:
        if wanted != readme:
            print(f"{readme_file} is stale: run `make chart-docs`", file=sys.stderr)
            return 1
        return 0
    readme_file.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
