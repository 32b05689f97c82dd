"""The operator's own Kubernetes client (`vaultsync.kube`) against the real API server.

It speaks REST over aiohttp with kopf's credentials instead of loading the official
client, so these tests pin what that client did for us: a rotated ServiceAccount token
is picked up after a 401 without a restart, HTTP failures become the operator's error
types naming the verb and resource, and the operator's runtime does not hold the
official client at all (kopf imports it whenever it is installed, ~43 MiB).
"""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from kubernetes import client

from tests.env.kube import Cluster, KubeApi
from tests.env.operator import operator_python
from tests.env.paths import REPO
from tests.env.waiting import NotYet, eventually
from vaultsync.errors import KubeForbidden, KubeNotFound
from vaultsync.kube import Kube

pytestmark = pytest.mark.e2e

ACCOUNT = "vaultsync-client"
T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def _service_account_token(api: KubeApi, namespace: str) -> str:
    api.core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=ACCOUNT))
    )
    request = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(expiration_seconds=600))
    return str(api.core.create_namespaced_service_account_token(ACCOUNT, namespace, request).status.token)


def _grant_reading_secrets(api: KubeApi, namespace: str) -> None:
    api.rbac.create_namespaced_role(
        namespace,
        client.V1Role(
            metadata=client.V1ObjectMeta(name=ACCOUNT),
            rules=[client.V1PolicyRule(api_groups=[""], resources=["secrets"], verbs=["get"])],
        ),
    )
    api.rbac.create_namespaced_role_binding(
        namespace,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name=ACCOUNT),
            role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name=ACCOUNT),
            subjects=[client.RbacV1Subject(kind="ServiceAccount", name=ACCOUNT, namespace=namespace)],
        ),
    )


def _write_token_kubeconfig(admin: Path, token: str, path: Path) -> None:
    """The admin kubeconfig's cluster, but authenticated only by `token`."""
    config = yaml.safe_load(admin.read_text())
    for user in config["users"]:
        user["user"] = {"token": token}
    path.write_text(yaml.safe_dump(config))


def _status_with_token(admin: Path, token: str, namespace: str) -> int:
    """The HTTP status the API server gives `token` for reading the test's Secret."""
    cluster = yaml.safe_load(admin.read_text())["clusters"][0]["cluster"]
    context = ssl.create_default_context(cafile=cluster["certificate-authority"])
    request = urllib.request.Request(
        f"{cluster['server']}/api/v1/namespaces/{namespace}/secrets/plain",
        headers={"Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_a_revoked_token_is_replaced_from_the_kubeconfig_without_a_restart(
    cluster: Cluster, kube_api: KubeApi, namespace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kube_api.core.create_namespaced_secret(
        namespace, client.V1Secret(metadata=client.V1ObjectMeta(name="plain"), string_data={"k": "v"})
    )
    _grant_reading_secrets(kube_api, namespace)
    kubeconfig = tmp_path / "kubeconfig"
    first_token = _service_account_token(kube_api, namespace)
    _write_token_kubeconfig(cluster.kubeconfig, first_token, kubeconfig)
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))

    async def scenario() -> tuple[str, str]:
        kube = Kube()
        try:

            async def readable() -> str:
                return str((await kube.read_secret(namespace, "plain"))["metadata"]["name"])

            first = await _eventually_async(readable)
            # Revoke: a bound token dies with its ServiceAccount. The same name comes back
            # with a new uid and a new token, which only the kubeconfig file knows.
            kube_api.core.delete_namespaced_service_account(ACCOUNT, namespace)

            def revoked() -> None:
                if (status := _status_with_token(cluster.kubeconfig, first_token, namespace)) != 401:
                    raise NotYet(f"the revoked token still answers {status}")

            eventually(revoked, what="the deleted ServiceAccount's token to be refused")
            _write_token_kubeconfig(
                cluster.kubeconfig, _service_account_token(kube_api, namespace), kubeconfig
            )
            second = await _eventually_async(readable)
            return first, second
        finally:
            await kube.close()

    assert run(scenario()) == ("plain", "plain")


async def _eventually_async(check: Any, timeout: float = 30.0) -> Any:
    """RBAC and new tokens take a moment to reach the API server's caches."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            return await check()
        except KubeForbidden:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.2)


def test_http_failures_become_errors_that_name_the_verb_and_resource(
    cluster: Cluster, kube_api: KubeApi, namespace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    _write_token_kubeconfig(cluster.kubeconfig, _service_account_token(kube_api, namespace), kubeconfig)

    async def scenario() -> tuple[KubeNotFound, KubeForbidden]:
        admin = Kube()
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        limited = Kube()
        try:
            with pytest.raises(KubeNotFound) as missing:
                await admin.read_secret(namespace, "absent")
            with pytest.raises(KubeForbidden) as refused:
                await limited.list_workloads(namespace)
            return missing.value, refused.value
        finally:
            await admin.close()
            await limited.close()

    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
    missing, refused = run(scenario())
    assert missing.message == "get secrets: not found"
    assert (
        refused.message
        == "list deployments: forbidden; the operator's RBAC must allow 'list' on 'deployments'"
    )


def test_the_operator_runtime_does_not_load_the_official_kubernetes_client() -> None:
    python = os.environ.get("VAULTSYNC_OPERATOR_PYTHON")
    assert python, "VAULTSYNC_OPERATOR_PYTHON is unset: run the tests through make, which builds the runtime"
    assert operator_python() == python
    probe = (
        "import importlib.util, sys\n"
        "import vaultsync.cli, vaultsync.handlers, vaultsync.startup\n"
        "print(importlib.util.find_spec('kubernetes') is None, 'kubernetes' in sys.modules)\n"
    )
    result = subprocess.run(
        [python, "-c", probe],
        env={**os.environ, "PYTHONPATH": str(REPO / "operator")},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.split() == ["True", "False"], result.stdout + result.stderr
