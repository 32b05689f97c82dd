"""The Go wrapper modules build exactly the versions tests/env/versions.py pins."""

import re

import pytest

from tests.env import tools, versions
from tests.env.paths import GO_MODULES


def test_every_go_module_requires_the_pinned_version() -> None:
    for module in (*tools.MODULES, *tools.NODE_MODULES):
        assert tools.required_version(module) == module.version, module.path


@pytest.mark.parametrize("wrapper", ["kubernetes", "kubernetes-node"])
def test_kubernetes_staging_modules_are_replaced_with_the_matching_release(wrapper: str) -> None:
    go_mod = (GO_MODULES / wrapper / "go.mod").read_text()
    replaced = dict(re.findall(r"^\s*(k8s\.io/\S+)\s+=>\s+\S+\s+(\S+)", go_mod, re.MULTILINE))
    assert len(replaced) > 30, "the staging replace block is missing"
    staging = versions.KUBERNETES_STAGING
    wrong = {name: version for name, version in replaced.items() if version != staging}
    assert not wrong, f"staging modules not at {staging}: {wrong}"


def _required(wrapper: str) -> dict[str, str]:
    go_mod = (GO_MODULES / wrapper / "go.mod").read_text()
    return dict(re.findall(r"^\s*(?:require\s+)?([a-z0-9.\-]+\.[a-z]+/\S+)\s+(v\S+)", go_mod, re.MULTILINE))


def test_local_path_provisioner_shares_the_control_planes_dependency_versions() -> None:
    # Its cold build reuses client-go and the rest as compiled for the control plane only if
    # every module both wrappers use is at the same version (docs/testenv.md).
    control_plane = _required("kubernetes")
    provisioner = _required("local-path-provisioner")
    shared = set(control_plane) & set(provisioner)
    assert "k8s.io/client-go" in shared
    wrong = {m: (provisioner[m], control_plane[m]) for m in shared if provisioner[m] != control_plane[m]}
    assert not wrong, f"local-path-provisioner's versions differ from the control plane's: {wrong}"
