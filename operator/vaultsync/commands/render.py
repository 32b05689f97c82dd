"""`vaultsync render`: an ExternalSecret's target Secret from sample values, offline.

Trying a template before applying it should not need a cluster, a vault or real values.
`render` runs the operator's own code on a local manifest and a local file of sample
values: `templating.build_data` (properties, `dataFrom.extract`, decoding) and the same
sandboxed `renderer.TemplateRenderer` the operator renders templates with, under the same
limits. So what it prints is the Secret the operator would write, byte for byte, except
the `vaultsync.io/data-fingerprint` annotation (keyed with the operator's HMAC key, which
the CLI does not have) and the ownerReference (it names the ExternalSecret's uid). Values
are masked unless `--show-values`.

The values file maps each remote key to its value: a string is the value as stored, a
mapping or list is stored as its JSON (as the fake provider does). A pinned read
(`remoteRef.version`) looks up `KEY@VERSION` first, then `KEY`. The ConfigMaps and
Secrets a `templateFrom` names are taken from the same manifest file.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from vaultsync import constants as c
from vaultsync.commands import common
from vaultsync.commands.client import CliError
from vaultsync.errors import SecretNotFound, VaultsyncError
from vaultsync.finder import describe
from vaultsync.kube import Body
from vaultsync.models import ExternalSecret, parse_external_secret
from vaultsync.providers.base import RemoteRef, RemoteValue
from vaultsync.renderer import TemplateRenderer
from vaultsync.sandbox import Limits
from vaultsync.templatefrom import Objects, assemble, collect, with_metadata
from vaultsync.templating import build_data, remote_refs, sandboxed_transform
from vaultsync.tenantregexp import Budget, compile_tenant

OFFLINE_NAMESPACE = "default"


def register(subparsers: Any) -> None:
    parser = common.add_parser(
        subparsers,
        "render",
        "render an ExternalSecret's Secret from sample values, offline",
        __doc__,
        "vaultsync render -f externalsecret.yaml --values samples.yaml --show-values",
    )
    parser.add_argument(
        "-f", "--filename", required=True, help="the ExternalSecret manifest (YAML or JSON; - for stdin)"
    )
    parser.add_argument(
        "--values", required=True, help="sample values: a YAML or JSON mapping of remote key to value"
    )
    parser.add_argument("--name", help="which ExternalSecret, when the file holds several")
    parser.add_argument("--show-values", action="store_true", help="print the values instead of masking them")
    parser.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml", help="default: yaml")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        documents = _documents(args.filename)
        es = _external_secret(documents, args.name)
        samples = _samples(args.values)
        secret = asyncio.run(render_secret(es, samples, _template_objects(documents)))
    except (CliError, VaultsyncError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return common.EXIT_FAILED
    if not args.show_values:
        secret["data"] = {k: f"<masked: {len(base64.b64decode(v))} bytes>" for k, v in secret["data"].items()}
    common.print_document(secret, args.output)
    return common.EXIT_OK


async def render_secret(
    es: ExternalSecret, samples: Mapping[str, bytes], objects: Objects | None = None
) -> Body:
    """The Secret the operator would write for `es` if its store held `samples`, with the
    ConfigMaps and Secrets of `objects` as its templateFrom sources."""
    fetched: dict[RemoteRef, RemoteValue | VaultsyncError] = {}
    found = _found(es, samples)
    for ref in remote_refs(es.spec, found):
        value = samples.get(f"{ref.key}@{ref.version}") if ref.version else None
        value = value if value is not None else samples.get(ref.key)
        if value is None:
            pinned = f" version {ref.version!r}" if ref.version else ""
            fetched[ref] = SecretNotFound(f"key {ref.key!r}{pinned} is not in the values file")
        else:
            fetched[ref] = RemoteValue(value, ref.version)
    renderer = TemplateRenderer(Limits(), workers=1)
    try:
        transform = sandboxed_transform(renderer, es.namespace)
        data, _ = await build_data(es.spec, fetched, found=found, transform=transform)
        template = es.spec.target.template
        if template is not None and template.renders:
            sources = collect(template, objects or {}, es.namespace)
            rendered = await renderer.render_sources(es.namespace, template.delimiters, sources, data)
            result = assemble(template, sources, rendered, data)
            data, es = result.data, with_metadata(es, result)
    finally:
        await renderer.close()
    target = es.spec.target
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": es.target_name,
            "namespace": es.namespace,
            "labels": {
                **target.secret_labels,
                c.LABEL_MANAGED_BY: c.MANAGED_BY_VALUE,
                c.LABEL_OWNER_NAME: es.name,
            },
            "annotations": {**target.secret_annotations, c.ANNOTATION_MANAGED_KEYS: ",".join(sorted(data))},
        },
        "type": target.secret_type,
        "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
    }


def _found(es: ExternalSecret, samples: Mapping[str, bytes]) -> dict[int, tuple[str, ...]]:
    """What each `dataFrom.find` would match if the store held just the sample keys."""
    found: dict[int, tuple[str, ...]] = {}
    for i, item in enumerate(es.spec.data_from):
        if item.find is None:
            continue
        if item.find.tags:
            raise CliError(f"spec.dataFrom[{i}].find.tags: the values file has no tags to find by")
        pattern = compile_tenant(item.find.name.regexp, captures=False) if item.find.name else None
        budget = Budget(c.REGEXP_WORK_BUDGET)
        found[i] = tuple(
            sorted(
                key
                for key in samples
                if "@" not in key
                and key.startswith(item.find.path)
                and (pattern is None or pattern.matches(key, budget))
            )
        )
        if not found[i]:  # as the operator: a find that matches nothing is KeyNotFound
            raise SecretNotFound(f"spec.dataFrom[{i}].find: no key of the values file {describe(item.find)}")
    return found


def _template_objects(documents: list[Any]) -> Objects:
    """The file's ConfigMaps and Secrets, which templateFrom may name (a Secret's stringData
    counted as its data)."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for d in documents:
        if isinstance(d, dict) and d.get("kind") in ("ConfigMap", "Secret"):
            body = dict(d)
            if d["kind"] == "Secret":
                text = {
                    k: base64.b64encode(str(v).encode()).decode()
                    for k, v in (d.get("stringData") or {}).items()
                }
                body["data"] = {**(d.get("data") or {}), **text}
            found[(d["kind"], str((d.get("metadata") or {}).get("name")))] = body
    return found


def _documents(filename: str) -> list[Any]:
    try:
        text = sys.stdin.read() if filename == "-" else Path(filename).read_text(encoding="utf-8")
        return [d for d in yaml.safe_load_all(text) if d]
    except (OSError, yaml.YAMLError) as exc:
        raise CliError(f"-f {filename}: {exc}") from None


def _external_secret(documents: list[Any], name: str | None) -> ExternalSecret:
    found = [
        d
        for d in documents
        if isinstance(d, dict)
        and d.get("kind") == c.KIND_EXTERNAL_SECRET
        and (name is None or (d.get("metadata") or {}).get("name") == name)
    ]
    if len(found) != 1:
        which = f" named {name!r}" if name else ""
        raise CliError(f"-f: expected one ExternalSecret{which}, found {len(found)} (use --name)")
    body = found[0]
    meta = {"namespace": OFFLINE_NAMESPACE, "uid": "", **(body.get("metadata") or {})}
    return parse_external_secret({**body, "metadata": meta})


def _samples(filename: str) -> dict[str, bytes]:
    try:
        loaded = yaml.safe_load(Path(filename).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise CliError(f"--values {filename}: {exc}") from None
    if not isinstance(loaded, dict):
        raise CliError(f"--values {filename}: must be a mapping of remote key to value")
    samples: dict[str, bytes] = {}
    for key, value in loaded.items():
        text = value if isinstance(value, str) else json.dumps(value)
        samples[str(key)] = text.encode()
    return samples
