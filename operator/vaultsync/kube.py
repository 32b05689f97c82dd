"""Every Kubernetes API call the operator makes, and nothing else.

One place to see what the operator reads and writes (which is what its RBAC
must allow), to count writes, and to convert `ApiException` into the
operator's own errors. The official client is blocking, so calls run on a
bounded thread pool; responses are read as plain JSON dicts, which is much
cheaper than the client's model classes for thousands of objects.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from vaultsync import constants as c
from vaultsync.errors import KubeConflict, KubeError, KubeForbidden, KubeNotFound, VaultsyncError
from vaultsync.metrics import KUBE_REQUESTS

Body = dict[str, Any]

WORKLOAD_KINDS = {
    "Deployment": "deployments",
    "StatefulSet": "statefulsets",
    "DaemonSet": "daemonsets",
}


@dataclass(frozen=True)
class ObjectRef:
    """Enough of an object to post an Event about it."""

    api_version: str
    kind: str
    namespace: str | None
    name: str
    uid: str


class Kube:
    """The operator's Kubernetes client: async methods over the blocking official client."""

    def __init__(self, api_client: client.ApiClient, workers: int = 16) -> None:
        self._api = api_client
        self._core = client.CoreV1Api(api_client)
        self._custom = client.CustomObjectsApi(api_client)
        self._apps = client.AppsV1Api(api_client)
        self._auth = client.AuthenticationV1Api(api_client)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kube")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._api.close()

    async def _call(self, verb: str, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> bytes:
        """Runs one request on the pool; returns the raw response body.

        The body is read and the connection handed back to the pool in the worker
        thread: a response left unread is closed when collected, and every request
        would then pay for a new TLS connection.
        """
        KUBE_REQUESTS.labels(verb=verb, resource=what).inc()
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, partial(_request, fn, *args, **kwargs))
        except ApiException as exc:
            raise _convert(exc, verb, what) from None
        except (HTTPError, OSError) as exc:
            raise KubeError(f"{verb} {what}: API server unreachable ({type(exc).__name__})") from None

    async def _json(self, verb: str, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Body:
        result: Body = json.loads(await self._call(verb, what, fn, *args, **kwargs))
        return result

    # Secrets -------------------------------------------------------------------------------

    async def read_secret(self, namespace: str, name: str) -> Body:
        return await self._json("get", "secrets", self._core.read_namespaced_secret, name, namespace)

    async def create_secret(self, namespace: str, body: Body) -> Body:
        return await self._json("create", "secrets", self._core.create_namespaced_secret, namespace, body)

    async def replace_secret(self, namespace: str, name: str, body: Body) -> Body:
        """Full replace, guarded by the body's resourceVersion (409 if someone else wrote first)."""
        return await self._json(
            "update", "secrets", self._core.replace_namespaced_secret, name, namespace, body
        )

    async def delete_secret(self, namespace: str, name: str, uid: str) -> None:
        options = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=uid))
        await self._call(
            "delete", "secrets", self._core.delete_namespaced_secret, name, namespace, body=options
        )

    # vaultsync's own resources -------------------------------------------------------------

    async def read_custom(self, plural: str, namespace: str | None, name: str) -> Body:
        if namespace is None:
            return await self._json(
                "get",
                plural,
                self._custom.get_cluster_custom_object,
                c.GROUP,
                c.VERSION,
                plural,
                name,
            )
        return await self._json(
            "get",
            plural,
            self._custom.get_namespaced_custom_object,
            c.GROUP,
            c.VERSION,
            namespace,
            plural,
            name,
        )

    async def patch_status(self, plural: str, namespace: str | None, name: str, status: Body) -> None:
        body = {"status": status}
        if namespace is None:
            await self._call(
                "patch",
                f"{plural}/status",
                self._custom.patch_cluster_custom_object_status,
                c.GROUP,
                c.VERSION,
                plural,
                name,
                body,
            )
        else:
            await self._call(
                "patch",
                f"{plural}/status",
                self._custom.patch_namespaced_custom_object_status,
                c.GROUP,
                c.VERSION,
                namespace,
                plural,
                name,
                body,
            )

    # Namespaces, tokens, events ------------------------------------------------------------

    async def namespace_labels(self, name: str) -> dict[str, str]:
        body = await self._json("get", "namespaces", self._core.read_namespace, name)
        labels: dict[str, str] = body.get("metadata", {}).get("labels") or {}
        return labels

    async def request_token(
        self, namespace: str, service_account: str, audiences: Sequence[str], seconds: int = 600
    ) -> str:
        request = client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=list(audiences), expiration_seconds=seconds)
        )
        body = await self._json(
            "create",
            "serviceaccounts/token",
            self._core.create_namespaced_service_account_token,
            service_account,
            namespace,
            request,
        )
        token: str = body["status"]["token"]
        return token

    async def post_event(self, ref: ObjectRef, type_: str, reason: str, message: str) -> None:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        namespace = ref.namespace or "default"
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{ref.name}.", "namespace": namespace},
            "involvedObject": {
                "apiVersion": ref.api_version,
                "kind": ref.kind,
                "name": ref.name,
                "namespace": ref.namespace,
                "uid": ref.uid,
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "firstTimestamp": now[:19] + "Z",
            "lastTimestamp": now[:19] + "Z",
            "eventTime": now,
            "count": 1,
            "source": {"component": "vaultsync"},
            "reportingComponent": "vaultsync.io/operator",
            "reportingInstance": "vaultsync",
            "action": reason,
        }
        await self._call(
            "create",
            "events",
            self._core.create_namespaced_event,
            namespace,
            event,
        )

    async def ensure_hmac_key(self, namespace: str) -> bytes:
        """The operator's data-HMAC key: created once, random, kept in its own namespace."""
        try:
            body = await self.read_secret(namespace, c.HMAC_KEY_SECRET)
        except KubeNotFound:
            fresh = base64.b64encode(secrets.token_bytes(32)).decode()
            secret = {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": c.HMAC_KEY_SECRET,
                    "labels": {"app.kubernetes.io/part-of": "vaultsync"},
                },
                "type": "Opaque",
                "data": {c.HMAC_KEY_FIELD: fresh},
            }
            try:
                body = await self.create_secret(namespace, secret)
            except KubeConflict:  # another replica created it first
                body = await self.read_secret(namespace, c.HMAC_KEY_SECRET)
        return base64.b64decode(body["data"][c.HMAC_KEY_FIELD])

    # Workloads -----------------------------------------------------------------------------

    async def list_workloads(self, namespace: str) -> list[tuple[str, Body]]:
        """Every Deployment, StatefulSet and DaemonSet of a namespace, as (kind, body)."""
        listers = {
            "Deployment": self._apps.list_namespaced_deployment,
            "StatefulSet": self._apps.list_namespaced_stateful_set,
            "DaemonSet": self._apps.list_namespaced_daemon_set,
        }
        out: list[tuple[str, Body]] = []
        for kind, lister in listers.items():
            body = await self._json("list", WORKLOAD_KINDS[kind], lister, namespace)
            out.extend((kind, item) for item in body.get("items", []))
        return out

    async def read_workload(self, kind: str, namespace: str, name: str) -> Body:
        readers = {
            "Deployment": self._apps.read_namespaced_deployment,
            "StatefulSet": self._apps.read_namespaced_stateful_set,
            "DaemonSet": self._apps.read_namespaced_daemon_set,
        }
        return await self._json("get", WORKLOAD_KINDS[kind], readers[kind], name, namespace)

    async def patch_workload(self, kind: str, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        patchers = {
            "Deployment": self._apps.patch_namespaced_deployment,
            "StatefulSet": self._apps.patch_namespaced_stateful_set,
            "DaemonSet": self._apps.patch_namespaced_daemon_set,
        }
        await self._call(
            "patch",
            WORKLOAD_KINDS[kind],
            patchers[kind],
            name,
            namespace,
            dict(patch),
        )


def _request(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> bytes:
    response = fn(*args, _preload_content=False, **kwargs)
    try:
        data: bytes = response.data
    finally:
        response.release_conn()
    return data


def _convert(exc: ApiException, verb: str, what: str) -> VaultsyncError:
    status = exc.status or 0
    if status == 404:
        return KubeNotFound(f"{verb} {what}: not found")
    if status == 409:
        return KubeConflict(f"{verb} {what}: conflict (changed concurrently or already exists)")
    if status == 403:
        return KubeForbidden(f"{verb} {what}: forbidden; the operator's RBAC must allow '{verb}' on '{what}'")
    if status == 422:
        return KubeError(f"{verb} {what}: rejected by the API server as invalid ({exc.reason})")
    return KubeError(f"{verb} {what}: API server answered {status} {exc.reason}")
