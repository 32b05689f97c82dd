"""The operator against every real vault: sync, rotation, wrong credentials, outage and recovery.

The contract suite proves each client; this proves the whole path a user sees, with the
operator running as a process, the store's credentials in a real Secret and the vault
server really stopped and started again, while the last good Secret stays untouched.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

import pytest
from kubernetes import client

from tests.e2e.conftest import Vaultsync
from tests.env.kube import KubeApi
from tests.env.waiting import eventually
from tests.providers.backends.base import LiveBackend, unique_key
from tests.providers.conftest import LIVE_BACKENDS, Backends

pytestmark = pytest.mark.e2e


@pytest.fixture(params=LIVE_BACKENDS)
def vault(request: pytest.FixtureRequest, backends: Backends) -> LiveBackend:
    backend = backends.get(request.param)
    assert hasattr(backend, "stop"), f"{request.param} is not a live backend"
    return backend  # type: ignore[return-value]


def credential_secrets(vs: Vaultsync, backend: LiveBackend) -> None:
    """Puts the backend's credentials into real Secrets of the test namespace."""
    by_name: dict[str, dict[str, str]] = {}
    stored: Mapping[tuple[str, str], bytes] = backend.credentials().secrets  # type: ignore[attr-defined]
    for (name, key), value in stored.items():
        by_name.setdefault(name, {})[key] = base64.b64encode(value).decode()
    for name, data in by_name.items():
        vs.api.core.create_namespaced_secret(
            vs.namespace, client.V1Secret(metadata=client.V1ObjectMeta(name=name), data=data)
        )


def store_spec(backend: LiveBackend, config: Mapping[str, Any]) -> dict[str, Any]:
    return {"provider": {backend.name: dict(config)}}


def external_secret(vs: Vaultsync, name: str, key: str, store: str = "vault") -> None:
    vs.external_secret(
        name,
        {
            "storeRef": {"name": store},
            "refreshInterval": "2s",
            "data": [{"secretKey": "password", "remoteRef": {"key": key, "property": "password"}}],
        },
    )


def _no_pending_restart(annotations: dict[str, str]) -> None:
    assert "vaultsync.io/pending-restart" not in annotations, "a restart is still pending"


def test_sync_rotation_outage_and_recovery(vs: Vaultsync, vault: LiveBackend, operator: Any) -> None:
    key = unique_key("e2e")
    vault.write(key, json.dumps({"password": "first"}))
    credential_secrets(vs, vault)
    vs.apply_store("vault", store_spec(vault, vault.provider_config()))
    vs.wait_store_ready("vault")
    external_secret(vs, "app", key)
    vs.wait_data("app", {"password": "first"})

    vault.write(key, json.dumps({"password": "second"}))
    vs.wait_data("app", {"password": "second"}, timeout=30)
    # The rotation ends when the rollout service clears its pending-restart mark (a write of
    # its own, seconds later); only then is the Secret's last good version final.
    eventually(
        lambda: _no_pending_restart(vs.secret("app").metadata.annotations or {}),
        what="the rotation's pending-restart mark to be cleared",
    )
    last_good = vs.secret("app").metadata.resource_version

    vault.stop()
    try:
        condition = vs.wait_reason("app", "ProviderError", timeout=60)
        assert condition["status"] == "False"
        assert vs.secret_data("app") == {"password": "second"}
        assert vs.secret("app").metadata.resource_version == last_good
    finally:
        vault.start()
    vault.write(key, json.dumps({"password": "after-outage"}))
    vs.wait_data("app", {"password": "after-outage"}, timeout=120)
    vs.wait_reason("app", "Synced")


def test_wrong_credentials_make_the_store_not_ready_and_say_so(
    vs: Vaultsync, vault: LiveBackend, operator: Any
) -> None:
    key = unique_key("e2e")
    vault.write(key, json.dumps({"password": "x"}))
    credential_secrets(vs, vault)
    vs.apply_store("vault", store_spec(vault, vault.bad_credentials_config()))
    store = vs.wait_store_ready("vault", status="False")
    assert "vault" in store["message"]
    external_secret(vs, "app", key)
    condition = vs.wait_reason("app", "StoreNotReady")
    assert "vault" in condition["message"]
    assert not vs.secret_exists("app")


def test_a_namespaced_store_cannot_use_credentials_of_another_namespace(
    vs: Vaultsync, kube_api: KubeApi, operator: Any, backends: Backends
) -> None:
    aws = backends.get("aws")
    config = dict(aws.provider_config())
    config["auth"] = {
        "secretRef": {
            "accessKeyId": {"name": "aws-creds", "key": "id", "namespace": "kube-system"},
            "secretAccessKey": {"name": "aws-creds", "key": "secret", "namespace": "kube-system"},
        }
    }
    vs.apply_store("vault", {"provider": {"aws": config}})
    store = vs.wait_store_ready("vault", status="False")
    assert "only use credentials from its own namespace" in store["message"]


def test_the_operator_identity_is_refused_to_a_namespaced_store(
    vs: Vaultsync, operator: Any, backends: Backends
) -> None:
    aws = backends.get("aws")
    config = {k: v for k, v in aws.provider_config().items() if k != "auth"}
    try:
        vs.apply_store("vault", {"provider": {"aws": config}})
    except client.ApiException as exc:  # the CRD's CEL rule refuses it at apply time
        assert exc.status == 422 and "auth" in exc.body
        return
    store = vs.wait_store_ready("vault", status="False")
    assert "spec.provider.aws.auth" in store["message"]


def test_aws_web_identity_uses_a_real_service_account_token(
    vs: Vaultsync, operator: Any, backends: Backends
) -> None:
    """The operator asks the API server's TokenRequest for the named ServiceAccount's token
    and exchanges it with STS (moto's AssumeRoleWithWebIdentity) for keys."""
    aws = backends.get("aws")
    key = unique_key("e2e")
    aws.write(key, json.dumps({"password": "via-web-identity"}))
    vs.api.core.create_namespaced_service_account(
        vs.namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="app"))
    )
    with aws.authentication_off():  # type: ignore[attr-defined]  # moto cannot check the unsigned STS call
        vs.apply_store("vault", {"provider": {"aws": dict(aws.web_identity_config())}})  # type: ignore[attr-defined]
        vs.wait_store_ready("vault")
    # Authentication is on again: moto accepts only the role's temporary credentials now.
    external_secret(vs, "app", key)
    vs.wait_data("app", {"password": "via-web-identity"})


def test_aws_web_identity_with_a_missing_service_account_says_which(
    vs: Vaultsync, operator: Any, backends: Backends
) -> None:
    aws = backends.get("aws")
    vs.apply_store("vault", {"provider": {"aws": dict(aws.web_identity_config())}})  # type: ignore[attr-defined]
    store = vs.wait_store_ready("vault", status="False")
    assert "spec.provider.aws.auth.jwt.serviceAccountRef" in store["message"]
    assert "ServiceAccount" in store["message"]
