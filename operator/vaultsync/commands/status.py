"""`vaultsync status`: what is failing and why, at a glance, for the person on call.

Lists the ExternalSecrets, SecretStores, ClusterSecretStores and (where that CRD is
installed) ClusterExternalSecrets whose `Ready` condition is not True, with the reason,
the field the message names, how long it has been so, and when the operator tries again.
`--all` lists the healthy ones too.
"""

from __future__ import annotations

import argparse
import functools
import re
from typing import Any

from vaultsync import constants as c
from vaultsync.commands import common
from vaultsync.commands.client import UserKube, custom_path
from vaultsync.commands.scope import Coverage, list_everywhere
from vaultsync.errors import KubeForbidden
from vaultsync.kube import Body
from vaultsync.schedule import BACKOFF_MAX_SECONDS

# Failures are retried with backoff up to this (the operator does not write each retry's
# time: that would be a status write per retry); stores are checked again every minute.
STORE_RECHECK = "within 1m"
# Messages name the field at fault (docs/api.md): "spec.data[1].remoteRef.property: ...".
FIELD = re.compile(r"(?:^|\s)((?:spec|metadata)\.[\w.\[\]-]+):")

COLUMNS = [
    ("KIND", "kind"),
    ("NAMESPACE", "namespace"),
    ("NAME", "name"),
    ("READY", "ready"),
    ("REASON", "reason"),
    ("FIELD", "field"),
    ("AGE", "age"),
    ("NEXT RETRY", "nextRetry"),
]
WIDE = [*COLUMNS, ("MESSAGE", "message")]

NAMESPACED = (
    (c.KIND_EXTERNAL_SECRET, c.EXTERNAL_SECRETS),
    (c.KIND_SECRET_STORE, c.SECRET_STORES),
)
CLUSTER_SCOPED = (
    (c.KIND_CLUSTER_SECRET_STORE, c.CLUSTER_SECRET_STORES),
    (c.KIND_CLUSTER_EXTERNAL_SECRET, c.CLUSTER_EXTERNAL_SECRETS),
)


def register(subparsers: Any) -> None:
    parser = common.add_parser(
        subparsers, "status", "what is not Ready, and why", __doc__, "vaultsync status -A"
    )
    common.add_namespace_arguments(parser)
    common.add_output_argument(parser)
    common.add_cluster_arguments(parser)
    parser.add_argument("--all", action="store_true", help="list Ready objects too")
    parser.set_defaults(handler=common.handle(_status))


async def _status(kube: UserKube, args: argparse.Namespace) -> int:
    coverage = Coverage()
    namespaces = None if args.all_namespaces else [common.namespace_of(kube, args)]
    rows: list[common.Row] = []
    notes: list[str] = []
    for kind, plural in NAMESPACED:
        items = await list_everywhere(kube, functools.partial(custom_path, plural), namespaces, coverage)
        rows += [_row(kind, item) for item in items]
    served = await kube.served_plurals()
    for kind, plural in CLUSTER_SCOPED:
        if plural not in served:
            continue
        try:
            items = await kube.list_custom(plural, None)
        except KubeForbidden:
            notes.append(f"partial answer: you may not list {kind}s")
            continue
        rows += [_row(kind, item) for item in items]
    if not args.all:
        rows = [row for row in rows if row["ready"] != "True"]
    if coverage.note():
        notes.insert(0, str(coverage.note()))
    if args.output in ("json", "yaml"):
        document = {"items": rows, **coverage.document(), "notes": notes}
        document["partial"] = bool(notes)
        common.print_document(document, args.output)
    elif rows:
        common.print_table(rows, WIDE if args.output == "wide" else COLUMNS)
    else:
        print("everything is Ready" if not args.all else "nothing found")
    for note in notes:
        common.warn(note)
    return common.EXIT_OK


def _row(kind: str, body: Body) -> common.Row:
    meta = body["metadata"]
    condition = common.ready_condition(body)
    status = body.get("status") or {}
    message = str(condition.get("message") or "")
    found = FIELD.search(message)
    ready = str(condition.get("status") or "Unknown")
    if ready == "True":
        retry = common.age(status.get("nextRefreshAt")) if status.get("nextRefreshAt") else "-"
    elif kind in (c.KIND_SECRET_STORE, c.KIND_CLUSTER_SECRET_STORE):
        retry = STORE_RECHECK
    else:
        retry = f"within {common.duration(int(BACKOFF_MAX_SECONDS))}"
    stale = status.get("observedGeneration") not in (None, meta.get("generation"))
    return {
        "kind": kind,
        "namespace": meta.get("namespace") or "",
        "name": meta["name"],
        "ready": ready,
        "reason": condition.get("reason") or ("NotObservedYet" if not condition else ""),
        "field": found.group(1) if found else "",
        "age": common.age(condition.get("lastTransitionTime") or meta.get("creationTimestamp")),
        "since": condition.get("lastTransitionTime") or meta.get("creationTimestamp"),
        "nextRetry": retry,
        "message": message + (" (spec changed since; not yet acted on)" if stale else ""),
    }
