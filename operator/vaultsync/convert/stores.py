"""ESO's SecretStore and ClusterSecretStore to vaultsync's, for the providers vaultsync has.

vaultsync serves AWS Secrets Manager, HashiCorp Vault's KV engine, Azure Key Vault and the
fake provider. Each ESO provider field either has a vaultsync field of the same meaning or
is refused with the reason; authentication that ESO resolves at run time from objects the
converter cannot see (an IRSA role on a ServiceAccount, a client id in a Secret) is refused
with what to write instead, never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vaultsync.convert.fields import Fields

_PUSH_ONLY = "used only by PushSecret, which vaultsync does not implement"
# ESO's environmentType: the Entra ID authority of each sovereign cloud.
_AZURE_AUTHORITIES = {
    "PublicCloud": "",
    "USGovernmentCloud": "https://login.microsoftonline.us",
    "ChinaCloud": "https://login.chinacloudapi.cn",
}


@dataclass(frozen=True)
class _Scope:
    """A ClusterSecretStore, or a SecretStore and the namespace its credentials must be in."""

    cluster: bool
    namespace: str


def convert_store_spec(spec: Fields, cluster: bool, namespace: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    provider = spec.child("provider")
    if provider is None:
        spec.refuse("provider", "a store needs a provider")
    else:
        out["provider"] = _provider(provider, _Scope(cluster, namespace))
    if spec.has("controller"):
        spec.report(
            "controller", "dropped", "vaultsync has no controller classes: one operator serves every store"
        )
    if spec.has("retrySettings"):
        spec.report("retrySettings", "dropped", "vaultsync retries provider errors with its own backoff")
    if spec.has("refreshInterval"):
        spec.report(
            "refreshInterval", "dropped", "vaultsync re-checks a store that is not ready every minute"
        )
    conditions = spec.children("conditions")
    if conditions and cluster:
        out["conditions"] = [_condition(c) for c in conditions]
    elif conditions:
        spec.report("conditions", "dropped", "ESO ignores conditions on a namespaced SecretStore too")
    spec.finish()
    return out


def _condition(condition: Fields) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if condition.has("namespaces"):
        out["namespaces"] = list(condition.get("namespaces"))
    if condition.get("namespaceSelector") is not None:
        out["namespaceSelector"] = condition.get("namespaceSelector")
    if condition.has("namespaceRegexes"):
        condition.refuse(
            "namespaceRegexes",
            "vaultsync has no namespace regexes (ESO matches them unanchored, so 'team-a' admits "
            "'evil-team-a'); list the namespaces or use a namespaceSelector",
        )
    condition.finish()
    return out


def _provider(provider: Fields, scope: _Scope) -> dict[str, Any]:
    converters = {"aws": _aws, "vault": _vault, "azurekv": _azure, "fake": _fake}
    out: dict[str, Any] = {}
    for name in provider.names():
        section = provider.child(name)
        if name not in converters:
            provider.refuse(name, "vaultsync has no such provider (it has aws, vault, azurekv and fake)")
        elif section is not None:
            out[name] = converters[name](section, scope)
            section.finish()
    return out


def _namespace(ref: Fields, scope: _Scope, out: dict[str, Any]) -> None:
    if not ref.has("namespace"):
        return
    out["namespace"] = ref.text("namespace")
    if not scope.cluster and out["namespace"] != scope.namespace:
        ref.refuse(
            "namespace",
            f"{out['namespace']!r}: a SecretStore reads credentials only from its own namespace "
            f"({scope.namespace or 'unset'}); ESO refuses this too",
        )


def _secret_ref(ref: Fields, scope: _Scope) -> dict[str, Any]:
    out = {"name": ref.text("name"), "key": ref.text("key")}
    _namespace(ref, scope, out)
    ref.finish()
    return out


def _service_account_ref(ref: Fields, scope: _Scope) -> dict[str, Any]:
    out: dict[str, Any] = {"name": ref.text("name")}
    _namespace(ref, scope, out)
    if ref.has("audiences"):
        out["audiences"] = list(ref.get("audiences"))
    ref.finish()
    return out


def _needs_auth(section: Fields, scope: _Scope) -> None:
    if not scope.cluster:
        section.refuse(
            "auth",
            "without auth ESO uses its controller's own identity; a vaultsync SecretStore must carry "
            "its own credentials (only a ClusterSecretStore may use the operator's identity)",
        )


def _aws(aws: Fields, scope: _Scope) -> dict[str, Any]:
    out: dict[str, Any] = {"region": aws.text("region")}
    aws.refuse_unless(
        "service", ("SecretsManager", "ParameterStore"), "vaultsync has SecretsManager and ParameterStore"
    )
    if aws.text("service", "SecretsManager") == "ParameterStore":
        out["service"] = "ParameterStore"
    if aws.has("role"):
        aws.refuse("role", "vaultsync does not assume a role on top of the store's credentials")
    for key in ("additionalRoles", "externalID", "sessionTags", "transitiveTagKeys"):
        if aws.has(key):
            aws.refuse(key, "vaultsync does not assume roles on top of the store's credentials")
    if aws.has("prefix"):
        aws.refuse("prefix", "vaultsync has no key prefix: write the full key in each ExternalSecret")
    if aws.has("secretsManager"):
        aws.report("secretsManager", "dropped", _PUSH_ONLY)
    auth = aws.child("auth")
    if auth is None:
        _needs_auth(aws, scope)
        return out
    secret_ref = auth.child("secretRef")
    if secret_ref is not None:
        keys: dict[str, Any] = {}
        for eso, ours in (
            ("accessKeyIDSecretRef", "accessKeyId"),
            ("secretAccessKeySecretRef", "secretAccessKey"),
        ):
            ref = secret_ref.child(eso)
            if ref is None:
                secret_ref.refuse(eso, "vaultsync needs both the access key id and the secret access key")
            else:
                keys[ours] = _secret_ref(ref, scope)
        if secret_ref.has("sessionTokenSecretRef"):
            secret_ref.refuse("sessionTokenSecretRef", "vaultsync takes no session token (it expires)")
        secret_ref.finish()
        out["auth"] = {"secretRef": keys}
    if auth.has("jwt"):
        auth.refuse(
            "jwt",
            "ESO takes the IAM role from the ServiceAccount's eks.amazonaws.com/role-arn annotation, "
            "which the converter cannot read; write spec.provider.aws.auth.jwt{serviceAccountRef, roleArn}",
        )
    auth.finish()
    return out


def _vault(vault: Fields, scope: _Scope) -> dict[str, Any]:
    out: dict[str, Any] = {"server": vault.text("server")}
    if vault.has("path"):
        out["path"] = vault.text("path")
    else:
        vault.refuse(
            "path", "without a mount path ESO reads the mount from each key; vaultsync needs it here"
        )
    out["version"] = vault.text("version", "v2")
    for key in ("namespace", "caBundle"):
        if vault.has(key):
            out[key] = vault.text(key)
    for key, why in (
        ("caProvider", "vaultsync takes the CA inline: put the certificate's base64 in caBundle"),
        ("tls", "vaultsync has no client certificates for Vault"),
        ("headers", "vaultsync sends no custom headers"),
    ):
        if vault.has(key):
            vault.refuse(key, why)
    for key in ("readYourWrites", "forwardInconsistent"):
        if vault.get(key):
            vault.report(key, "dropped", "a Vault Enterprise consistency hint vaultsync does not send")
    if vault.has("checkAndSet"):
        vault.report("checkAndSet", "dropped", _PUSH_ONLY)
    auth = vault.child("auth")
    if auth is None:
        vault.refuse("auth", "vaultsync needs a Vault auth method")
        return out
    out["auth"] = _vault_auth(auth, scope)
    auth.finish()
    return out


def _vault_auth(auth: Fields, scope: _Scope) -> dict[str, Any]:
    out: dict[str, Any] = {}
    token = auth.child("tokenSecretRef")
    if token is not None:
        out["token"] = {"secretRef": _secret_ref(token, scope)}
    role = auth.child("appRole")
    if role is not None:
        app_role: dict[str, Any] = {"path": role.text("path", "approle"), "roleId": role.text("roleId")}
        if role.has("roleRef"):
            role.refuse("roleRef", "vaultsync takes the role id inline: write it in roleId")
        secret = role.child("secretRef")
        if secret is not None:
            app_role["secretRef"] = _secret_ref(secret, scope)
        role.finish()
        out["appRole"] = app_role
    kubernetes = auth.child("kubernetes")
    if kubernetes is not None:
        k8s: dict[str, Any] = {
            "mountPath": kubernetes.text("mountPath", "kubernetes"),
            "role": kubernetes.text("role"),
        }
        account = kubernetes.child("serviceAccountRef")
        if account is not None:
            k8s["serviceAccountRef"] = _service_account_ref(account, scope)
        elif not scope.cluster:
            kubernetes.refuse(
                "serviceAccountRef",
                "without it ESO logs in with its controller's own token; a vaultsync SecretStore "
                "must name a ServiceAccount of its namespace",
            )
        if kubernetes.has("secretRef"):
            kubernetes.refuse(
                "secretRef", "vaultsync requests ServiceAccount tokens; it reads none from Secrets"
            )
        kubernetes.finish()
        out["kubernetes"] = k8s
    for key in ("ldap", "jwt", "cert", "iam", "userPass", "gcp"):
        if auth.has(key):
            auth.refuse(key, "vaultsync's Vault auth methods are token, appRole and kubernetes")
    return out


def _azure(azure: Fields, scope: _Scope) -> dict[str, Any]:
    out: dict[str, Any] = {"vaultUrl": azure.text("vaultUrl")}
    if azure.has("tenantId"):
        out["tenantId"] = azure.text("tenantId")
    environment = azure.text("environmentType", "PublicCloud")
    if environment not in _AZURE_AUTHORITIES:
        azure.refuse("environmentType", f"{environment!r}: vaultsync knows no authority host for it")
    elif _AZURE_AUTHORITIES[environment]:
        out["authorityHost"] = _AZURE_AUTHORITIES[environment]
    auth_type = azure.text("authType", "ServicePrincipal")
    if auth_type == "ManagedIdentity":
        if not scope.cluster:
            azure.refuse(
                "authType", "a managed identity is the operator's own; only a ClusterSecretStore may use it"
            )
        out["auth"] = {
            "managedIdentity": {"clientId": azure.text("identityId")} if azure.has("identityId") else {}
        }
    elif auth_type == "ServicePrincipal":
        azure.refuse(
            "authSecretRef",
            "ESO reads the client id from a Secret, the converter cannot; write "
            "spec.provider.azurekv.auth.clientSecret{clientId, secretRef}",
        )
    elif auth_type == "WorkloadIdentity":
        azure.refuse(
            "serviceAccountRef",
            "ESO reads the client id from the ServiceAccount's azure.workload.identity/client-id "
            "annotation, the converter cannot; write "
            "spec.provider.azurekv.auth.workloadIdentity{clientId, serviceAccountRef}",
        )
    else:
        azure.refuse("authType", f"{auth_type!r}: not an authentication vaultsync has")
    for key in ("authSecretRef", "serviceAccountRef", "identityId"):
        if azure.has(key):
            azure.get(key)  # used by, or refused with, authType above
    return out


def _fake(fake: Fields, scope: _Scope) -> dict[str, Any]:
    del scope
    data: list[dict[str, Any]] = []
    for entry in fake.children("data"):
        item = {"key": entry.text("key"), "value": entry.text("value")}
        if entry.has("version"):
            item["version"] = entry.text("version")
        if entry.has("valueMap"):
            entry.refuse("valueMap", "vaultsync's fake values are strings: write the map as JSON in value")
        entry.finish()
        data.append(item)
    return {"data": data}
