"""Build the peers (External Secrets Operator, Stakater Reloader) from the Go module proxy, once.

Same scheme as the test environment's binaries (tests/env/tools.py): a wrapper module under
`bench/peers/go/<name>/` requires the upstream module at a pinned version (and repeats its
`replace` directives, which Go ignores in dependencies), one `go build`, and the binary is
cached as `<cache>/bin/<name>-<version>`. Neither peer has a `--version` flag, so the cached
binary is checked with `go version -m`, which lists the module versions it was built from.
A peer that cannot be built is reported with the reason, never silently skipped.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.paths import PEER_MODULES
from tests.env import tools
from tests.env.paths import bin_dir

ESO_VERSION = "v0.16.2"
RELOADER_VERSION = "v1.4.8"


@dataclass(frozen=True)
class PeerModule(tools.GoModule):
    """A wrapper module under bench/peers/go/ rather than tests/env/go/."""

    @property
    def path(self) -> Path:
        return PEER_MODULES / self.directory


ESO = PeerModule(
    directory="eso",
    requires="github.com/external-secrets/external-secrets",
    version=ESO_VERSION,
    ldflags=(),
    tools=(
        tools.Tool(
            name="external-secrets",
            package="github.com/external-secrets/external-secrets",
            version=ESO_VERSION,
            version_args=(),
            version_marker="",
        ),
    ),
)

RELOADER_MODULE = "github.com/stakater/Reloader"


class PeerUnavailable(RuntimeError):
    """The peer cannot be built here; the message says exactly why."""


def built_from(binary: Path) -> dict[str, str]:
    """Module path → version, as recorded in the binary's build information."""
    result = subprocess.run(["go", "version", "-m", str(binary)], capture_output=True, text=True, check=False)
    modules: dict[str, str] = {}
    for line in result.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] in ("mod", "dep", "=>"):
            modules[parts[1]] = parts[2]
    return modules


def is_current(module: PeerModule) -> bool:
    binary = module.tools[0].cached
    return binary.is_file() and built_from(binary).get(module.requires) == module.version


def ensure(module: PeerModule) -> Path:
    """The cached peer binary, built if missing or built from another version."""
    tool = module.tools[0]
    if is_current(module):
        return tool.cached
    tools._check_go_mod(module)
    bin_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=bin_dir(), prefix=".build-") as scratch:
        out = Path(scratch)
        try:
            tools._go_build(module, [tool], out)
        except tools.BuildError as exc:
            raise PeerUnavailable(str(exc)) from None
        (out / tool.name).replace(tool.cached)
    if not is_current(module):
        raise PeerUnavailable(f"{tool.cached} does not record {module.requires} {module.version}")
    return tool.cached


def eso_crds() -> Path:
    """The CRD bundle shipped in the module (deploy/crds/bundle.yaml in the module cache).

    `go mod download` fetches the module first when the cache lacks it (a fresh machine:
    the CRDs are installed before the peer is built, which would have downloaded it).
    """
    result = subprocess.run(
        ["go", "mod", "download", "-json", ESO.requires],
        cwd=ESO.path,
        env=tools._go_env(),  # as the build: the installed toolchain, never another fetched
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise PeerUnavailable(f"go mod download {ESO.requires} failed: {result.stderr.strip()}")
    directory = json.loads(result.stdout).get("Dir")
    if not directory:
        raise PeerUnavailable(f"go mod download {ESO.requires} named no directory in the module cache")
    bundle = Path(directory) / "deploy" / "crds" / "bundle.yaml"
    if not bundle.is_file():
        raise PeerUnavailable(f"{bundle} is missing from the module")
    return bundle


def reloader_unavailable() -> str | None:
    """Why Stakater Reloader cannot be built here (None if the module proxy serves it)."""
    result = subprocess.run(
        ["go", "list", "-m", "-versions", RELOADER_MODULE],
        capture_output=True,
        text=True,
        check=False,
        cwd=tempfile.gettempdir(),
    )
    if result.returncode == 0 and result.stdout.split()[1:]:
        return None
    detail = " ".join((result.stderr or result.stdout).split())
    return (
        f"the Go module proxy reachable from this machine does not serve {RELOADER_MODULE} "
        f"(`go list -m -versions {RELOADER_MODULE}` answers: {detail}); it is not packaged in "
        "Debian or on the other registries reachable here, and release binaries and container "
        "images cannot be downloaded on this machine"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.parse_args()
    print(f"[peers] external-secrets: {ensure(ESO)}", flush=True)
    reason = reloader_unavailable()
    print(f"[peers] reloader: {'unavailable: ' + reason if reason else 'served by the proxy'}", flush=True)


if __name__ == "__main__":
    main()
