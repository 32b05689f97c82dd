"""Build the kind node image on a machine that reaches only the package registries.

kindest/node comes from a container registry, which these machines cannot reach. This builds
the same layout (kind's own images/base files from the pinned sigs.k8s.io/kind module, on a
Debian base made with debootstrap) from the Go module proxy and Debian's archive, and
preloads the images kubeadm asks for, each built from source as a minimal image. The image
is tagged with a content key over every pinned version and every file that goes into it, so
an unchanged tree reuses the image already in the Docker store and a change rebuilds it.
docs/testenv.md lists every difference from kindest/node.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.env import tools, versions
from tests.env.paths import GO_MODULES, bin_dir, cache_dir

HERE = Path(__file__).resolve().parent
NODE_IMAGE_REPOSITORY = "vaultsync.local/kind-node"
HELPER_IMAGE = "vaultsync.local/local-path-helper:" + versions.DEBIAN_SUITE
PROVISIONER_IMAGE = "vaultsync.local/local-path-provisioner:" + versions.LOCAL_PATH_PROVISIONER
BASE_IMAGE = "debian:bookworm-slim"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class NodeImageError(tools.BuildError):
    """The node image or one of the images it carries could not be built."""


@dataclass(frozen=True)
class ComponentImage:
    """One image preloaded into the node: a binary on a scratch root (or Debian, if it needs tools)."""

    component: str
    version: str
    binary: str
    entrypoint: tuple[str, ...]
    debian_packages: tuple[str, ...] = ()


COMPONENTS: tuple[ComponentImage, ...] = (
    ComponentImage("kube-apiserver", versions.KUBERNETES, "kube-apiserver", ()),
    ComponentImage("kube-controller-manager", versions.KUBERNETES, "kube-controller-manager", ()),
    ComponentImage("kube-scheduler", versions.KUBERNETES, "kube-scheduler", ()),
    # kube-proxy programs iptables/nftables through their command-line tools.
    ComponentImage(
        "kube-proxy",
        versions.KUBERNETES,
        "kube-proxy",
        (),
        ("iptables", "nftables", "conntrack"),
    ),
    ComponentImage("etcd", versions.ETCD, "etcd", ()),
    ComponentImage("coredns", versions.COREDNS, "coredns", ("/usr/local/bin/coredns",)),
    ComponentImage("pause", versions.PAUSE, "pause", ("/usr/local/bin/pause",)),
)


def _run(command: list[str], **kwargs: object) -> str:
    result = subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        raise NodeImageError(
            f"{' '.join(command[:4])} ... failed (exit {result.returncode}):\n"
            + "\n".join((result.stdout + result.stderr).splitlines()[-30:])
        )
    return str(result.stdout)


def docker() -> str:
    return os.environ.get("DOCKER", "/usr/bin/docker")


def module_dir(wrapper: str, module: str, version: str) -> Path:
    """Where the Go module cache holds `module@version` (downloaded through the wrapper)."""
    out = _run(
        ["go", "mod", "download", "-json", f"{module}@{version}"],
        cwd=GO_MODULES / wrapper,
        env={**os.environ, "GOTOOLCHAIN": "local"},
    )
    return Path(json.loads(out)["Dir"])


def content_key() -> str:
    """A hash of everything the image is made of: pinned versions and every file used."""
    digest = hashlib.sha256()
    sources = [Path(versions.__file__), Path(tools.__file__)]
    sources += sorted(p for p in HERE.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    # Every wrapper module whose binaries go into the image, whole (coredns's has its main.go).
    for wrapper in ("kubernetes", "etcd", *(module.directory for module in tools.NODE_MODULES)):
        sources += sorted(p for p in (GO_MODULES / wrapper).iterdir() if p.is_file())
    for source in sources:
        digest.update(str(source.relative_to(HERE.parents[2])).encode())
        digest.update(source.read_bytes())
    return digest.hexdigest()[:12]


def node_image_tag() -> str:
    return f"{NODE_IMAGE_REPOSITORY}:{versions.KUBERNETES}-{content_key()}"


def _progress(message: str) -> None:
    print(f"[kind-node] {message}", flush=True)


def _elapsed(started: float) -> str:
    seconds = int(time.monotonic() - started)
    return f"{seconds // 60}m{seconds % 60:02d}s"


def ensure_binaries() -> None:
    """Every Go binary the node and its images carry, built or reused (tests/env/tools.py)."""
    for module in (*tools.MODULES, *tools.NODE_MODULES):
        if module.directory in ("kwok", "helm"):
            continue
        started = time.monotonic()
        tools.ensure_module(module, link=module.directory == "kind")
        _progress(f"binaries of {module.directory} {module.version} ready ({_elapsed(started)})")
    ensure_pause()


def pause_binary() -> Path:
    return bin_dir() / f"pause-{versions.PAUSE}"


def ensure_pause() -> Path:
    """build/pause/linux/pause.c from the pinned Kubernetes module, compiled as upstream does."""
    target = pause_binary()
    marker = f"pause.c v{versions.PAUSE}"
    if target.is_file() and marker in _run([str(target), "-v"]):
        return target
    source = module_dir("kubernetes", "k8s.io/kubernetes", versions.KUBERNETES)
    _progress(f"compiling pause {versions.PAUSE} from {source.name}/build/pause/linux/pause.c")
    with tempfile.TemporaryDirectory(dir=bin_dir(), prefix=".pause-") as scratch:
        built = Path(scratch) / "pause"
        _run(
            [
                "gcc",
                "-Os",
                "-Wall",
                "-Werror",
                "-static",
                f"-DVERSION=v{versions.PAUSE}",
                "-o",
                str(built),
                str(source / "build" / "pause" / "linux" / "pause.c"),
            ]
        )
        _run(["strip", str(built)])
        built.replace(target)
    return target


def kubeadm_images() -> dict[str, str]:
    """The image name kubeadm expects for each component (`kubeadm config images list`)."""
    listed = _run(
        [
            str(tools.tool("kubeadm").cached),
            "config",
            "images",
            "list",
            "--kubernetes-version",
            versions.KUBERNETES,
        ]
    ).split()
    named: dict[str, str] = {}
    for image in listed:
        component = image.rsplit("/", 1)[-1].split(":", 1)[0]
        named[component] = image
    missing = {c.component for c in COMPONENTS} - set(named)
    if missing:
        raise NodeImageError(f"kubeadm lists no image for {sorted(missing)}: {listed}")
    return named


def _component_binary(component: ComponentImage) -> Path:
    if component.binary == "pause":
        return pause_binary()
    return tools.tool(component.binary).cached


def _build_image(context: Path, tag: str, dockerfile: str) -> None:
    (context / "Dockerfile").write_text(dockerfile)
    log = cache_dir() / "kind-node-build.log"
    with log.open("a") as out:
        result = subprocess.run(
            [docker(), "build", "--progress=plain", "-t", tag, str(context)],
            env={**os.environ, "DOCKER_BUILDKIT": "1"},
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if result.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-30:])
        raise NodeImageError(f"docker build of {tag} failed:\n{tail}")


def _component_dockerfile(component: ComponentImage, binary_name: str) -> str:
    labels = (
        f'LABEL org.opencontainers.image.title="{component.component}" '
        f'org.opencontainers.image.version="{component.version}"'
    )
    entrypoint = json.dumps(list(component.entrypoint)) if component.entrypoint else None
    lines = []
    if component.debian_packages:
        lines += [
            f"FROM {BASE_IMAGE}",
            "RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
            f"--no-install-recommends {' '.join(component.debian_packages)} "
            "&& rm -rf /var/lib/apt/lists/*",
        ]
    else:
        lines += ["FROM scratch", "COPY tmp /tmp"]
    lines += [f"COPY {binary_name} /usr/local/bin/{component.binary}", f"ENV {PATH_ENV}", labels]
    if entrypoint:
        lines.append(f"ENTRYPOINT {entrypoint}")
    return "\n".join(lines) + "\n"


def build_component_images(stage: Path) -> list[str]:
    """Build every preloaded image and save them into stage/images/ for the node to import."""
    expected = kubeadm_images()
    tags: list[str] = []
    for component in COMPONENTS:
        started = time.monotonic()
        tag = expected[component.component]
        with tempfile.TemporaryDirectory(dir=stage, prefix=f".{component.component}-") as scratch:
            context = Path(scratch)
            (context / "tmp").mkdir(mode=0o1777)
            shutil.copy2(_component_binary(component), context / component.binary)
            _build_image(context, tag, _component_dockerfile(component, component.binary))
        tags.append(tag)
        _progress(f"image {tag} ({component.component} {component.version}) ({_elapsed(started)})")
    provisioner = ComponentImage(
        "local-path-provisioner", versions.LOCAL_PATH_PROVISIONER, "local-path-provisioner", ()
    )
    with tempfile.TemporaryDirectory(dir=stage, prefix=".local-path-") as scratch:
        context = Path(scratch)
        (context / "tmp").mkdir(mode=0o1777)
        shutil.copy2(tools.tool(provisioner.binary).cached, context / provisioner.binary)
        _build_image(context, PROVISIONER_IMAGE, _component_dockerfile(provisioner, provisioner.binary))
    _run([docker(), "tag", BASE_IMAGE, HELPER_IMAGE])
    tags += [PROVISIONER_IMAGE, HELPER_IMAGE]
    images = stage / "images"
    images.mkdir(exist_ok=True)
    _progress(f"saving {len(tags)} images for the node to import")
    with (images / "images.tar").open("wb") as archive:
        result = subprocess.run([docker(), "save", *tags], stdout=archive, check=False)
    if result.returncode != 0:
        raise NodeImageError(f"docker save of {tags} failed (exit {result.returncode})")
    return tags


def storage_manifest(kind_dir: Path) -> str:
    """kind's default StorageClass manifest (local-path-provisioner), with the images built here."""
    source = (kind_dir / "pkg" / "build" / "nodeimage" / "const_storage.go").read_text()
    found = re.search(r"const defaultStorageManifest = `(.*?\n)`\n", source, flags=re.DOTALL)
    if found is None:
        raise NodeImageError("kind's const_storage.go has no defaultStorageManifest")
    manifest = found.group(1)
    manifest = manifest.replace("` + storageProvisionerImage + `", PROVISIONER_IMAGE)
    manifest = manifest.replace("` + storageHelperImage + `", HELPER_IMAGE)
    if "` +" in manifest:
        raise NodeImageError("kind's storage manifest refers to a constant this builder does not know")
    return manifest


def stage_context(stage: Path, pause_image: str) -> None:
    """Lay out the node image's docker build context (tests/env/kindnode/Dockerfile)."""
    kind_dir = module_dir("kind", "sigs.k8s.io/kind", versions.KIND)
    shutil.copytree(kind_dir / "images" / "base" / "files", stage / "kind-base")
    for path in (stage / "kind-base").rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    config = stage / "kind-base" / "etc" / "containerd" / "config.toml"
    text = re.sub(r"registry\.k8s\.io/pause:[0-9.]+", pause_image, config.read_text())
    # Lowering a process's oom_score_adj needs CAP_SYS_RESOURCE, which nodes here lack: runc
    # then fails every container ("can't get final child's PID from pipe"). kind sets this for
    # rootless nodes; it clamps the kubelet's negative scores to the node's own.
    text = text.replace("restrict_oom_score_adj = false", "restrict_oom_score_adj = true")
    config.write_text(text)
    binaries = stage / "bin"
    binaries.mkdir()
    for name in ("containerd", "containerd-shim-runc-v2", "ctr", "crictl", "kubelet", "kubeadm", "kubectl"):
        shutil.copy2(tools.tool(name).cached, binaries / name)
    cni = stage / "cni"
    cni.mkdir()
    for name in ("ptp", "bridge", "loopback", "host-local", "portmap"):
        shutil.copy2(tools.tool(name).cached, cni / name)
    (stage / "version").write_text(versions.KUBERNETES + "\n")
    manifests = stage / "manifests"
    manifests.mkdir()
    (manifests / "default-storage.yaml").write_text(storage_manifest(kind_dir))
    shutil.copy2(HERE / "manifests" / "default-cni.yaml", manifests / "default-cni.yaml")
    shutil.copytree(HERE / "files", stage / "vaultsync")
    shutil.copy2(HERE / "Dockerfile", stage / "Dockerfile")


def image_exists(tag: str) -> bool:
    result = subprocess.run([docker(), "image", "inspect", tag], capture_output=True, check=False)
    return result.returncode == 0


def ensure_node_image() -> str:
    """Build the node image unless the Docker store has it under the current content key."""
    started = time.monotonic()
    tag = node_image_tag()
    if image_exists(tag):
        _progress(f"{tag} is current (content key matches; nothing rebuilt)")
        return tag
    _progress(f"building {tag}: binaries first (cached ones are reused)")
    ensure_binaries()
    cache_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir(), prefix=".kind-node-") as scratch:
        stage = Path(scratch)
        pause_image = kubeadm_images()["pause"]
        build_component_images(stage)
        stage_context(stage, pause_image)
        step = time.monotonic()
        _progress("building the node image (Debian packages, kind's files, binaries)")
        _build_image(stage, tag, (stage / "Dockerfile").read_text())
        _progress(f"node image layer built ({_elapsed(step)})")
    size = _run([docker(), "image", "inspect", "-f", "{{.Size}}", tag]).strip()
    _progress(f"built {tag} ({int(size) // 1_000_000} MB) in {_elapsed(started)}")
    _remove_older_node_images(tag)
    return tag


def _remove_older_node_images(current: str) -> None:
    """Each content key leaves a 1 GB image; keep the current one (and any a node still runs)."""
    listed = _run([docker(), "images", "--format", "{{.Repository}}:{{.Tag}}", NODE_IMAGE_REPOSITORY])
    for old in set(listed.split()) - {current}:
        subprocess.run([docker(), "rmi", old], capture_output=True, check=False)
