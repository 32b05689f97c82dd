"""Where the test environment keeps things, so every module agrees on one layout.

Built binaries are shared by every clone of the repository (they are expensive and keyed by
version); the running cluster belongs to one checkout and lives in its gitignored `.testenv/`.
"""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GO_MODULES = REPO / "tests" / "env" / "go"
CRDS = REPO / "crds"


def cache_dir() -> Path:
    """The cache shared across clones; the Makefile's CACHE, passed as VAULTSYNC_CACHE."""
    return Path(os.environ.get("VAULTSYNC_CACHE", Path.home() / ".cache" / "vaultsync"))


def bin_dir() -> Path:
    return cache_dir() / "bin"


def current_bin_dir() -> Path:
    return bin_dir() / "current"


def testenv_dir() -> Path:
    return REPO / ".testenv"


def kubeconfig() -> Path:
    return testenv_dir() / "kubeconfig"
