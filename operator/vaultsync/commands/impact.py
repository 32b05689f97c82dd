"""`vaultsync impact STORE KEY`: who depends on a remote key, before it is rotated (or after it leaked).

Every ExternalSecret that reads KEY through STORE, the Secret each writes, and every
Deployment, StatefulSet and DaemonSet that opted in to restarts for those Secrets
(`vaultsync.io/reload`, `vaultsync.io/auto-reload`, docs/rollouts.md), across the
namespaces the user may read. STORE is `NAME`, `SecretStore/NAME` or
`ClusterSecretStore/NAME`; a bare NAME matches both kinds. When some namespaces refuse
the user, the answer says it is partial and names them.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from vaultsync import constants as c
from vaultsync.commands import common
from vaultsync.commands.client import UserKube, custom_path
from vaultsync.commands.scope import Coverage, list_everywhere
from vaultsync.errors import KubeForbidden
from vaultsync.kube import WORKLOAD_KINDS, Body
from vaultsync.models import store_refs
from vaultsync.rollout import watched_secrets

STORE_KINDS = (c.KIND_SECRET_STORE, c.KIND_CLUSTER_SECRET_STORE)
COLUMNS = [("KIND", "kind"), ("NAMESPACE", "namespace"), ("NAME", "name"), ("VIA", "via")]
WIDE = [*COLUMNS, ("FIELDS", "fields")]


@dataclass(frozen=True)
class Store:
    kind: str | None  # None: either kind
    name: str

    @classmethod
    def parse(cls, text: str) -> Store:
        kind, _, name = text.rpartition("/")
        return cls(kind or None, name)

    def names(self, ref: Mapping[str, Any]) -> bool:
        """Whether a `storeRef` (`{name, kind}`) names this store."""
        kind = ref.get("kind") or c.KIND_SECRET_STORE
        return bool(ref.get("name") == self.name and self.kind in (None, kind))


@dataclass
class Dependants:
    external_secrets: list[Body] = field(default_factory=list)
    fields: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    # (namespace, ExternalSecret) -> the storeRef through which it reads the key
    vias: dict[tuple[str, str], Mapping[str, Any]] = field(default_factory=dict)
    workloads: list[tuple[str, Body, list[str]]] = field(default_factory=list)  # kind, body, Secrets
    coverage: Coverage = field(default_factory=Coverage)
    unreadable_workloads: list[str] = field(default_factory=list)

    def targets(self) -> dict[tuple[str, str], tuple[str, str]]:
        """(namespace, Secret) -> (namespace, ExternalSecret) writing it."""
        out: dict[tuple[str, str], tuple[str, str]] = {}
        for es in self.external_secrets:
            meta = es["metadata"]
            target = ((es.get("spec") or {}).get("target") or {}).get("name") or meta["name"]
            out[(meta["namespace"], target)] = (meta["namespace"], meta["name"])
        return out

    def notes(self) -> list[str]:
        notes = [self.coverage.note()] if self.coverage.partial else []
        if self.unreadable_workloads:
            notes.append(
                "partial answer: workloads could not be listed in namespace(s) "
                + ", ".join(self.unreadable_workloads)
            )
        return [n for n in notes if n]

    def rows(self) -> list[common.Row]:
        rows: list[common.Row] = []
        for es in self.external_secrets:
            meta = es["metadata"]
            key = (meta["namespace"], meta["name"])
            ref = self.vias[key]
            rows.append(
                {
                    "kind": c.KIND_EXTERNAL_SECRET,
                    "namespace": key[0],
                    "name": key[1],
                    "via": f"{ref.get('kind') or c.KIND_SECRET_STORE}/{ref['name']}",
                    "fields": ",".join(self.fields[key]),
                }
            )
        for (namespace, secret), (_, owner) in sorted(self.targets().items()):
            rows.append(
                {"kind": "Secret", "namespace": namespace, "name": secret, "via": f"ExternalSecret/{owner}"}
            )
        for kind, body, secrets in self.workloads:
            meta = body["metadata"]
            via = ",".join(f"Secret/{s}" for s in secrets)
            rows.append({"kind": kind, "namespace": meta["namespace"], "name": meta["name"], "via": via})
        return rows


def register(subparsers: Any) -> None:
    parser = common.add_parser(
        subparsers,
        "impact",
        "what depends on a remote key: ExternalSecrets, Secrets, workloads",
        __doc__,
        "vaultsync impact ClusterSecretStore/aws prod/db -A",
    )
    add_store_and_key(parser)
    common.add_namespace_arguments(parser)
    common.add_output_argument(parser)
    common.add_cluster_arguments(parser)
    parser.set_defaults(handler=common.handle(_impact, parser, check_store))


def add_store_and_key(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("store", help="NAME, SecretStore/NAME or ClusterSecretStore/NAME")
    parser.add_argument("key", help="the remote key, as in remoteRef.key")


def check_store(args: argparse.Namespace) -> str | None:
    store = Store.parse(args.store)
    if store.kind not in (None, *STORE_KINDS) or not store.name:
        return f"STORE: {args.store!r} is not NAME, SecretStore/NAME or ClusterSecretStore/NAME"
    return None


async def _impact(kube: UserKube, args: argparse.Namespace) -> int:
    namespaces = None if args.all_namespaces else [common.namespace_of(kube, args)]
    found = await find_dependants(kube, Store.parse(args.store), args.key, namespaces)
    rows, notes = found.rows(), found.notes()
    if args.output in ("json", "yaml"):
        document = {"store": args.store, "key": args.key, "items": rows, **found.coverage.document()}
        document["partial"] = bool(notes)
        document["notes"] = notes
        common.print_document(document, args.output)
    elif rows:
        common.print_table(rows, WIDE if args.output == "wide" else COLUMNS)
    else:
        print(f"nothing found that reads {args.key!r} through {args.store}")
    for note in notes:
        common.warn(note)
    return common.EXIT_OK


async def find_dependants(kube: UserKube, store: Store, key: str, namespaces: list[str] | None) -> Dependants:
    found = Dependants()
    items = await list_everywhere(
        kube, lambda ns: custom_path(c.EXTERNAL_SECRETS, ns), namespaces, found.coverage
    )
    for es in sorted(items, key=lambda e: (e["metadata"]["namespace"], e["metadata"]["name"])):
        fields = list(key_fields(es, key, store))
        if fields:
            found.external_secrets.append(es)
            at = (es["metadata"]["namespace"], es["metadata"]["name"])
            found.fields[at] = fields
            found.vias[at] = next(ref for ref in store_refs(es.get("spec") or {}) if store.names(ref))
    by_namespace: dict[str, set[str]] = {}
    for namespace, secret in found.targets():
        by_namespace.setdefault(namespace, set()).add(secret)
    for namespace, secrets in sorted(by_namespace.items()):
        for kind in WORKLOAD_KINDS:
            try:
                workloads = await kube.list_kind(kind, namespace)
            except KubeForbidden:
                if namespace not in found.unreadable_workloads:
                    found.unreadable_workloads.append(namespace)
                continue
            for workload in workloads:
                used = sorted(watched_secrets(workload, kind) & secrets)
                if used:
                    found.workloads.append((kind, workload, used))
    return found


def key_fields(es: Mapping[str, Any], key: str, store: Store) -> Iterable[str]:
    """The spec fields of `es` that read `key` from `store`: through the entry's own
    `sourceRef.storeRef`, or else through `spec.storeRef`."""
    spec = es.get("spec") or {}

    def from_store(entry: Mapping[str, Any]) -> bool:
        source = (entry.get("sourceRef") or {}).get("storeRef")
        return store.names(source or spec.get("storeRef") or {})

    for i, item in enumerate(spec.get("data") or []):
        if (item.get("remoteRef") or {}).get("key") == key and from_store(item):
            yield f"spec.data[{i}]"
    # A find entry names no key: it depends on the key if its last sync read it (the keys a
    # sync read are its status's remoteVersions), which is who holds the value now.
    read = key in ((es.get("status") or {}).get("remoteVersions") or {})
    for i, item in enumerate(spec.get("dataFrom") or []):
        if not from_store(item):
            continue
        if (item.get("extract") or {}).get("key") == key or (item.get("find") and read):
            yield f"spec.dataFrom[{i}]"
