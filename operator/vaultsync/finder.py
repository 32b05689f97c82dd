"""`dataFrom.find`: which remote keys an ExternalSecret's find entries match.

The provider lists what its vault can filter by (a path or name prefix, tags); the name
regexp is applied here, to what was listed, by RE2 (`tenantregexp.py`, Go's engine),
so it means the same for every provider. Both go through the fetch cache's `list_keys`:
one listing per store, query and regexp per refresh interval, however many
ExternalSecrets ask, and the values of the keys found are then read like any other, in
the provider's batches.

Limits, because the pattern, the path and the tags are a tenant's: a listing stops at
FIND_MAX_LISTED names (refused as too broad), matching them stops at REGEXP_WORK_BUDGET
units of work, and one ExternalSecret's find entries may match FIND_MAX_KEYS keys together.
A find that matches nothing is `KeyNotFound`, never an emptied Secret. A find entry with
its own `sourceRef.storeRef` lists the store it names: the reconciler calls `find_all`
once per store, for the find entries that read it.
"""

from __future__ import annotations

import functools

from vaultsync.cache import FetchCache
from vaultsync.constants import FIND_MAX_KEYS, FIND_MAX_LISTED, REGEXP_WORK_BUDGET
from vaultsync.errors import InvalidSpec, SecretNotFound, VaultsyncError
from vaultsync.models import ExternalSecretSpec, FindSpec, StoreRef
from vaultsync.providers.base import FindQuery, SecretsClient
from vaultsync.tenantregexp import Budget, BudgetExceeded, compile_tenant


class _Refused(InvalidSpec):
    """Refused by the selection; `subfield` is where under `spec.dataFrom[i].find`."""

    def __init__(self, subfield: str, message: str) -> None:
        super().__init__(message)
        self.subfield = subfield


async def find_all(
    cache: FetchCache,
    store_key: str,
    provider: str,
    client: SecretsClient,
    spec: ExternalSecretSpec,
    max_age: float,
    store: StoreRef | None = None,
    counted: int = 0,
) -> dict[int, tuple[str, ...]]:
    """For each `find` entry reading `store` (every one when None), by its index in
    `dataFrom`, the remote keys it matches, sorted. `counted`: the keys the ExternalSecret's
    find entries of other stores matched, which count towards FIND_MAX_KEYS too."""
    found: dict[int, tuple[str, ...]] = {}
    total = counted
    for i, item in enumerate(spec.data_from):
        if item.find is None or store not in (None, spec.store_of(item.source_ref)):
            continue
        field = f"spec.dataFrom[{i}].find"
        names = await _matched(cache, store_key, provider, client, item.find, max_age, field)
        if not names:
            raise SecretNotFound(f"{field}: no remote key {describe(item.find)}; the Secret is left as it is")
        total += len(names)
        if total > FIND_MAX_KEYS:
            raise InvalidSpec(
                f"{field}: the find entries match {total} remote keys or more, over the "
                f"{FIND_MAX_KEYS} one ExternalSecret may use; narrow name.regexp, tags or path"
            )
        found[i] = names
    return found


async def _matched(
    cache: FetchCache,
    store_key: str,
    provider: str,
    client: SecretsClient,
    find: FindSpec,
    max_age: float,
    field: str,
) -> tuple[str, ...]:
    query = FindQuery(find.path, tuple(sorted(find.tags.items())))
    regexp = find.name.regexp if find.name is not None else ""
    select = functools.partial(_select, regexp)
    try:
        return await cache.list_keys(
            (store_key, query, regexp), provider, client, select, FIND_MAX_LISTED, max_age
        )
    except _Refused as exc:
        raise InvalidSpec(f"{field}{exc.subfield}: {exc.message}") from None
    except VaultsyncError as exc:
        raise exc.at(field) from None


def _select(regexp: str, listed: list[str]) -> tuple[str, ...]:
    """What of a listing a find keeps; refusals say which part of the find to narrow."""
    if len(listed) > FIND_MAX_LISTED:
        raise _Refused(
            "",
            f"the store lists more than {FIND_MAX_LISTED} secrets for this path and these tags; narrow them",
        )
    if regexp:
        pattern, budget = compile_tenant(regexp, captures=False), Budget(REGEXP_WORK_BUDGET)
        try:
            listed = [name for name in listed if pattern.matches(name, budget)]
        except BudgetExceeded:
            raise _Refused(
                ".name.regexp",
                f"matching it against the {len(listed)} names listed takes over {REGEXP_WORK_BUDGET} "
                "units of regexp work (bytes times RE2 instructions); simplify it, or narrow path or tags",
            ) from None
    names = tuple(sorted(set(listed)))
    if len(names) > FIND_MAX_KEYS:
        raise _Refused(
            "",
            f"matches {len(names)} remote keys, over the {FIND_MAX_KEYS} one ExternalSecret may use; "
            "narrow name.regexp, tags or path",
        )
    return names


def describe(find: FindSpec) -> str:
    """What a find asks for, in words (for the message of a find that matches nothing)."""
    parts = []
    if find.path:
        parts.append(f"under path {find.path!r}")
    if find.name is not None:
        parts.append(f"matching name.regexp {find.name.regexp!r}")
    if find.tags:
        parts.append("with tags " + ", ".join(f"{k}={v}" for k, v in sorted(find.tags.items())))
    return " ".join(parts)
