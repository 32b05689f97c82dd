"""Kubeconfig `exec` credential plugins (client.authentication.k8s.io/v1 and v1beta1).

EKS, GKE and AKS kubeconfigs carry no token: their user runs a command (`aws eks
get-token`, `gke-gcloud-auth-plugin`, `kubelogin`) that prints an ExecCredential.
kopf's own kubeconfig login ignores `exec`, and the official `kubernetes` client,
which implements it, costs ~43 MiB of resident memory (docs/benchmarks.md), so
`vaultsync run` outside a cluster runs the plugin itself, as client-go does:

- the command with the kubeconfig's `args` and `env` added to the operator's
  environment, and `KUBERNETES_EXEC_INFO` holding the request (with the cluster
  when `provideClusterInfo` is set); a relative command with a path separator is
  relative to the kubeconfig file's directory;
- never interactively (no stdin); `interactiveMode: Always` is refused;
- the output's `status.token`, or `clientCertificateData` and `clientKeyData`, and
  `expirationTimestamp`, which becomes the credentials' expiry: `kube.Kube` and
  kopf log in again when it passes, and after a 401.

The plugin's stderr and output are never logged or quoted: they may hold the token.
PyYAML is kopf's dependency (its own kubeconfig login parses the file with it).
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kopf
import yaml

from vaultsync import constants as c

API_VERSIONS = ("client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1")


@dataclass(frozen=True)
class ExecCredential:
    """What a plugin returned; `expiration` None means valid until a 401."""

    token: str | None
    certificate: str | None
    key: str | None
    expiration: datetime | None


def kubeconfig_exec(info: kopf.ConnectionInfo) -> kopf.ConnectionInfo:
    """`info` from kopf's kubeconfig login, completed by the user's exec plugin if it has one."""
    found = _current_user()
    if found is None or not isinstance(found[0].get("exec"), dict):
        return info
    user, cluster, directory = found
    credential = run_plugin(user["exec"], cluster, directory)
    return replace(
        info,
        token=credential.token or info.token,
        certificate_path=None if credential.certificate else info.certificate_path,
        certificate_data=credential.certificate or info.certificate_data,
        private_key_path=None if credential.key else info.private_key_path,
        private_key_data=credential.key or info.private_key_data,
        expiration=credential.expiration,
    )


def _current_user() -> tuple[dict[str, Any], dict[str, Any], Path] | None:
    """The current context's user and cluster, merged across $KUBECONFIG as kopf does
    (the first file to name an entry wins), and the directory of the file naming the user."""
    paths = [Path(p).expanduser() for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p.strip()]
    if not paths:
        paths = [Path("~/.kube/config").expanduser()]
    current: str | None = None
    contexts: dict[str, Any] = {}
    clusters: dict[str, Any] = {}
    users: dict[str, tuple[dict[str, Any], Path]] = {}
    for path in paths:
        if not path.is_file():
            continue
        config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        current = current or config.get("current-context")
        for item in config.get("contexts") or []:
            contexts.setdefault(item["name"], item.get("context") or {})
        for item in config.get("clusters") or []:
            clusters.setdefault(item["name"], item.get("cluster") or {})
        for item in config.get("users") or []:
            users.setdefault(item["name"], (item.get("user") or {}, path.parent))
    context = contexts.get(current or "")
    if not context or context.get("user") not in users:
        return None
    user, directory = users[context["user"]]
    return user, clusters.get(context.get("cluster"), {}), directory


def run_plugin(spec: dict[str, Any], cluster: dict[str, Any], directory: Path) -> ExecCredential:
    """Runs the plugin once and parses its ExecCredential; LoginError names what is wrong."""
    api_version = spec.get("apiVersion")
    if api_version not in API_VERSIONS:
        raise kopf.LoginError(f"users[].user.exec.apiVersion: must be one of {', '.join(API_VERSIONS)}")
    if spec.get("interactiveMode") == "Always":
        raise kopf.LoginError(
            "users[].user.exec.interactiveMode: Always needs a terminal; vaultsync has none"
        )
    command = str(spec.get("command") or "")
    if not command:
        raise kopf.LoginError("users[].user.exec.command: required")
    if os.sep in command and not os.path.isabs(command):
        command = str(directory / command)
    request: dict[str, Any] = {
        "apiVersion": api_version,
        "kind": "ExecCredential",
        "spec": {"interactive": False},
    }
    if spec.get("provideClusterInfo"):
        request["spec"]["cluster"] = _cluster_info(cluster)
    env = {**os.environ, **{e["name"]: str(e["value"]) for e in spec.get("env") or []}}
    env["KUBERNETES_EXEC_INFO"] = json.dumps(request)
    try:
        done = subprocess.run(
            [command, *[str(a) for a in spec.get("args") or []]],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=c.EXEC_PLUGIN_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        hint = spec.get("installHint")
        raise kopf.LoginError(
            f"users[].user.exec.command: {command} could not run ({type(exc).__name__})"
            + (f"; {hint}" if isinstance(hint, str) else "")
        ) from None
    if done.returncode != 0:
        raise kopf.LoginError(f"users[].user.exec.command: {command} exited with {done.returncode}")
    return parse_credential(done.stdout[: c.EXEC_PLUGIN_OUTPUT_LIMIT], api_version)


def _cluster_info(cluster: dict[str, Any]) -> dict[str, Any]:
    info: dict[str, Any] = {"server": cluster.get("server", "")}
    for field in ("certificate-authority-data", "insecure-skip-tls-verify", "proxy-url", "tls-server-name"):
        if field in cluster:
            info[field] = cluster[field]
    extension = next(
        (
            e.get("extension")
            for e in cluster.get("extensions") or []
            if e.get("name") == "client.authentication.k8s.io/exec"
        ),
        None,
    )
    if extension is not None:
        info["config"] = extension
    return info


def parse_credential(output: bytes, api_version: str) -> ExecCredential:
    """An ExecCredential's status; LoginError naming the field (never its value) if unusable."""
    try:
        body = json.loads(output)
    except ValueError:
        raise kopf.LoginError("exec plugin: the output is not an ExecCredential in JSON") from None
    if (
        not isinstance(body, dict)
        or body.get("kind") != "ExecCredential"
        or body.get("apiVersion") != api_version
    ):
        raise kopf.LoginError(f"exec plugin: the output is not an ExecCredential of {api_version}")
    status = body.get("status")
    if not isinstance(status, dict):
        raise kopf.LoginError("exec plugin: status: required")
    token, certificate, key = (status.get(f) for f in ("token", "clientCertificateData", "clientKeyData"))
    if not all(v is None or (isinstance(v, str) and v) for v in (token, certificate, key)):
        raise kopf.LoginError(
            "exec plugin: status.token, clientCertificateData and clientKeyData must be strings"
        )
    if bool(certificate) != bool(key):
        raise kopf.LoginError("exec plugin: status.clientCertificateData and clientKeyData come together")
    if not token and not certificate:
        raise kopf.LoginError("exec plugin: status.token or status.clientCertificateData: required")
    return ExecCredential(token, certificate, key, _expiration(status.get("expirationTimestamp")))


def _expiration(value: Any) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise kopf.LoginError("exec plugin: status.expirationTimestamp: not an RFC 3339 time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
