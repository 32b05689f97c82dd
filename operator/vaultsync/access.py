"""Every Kubernetes permission the operator uses, and which call uses it.

The chart's RBAC must grant exactly these: a verb nobody uses is attack surface if the
operator is ever compromised, and a missing one is a sync that fails in production.
tests/chart/test_chart_rbac_verbs.py holds three things to this table: kube.py's
request methods (each `Kube` method's verbs, read from its source), kopf's watches
(read from the handler registry), and the rendered chart in every mode.
"""

from __future__ import annotations

from dataclasses import dataclass

from vaultsync import constants as c

# kopf lists and then watches each resource it has a handler for, and the CRDs (to see
# resources appear); in namespaced mode it also lists and watches Namespaces to learn
# which of the named ones exist. It writes nothing else (no peering: the leader election
# Lease, not kopf's peering, keeps standby replicas idle): only `on.event` handlers exist and
# its own Events are off (tuning.py).
KOPF_WATCH = "kopf watch"
KOPF_CRD_SCAN = "kopf resource scan"
KOPF_NAMESPACE_SCAN = "kopf namespace scan (namespaced mode)"

CORE, APPS, CRDS_GROUP = "", "apps", "apiextensions.k8s.io"
COORDINATION = "coordination.k8s.io"
WORKLOADS = ("deployments", "statefulsets", "daemonsets")
BATCH, ARGO = "batch", "argoproj.io"
# Every restartable kind as (apiGroup, resource): unmanaged.py watches them to know which
# ConfigMaps and Secrets are referenced; the rollouts list, read and patch them.
RESTARTABLE = (*((APPS, w) for w in WORKLOADS), (BATCH, "cronjobs"), (ARGO, "rollouts"))


@dataclass(frozen=True)
class Access:
    """One (apiGroup, resource, verb) and the call that needs it (`Kube.<method>` or kopf)."""

    group: str
    resource: str
    verb: str
    used_by: str


def _each(group: str, resources: tuple[str, ...], verb: str, used_by: str) -> tuple[Access, ...]:
    return tuple(Access(group, r, verb, used_by) for r in resources)


API_ACCESS: tuple[Access, ...] = (
    # Secrets: targets, store credentials, and the operator's own HMAC key.
    Access(CORE, "secrets", "get", "Kube.read_secret"),
    Access(CORE, "secrets", "create", "Kube.create_secret"),
    Access(CORE, "secrets", "update", "Kube.replace_secret"),
    Access(CORE, "secrets", "delete", "Kube.delete_secret"),
    # Stores are read on demand when a storeRef names one the watch has not delivered yet.
    Access(c.GROUP, c.SECRET_STORES, "get", "Kube.read_custom"),
    Access(c.GROUP, c.CLUSTER_SECRET_STORES, "get", "Kube.read_custom"),
    *_each(
        c.GROUP,
        (f"{c.EXTERNAL_SECRETS}/status", f"{c.SECRET_STORES}/status", f"{c.CLUSTER_SECRET_STORES}/status"),
        "patch",
        "Kube.patch_status",
    ),
    Access(CORE, "namespaces", "get", "Kube.namespace_labels"),
    # ClusterExternalSecrets (clustersecrets.py): the ExternalSecrets they provision, created,
    # replaced (guarded by resourceVersion) and deleted (uid precondition), and read after a
    # 409 to tell their own from a tenant's.
    Access(c.GROUP, c.EXTERNAL_SECRETS, "get", "Kube.read_custom"),
    Access(c.GROUP, c.EXTERNAL_SECRETS, "create", "Kube.create_custom"),
    Access(c.GROUP, c.EXTERNAL_SECRETS, "update", "Kube.replace_custom"),
    Access(c.GROUP, c.EXTERNAL_SECRETS, "delete", "Kube.delete_custom"),
    Access(c.GROUP, f"{c.CLUSTER_EXTERNAL_SECRETS}/status", "patch", "Kube.patch_status"),
    Access(CORE, "serviceaccounts/token", "create", "Kube.request_token"),
    Access("authentication.k8s.io", "tokenreviews", "create", "Kube.api_server_accepts"),
    Access(CORE, "events", "create", "Kube.create_event"),
    # Leader election's Lease, in the operator's namespace only (a Role there).
    Access(COORDINATION, "leases", "get", "Kube.read_lease"),
    Access(COORDINATION, "leases", "create", "Kube.create_lease"),
    Access(COORDINATION, "leases", "update", "Kube.replace_lease"),
    *(Access(group, resource, "list", "Kube.list_workloads") for group, resource in RESTARTABLE),
    *(Access(group, resource, "get", "Kube.read_workload") for group, resource in RESTARTABLE),
    *(Access(group, resource, "patch", "Kube.patch_workload") for group, resource in RESTARTABLE),
    # A ConfigMap a workload newly references, when the watch has not delivered it (unmanaged.py).
    Access(CORE, "configmaps", "get", "Kube.read_configmap"),
    # kopf.
    *(
        Access(group, resource, verb, KOPF_WATCH)
        for group, resource in (
            (c.GROUP, c.EXTERNAL_SECRETS),
            (c.GROUP, c.SECRET_STORES),
            (c.GROUP, c.CLUSTER_SECRET_STORES),
            (c.GROUP, c.CLUSTER_EXTERNAL_SECRETS),
            (CORE, "namespaces"),
            (CORE, "secrets"),
            (CORE, "configmaps"),
            *RESTARTABLE,
        )
        for verb in ("list", "watch")
    ),
    *_each(CRDS_GROUP, ("customresourcedefinitions",), "list", KOPF_CRD_SCAN),
    *_each(CRDS_GROUP, ("customresourcedefinitions",), "watch", KOPF_CRD_SCAN),
    *_each(CORE, ("namespaces",), "list", KOPF_NAMESPACE_SCAN),
    *_each(CORE, ("namespaces",), "watch", KOPF_NAMESPACE_SCAN),
)
