"""`vaultsync respond STORE KEY`: the leaked-secret response, once the key is rotated at the provider.

1. Finds every ExternalSecret that reads KEY through STORE, and their consumers (`impact`).
2. Forces each to re-read now with an urgent force-sync (`vaultsync.io/force-sync:
   urgent-...`): the read bypasses the refresh interval and the operator's cache, and the
   restart it causes is made at once instead of after `--restart-quiet`/`--restart-window`,
   still under `--restarts-per-minute` and exactly once per workload (its seen-fingerprints).
3. Waits until every sync is done and every opted-in workload carries the new data's
   fingerprint, i.e. was restarted for it.
4. Prints who read the key before the rotation (the old version) and after, from the
   operator's audit trail (`--audit-log` files, or the operator Pods' logs).

Exit 1 when a sync failed or a workload was not restarted in time (docs/runbooks/leaked-secret.md).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from vaultsync import constants as c
from vaultsync.commands import common
from vaultsync.commands.audittrail import Reader, readers
from vaultsync.commands.client import CliError, UserKube, pod_log_path
from vaultsync.commands.forcing import POLL_SECONDS, Outcome, force_and_wait, new_token
from vaultsync.commands.impact import Dependants, Store, add_store_and_key, check_store, find_dependants
from vaultsync.errors import KubeForbidden, KubeNotFound
from vaultsync.kube import Body
from vaultsync.rollout import seen_fingerprints

DEFAULT_TIMEOUT_SECONDS = 300.0
DEFAULT_AUDIT_HOURS = 24.0
OPERATOR_POD_SELECTOR = "app.kubernetes.io/name=vaultsync"
SYNC_COLUMNS = [
    ("NAMESPACE", "namespace"),
    ("EXTERNALSECRET", "name"),
    ("RESULT", "result"),
    ("MESSAGE", "message"),
]
RESTART_COLUMNS = [
    ("KIND", "kind"),
    ("NAMESPACE", "namespace"),
    ("NAME", "name"),
    ("SECRET", "secret"),
    ("RESTARTED", "restarted"),
]
READER_COLUMNS = [
    ("EXTERNALSECRET", "externalSecret"),
    ("OLD READS", "oldVersionReads"),
    ("FIRST READ", "firstRead"),
    ("LAST OLD READ", "lastOldRead"),
    ("NEW READS", "newVersionReads"),
]


def register(subparsers: Any) -> None:
    parser = common.add_parser(
        subparsers,
        "respond",
        "after rotating a leaked key: push it everywhere, restart consumers, report readers",
        __doc__,
        "vaultsync respond ClusterSecretStore/aws prod/db --audit-log audit.jsonl",
        "vaultsync respond aws prod/db --operator-namespace vaultsync --rotated-at 2026-11-30T05:00:00Z",
    )
    add_store_and_key(parser)
    parser.add_argument(
        "-n", "--namespace", action="append", help="only these namespaces (default: every one you may read)"
    )
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT_SECONDS, help="seconds to wait (default %(default)s)"
    )
    parser.add_argument("--rotated-at", help="when the provider got the new version (ISO 8601; default: now)")
    parser.add_argument(
        "--audit-log",
        action="append",
        default=[],
        help="a file of the operator's JSON log lines (repeatable)",
    )
    parser.add_argument(
        "--operator-namespace", help="read the audit trail from the operator Pods' logs in this namespace"
    )
    parser.add_argument(
        "--audit-hours",
        type=float,
        default=DEFAULT_AUDIT_HOURS,
        help="how far back the report looks (default %(default)s)",
    )
    common.add_output_argument(parser)
    common.add_cluster_arguments(parser)
    parser.set_defaults(handler=common.handle(_respond, parser, _check))


def _check(args: argparse.Namespace) -> str | None:
    problem = check_store(args)
    if problem is not None:
        return problem
    if args.timeout <= 0 or args.audit_hours <= 0:
        return "--timeout, --audit-hours: must be positive"
    try:
        _rotated_at(args)
    except ValueError:
        return f"--rotated-at: {args.rotated_at!r} is not an ISO 8601 time with a zone (2026-11-30T05:00:00Z)"
    return None


def _rotated_at(args: argparse.Namespace) -> datetime:
    if not args.rotated_at:
        return datetime.now(UTC)
    moment = datetime.fromisoformat(args.rotated_at.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError("no zone")
    return moment


async def _respond(kube: UserKube, args: argparse.Namespace) -> int:
    cutoff = _rotated_at(args)
    store = Store.parse(args.store)
    found = await find_dependants(kube, store, args.key, args.namespace)
    targets = [(es["metadata"]["namespace"], es["metadata"]["name"]) for es in found.external_secrets]
    deadline = time.monotonic() + args.timeout
    secrets = sorted(found.targets())
    before = await _fingerprints(kube, secrets)
    outcomes = (
        await force_and_wait(kube, targets, new_token(c.FORCE_SYNC_URGENT_PREFIX), args.timeout)
        if targets
        else []
    )
    restarts = await _wait_for_restarts(kube, found, deadline)
    lines = await _audit_lines(kube, args)
    since = datetime.now(UTC) - timedelta(hours=args.audit_hours)
    report = readers(lines, store, args.key, cutoff, since)
    notes = found.notes()
    after = await _fingerprints(kube, secrets)
    unchanged = [
        f"{ns}/{n}" for ns, n in secrets if (ns, n) in after and before.get((ns, n)) == after[(ns, n)]
    ]
    if unchanged:
        notes.append(
            f"unchanged by this response (the provider returned the data they already held; was "
            f"{args.key} rotated, or had a refresh already picked it up?): Secret {', '.join(unchanged)}"
        )
    if not args.audit_log and not args.operator_namespace:
        notes.append("no audit trail given (--audit-log or --operator-namespace): readers are not reported")
    _print(args, outcomes, restarts, report, notes, cutoff)
    failed = any(not o.ok for o in outcomes) or any(
        r["restarted"] not in ("yes", "already") for r in restarts
    )
    return common.EXIT_FAILED if failed else common.EXIT_OK


async def _wait_for_restarts(kube: UserKube, found: Dependants, deadline: float) -> list[common.Row]:
    """Each opted-in workload, once it carries the fingerprint of its Secret's current data."""
    rows: list[common.Row] = []
    for kind, body, secrets in found.workloads:
        meta = body["metadata"]
        for secret in secrets:
            rows.append(
                {
                    "kind": kind,
                    "namespace": meta["namespace"],
                    "name": meta["name"],
                    "secret": secret,
                    "restarted": "no",
                    "before": seen_fingerprints(body).get(secret),
                }
            )
    pending = list(rows)
    while pending:
        for row in list(pending):
            state = await _restart_state(kube, row)
            if state is not None:
                row["restarted"] = state
                pending.remove(row)
        if not pending or time.monotonic() >= deadline:
            break
        await asyncio.sleep(POLL_SECONDS)
    for row in rows:
        row.pop("before")
    return rows


async def _fingerprints(kube: UserKube, secrets: list[tuple[str, str]]) -> dict[tuple[str, str], str | None]:
    """Each Secret's data fingerprint annotation (which changes exactly when its data does)."""
    found: dict[tuple[str, str], str | None] = {}
    for namespace, name in secrets:
        try:
            metadata = await kube.secret_metadata(namespace, name)
        except KubeForbidden:
            continue
        found[(namespace, name)] = ((metadata or {}).get("annotations") or {}).get(
            c.ANNOTATION_DATA_FINGERPRINT
        )
    return found


async def _restart_state(kube: UserKube, row: common.Row) -> str | None:
    """ "yes" (restarted for the Secret's current data by this response), "already" (it had
    been before), "unreadable", or None while it has not been."""
    try:
        secret = await kube.secret_metadata(row["namespace"], row["secret"])
        workload: Body = await kube.read_workload(row["kind"], row["namespace"], row["name"])
    except KubeForbidden:
        return "unreadable"
    except KubeNotFound:
        return "gone"
    annotations = (secret or {}).get("annotations") or {}
    current = annotations.get(c.ANNOTATION_DATA_FINGERPRINT)
    if current is None or c.ANNOTATION_PENDING_RESTART in annotations:
        return None
    if seen_fingerprints(workload).get(row["secret"]) != current:
        return None
    return "already" if row["before"] == current else "yes"


async def _audit_lines(kube: UserKube, args: argparse.Namespace) -> list[str]:
    lines: list[str] = []
    for path in args.audit_log:
        try:
            lines += Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError as exc:
            raise CliError(f"--audit-log {path}: {exc.strerror}") from None
    if args.operator_namespace:
        pods = await kube.get(
            f"api/v1/namespaces/{args.operator_namespace}/pods", labelSelector=OPERATOR_POD_SELECTOR
        )
        seconds = str(int(args.audit_hours * 3600))
        for pod in pods.get("items") or []:
            text = await kube.text(
                pod_log_path(args.operator_namespace, pod["metadata"]["name"]), sinceSeconds=seconds
            )
            lines += text.splitlines()
    return lines


def _print(
    args: argparse.Namespace,
    outcomes: list[Outcome],
    restarts: list[common.Row],
    report: list[Reader],
    notes: list[str],
    cutoff: datetime,
) -> None:
    syncs = [o.row() for o in outcomes]
    readers_rows = [r.row() for r in report]
    if args.output in ("json", "yaml"):
        document = {
            "store": args.store,
            "key": args.key,
            "rotatedAt": cutoff.isoformat(timespec="seconds"),
            "syncs": syncs,
            "restarts": restarts,
            "readers": readers_rows,
            "partial": any(n.startswith("partial") for n in notes),
            "notes": notes,
        }
        common.print_document(document, args.output)
    else:
        print(f"ExternalSecrets re-read ({len(syncs)}):")
        common.print_table(syncs, SYNC_COLUMNS) if syncs else print("  none")
        print(f"\nWorkloads restarted ({len(restarts)}):")
        common.print_table(restarts, RESTART_COLUMNS) if restarts else print("  none")
        print(f"\nReaders of {args.key} (old version: read before {cutoff.isoformat(timespec='seconds')}):")
        common.print_table(readers_rows, READER_COLUMNS) if readers_rows else print(
            "  none in the audit trail"
        )
        namespaces = sorted({r.namespace for r in report if r.before})
        print(f"\nNamespaces that read the old version: {', '.join(namespaces) or 'none'}")
    for note in notes:
        common.warn(note)
