"""A Lua 5.1 interpreter for the tests of docs/argocd/health.lua: the `lupa` wheel from PyPI.

Argo CD runs health checks in gopher-lua, a Lua 5.1; lupa bundles Lua 5.1 among others.
It is installed once, pinned, into `<cache>/lupa-<version>` rather than into the test
venv, so that only the tests that need it pay for it and the venv's key does not change.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from tests.env import versions
from tests.env.paths import cache_dir


def _target() -> Path:
    return cache_dir() / f"lupa-{versions.LUPA}"


def lua51() -> ModuleType:
    """lupa's Lua 5.1 module, installed on first use."""
    target = _target()
    if not (target / f"lupa-{versions.LUPA}.dist-info").is_dir():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--only-binary=:all:",
                "--target",
                str(target),
                f"lupa=={versions.LUPA}",
            ],
            check=True,
        )
    if str(target) not in sys.path:
        sys.path.insert(0, str(target))
    return importlib.import_module("lupa.lua51")


def run_health_check(script: str, obj: dict[str, Any]) -> tuple[str, str]:
    """Runs an Argo CD health script on `obj` as Argo CD does: `obj` global, a table returned."""
    runtime = lua51().LuaRuntime(unpack_returned_tuples=False)
    runtime.globals().obj = runtime.table_from(obj, recursive=True)
    result = runtime.execute(script)
    return str(result["status"]), str(result["message"])
