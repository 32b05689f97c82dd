"""`make e2e-kind` stops at once, saying why, where kind or Docker is missing.

The kind suite itself (tests/kind) runs on a cluster `make e2e-kind` creates; these check
that the target fails fast and clearly instead of hanging when a prerequisite is absent.
"""

from __future__ import annotations

import subprocess

from tests.env import paths


def _prereqs(**variables: str) -> subprocess.CompletedProcess[str]:
    assignments = [f"{name}={value}" for name, value in variables.items()]
    return subprocess.run(
        ["make", "-C", str(paths.REPO), "--no-print-directory", "kind-prereqs", *assignments],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_e2e_kind_says_kind_is_missing() -> None:
    result = _prereqs(KIND="/nonexistent/kind")
    assert result.returncode != 0
    assert "'/nonexistent/kind' is not installed" in result.stderr
    assert "make test" in result.stderr


def test_e2e_kind_says_no_docker_engine_answers() -> None:
    result = _prereqs(KIND="true", DOCKER="/nonexistent/docker")
    assert result.returncode != 0
    assert "no Docker engine answers" in result.stderr
