"""Which namespaces a command looked at, and an honest word when that is not all it was asked.

An app team's kubeconfig typically reads its own namespaces only. `-A` then cannot list
cluster-wide; rather than fail, or quietly show one namespace as if it were everything,
the commands search what the user may read and say the answer is partial, naming the
namespaces that refused (or that the namespaces themselves could not be listed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vaultsync.commands.client import UserKube
from vaultsync.errors import KubeForbidden
from vaultsync.kube import Body


@dataclass
class Coverage:
    """What was searched: `forbidden` namespaces refused; `unlisted` = the namespaces could
    not be listed, so only `searched` were looked at."""

    searched: list[str] | None = None  # None: cluster-wide
    forbidden: list[str] = field(default_factory=list)
    unlisted: bool = False

    @property
    def partial(self) -> bool:
        return bool(self.forbidden) or self.unlisted

    def note(self) -> str | None:
        if self.unlisted:
            return (
                "partial answer: you may not list namespaces, so only namespace(s) "
                f"{', '.join(self.searched or [])} were searched"
            )
        if self.forbidden:
            names = ", ".join(self.forbidden[:20]) + (" ..." if len(self.forbidden) > 20 else "")
            return f"partial answer: {len(self.forbidden)} namespace(s) refused you: {names}"
        return None

    def document(self) -> dict[str, Any]:
        return {
            "partial": self.partial,
            "forbiddenNamespaces": self.forbidden,
            "namespacesUnlisted": self.unlisted,
        }


PathOf = Callable[[str | None], str]


async def list_everywhere(
    kube: UserKube, path_of: PathOf, namespaces: list[str] | None, coverage: Coverage, selector: str = ""
) -> list[Body]:
    """Items of one resource in `namespaces`, or everywhere the user may read (None)."""
    query = {"labelSelector": selector} if selector else {}
    if namespaces is None:
        try:
            return list((await kube.get(path_of(None), **query)).get("items") or [])
        except KubeForbidden:
            namespaces = await readable_namespaces(kube, coverage)
    items: list[Body] = []
    for namespace in namespaces:
        try:
            items += (await kube.get(path_of(namespace), **query)).get("items") or []
        except KubeForbidden:
            if namespace not in coverage.forbidden:
                coverage.forbidden.append(namespace)
    return items


async def readable_namespaces(kube: UserKube, coverage: Coverage) -> list[str]:
    """Every namespace, if the user may list them; else the context's namespace only."""
    if coverage.searched is not None:
        return coverage.searched
    try:
        coverage.searched = await kube.namespaces()
    except KubeForbidden:
        coverage.searched, coverage.unlisted = [kube.default_namespace], True
    return coverage.searched
