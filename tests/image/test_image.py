"""The operator image is small, runs as a fixed non-root user and carries no build tools.

These run the image built by `make image` without a cluster: its version, its metadata
and what must not be in it (a compiler, pip, caches, the build's CA secret).
"""

from __future__ import annotations

import json
import tomllib

from tests.env import paths
from tests.image.container import docker, require_image

# The first two-stage attempt came to ~555 MB; keep well below it.
SIZE_BUDGET_BYTES = 300 * 1000 * 1000


def _package_version() -> str:
    pyproject = tomllib.loads((paths.REPO / "pyproject.toml").read_text())
    return str(pyproject["project"]["version"])


def test_image_prints_the_package_version_on_a_read_only_root() -> None:
    image = require_image()
    output = docker("run", "--rm", "--read-only", image, "--version")
    assert output.strip() == f"vaultsync {_package_version()}"


def test_image_runs_vaultsync_run_as_a_fixed_non_root_user_with_oci_labels() -> None:
    image = require_image()
    config = json.loads(docker("image", "inspect", "--format", "{{json .Config}}", image))

    assert config["User"] == "65532:65532"
    assert config["Entrypoint"] == ["vaultsync"]
    assert config["Cmd"] == ["run"]
    labels = config["Labels"]
    assert labels["org.opencontainers.image.title"] == "vaultsync"
    assert labels["org.opencontainers.image.version"] == _package_version()
    for key in ("revision", "created", "licenses", "description"):
        assert labels[f"org.opencontainers.image.{key}"]


def test_image_has_no_compiler_pip_caches_or_build_secrets() -> None:
    image = require_image()
    script = (
        "for tool in gcc cc c++ make pip pip3; do command -v $tool && exit 1; done; "
        "python3 -m pip --version 2>/dev/null && exit 1; "
        "test ! -e /run/secrets/ca && test ! -e /root/.cache/pip && test ! -e /tmp/requirements.txt"
    )
    docker("run", "--rm", "--entrypoint", "sh", image, "-c", script)


def test_image_holds_no_official_kubernetes_client() -> None:
    """kopf imports it whenever it is installed (~43 MiB resident); the operator uses REST."""
    image = require_image()
    probe = "import importlib.util as u; print(u.find_spec('kubernetes'), u.find_spec('kopf') is not None)"
    output = docker("run", "--rm", "--entrypoint", "python3", image, "-c", probe)
    assert output.split() == ["None", "True"], output


def test_image_stays_well_below_the_first_attempts_size() -> None:
    image = require_image()
    size = int(docker("image", "inspect", "--format", "{{.Size}}", image))
    assert size < SIZE_BUDGET_BYTES, f"{size / 1e6:.0f} MB"
