"""`vaultsync run` outside the cluster with a kubeconfig whose user is an `exec` plugin.

EKS, GKE and AKS kubeconfigs carry no token but a command that prints an ExecCredential.
Here the plugin is a small script that prints a real ServiceAccount token (minted by
TokenRequest) read from a file, and logs each run. The operator syncs an ExternalSecret
with it; when the credential's expirationTimestamp nears, the plugin runs again; when the
API server refuses the token (its ServiceAccount deleted), the 401 makes the operator and
kopf's watches run the plugin again and carry on with the new token, without a restart.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from tests.e2e.conftest import Vaultsync, fake_entry
from tests.env.kube import Cluster, KubeApi, bearer_token_api
from tests.env.waiting import eventually

pytestmark = pytest.mark.e2e

PLUGIN = """#!{python}
import datetime, json, os, sys
# The kubeconfig's env and args reach the plugin, and so does the request.
assert os.environ["PLUGIN_MODE"] == "vaultsync-test", "env not passed"
assert sys.argv[1:3] == ["--token-file", {token_file!r}], "args not passed"
request = json.loads(os.environ["KUBERNETES_EXEC_INFO"])
assert request["spec"]["interactive"] is False and request["kind"] == "ExecCredential"
lifetime = int(open({lifetime_file!r}).read())
expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=lifetime)
with open({runs!r}, "a") as runs:
    runs.write(expires.isoformat() + "\\n")
print(json.dumps({{
    "apiVersion": "client.authentication.k8s.io/v1",
    "kind": "ExecCredential",
    "status": {{
        "token": open({token_file!r}).read().strip(),
        "expirationTimestamp": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }},
}}))
"""
LIFETIME_SECONDS = 12  # the operator renews 10 s before expiry: a second run within ~5 s


def _account_token(api: KubeApi, namespace: str, name: str) -> str:
    """A TokenRequest token of a new ServiceAccount with the rights the operator uses.

    cluster-admin, not the chart's ClusterRole: what this test proves is the login, and
    the chart's RBAC has its own test; the binding goes with the test's namespace."""
    api.core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name))
    )
    api.rbac.create_cluster_role_binding(
        client.V1ClusterRoleBinding(
            metadata=client.V1ObjectMeta(name=f"{namespace}-{name}"),
            role_ref=client.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="ClusterRole", name="cluster-admin"
            ),
            subjects=[client.RbacV1Subject(kind="ServiceAccount", name=name, namespace=namespace)],
        )
    )
    request = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(expiration_seconds=600))
    return str(api.core.create_namespaced_service_account_token(name, namespace, request).status.token)


def _exec_kubeconfig(admin: Path, directory: Path, token_file: Path, runs: Path) -> Path:
    plugin = directory / "plugin.py"
    plugin.write_text(
        PLUGIN.format(
            python=sys.executable,
            token_file=str(token_file),
            runs=str(runs),
            lifetime_file=str(directory / "lifetime"),
        )
    )
    plugin.chmod(0o755)
    config = yaml.safe_load(admin.read_text())
    for user in config["users"]:
        user["user"] = {
            "exec": {
                "apiVersion": "client.authentication.k8s.io/v1",
                "command": "./plugin.py",  # relative to the kubeconfig's directory
                "args": ["--token-file", str(token_file)],
                "env": [{"name": "PLUGIN_MODE", "value": "vaultsync-test"}],
                "interactiveMode": "Never",
            }
        }
    path = directory / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


def _runs(runs: Path) -> int:
    return len(runs.read_text().splitlines()) if runs.exists() else 0


def test_the_operator_syncs_with_exec_credentials_and_runs_the_plugin_again_on_expiry_and_401(
    cluster: Cluster, kube_api: KubeApi, vs: Vaultsync, namespace: str, run_operator: Any, tmp_path: Path
) -> None:
    try:
        first = _account_token(kube_api, namespace, "first")
        second = _account_token(kube_api, namespace, "second")
        _sync_with_exec(cluster, kube_api, vs, namespace, run_operator, tmp_path, (first, second))
    finally:
        for name in ("first", "second"):
            try:
                kube_api.rbac.delete_cluster_role_binding(f"{namespace}-{name}")
            except client.ApiException as exc:
                if exc.status != 404:
                    raise


def _sync_with_exec(
    cluster: Cluster,
    kube_api: KubeApi,
    vs: Vaultsync,
    namespace: str,
    run_operator: Any,
    tmp_path: Path,
    tokens: tuple[str, str],
) -> None:
    (first, second), token_file, runs = tokens, tmp_path / "token", tmp_path / "runs"
    lifetime = tmp_path / "lifetime"
    token_file.write_text(first)
    lifetime.write_text(str(LIFETIME_SECONDS))
    kubeconfig = _exec_kubeconfig(cluster.kubeconfig, tmp_path, token_file, runs)
    vs.fake_store("fake", [fake_entry("db", {"password": "pw-one"}, "1")])
    spec = {
        "storeRef": {"name": "fake"},
        "refreshInterval": "1h",
        "data": [{"secretKey": "password", "remoteRef": {"key": "db", "property": "password"}}],
    }
    with run_operator(namespace, "--namespace", namespace, env={"KUBECONFIG": str(kubeconfig)}) as operator:
        vs.external_secret("app", spec)
        vs.wait_reason("app", "Synced")
        vs.wait_data("app", {"password": "pw-one"})
        started = _runs(runs)
        assert started >= 1
        # Past the renewal point (10 s before expiry) the next request runs the plugin first;
        # from now on its credentials last long, so only a 401 can make it run again.
        lifetime.write_text("600")
        time.sleep(LIFETIME_SECONDS - 10 + 1)
        vs.external_secret("after-expiry", spec)
        vs.wait_reason("after-expiry", "Synced", timeout=30)
        renewed = _runs(runs)
        assert renewed > started, "the plugin did not run again before the credential expired"

        # Revoke the token in use: its ServiceAccount goes. Only the plugin knows the next one.
        token_file.write_text(second)
        kube_api.core.delete_namespaced_service_account("first", namespace)
        revoked = bearer_token_api(cluster.kubeconfig, first)

        def refused() -> None:
            try:
                revoked.core.read_namespace(namespace)
            except client.ApiException as exc:
                assert exc.status == 401, exc.status
            else:
                raise AssertionError("the revoked token is still accepted")

        eventually(refused, what="the deleted ServiceAccount's token to be refused")
        vs.external_secret("after-revocation", spec)
        vs.wait_reason("after-revocation", "Synced", timeout=30)
        assert _runs(runs) > renewed, "the 401 did not make the operator run the plugin again"
        assert "ExecCredential" not in operator.logs() and second not in operator.logs()
