"""Build the test environment's Go binaries from the module proxy, once, and cache them.

There is no release download on these machines, so every server the tests need is compiled
from source through a small wrapper module in `tests/env/go/`. A cold Kubernetes build takes
tens of minutes, so each binary is cached as `<cache>/bin/<name>-<version>` and rebuilt only
when the cached file does not report the pinned version. `<cache>/bin/current/<name>` links
to the pinned build, which is what the Makefile puts on PATH.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.env import versions
from tests.env.paths import GO_MODULES, bin_dir, current_bin_dir

PROGRESS_EVERY_SECONDS = 30.0


@dataclass(frozen=True)
class Tool:
    """One binary: how to build it and how to ask it which version it is."""

    name: str
    package: str
    version: str
    version_args: tuple[str, ...]
    version_marker: str

    @property
    def cached(self) -> Path:
        return bin_dir() / f"{self.name}-{self.version}"

    @property
    def current(self) -> Path:
        return current_bin_dir() / self.name


@dataclass(frozen=True)
class GoModule:
    """A wrapper module under tests/env/go/ and the binaries built from it in one `go build`."""

    directory: str
    requires: str
    version: str
    ldflags: tuple[str, ...]
    tools: tuple[Tool, ...]
    tags: tuple[str, ...] = ()  # Go build tags

    @property
    def path(self) -> Path:
        return GO_MODULES / self.directory


def _kubernetes_tool(name: str, version_args: tuple[str, ...], marker: str) -> Tool:
    return Tool(
        name=name,
        package=f"k8s.io/kubernetes/cmd/{name}",
        version=versions.KUBERNETES,
        version_args=version_args,
        version_marker=marker,
    )


_K8S_PARTS = versions.KUBERNETES.lstrip("v").split(".")
_K8S_VERSION_PKG = "k8s.io/component-base/version"

MODULES: tuple[GoModule, ...] = (
    GoModule(
        directory="kubernetes",
        requires="k8s.io/kubernetes",
        version=versions.KUBERNETES,
        ldflags=(
            f"-X {_K8S_VERSION_PKG}.gitVersion={versions.KUBERNETES}",
            f"-X {_K8S_VERSION_PKG}.gitMajor={_K8S_PARTS[0]}",
            f"-X {_K8S_VERSION_PKG}.gitMinor={_K8S_PARTS[1]}",
            f"-X {_K8S_VERSION_PKG}.gitTreeState=clean",
            f"-X {_K8S_VERSION_PKG}.buildDate={versions.KUBERNETES_BUILD_DATE}",
        ),
        tools=(
            _kubernetes_tool("kube-apiserver", ("--version",), f"Kubernetes {versions.KUBERNETES}"),
            _kubernetes_tool("kube-controller-manager", ("--version",), f"Kubernetes {versions.KUBERNETES}"),
            _kubernetes_tool("kube-scheduler", ("--version",), f"Kubernetes {versions.KUBERNETES}"),
            _kubernetes_tool("kubectl", ("version", "--client"), f"Client Version: {versions.KUBERNETES}"),
        ),
    ),
    GoModule(
        directory="etcd",
        requires="go.etcd.io/etcd/server/v3",
        version=versions.ETCD,
        ldflags=(),
        tools=(
            Tool(
                name="etcd",
                package="go.etcd.io/etcd/server/v3",
                version=versions.ETCD,
                version_args=("--version",),
                version_marker=f"etcd Version: {versions.ETCD.lstrip('v')}",
            ),
        ),
    ),
    GoModule(
        directory="kwok",
        requires="sigs.k8s.io/kwok",
        version=versions.KWOK,
        ldflags=(f"-X sigs.k8s.io/kwok/pkg/consts.Version={versions.KWOK}",),
        tools=tuple(
            Tool(
                name=name,
                package=f"sigs.k8s.io/kwok/cmd/{name}",
                version=versions.KWOK,
                version_args=("--version",),
                version_marker=f"{name} version {versions.KWOK}",
            )
            for name in ("kwok", "kwokctl")
        ),
    ),
    GoModule(
        directory="helm",
        requires="helm.sh/helm/v3",
        version=versions.HELM,
        ldflags=(f"-X helm.sh/helm/v3/internal/version.version={versions.HELM}",),
        tools=(
            Tool(
                name="helm",
                package="helm.sh/helm/v3/cmd/helm",
                version=versions.HELM,
                version_args=("version", "--template", "{{.Version}}"),
                version_marker=versions.HELM,
            ),
        ),
    ),
    GoModule(
        directory="toxiproxy",
        requires="github.com/Shopify/toxiproxy/v2",
        version=versions.TOXIPROXY,
        ldflags=(f"-X github.com/Shopify/toxiproxy/v2.Version={versions.TOXIPROXY.lstrip('v')}",),
        tools=(
            Tool(
                name="toxiproxy-server",
                package="github.com/Shopify/toxiproxy/v2/cmd/server",
                version=versions.TOXIPROXY,
                version_args=("--version",),
                version_marker=f"toxiproxy-server version {versions.TOXIPROXY.lstrip('v')}",
            ),
        ),
    ),
)


# Built on demand by the chart's observability test, not by `make tools` (ensure_all).
PROMTOOL_MODULE = GoModule(
    directory="prometheus",
    requires="github.com/prometheus/prometheus",
    version=versions.PROMETHEUS,
    ldflags=(f"-X github.com/prometheus/common/version.Version={versions.PROMETHEUS}",),
    # promtool checks rule files; the cloud service-discovery SDKs would triple its build.
    tags=("remove_all_sd",),
    tools=(
        Tool(
            name="promtool",
            package="github.com/prometheus/prometheus/cmd/promtool",
            version=versions.PROMETHEUS,
            version_args=("--version",),
            version_marker=f"version {versions.PROMETHEUS}",
        ),
    ),
)


def _node_tool(name: str, package: str, version: str, args: tuple[str, ...], marker: str) -> Tool:
    return Tool(name=name, package=package, version=version, version_args=args, version_marker=marker)


_CNI_VERSION_PKG = "github.com/containernetworking/plugins/pkg/utils/buildversion"
_CONTAINERD_VERSION_PKG = "github.com/containerd/containerd/v2/version"

# What the kind node image carries (tests/env/kindnode.py). Built only by `make kind-node`,
# never by `make tools`: the kwok-based suites need none of it.
NODE_MODULES: tuple[GoModule, ...] = (
    GoModule(
        directory="kubernetes-node",
        requires="k8s.io/kubernetes",
        version=versions.KUBERNETES,
        ldflags=MODULES[0].ldflags,
        tools=(
            _kubernetes_tool("kubelet", ("--version",), f"Kubernetes {versions.KUBERNETES}"),
            _kubernetes_tool("kubeadm", ("version", "-o", "short"), versions.KUBERNETES),
            _kubernetes_tool("kube-proxy", ("--version",), f"Kubernetes {versions.KUBERNETES}"),
        ),
    ),
    GoModule(
        directory="kind",
        requires="sigs.k8s.io/kind",
        version=versions.KIND,
        ldflags=(),
        tools=(_node_tool("kind", "sigs.k8s.io/kind", versions.KIND, ("version",), f"kind {versions.KIND}"),),
    ),
    GoModule(
        directory="containerd",
        requires="github.com/containerd/containerd/v2",
        version=versions.CONTAINERD,
        ldflags=(f"-X {_CONTAINERD_VERSION_PKG}.Version={versions.CONTAINERD}",),
        # kind's base image leaves out the same snapshotters (they need cgo or a kernel module).
        tags=("no_aufs", "no_zfs", "no_btrfs", "no_devmapper"),
        tools=tuple(
            _node_tool(
                name,
                f"github.com/containerd/containerd/v2/cmd/{name}",
                versions.CONTAINERD,
                args,
                versions.CONTAINERD,
            )
            for name, args in (
                ("containerd", ("--version",)),
                ("containerd-shim-runc-v2", ("-v",)),
                ("ctr", ("--version",)),
            )
        ),
    ),
    GoModule(
        directory="cni-plugins",
        requires="github.com/containernetworking/plugins",
        version=versions.CNI_PLUGINS,
        ldflags=(f"-X {_CNI_VERSION_PKG}.BuildVersion={versions.CNI_PLUGINS}",),
        tools=tuple(
            _node_tool(
                name,
                f"github.com/containernetworking/plugins/plugins/{kind}/{name}",
                versions.CNI_PLUGINS,
                (),
                f"plugin {versions.CNI_PLUGINS}",
            )
            for kind, name in (
                ("main", "ptp"),
                ("main", "bridge"),
                ("main", "loopback"),
                ("ipam", "host-local"),
                ("meta", "portmap"),
            )
        ),
    ),
    GoModule(
        directory="cri-tools",
        requires="sigs.k8s.io/cri-tools",
        version=versions.CRI_TOOLS,
        ldflags=(f"-X sigs.k8s.io/cri-tools/pkg/version.Version={versions.CRI_TOOLS}",),
        tools=(
            _node_tool(
                "crictl",
                "sigs.k8s.io/cri-tools/cmd/crictl",
                versions.CRI_TOOLS,
                ("--version",),
                f"crictl version {versions.CRI_TOOLS}",
            ),
        ),
    ),
    # Upstream's coremain with only the plugins kind's Corefile uses (tests/env/go/coredns/main.go):
    # stock coredns compiles every cloud DNS SDK. The cache name says so, a stock build never
    # passes for it.
    GoModule(
        directory="coredns",
        requires="github.com/coredns/coredns",
        version=versions.COREDNS,
        ldflags=(),
        tools=(
            _node_tool(
                "coredns",
                "vaultsync.local/testenv/coredns",
                f"{versions.COREDNS}-kind-plugins",
                ("-version",),
                f"CoreDNS-{versions.COREDNS.lstrip('v')}",
            ),
        ),
    ),
    GoModule(
        directory="local-path-provisioner",
        requires="github.com/rancher/local-path-provisioner",
        version=versions.LOCAL_PATH_PROVISIONER,
        ldflags=(f"-X main.VERSION={versions.LOCAL_PATH_PROVISIONER}",),
        tools=(
            _node_tool(
                "local-path-provisioner",
                "github.com/rancher/local-path-provisioner",
                f"{versions.LOCAL_PATH_PROVISIONER}-k8s-{versions.KUBERNETES_STAGING}",
                ("--version",),
                versions.LOCAL_PATH_PROVISIONER,
            ),
        ),
    ),
)


class BuildError(RuntimeError):
    """A binary could not be built or does not report the version it was built for."""


def all_tools() -> tuple[Tool, ...]:
    return tuple(tool for module in MODULES for tool in module.tools)


def tool(name: str) -> Tool:
    for candidate in (*all_tools(), *(t for module in NODE_MODULES for t in module.tools)):
        if candidate.name == name:
            return candidate
    raise KeyError(name)


def reported_version(binary: Path, tool_: Tool) -> str:
    """What the binary says about its version ("" if it cannot run)."""
    try:
        result = subprocess.run(
            [str(binary), *tool_.version_args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return result.stdout + result.stderr


def is_current(tool_: Tool) -> bool:
    """True when the cached binary exists and reports the pinned version."""
    return tool_.cached.is_file() and tool_.version_marker in reported_version(tool_.cached, tool_)


def required_version(module: GoModule) -> str | None:
    """The version of `module.requires` that the wrapper's go.mod asks for, if any."""
    go_mod = (module.path / "go.mod").read_text()
    pattern = rf"^\s*(?:require\s+)?{re.escape(module.requires)}\s+(\S+)"
    found = re.search(pattern, go_mod, flags=re.MULTILINE)
    return found.group(1) if found else None


def _check_go_mod(module: GoModule) -> None:
    required = required_version(module)
    if required != module.version:
        raise BuildError(
            f"{module.path}/go.mod requires {module.requires} {required}, but "
            f"tests/env/versions.py pins {module.version}: update one to match the other"
        )


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    env["CGO_ENABLED"] = "0"
    # The pinned modules build with the installed Go; never fetch another toolchain silently.
    env.setdefault("GOTOOLCHAIN", "local")
    return env


def _go_build(module: GoModule, tools: Sequence[Tool], out_dir: Path) -> None:
    """Run one `go build`, printing progress so a long cold build visibly moves."""
    ldflags = " ".join(("-s", "-w", *module.ldflags))
    # One package: -o names the file. Several: -o is a directory (the trailing separator).
    output = str(out_dir / tools[0].name) if len(tools) == 1 else str(out_dir) + os.sep
    command = [
        "nice",
        "-n",
        "19",
        "go",
        "build",
        "-v",
        "-trimpath",
        "-buildvcs=false",
        "-ldflags",
        ldflags,
        *(("-tags", ",".join(module.tags)) if module.tags else ()),
        "-o",
        output,
        *(t.package for t in tools),
    ]
    names = ", ".join(t.name for t in tools)
    print(f"[tools] building {names} ({module.requires} {module.version})", flush=True)
    log_path = out_dir / "go-build.log"
    started = time.monotonic()
    with log_path.open("w") as log:
        process = subprocess.Popen(
            command, cwd=module.path, env=_go_env(), stdout=log, stderr=subprocess.STDOUT
        )
        while True:
            try:
                process.wait(timeout=PROGRESS_EVERY_SECONDS)
                break
            except subprocess.TimeoutExpired:
                compiled = log_path.read_text().splitlines()
                last = compiled[-1] if compiled else "resolving modules"
                print(
                    f"[tools]   {names}: {_elapsed(started)} elapsed, "
                    f"{len(compiled)} packages compiled, now {last}",
                    flush=True,
                )
    if process.returncode != 0:
        tail = "\n".join(log_path.read_text().splitlines()[-30:])
        raise BuildError(f"go build of {names} failed (exit {process.returncode}):\n{tail}")
    print(f"[tools] built {names} in {_elapsed(started)}", flush=True)


def _elapsed(started: float) -> str:
    seconds = int(time.monotonic() - started)
    return f"{seconds // 60}m{seconds % 60:02d}s"


def _link_current(tool_: Tool) -> None:
    current_bin_dir().mkdir(parents=True, exist_ok=True)
    link = tool_.current
    temporary = link.with_name(f".{link.name}.tmp")
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(tool_.cached)
    temporary.replace(link)


def ensure_module(module: GoModule, *, link: bool = True) -> None:
    """Build whichever of the module's binaries are missing or stale, then link them.

    `link=False` leaves them out of <cache>/bin/current (which is on PATH): the node image's
    containerd and its shim must never shadow the ones the host's Docker engine runs.
    """
    stale = [t for t in module.tools if not is_current(t)]
    if stale:
        if shutil.which("go") is None:
            raise BuildError("building the test environment needs the Go toolchain on PATH")
        _check_go_mod(module)
        bin_dir().mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=bin_dir(), prefix=".build-") as scratch:
            out_dir = Path(scratch)
            _go_build(module, stale, out_dir)
            for built in stale:
                (out_dir / built.name).replace(built.cached)
                if not is_current(built):
                    raise BuildError(
                        f"{built.cached} was built but does not report {built.version_marker!r}:"
                        f"\n{reported_version(built.cached, built)}"
                    )
    for fresh in module.tools if link else ():
        _link_current(fresh)


def ensure_all() -> None:
    """Make every pinned binary available under <cache>/bin/current."""
    started = time.monotonic()
    for module in MODULES:
        ensure_module(module)
    print(f"[tools] all binaries current in {current_bin_dir()} ({_elapsed(started)})")
