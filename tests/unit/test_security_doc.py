"""docs/security.md (and its area pages) promise a test for each attack: every test named must exist.

docs/architecture.md's table of rules names tests the same way and is held to the same check.

A renamed or deleted test would otherwise leave the threat model pointing at nothing, and the
table would claim a proof that no longer runs.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SECURITY_DOCS = [
    REPO / "docs" / "security.md",
    *sorted((REPO / "docs" / "security").glob("*.md")),
    REPO / "docs" / "architecture.md",
]
# `e2e/tenancy/test_identity.py::test_name`, or `::test_name` for the module named just before.
REFERENCE = re.compile(r"((?:[a-z0-9_]+/)*test_[a-z0-9_]+\.py)?::(test_[A-Za-z0-9_]+)")


def _references() -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    lines = [line for doc in SECURITY_DOCS for line in doc.read_text().splitlines()]
    for line in lines:
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
        path = REPO / module if module.startswith("tests/") else REPO / "tests" / module
        if not path.is_file() or name not in _test_names(path):
            missing.append(f"{module}::{name}")
    assert not missing, f"the security docs name tests that do not exist: {sorted(set(missing))}"
