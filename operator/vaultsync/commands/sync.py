"""`vaultsync sync`: force a sync of one ExternalSecret, a label selector or all of a namespace,
and wait for the result (exit 1 when any failed or did not finish within `--timeout`)."""

from __future__ import annotations

import argparse
from typing import Any

from vaultsync import constants as c
from vaultsync.commands import common
from vaultsync.commands.client import CliError, UserKube
from vaultsync.commands.forcing import force_and_wait, new_token

DEFAULT_TIMEOUT_SECONDS = 60.0
COLUMNS = [("NAMESPACE", "namespace"), ("NAME", "name"), ("RESULT", "result")]
WIDE = [*COLUMNS, ("MESSAGE", "message")]


def register(subparsers: Any) -> None:
    parser = common.add_parser(
        subparsers,
        "sync",
        "force a sync now and wait for its result",
        __doc__,
        "vaultsync sync db-creds -n shop",
        "vaultsync sync -l team=payments -n shop",
        "vaultsync sync --all -n shop --timeout 120",
    )
    parser.add_argument("name", nargs="?", help="the ExternalSecret")
    parser.add_argument("-l", "--selector", help="label selector, as kubectl's (e.g. team=payments)")
    parser.add_argument("--all", action="store_true", help="every ExternalSecret of the namespace")
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT_SECONDS, help="seconds to wait (default %(default)s)"
    )
    common.add_namespace_arguments(parser, all_namespaces=False)
    common.add_output_argument(parser)
    common.add_cluster_arguments(parser)
    parser.set_defaults(handler=common.handle(_sync, parser, _check))


def _check(args: argparse.Namespace) -> str | None:
    if sum((bool(args.name), bool(args.selector), args.all)) != 1:
        return "name one ExternalSecret, or give -l SELECTOR or --all"
    if args.timeout <= 0:
        return "--timeout: must be positive"
    return None


async def _sync(kube: UserKube, args: argparse.Namespace) -> int:
    namespace = common.namespace_of(kube, args)
    if args.name:
        names = [args.name]
    else:
        items = await kube.list_custom(c.EXTERNAL_SECRETS, namespace, args.selector or "")
        names = sorted(item["metadata"]["name"] for item in items)
        if not names:
            raise CliError(f"no ExternalSecret in namespace {namespace} matches")
    outcomes = await force_and_wait(kube, [(namespace, n) for n in names], new_token(), args.timeout)
    rows = [o.row() for o in outcomes]
    if args.output in ("json", "yaml"):
        common.print_document({"items": rows}, args.output)
    else:
        common.print_table(rows, WIDE if args.output == "wide" or len(rows) == 1 else COLUMNS)
    return common.EXIT_OK if all(o.ok for o in outcomes) else common.EXIT_FAILED
