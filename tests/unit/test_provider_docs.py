"""docs/providers/ say what the code does: a change check before reading only where one is made.

A provider detects changes without reading values when its client implements `stamps`
(AWS by ListSecrets/DescribeSecret, Vault by KV v2 metadata); the cache calls it before a
refresh reads. A page that promises such a check for a provider without one tells a platform
team its vault bill is smaller than it is; a page that hides it for a provider with one
leaves them to pay for reads they need not make.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "operator" / "vaultsync"
PROVIDER_DOCS = sorted((REPO / "docs" / "providers").glob("*.md"))
# Wordings of "vaultsync checks for a change before it reads".
CLAIMS = re.compile(
    r"is not read again|to check whether it changed|without reading the value|first asks the\s+metadata"
    r"|learns whether a secret\s+changed",
    re.IGNORECASE,
)


def _detects_changes(provider: str) -> bool:
    return "async def stamps(" in (PACKAGE / "providers" / f"{provider}.py").read_text()


def _claims(doc: Path) -> list[str]:
    return CLAIMS.findall(" ".join(doc.read_text().split()))


def test_the_cache_asks_for_changes_before_reading() -> None:
    assert ".stamps(" in (PACKAGE / "cache.py").read_text()


def test_provider_docs_describe_a_change_check_exactly_where_the_provider_makes_one() -> None:
    pages = {doc.stem: doc for doc in PROVIDER_DOCS if (PACKAGE / "providers" / f"{doc.stem}.py").exists()}
    assert {"aws", "vault", "azure"} <= set(pages)
    wrong = {
        name: _claims(doc) for name, doc in pages.items() if bool(_claims(doc)) != _detects_changes(name)
    }
    assert wrong == {}, "a page's change-check promise differs from its provider's code"
