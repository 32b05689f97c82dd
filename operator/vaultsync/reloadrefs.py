"""What a workload asked to be restarted for: Secrets and ConfigMaps, by name or by reference.

A workload's opt-in is written by its namespace's tenant, so it is read as hostile input:
only object names (never `namespace/name`: a workload only ever reads objects of its own
namespace, and naming another's must not make the operator watch it for them), at most
`MAX_RELOAD_NAMES` per annotation, and a bad value refuses that annotation as a whole with
its field named, so a typo never turns into a partial opt-in nobody notices.

vaultsync's own annotations and Stakater Reloader's (as aliases, so a cluster can drop
Reloader without editing workloads) both map to one set of watch keys: a Secret is watched
as its bare name (the key the rollouts have always used), a ConfigMap as
`configmap/<name>` (a `/` is never part of an object name, so the two cannot collide).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vaultsync import constants as c

CONFIGMAP_PREFIX = "configmap/"
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_NAME_MAX = 253

# Where each kind keeps its pod template.
_TEMPLATE_PATHS: dict[str, tuple[str, ...]] = {
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "Rollout": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}


def configmap_key(name: str) -> str:
    return CONFIGMAP_PREFIX + name


def describe(keys: list[str]) -> str:
    """`Secret a, b and ConfigMap c`: how Events name the changes behind a restart."""
    secrets = [k for k in keys if not k.startswith(CONFIGMAP_PREFIX)]
    configmaps = [k[len(CONFIGMAP_PREFIX) :] for k in keys if k.startswith(CONFIGMAP_PREFIX)]
    parts = [
        f"{kind} {', '.join(names)}"
        for kind, names in (("Secret", secrets), ("ConfigMap", configmaps))
        if names
    ]
    return " and ".join(parts)


def pod_template(kind: str, workload: Mapping[str, Any]) -> Mapping[str, Any]:
    node: Any = workload
    for step in _TEMPLATE_PATHS.get(kind, ("spec", "template")):
        node = (node or {}).get(step) if isinstance(node, Mapping) else None
    return node if isinstance(node, Mapping) else {}


def _ref_name(ref: Any, field_name: str = "name") -> str | None:
    if isinstance(ref, Mapping) and isinstance(ref.get(field_name), str) and ref[field_name]:
        return str(ref[field_name])
    return None


def referenced(template: Mapping[str, Any]) -> tuple[set[str], set[str]]:
    """(Secrets, ConfigMaps) a pod template reads: env, envFrom, volumes, projected volumes,
    in containers and init containers."""
    spec = template.get("spec") or {}
    secrets: set[str] = set()
    configmaps: set[str] = set()

    def add(into: set[str], name: str | None) -> None:
        if name is not None:
            into.add(name)

    for container in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        for env in container.get("env") or []:
            source = env.get("valueFrom") or {}
            add(secrets, _ref_name(source.get("secretKeyRef")))
            add(configmaps, _ref_name(source.get("configMapKeyRef")))
        for source in container.get("envFrom") or []:
            add(secrets, _ref_name(source.get("secretRef")))
            add(configmaps, _ref_name(source.get("configMapRef")))
    for volume in spec.get("volumes") or []:
        add(secrets, _ref_name(volume.get("secret"), "secretName"))
        add(configmaps, _ref_name(volume.get("configMap")))
        for source in (volume.get("projected") or {}).get("sources") or []:
            add(secrets, _ref_name(source.get("secret")))
            add(configmaps, _ref_name(source.get("configMap")))
    return secrets, configmaps


@dataclass
class Watched:
    """A workload's watch keys; `match_only` keys count only for an object annotated with
    Reloader's `match` (its search mode). `refused` names the annotations that were refused."""

    keys: set[str] = field(default_factory=set)
    match_only: set[str] = field(default_factory=set)
    refused: list[str] = field(default_factory=list)

    def wants(self, key: str, matched: bool) -> bool:
        return key in self.keys or (matched and key in self.match_only)

    def all_keys(self) -> set[str]:
        return self.keys | self.match_only


def _names(annotations: Mapping[str, str], annotation: str, refused: list[str]) -> set[str]:
    raw = annotations.get(annotation)
    if not raw:
        return set()
    names = [n.strip() for n in str(raw).split(",") if n.strip()]
    where = f"metadata.annotations[{annotation}]"
    if len(names) > c.MAX_RELOAD_NAMES:
        refused.append(f"{where}: {len(names)} names, at most {c.MAX_RELOAD_NAMES}")
        return set()
    for name in names:
        if "/" in name:
            refused.append(
                f"{where}: {name[:64]!r} is not a name: names only, in the workload's own namespace"
            )
            return set()
        if len(name) > _NAME_MAX or not _NAME.match(name):
            refused.append(f"{where}: {name[:64]!r} is not a valid object name")
            return set()
    return set(names)


def _true(annotations: Mapping[str, str], annotation: str) -> bool:
    return str(annotations.get(annotation, "")).lower() == "true"


def watched(kind: str, workload: Mapping[str, Any]) -> Watched:
    """Everything `workload` asked to be restarted for (empty: it did not opt in)."""
    annotations: Mapping[str, str] = (workload.get("metadata") or {}).get("annotations") or {}
    out = Watched()
    out.keys |= _names(annotations, c.ANNOTATION_RELOAD, out.refused)
    out.keys |= _names(annotations, c.RELOADER_SECRET_RELOAD, out.refused)
    configmaps = _names(annotations, c.ANNOTATION_RELOAD_CONFIGMAPS, out.refused)
    configmaps |= _names(annotations, c.RELOADER_CONFIGMAP_RELOAD, out.refused)
    out.keys |= {configmap_key(n) for n in configmaps}
    auto_all = _true(annotations, c.ANNOTATION_AUTO_RELOAD) or _true(annotations, c.RELOADER_AUTO)
    auto_secrets = auto_all or _true(annotations, c.RELOADER_SECRET_AUTO)
    auto_configmaps = auto_all or _true(annotations, c.RELOADER_CONFIGMAP_AUTO)
    search = not auto_all and _true(annotations, c.RELOADER_SEARCH)
    if auto_secrets or auto_configmaps or search:
        secrets, maps = referenced(pod_template(kind, workload))
        refs = (secrets if auto_secrets or search else set()) | {
            configmap_key(n) for n in maps if auto_configmaps or search
        }
        if search:
            out.match_only |= {k for k in refs if k not in out.keys}
        else:
            out.keys |= refs
    return out
