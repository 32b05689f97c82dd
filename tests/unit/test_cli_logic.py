"""The CLI's pure logic: reading the audit trail back, matching stores and keys, status rows, ages."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from vaultsync.commands.audittrail import readers
from vaultsync.commands.common import age
from vaultsync.commands.impact import Store, key_fields
from vaultsync.commands.status import _row
from vaultsync.models import store_refs

CUTOFF = datetime(2026, 11, 30, 5, 0, tzinfo=UTC)
SINCE = datetime(2026, 11, 29, tzinfo=UTC)


def _line(when: str, store: str, keys: list[str], who: list[str], message: str = "provider read") -> str:
    audit = {"store": store, "provider": "aws", "keys": keys, "requestedBy": who}
    return json.dumps({"message": message, "audit": audit, "timestamp": when, "severity": "info"})


def test_readers_split_at_the_rotation_and_ignore_other_stores_keys_and_noise() -> None:
    lines = [
        _line("2026-11-30T04:00:00+00:00", "ClusterSecretStore aws", ["prod/db"], ["shop/db", "billing/db"]),
        _line(
            "2026-11-30T04:30:00+00:00", "ClusterSecretStore aws", ["prod/db@v3"], ["shop/db"], "cache read"
        ),
        _line("2026-11-30T05:00:01+00:00", "ClusterSecretStore aws", ["prod/db"], ["shop/db"]),
        _line("2026-11-30T04:00:00+00:00", "ClusterSecretStore other", ["prod/db"], ["x/wrong-store"]),
        _line("2026-11-30T04:00:00+00:00", "ClusterSecretStore aws", ["prod/dbx"], ["x/wrong-key"]),
        _line("2026-11-28T04:00:00+00:00", "ClusterSecretStore aws", ["prod/db"], ["x/too-old"]),
        "not json at all",
        json.dumps({"message": "synced", "timestamp": "2026-11-30T04:00:00+00:00"}),
        '{"audit": "broken"',
    ]
    found = {r.external_secret: r for r in readers(lines, Store.parse("aws"), "prod/db", CUTOFF, SINCE)}
    assert set(found) == {"shop/db", "billing/db"}
    assert (len(found["shop/db"].before), len(found["shop/db"].after)) == (2, 1)
    assert (len(found["billing/db"].before), len(found["billing/db"].after)) == (1, 0)
    assert found["shop/db"].row()["lastOldRead"] == "2026-11-30T04:30:00.000+00:00"


def test_a_store_kind_narrows_the_audit_match_and_the_dependants() -> None:
    line = _line("2026-11-30T04:00:00+00:00", "SecretStore shop/aws", ["k"], ["shop/a"])
    assert readers([line], Store.parse("SecretStore/aws"), "k", CUTOFF, SINCE)
    assert not readers([line], Store.parse("ClusterSecretStore/aws"), "k", CUTOFF, SINCE)
    es = {
        "spec": {
            "storeRef": {"name": "aws"},
            "data": [{"remoteRef": {"key": "k"}}],
            "dataFrom": [{"extract": {"key": "k"}}],
        }
    }
    assert list(key_fields(es, "k", Store.parse("aws"))) == ["spec.data[0]", "spec.dataFrom[0]"]
    assert list(key_fields(es, "k", Store.parse("SecretStore/aws"))) == ["spec.data[0]", "spec.dataFrom[0]"]
    assert list(key_fields(es, "k", Store.parse("ClusterSecretStore/aws"))) == []


def test_an_entry_reading_through_its_own_source_ref_is_a_dependant_of_that_store() -> None:
    """A leaked key read by one entry from another store: that entry, and only it, depends on it."""
    shared = {"sourceRef": {"storeRef": {"name": "shared", "kind": "ClusterSecretStore"}}}
    es = {
        "spec": {
            "storeRef": {"name": "aws"},
            "data": [{"remoteRef": {"key": "k"}}, {"remoteRef": {"key": "k"}, **shared}],
            "dataFrom": [{"extract": {"key": "k"}, **shared}],
        }
    }
    assert list(key_fields(es, "k", Store.parse("ClusterSecretStore/shared"))) == [
        "spec.data[1]",
        "spec.dataFrom[0]",
    ]
    assert list(key_fields(es, "k", Store.parse("aws"))) == ["spec.data[0]"]


def test_a_status_row_names_the_field_in_the_message() -> None:
    message = "SecretStore shop/aws: spec.provider.aws.auth.secretRef.accessKeyId.name: gone"
    body = {
        "metadata": {"name": "db", "namespace": "shop", "generation": 2},
        "status": {
            "observedGeneration": 1,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "False",
                    "reason": "StoreNotReady",
                    "message": message,
                    "lastTransitionTime": "2026-11-30T04:00:00Z",
                }
            ],
        },
    }
    row = _row("ExternalSecret", body)
    assert row["field"] == "spec.provider.aws.auth.secretRef.accessKeyId.name"
    assert row["reason"] == "StoreNotReady" and row["nextRetry"] == "within 5m"
    assert row["message"].endswith("(spec changed since; not yet acted on)")


def test_ages_read_as_kubectl_writes_them() -> None:
    now = datetime(2026, 11, 30, 5, 0, tzinfo=UTC)
    assert age("2026-11-30T04:59:15Z", now) == "45s"
    assert age("2026-11-30T04:48:00Z", now) == "12m"
    assert age("2026-11-30T02:00:00Z", now) == "3h"
    assert age("2026-11-25T05:00:00Z", now) == "5d"
    assert age("2026-11-30T05:00:30Z", now) == "in 30s"
    assert age(None, now) == "-"


def test_a_find_entry_depends_on_a_key_its_last_sync_read() -> None:
    """A find names no key: the keys its last sync read (status.remoteVersions) say whether
    it holds the leaked value, through its own store only."""
    es = {
        "spec": {
            "storeRef": {"name": "aws"},
            "dataFrom": [
                {"find": {"path": "prod/"}},
                {"find": {"path": "prod/"}, "sourceRef": {"storeRef": {"name": "other"}}},
            ],
        },
        "status": {"remoteVersions": {"prod/db": "v3"}},
    }
    assert list(key_fields(es, "prod/db", Store.parse("aws"))) == ["spec.dataFrom[0]"]
    assert list(key_fields(es, "prod/db", Store.parse("other"))) == ["spec.dataFrom[1]"]
    assert list(key_fields(es, "prod/cache", Store.parse("aws"))) == []
    assert list(key_fields({**es, "status": {}}, "prod/db", Store.parse("aws"))) == []


def test_an_external_secret_without_spec_store_ref_depends_through_its_entrys_own_store() -> None:
    own = {"name": "aws", "kind": "ClusterSecretStore"}
    es = {
        "metadata": {"namespace": "shop", "name": "db"},
        "spec": {
            "data": [{"secretKey": "a", "remoteRef": {"key": "prod/db"}, "sourceRef": {"storeRef": own}}]
        },
    }
    store = Store.parse("aws")
    assert list(key_fields(es, "prod/db", store)) == ["spec.data[0]"]
    assert [ref for ref in store_refs(es["spec"]) if store.names(ref)] == [own]
