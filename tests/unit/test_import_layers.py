"""Every module of the package sits in one layer of `.importlinter`'s layers contract.

import-linter checks only the modules a contract names; a new module left out of the
layers could import from anywhere and the contract would still be kept.
"""

from __future__ import annotations

import configparser
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "operator" / "vaultsync"


def _layered() -> list[str]:
    config = configparser.ConfigParser()
    config.read(REPO / ".importlinter")
    lines = config["importlinter:contract:layers"]["layers"].split("\n")
    return [name.strip() for line in lines for name in line.split(":") if name.strip()]


def _modules() -> set[str]:
    files = {f"vaultsync.{p.stem}" for p in PACKAGE.glob("*.py") if p.stem not in {"__init__", "__main__"}}
    packages = {f"vaultsync.{p.parent.name}" for p in PACKAGE.glob("*/__init__.py")}
    return files | packages


def test_every_module_is_in_exactly_one_layer() -> None:
    layered = _layered()
    assert len(layered) == len(set(layered)), "a module is named in two layers"
    assert set(layered) == _modules()
