"""docs/providers/ say what the code does: no change check before reading that nothing makes.

Every provider implements `current_version` (the latest version id from metadata alone), but
no part of the operator calls it: every sync reads the values. Until one does, a provider page
that promises a metadata-first check (KV v2 metadata, DescribeSecret) tells a platform team its
vault bill is smaller than it is.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "operator" / "vaultsync"
PROVIDER_DOCS = sorted((REPO / "docs" / "providers").glob("*.md"))
# Wordings of "vaultsync checks for a change before it reads".
CLAIMS = re.compile(
    r"current_version|is not read again|to check whether it changed|without reading the value"
    r"|first asks the\s+metadata|checking for a new version\s+costs",
    re.IGNORECASE,
)


def _operator_calls_current_version() -> bool:
    outside_providers = (p for p in PACKAGE.rglob("*.py") if "providers" not in p.parts)
    return any(".current_version(" in path.read_text() for path in outside_providers)


def test_provider_docs_claim_no_change_check_the_operator_does_not_make() -> None:
    assert PROVIDER_DOCS
    if _operator_calls_current_version():
        return  # change detection exists: the pages may describe it
    claims = {
        doc.name: CLAIMS.findall(" ".join(doc.read_text().split()))
        for doc in PROVIDER_DOCS
        if CLAIMS.search(" ".join(doc.read_text().split()))
    }
    assert claims == {}, "docs/providers/ promise a metadata-first check the operator does not make"
