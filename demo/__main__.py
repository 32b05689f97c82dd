"""The demo's story: sync a Secret from AWS Secrets Manager, rotate it, watch the app roll.

Every step prints what it does and how long the demo has run, so a person can follow it
and see where time goes. Whatever the demo starts (moto, the operator, the namespace) it
stops or deletes at the end, also on failure or Ctrl-C; a cluster it started is left
running, and the last lines say how to stop it.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import secrets
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from subprocess import SubprocessError
from typing import Any, TypeVar

import yaml
from botocore.exceptions import BotoCoreError, ClientError
from kubernetes.client import ApiException
from tests.env import paths
from tests.env.kube import KubeApi
from tests.env.operator import OperatorProcess

from demo.cluster import choose
from demo.moto import MotoServer

T = TypeVar("T")

EXAMPLES = paths.REPO / "examples"
WORKDIR = paths.testenv_dir() / "demo"
GROUP, VERSION = "vaultsync.io", "v1alpha1"
PLURALS = {"SecretStore": "secretstores", "ExternalSecret": "externalsecrets"}
REMOTE_KEY = "shop/database"
STEPS = 7
WAIT_SECONDS = 180.0


class DemoFailed(RuntimeError):
    """A step did not reach its goal; the message says what was awaited and last seen."""


class Story:
    """Numbered steps and indented details, each line stamped with the elapsed time."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.number = 0

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def step(self, text: str) -> None:
        self.number += 1
        print(f"\n[{self.elapsed():6.1f}s] {self.number}/{STEPS} {text}", flush=True)

    def say(self, text: str) -> None:
        print(f"[{self.elapsed():6.1f}s]     {text}", flush=True)


def wait_for(check: Callable[[], T | None], what: str, timeout: float = WAIT_SECONDS) -> T:
    """Poll `check` until it returns something other than None."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None:
            return result
        if time.monotonic() >= deadline:
            raise DemoFailed(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.25)


def documents(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((EXAMPLES / name).read_text()) if d]


def create(api: KubeApi, namespace: str, body: dict[str, Any]) -> None:
    kind = body["kind"]
    if kind == "Secret":
        api.core.create_namespaced_secret(namespace, body)
    elif kind == "Deployment":
        api.apps.create_namespaced_deployment(namespace, body)
    else:
        api.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURALS[kind], body)


def install_crds(api: KubeApi) -> list[str]:
    """Create or replace every CRD in crds/ and wait until the API server serves them."""
    names: list[str] = []
    for path in sorted(paths.CRDS.glob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            name = crd["metadata"]["name"]
            try:
                existing = api.apiextensions.read_custom_resource_definition(name)
            except ApiException as exc:
                if exc.status != 404:
                    raise
                api.apiextensions.create_custom_resource_definition(crd)
            else:
                crd["metadata"]["resourceVersion"] = existing.metadata.resource_version
                api.apiextensions.replace_custom_resource_definition(name, crd)
            names.append(name)
    for name in names:
        wait_for(partial(_established, api, name), f"CRD {name} to be Established", 60)
    return names


def _established(api: KubeApi, name: str) -> bool | None:
    crd = api.apiextensions.read_custom_resource_definition(name)
    conditions = {c.type: c.status for c in (crd.status.conditions or [])}
    return True if conditions.get("Established") == "True" else None


def masked(secret: Any) -> str:
    """A Secret's keys with their sizes, never their values."""
    data = secret.data or {}
    return "  ".join(f"{k}=•••••• ({len(base64.b64decode(v))} bytes)" for k, v in sorted(data.items()))


def status(api: KubeApi, namespace: str, plural: str, name: str) -> dict[str, Any]:
    body = api.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
    found: dict[str, Any] = body.get("status") or {}
    return found


def ready_condition(api: KubeApi, namespace: str, plural: str, name: str) -> dict[str, Any]:
    conditions = status(api, namespace, plural, name).get("conditions") or []
    return next((c for c in conditions if c["type"] == "Ready"), {})


def read_version(api: KubeApi, namespace: str) -> str:
    """The AWS version id the ExternalSecret last synced (a version id, not a value)."""
    versions = status(api, namespace, "externalsecrets", "shop-db").get("remoteVersions") or {}
    return str(versions.get(REMOTE_KEY, "?"))


def read_secret(api: KubeApi, namespace: str, name: str) -> Any | None:
    try:
        return api.core.read_namespaced_secret(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def replica_sets(api: KubeApi, namespace: str, app: str) -> list[Any]:
    found = api.apps.list_namespaced_replica_set(namespace, label_selector=f"app={app}").items
    return sorted(found, key=lambda rs: rs.metadata.creation_timestamp)


def rolled_out(api: KubeApi, namespace: str, name: str) -> Any | None:
    deployment = api.apps.read_namespaced_deployment(name, namespace)
    status, want = deployment.status, deployment.spec.replicas
    done = (
        status.observed_generation == deployment.metadata.generation
        and status.updated_replicas == want
        and status.available_replicas == want
        and (status.replicas or 0) == want
    )
    return deployment if done else None


def show_replica_sets(story: Story, api: KubeApi, namespace: str, app: str) -> None:
    for rs in replica_sets(api, namespace, app):
        ready = rs.status.ready_replicas or 0
        story.say(f"ReplicaSet {rs.metadata.name}: {ready}/{rs.spec.replicas} ready")


def events(api: KubeApi, namespace: str, name: str, reason: str) -> list[Any]:
    found = api.core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}")
    return [e for e in found.items if e.reason == reason]


def run(args: argparse.Namespace, story: Story, cleanup: contextlib.ExitStack) -> None:
    story.step("a cluster")
    chosen = choose(args.kubeconfig)
    api = KubeApi.from_kubeconfig(chosen.kubeconfig)
    cleanup.callback(api.client.close)
    nodes = api.core.list_node().items
    story.say(f"using {chosen.how}: Kubernetes {api.version.get_code().git_version}, {len(nodes)} node(s)")
    cleanup.callback(print, f"\nThe cluster is left running ({chosen.how}); to stop it: {chosen.stop_hint}")

    story.step("a local AWS Secrets Manager (moto)")
    moto = MotoServer(WORKDIR / "moto.log")
    cleanup.callback(moto.stop)
    moto.start()
    store_docs = documents("aws-store.yaml")
    keys = next(d for d in store_docs if d["kind"] == "Secret")["stringData"]
    aws = moto.client(keys["id"], keys["secret"])
    first = {"username": "shop", "password": secrets.token_urlsafe(12), "host": "db.shop.svc"}
    created = aws.create_secret(Name=REMOTE_KEY, SecretString=json.dumps(first))
    story.say(f"moto listens on {moto.endpoint}; secret {REMOTE_KEY} version {created['VersionId']}")

    story.step("the CRDs and a namespace")
    story.say(f"CRDs: {', '.join(install_crds(api))}")
    namespace = api.core.create_namespace(
        {
            "metadata": {
                "generateName": "vaultsync-demo-",
                "labels": {"app.kubernetes.io/part-of": "vaultsync-demo"},
            }
        }
    ).metadata.name
    if args.keep:
        cleanup.callback(
            print, f"Namespace {namespace} is kept (--keep): kubectl delete namespace {namespace}"
        )
    else:
        cleanup.callback(api.core.delete_namespace, namespace, propagation_policy="Background")
    story.say(f"namespace {namespace}")

    story.step("the operator")
    operator = OperatorProcess(
        kubeconfig=chosen.kubeconfig,
        namespace=namespace,
        log_path=WORKDIR / "operator.log",
        args=("--namespace", namespace),
        env={"VAULTSYNC_ENABLE_FAKE_PROVIDER": "false"},  # the demo's store is aws, as a user's
    )
    WORKDIR.mkdir(parents=True, exist_ok=True)
    operator.log_path.write_text("")
    cleanup.callback(operator.stop)
    operator.start()
    story.say(f"`vaultsync run --namespace {namespace}` is healthy at {operator.health_url}")
    story.say(f"its log: {operator.log_path}")

    story.step("examples/: a store, an ExternalSecret, an annotated Deployment")
    for body in store_docs:
        if body["kind"] == "SecretStore":
            body["spec"]["provider"]["aws"]["endpoint"] = moto.endpoint
        create(api, namespace, body)
    wait_for(
        lambda: (
            True if ready_condition(api, namespace, "secretstores", "aws").get("status") == "True" else None
        ),
        "SecretStore aws to be Ready",
    )
    story.say(f"SecretStore aws is Ready (endpoint {moto.endpoint})")
    for name in ("aws-externalsecret.yaml", "deployment.yaml"):
        for body in documents(name):
            create(api, namespace, body)
            story.say(f"applied {body['kind']} {body['metadata']['name']} from examples/{name}")
    secret = wait_for(lambda: read_secret(api, namespace, "shop-db"), "Secret shop-db to be written")
    condition = ready_condition(api, namespace, "externalsecrets", "shop-db")
    story.say(
        f"ExternalSecret shop-db: Ready={condition.get('status')} {condition.get('reason')}, "
        f"read {REMOTE_KEY} version {read_version(api, namespace)}"
    )
    story.say(f"Secret shop-db: {masked(secret)}")
    wait_for(lambda: rolled_out(api, namespace, "shop-api"), "Deployment shop-api to roll out")
    story.say("Deployment shop-api is available, reading DATABASE_URL from Secret shop-db")
    show_replica_sets(story, api, namespace, "shop-api")

    story.step("rotate: a new password in AWS Secrets Manager")
    before = secret.metadata.annotations.get(f"{GROUP}/data-fingerprint")
    old_sets = {rs.metadata.name for rs in replica_sets(api, namespace, "shop-api")}
    rotated = {**first, "password": secrets.token_urlsafe(12)}
    put = aws.put_secret_value(SecretId=REMOTE_KEY, SecretString=json.dumps(rotated))
    rotated_at = time.monotonic()
    story.say(f"put_secret_value {REMOTE_KEY}: new version {put['VersionId']}")

    def updated() -> Any | None:
        found = read_secret(api, namespace, "shop-db")
        changed = found is not None and found.metadata.annotations.get(f"{GROUP}/data-fingerprint") != before
        return found if changed else None

    secret = wait_for(updated, "Secret shop-db to get the new value")
    written = time.monotonic()
    story.say(f"Secret shop-db updated {written - rotated_at:.1f}s after the rotation: {masked(secret)}")
    wait_for(
        lambda: True if read_version(api, namespace) == put["VersionId"] else None,
        f"ExternalSecret shop-db to report version {put['VersionId']}",
    )
    story.say(f"ExternalSecret shop-db: read {REMOTE_KEY} version {put['VersionId']}")
    new_set = wait_for(
        lambda: next(
            (rs for rs in replica_sets(api, namespace, "shop-api") if rs.metadata.name not in old_sets), None
        ),
        "a new ReplicaSet of shop-api",
    )
    story.say(
        f"Deployment shop-api restarted {time.monotonic() - written:.1f}s after the Secret changed "
        f"(after the operator's coalescing window): new ReplicaSet {new_set.metadata.name}"
    )

    story.step("the rollout")
    wait_for(lambda: rolled_out(api, namespace, "shop-api"), "the rolling update of shop-api to finish")
    story.say(f"rolling update complete {time.monotonic() - rotated_at:.1f}s after the rotation")
    show_replica_sets(story, api, namespace, "shop-api")
    for event in events(api, namespace, "shop-api", "Restarted"):
        story.say(f"Event on Deployment shop-api: {event.reason}: {event.message}")
    for event in events(api, namespace, "shop-db", "WorkloadRestarted"):
        story.say(f"Event on ExternalSecret shop-db: {event.reason}: {event.message}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--kubeconfig",
        type=Path,
        help="use this cluster (default: the current kubeconfig if it answers, else kind, "
        "else the local control plane)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the demo namespace for exploring")
    args = parser.parse_args(argv)
    story = Story()
    print("vaultsync demo: a Secret synced from AWS Secrets Manager, rotated, and rolled out to an app")
    try:
        with contextlib.ExitStack() as cleanup:
            run(args, story, cleanup)
            print(f"\n[{story.elapsed():6.1f}s] done: the new value reached the pods, untouched by hand")
            story.say("cleaning up: stopping the operator and moto, deleting the demo namespace")
    except (
        DemoFailed,
        ApiException,
        ClientError,
        BotoCoreError,
        OSError,
        RuntimeError,
        SubprocessError,
    ) as exc:
        print(f"\n[{story.elapsed():6.1f}s] FAILED at step {story.number}/{STEPS}: {exc}", file=sys.stderr)
        print(f"logs: {WORKDIR}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
    sys.exit(130)
