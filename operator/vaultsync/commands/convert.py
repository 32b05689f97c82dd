"""`vaultsync convert`: External Secrets Operator manifests to vaultsync's, with a report.

Reads YAML or JSON documents from files, directories or stdin (`-f`, kubectl's flag),
writes the converted objects to stdout and the report to stderr. Exit codes:
0 every field moved (notes allowed), 1 something could not move (see the report; objects
with a refused field are not written), 2 the input could not be read.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import yaml  # PyYAML comes with kopf

from vaultsync.convert import Conversion, Document, convert

EXIT_INCOMPLETE = 1
EXIT_UNREADABLE = 2
_SUFFIXES = (".yaml", ".yml", ".json")


class _Unreadable(Exception):
    """An input that is not a file, not YAML, or uses YAML aliases."""


class _NoAliasLoader(yaml.SafeLoader):
    """Safe YAML without aliases: a few anchors can otherwise expand to gigabytes."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise yaml.YAMLError("YAML aliases (*name) are not accepted")
        return super().compose_node(parent, index)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert External Secrets Operator manifests to vaultsync's",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-f",
        "--filename",
        action="append",
        default=[],
        metavar="PATH",
        help="a file, a directory (its .yaml, .yml and .json files) or '-' for stdin; "
        "repeatable (default: stdin)",
    )
    parser.add_argument(
        "-o", "--output", choices=("yaml", "json"), default="yaml", help="format of the objects"
    )
    parser.add_argument(
        "--report",
        choices=("text", "json"),
        help="format of the report on stderr (default: text, or json with -o json)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        documents = list(_documents(args.filename or ["-"]))
    except _Unreadable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    result = convert(documents)
    _write_objects(result, args.output, sys.stdout)
    _write_report(result, args.report or ("json" if args.output == "json" else "text"), sys.stderr)
    return 0 if result.complete else EXIT_INCOMPLETE


def _paths(names: list[str]) -> Iterator[tuple[str, TextIO | Path]]:
    for name in names:
        if name == "-":
            yield "-", sys.stdin
            continue
        path = Path(name)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix in _SUFFIXES and p.is_file())
            yield from ((str(p), p) for p in files)
        elif path.is_file():
            yield name, path
        else:
            raise _Unreadable(f"{name}: no such file or directory")


def _documents(names: list[str]) -> Iterator[Document]:
    for name, source in _paths(names):
        try:
            text = source.read_text() if isinstance(source, Path) else source.read()
            bodies = list(yaml.load_all(text, Loader=_NoAliasLoader))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise _Unreadable(f"{name}: {exc}") from None
        for index, body in enumerate(bodies):
            yield Document(f"{name}#{index}", body)


def _write_objects(result: Conversion, output: str, out: TextIO) -> None:
    if output == "json":
        out.write(json.dumps({"apiVersion": "v1", "kind": "List", "items": result.objects}, indent=2) + "\n")
    elif result.objects:
        out.write(yaml.safe_dump_all(result.objects, sort_keys=False, explicit_start=True))


def _write_report(result: Conversion, report: str, out: TextIO) -> None:
    if report == "json":
        body = {
            "converted": result.converted,
            "refused": result.refused,
            "complete": result.complete,
            "findings": [f.as_dict() for f in result.findings],
        }
        out.write(json.dumps(body, indent=2) + "\n")
        return
    for finding in result.findings:
        out.write(finding.line() + "\n")
    moved = "every field moved" if result.complete else "some fields did not move (exit 1)"
    out.write(f"converted {result.converted} object(s), refused {result.refused}; {moved}\n")
