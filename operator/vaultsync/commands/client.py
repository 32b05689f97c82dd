"""The CLI's view of the cluster: the user's kubeconfig, the user's rights, a few reads and one patch.

The CLI must act as the person running it, never as the operator: it logs in from the
kubeconfig only (`--kubeconfig`, `--context`, including `exec` credential plugins through
`kubeexec`), even inside a Pod whose ServiceAccount token `kube.connection_info` would
prefer. It reuses the operator's `Kube` client (one aiohttp session, retries of 429/5xx)
and adds the list calls the operator never needs, each a GET, and the merge patch of an
ExternalSecret's annotations that `sync` and `respond` make.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import kopf
import yaml

from vaultsync import constants as c
from vaultsync.errors import KubeNotFound
from vaultsync.kube import MERGE_PATCH, WORKLOAD_KINDS, Body, Kube
from vaultsync.kubeexec import kubeconfig_exec


class CliError(Exception):
    """A failure the CLI reports in one line and exits 1 for."""


def _segments(*parts: str) -> str:
    return "/".join(quote(part, safe="") for part in parts)


def custom_path(plural: str, namespace: str | None, *rest: str) -> str:
    if namespace is None:
        return _segments("apis", c.GROUP, c.VERSION, plural, *rest)
    return _segments("apis", c.GROUP, c.VERSION, "namespaces", namespace, plural, *rest)


# Where kopf finds a Pod's ServiceAccount token (kopf.login_with_service_account).
POD_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


@contextmanager
def kubeconfig_env(kubeconfig: str | None, context: str | None) -> Iterator[None]:
    """KUBECONFIG as the flags say, for the whole command: kopf's and kubeexec's readers of it
    use it to log in, and again to renew an expiring `exec` credential. `--context` becomes a
    private copy (mode 0600, removed after) of the merged files with that current-context."""
    saved = os.environ.get("KUBECONFIG")
    try:
        if kubeconfig:
            os.environ["KUBECONFIG"] = kubeconfig
        if context is None:
            yield
            return
        paths = os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
        merged: dict[str, Any] = {"apiVersion": "v1", "kind": "Config", "current-context": context}
        for section in ("clusters", "contexts", "users"):
            merged[section] = []
        names: dict[str, set[str]] = {"clusters": set(), "contexts": set(), "users": set()}
        for path in filter(None, (p.strip() for p in paths.split(os.pathsep))):
            loaded = yaml.safe_load(Path(path).expanduser().read_text(encoding="utf-8")) or {}
            for section, seen in names.items():
                for item in loaded.get(section) or []:
                    if item.get("name") not in seen:
                        seen.add(item.get("name"))
                        merged[section].append(item)
        if context not in names["contexts"]:
            raise CliError(f"--context: no context {context!r} in the kubeconfig")
        with tempfile.TemporaryDirectory(prefix="vaultsync-") as directory:
            private = Path(directory) / "kubeconfig"
            private.touch(mode=0o600)
            private.write_text(yaml.safe_dump(merged), encoding="utf-8")
            os.environ["KUBECONFIG"] = str(private)
            yield
    finally:
        if saved is None:
            os.environ.pop("KUBECONFIG", None)
        else:
            os.environ["KUBECONFIG"] = saved


def user_login() -> kopf.ConnectionInfo:
    """The user's credentials from the kubeconfig (inside `kubeconfig_env`); a Pod's
    ServiceAccount is never used."""
    try:
        info = kopf.login_with_kubeconfig(settings=kopf.OperatorSettings())
        if info is None:
            raise CliError("no kubeconfig: set --kubeconfig or KUBECONFIG, or create ~/.kube/config")
        return kubeconfig_exec(info)
    except (kopf.LoginError, KeyError, OSError, yaml.YAMLError) as exc:
        raise CliError(f"kubeconfig: {exc}") from None


class UserKube(Kube):
    """The operator's client, logged in as the user, with the reads the CLI needs."""

    def __init__(self, info: kopf.ConnectionInfo) -> None:
        super().__init__(info, connections=4)
        self.default_namespace = info.default_namespace or "default"

    async def _relogin(self, seen: kopf.ConnectionInfo) -> None:
        """The shared client renews credentials as the operator would: a Pod's ServiceAccount
        first. In a Pod, the CLI stops instead of acting as that ServiceAccount."""
        if POD_TOKEN.exists():
            raise CliError("the kubeconfig's credentials expired or were refused; run the command again")
        await super()._relogin(seen)

    async def get(self, path: str, **query: str) -> Body:
        if query:
            path = f"{path}?{urlencode(query)}"
        return await self._json("get", path.split("?")[0].rsplit("/", 1)[-1], "GET", path, idempotent=True)

    async def list_custom(self, plural: str, namespace: str | None, selector: str = "") -> list[Body]:
        query = {"labelSelector": selector} if selector else {}
        items: list[Body] = (await self.get(custom_path(plural, namespace), **query)).get("items") or []
        return items

    async def served_plurals(self) -> set[str]:
        """The resources of vaultsync's API group the API server serves (ClusterExternalSecret
        only where its CRD is installed)."""
        body = await self.get(_segments("apis", c.GROUP, c.VERSION))
        return {r["name"] for r in body.get("resources") or [] if "/" not in r["name"]}

    async def namespaces(self) -> list[str]:
        items = (await self.get(_segments("api", "v1", "namespaces"))).get("items") or []
        return sorted(item["metadata"]["name"] for item in items)

    async def list_kind(self, kind: str, namespace: str) -> list[Body]:
        """The workloads of one kind (`WORKLOAD_KINDS`) in one namespace; none where the
        API server does not serve the kind (no Argo Rollouts CRD)."""
        api_version, plural = WORKLOAD_KINDS[kind]
        path = _segments("apis", *api_version.split("/"), "namespaces", namespace, plural)
        try:
            items: list[Body] = (await self.get(path)).get("items") or []
        except KubeNotFound:
            return []
        return items

    async def secret_metadata(self, namespace: str, name: str) -> Body | None:
        """A Secret's metadata (its values are read, as GET returns them, and dropped here)."""
        try:
            body = await self.read_secret(namespace, name)
        except KubeNotFound:
            return None
        metadata: Body = body["metadata"]
        return metadata

    async def text(self, path: str, **query: str) -> str:
        """A plain-text answer (a Pod's log)."""
        full = f"{path}?{urlencode(query)}" if query else path
        return (await self._request("get", "pods/log", "GET", full, idempotent=True)).decode(errors="replace")

    async def annotate(self, plural: str, namespace: str, name: str, annotations: Mapping[str, str]) -> None:
        path = custom_path(plural, namespace, name)
        patch = {"metadata": {"annotations": dict(annotations)}}
        await self._request("patch", plural, "PATCH", path, patch, MERGE_PATCH, idempotent=True)


def pod_log_path(namespace: str, pod: str) -> str:
    return _segments("api", "v1", "namespaces", namespace, "pods", pod, "log")
