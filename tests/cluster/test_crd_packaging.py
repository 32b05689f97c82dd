"""The repository root is a Kustomize base of exactly the CRDs in crds/, which a real
kubectl builds and a real API server accepts (Flux and Argo CD build it the same way)."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.env import paths
from tests.env.kube import Cluster, crd_files

ROOT = Path(__file__).resolve().parents[2]


def test_the_kustomization_lists_every_crd_file_and_nothing_else() -> None:
    listed = yaml.safe_load((ROOT / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(f"crds/{p.name}" for p in crd_files(paths.CRDS))


def test_kubectl_builds_the_crds_unchanged_and_the_server_accepts_them(cluster: Cluster) -> None:
    built = [d for d in yaml.safe_load_all(cluster.run_kubectl("kustomize", str(ROOT))) if d]
    ours = [d for p in crd_files(paths.CRDS) for d in yaml.safe_load_all(p.read_text()) if d]
    key = lambda d: d["metadata"]["name"]  # noqa: E731
    assert sorted(built, key=key) == sorted(ours, key=key)
    output = cluster.run_kubectl("apply", "--server-side", "--dry-run=server", "-k", str(ROOT))
    assert output.count("serverside-applied (server dry run)") == len(ours), output
