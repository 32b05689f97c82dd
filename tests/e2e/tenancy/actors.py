"""The two parties of every tenant-attack test: the hostile tenant and the bystander it must not hurt.

A tenant is an app team as a platform admin really sets one up: a namespace, a ServiceAccount
bound to a Role that grants rights in that namespace only, and a short-lived token from the
TokenRequest API. Everything the tenant creates goes through that token, so the API server's
RBAC, not the test's goodwill, decides what it can reach. The bystander is another team's
namespace with an ExternalSecret that must keep syncing whatever the tenant does.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client

from tests.e2e.conftest import Vaultsync, fake_entry
from tests.env import kube
from tests.env.kube import KubeApi
from tests.env.waiting import eventually

TENANT_ACCOUNT = "app-team"
TENANT_TOKEN_SECONDS = 3600
GROUP = "vaultsync.io"
FORCE_SYNC = f"{GROUP}/force-sync"
# Rights of an app team in its own namespace; nothing cluster-scoped, nothing elsewhere.
# Events are readable (as with Kubernetes' built-in `edit` role) so a test can show what
# the tenant sees of the operator's Events.
TENANT_RULES = (
    client.V1PolicyRule(api_groups=[GROUP], resources=["secretstores", "externalsecrets"], verbs=["*"]),
    client.V1PolicyRule(api_groups=[""], resources=["secrets", "configmaps"], verbs=["*"]),
    client.V1PolicyRule(api_groups=["apps"], resources=["deployments"], verbs=["*"]),
    client.V1PolicyRule(api_groups=[""], resources=["events"], verbs=["get", "list", "watch"]),
)

BYSTANDER_EXTERNAL_SECRET = "bystander"
BYSTANDER_PRIVATE_SECRET = "bystander-private"
BYSTANDER_DATA = {"password": "bystander-password-must-stay-put"}
# A re-annotation if a force-sync token went unhandled (an operator that first saw the object
# with the token already set takes it as the object's baseline, not as a request).
FORCE_SYNC_RETRY_SECONDS = 10.0


@dataclass
class Tenant:
    """An app team: its namespace, its token-authenticated clients and its vaultsync helper."""

    namespace: str
    api: KubeApi
    vs: Vaultsync
    service_account: str
    token: str = field(repr=False)


def create_tenant(admin: KubeApi, kubeconfig: Path) -> Tenant:
    """Namespace, ServiceAccount, Role, RoleBinding and token, set up as a platform admin would."""
    namespace = kube.create_namespace(admin, prefix="vs-tenant-")
    meta = client.V1ObjectMeta(name=TENANT_ACCOUNT)
    admin.core.create_namespaced_service_account(namespace, client.V1ServiceAccount(metadata=meta))
    admin.rbac.create_namespaced_role(namespace, client.V1Role(metadata=meta, rules=list(TENANT_RULES)))
    admin.rbac.create_namespaced_role_binding(
        namespace,
        client.V1RoleBinding(
            metadata=meta,
            role_ref=client.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="Role", name=TENANT_ACCOUNT
            ),
            subjects=[client.RbacV1Subject(kind="ServiceAccount", name=TENANT_ACCOUNT, namespace=namespace)],
        ),
    )
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=TENANT_TOKEN_SECONDS)
    )
    issued = admin.core.create_namespaced_service_account_token(TENANT_ACCOUNT, namespace, request)
    token = str(issued.status.token)
    api = kube.bearer_token_api(kubeconfig, token)
    # RBAC reaches the authorizer through an informer: wait until the binding is in force.
    eventually(
        lambda: api.custom.list_namespaced_custom_object(GROUP, "v1alpha1", namespace, "externalsecrets"),
        what="the tenant's RoleBinding to take effect",
    )
    return Tenant(namespace, api, Vaultsync(api, namespace), TENANT_ACCOUNT, token)


@dataclass
class Bystander:
    """Another team's namespace: a fake store, an ExternalSecret and a private Secret."""

    namespace: str
    vs: Vaultsync
    external_secret: str = BYSTANDER_EXTERNAL_SECRET
    private_secret: str = BYSTANDER_PRIVATE_SECRET
    expected: dict[str, str] = field(default_factory=lambda: dict(BYSTANDER_DATA))

    def assert_still_syncing(self, timeout: float = 60) -> dict[str, Any]:
        """Force a sync and wait until it is Synced with a newer `syncedAt` and the same data.

        Returns the status. Fails if the operator no longer serves this namespace (crashed,
        stuck, or a shared client torn down by another tenant).
        """
        name = self.external_secret
        self.vs.wait_reason(name, "Synced", timeout=timeout)
        before = self._status().get("syncedAt") or ""
        _wait_past(before)  # syncedAt has one-second resolution: "newer" must be visible
        token = self._force()
        forced_at = time.monotonic()

        def check() -> dict[str, Any]:
            nonlocal token, forced_at
            status = self._status()
            if (
                status.get("forceSyncHandled") != token
                and time.monotonic() - forced_at > FORCE_SYNC_RETRY_SECONDS
            ):
                token, forced_at = self._force(), time.monotonic()
            ready = self.vs.ready(name)
            assert status.get("forceSyncHandled") == token, f"force-sync {token} not handled yet: {status}"
            assert ready.get("reason") == "Synced", f"Ready condition {ready}"
            assert (status.get("syncedAt") or "") > before, f"syncedAt {status.get('syncedAt')} <= {before}"
            return status

        status = eventually(
            check, what=f"the bystander's ExternalSecret {name} to sync again", timeout=timeout
        )
        assert self.vs.secret_data(name) == self.expected
        return status

    def _status(self) -> dict[str, Any]:
        return dict(self.vs.get_external_secret(self.external_secret).get("status") or {})

    def _force(self) -> str:
        token = uuid.uuid4().hex
        self.vs.patch_external_secret(
            self.external_secret, {"metadata": {"annotations": {FORCE_SYNC: token}}}
        )
        return token


def create_bystander(admin: KubeApi) -> Bystander:
    namespace = kube.create_namespace(admin, prefix="vs-bystander-")
    vs = Vaultsync(admin, namespace)
    vs.fake_store("fake", [fake_entry("db", BYSTANDER_DATA)])
    vs.external_secret(
        BYSTANDER_EXTERNAL_SECRET,
        {
            "storeRef": {"name": "fake"},
            "refreshInterval": "1h",
            "data": [{"secretKey": "password", "remoteRef": {"key": "db", "property": "password"}}],
        },
    )
    admin.core.create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name=BYSTANDER_PRIVATE_SECRET),
            string_data={"token": "bystander-private-token"},
        ),
    )
    return Bystander(namespace, vs)


def _wait_past(timestamp: str) -> None:
    """Sleep until the wall clock is past `timestamp` (RFC 3339, whole seconds)."""
    if not timestamp:
        return
    moment = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    remaining = moment.timestamp() + 1 - time.time()
    if remaining > 0:
        time.sleep(remaining)
