"""What every `vaultsync` subcommand shares: kubectl's flags, output formats and exit codes.

On-call engineers already know kubectl; the subcommands take the same flags (`-n`, `-A`,
`-l`, `-o json|yaml|wide`, `--kubeconfig`, `--context`) and exit as it does: 0 done,
1 a failure (named on stderr), 2 a usage error (argparse's own exit code).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import yaml

from vaultsync.commands.client import CliError, UserKube, kubeconfig_env, user_login
from vaultsync.errors import KubeForbidden, VaultsyncError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
OUTPUTS = ("json", "yaml", "wide")

Row = dict[str, Any]
Handler = Callable[[UserKube, argparse.Namespace], Awaitable[int]]


def add_parser(
    subparsers: Any, name: str, summary: str, doc: str | None, *examples: str
) -> argparse.ArgumentParser:
    """A subcommand's parser: `summary` in `vaultsync --help`, the module's docstring and the
    examples in its own `--help`."""
    epilog = "examples:\n" + "\n".join(f"  {example}" for example in examples) if examples else None
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name,
        help=summary,
        description=doc,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser


def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kubeconfig", help="path to the kubeconfig file (default: $KUBECONFIG, ~/.kube/config)"
    )
    parser.add_argument("--context", help="the kubeconfig context to use (default: its current-context)")


def add_namespace_arguments(parser: argparse.ArgumentParser, all_namespaces: bool = True) -> None:
    parser.add_argument("-n", "--namespace", help="the namespace (default: the context's)")
    if all_namespaces:
        parser.add_argument(
            "-A", "--all-namespaces", action="store_true", help="every namespace you may read"
        )


def add_output_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", choices=OUTPUTS, help="json, yaml or wide (default: a table)")


def handle(
    handler: Handler,
    parser: argparse.ArgumentParser | None = None,
    check: Callable[[argparse.Namespace], str | None] | None = None,
) -> Callable[[argparse.Namespace], int]:
    """The subcommand's entry: check the flags (exit 2), log in as the user, run, close;
    failures become exit 1."""

    def run(args: argparse.Namespace) -> int:
        problem = check(args) if check is not None else None
        if problem is not None and parser is not None:
            parser.error(problem)  # exits 2, as kubectl does on a usage error
        try:
            return asyncio.run(_with_kube(handler, args))
        except KubeForbidden as exc:
            print(f"error: {exc.message.split(';')[0]}: your RBAC does not allow it", file=sys.stderr)
        except (CliError, VaultsyncError) as exc:
            print(f"error: {exc}", file=sys.stderr)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
        return EXIT_FAILED

    return run


async def _with_kube(handler: Handler, args: argparse.Namespace) -> int:
    with kubeconfig_env(args.kubeconfig, args.context):
        kube = UserKube(user_login())
        try:
            return await handler(kube, args)
        finally:
            await kube.close()


def namespace_of(kube: UserKube, args: argparse.Namespace) -> str:
    return str(args.namespace or kube.default_namespace)


def age(timestamp: str | None, now: datetime | None = None) -> str:
    """kubectl's short ages (45s, 12m, 3h, 5d); a time to come is "in 30s"; "-" when unknown."""
    if not timestamp:
        return "-"
    moment = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    seconds = int(((now or datetime.now(UTC)) - moment).total_seconds())
    return duration(seconds) if seconds >= 0 else f"in {duration(-seconds)}"


def duration(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= 2 * size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def ready_condition(body: Mapping[str, Any]) -> Mapping[str, Any]:
    conditions = (body.get("status") or {}).get("conditions") or []
    found: Mapping[str, Any] = next((x for x in conditions if x.get("type") == "Ready"), {})
    return found


def print_table(rows: Sequence[Row], columns: Sequence[tuple[str, str]]) -> None:
    """kubectl's layout: upper-case headers, columns padded to their widest cell."""
    cells = [[header for header, _ in columns]]
    cells += [
        [str(row.get(key, "") if row.get(key) not in (None, "") else "-") for _, key in columns]
        for row in rows
    ]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    for line in cells:
        print("   ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())


def print_document(document: Mapping[str, Any], output: str) -> None:
    if output == "json":
        print(json.dumps(document, indent=2, sort_keys=False))
    else:
        print(yaml.safe_dump(dict(document), sort_keys=False), end="")


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)
