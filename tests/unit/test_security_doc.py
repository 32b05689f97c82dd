"""docs/security.md promises a test for each attack: every test it names must exist.

A renamed or deleted test would otherwise leave the threat model pointing at nothing, and the
table would claim a proof that no longer runs.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SECURITY_DOC = REPO / "docs" / "security.md"
# `e2e/tenancy/test_identity.py::test_name`, or `::test_name` for the module named just before.
REFERENCE = re.compile(r"((?:[a-z0-9_]+/)*test_[a-z0-9_]+\.py)?::(test_[A-Za-z0-9_]+)")


def _references() -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for line in SECURITY_DOC.read_text().splitlines():
        module = ""
        for match in REFERENCE.finditer(line):
            module = match.group(1) or module
            if module:
                found.append((module, match.group(2)))
    return found


def _test_names(module: Path) -> set[str]:
    tree = ast.parse(module.read_text())
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test_")
    }


def test_the_security_doc_names_tests() -> None:
    assert len(_references()) >= 40, "docs/security.md should name the test of each attack"


def test_every_test_the_security_doc_names_exists() -> None:
    missing = []
    for module, name in _references():
        path = REPO / "tests" / module
        if not path.is_file() or name not in _test_names(path):
            missing.append(f"{module}::{name}")
    assert not missing, f"docs/security.md names tests that do not exist: {sorted(set(missing))}"
