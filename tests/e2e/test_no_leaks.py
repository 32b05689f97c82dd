"""No synced value ever appears in the operator's logs, Events, status or metrics.

The operator runs verbose (kopf debug logging included) through successes and every
kind of failure that handles values (property errors, template errors, a filter that
chokes on the value); then everything it emitted is searched for the values.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest

from tests.e2e.conftest import Vaultsync, fake_entry
from tests.env.waiting import eventually

pytestmark = pytest.mark.e2e

PASSWORD = "Zq7-leak-canary-password-91x"
TOKEN = "tok-leak-canary-4242-ABCD"
NOT_A_NUMBER = "canary-not-a-number-777"
CANARIES = (PASSWORD, TOKEN, NOT_A_NUMBER)


def test_values_never_appear_in_logs_events_status_or_metrics(
    vs: Vaultsync, run_operator: Any, namespace: str
) -> None:
    vs.fake_store(
        "fake",
        [
            fake_entry("db", {"password": PASSWORD, "port": NOT_A_NUMBER}),
            fake_entry("plain", TOKEN),
        ],
    )
    with run_operator(namespace, "--namespace", namespace, "--verbose") as operator:
        vs.external_secret(
            "ok",
            {
                "storeRef": {"name": "fake"},
                "refreshInterval": "1s",
                "data": [
                    {"secretKey": "password", "remoteRef": {"key": "db", "property": "password"}},
                    {"secretKey": "token", "remoteRef": {"key": "plain"}},
                ],
                "target": {"template": {"data": {"dsn": "u:{{ password }}", "token": "{{ token }}"}}},
            },
        )
        failing = {
            "not-json": {"data": [{"secretKey": "a", "remoteRef": {"key": "plain", "property": "x"}}]},
            "no-property": {"data": [{"secretKey": "a", "remoteRef": {"key": "db", "property": "user"}}]},
            "filter-chokes": {
                "data": [{"secretKey": "port", "remoteRef": {"key": "db", "property": "port"}}],
                "target": {"template": {"data": {"port": "{{ port | int(default=none) + 1 }}"}}},
            },
            "undefined": {
                "data": [{"secretKey": "password", "remoteRef": {"key": "db", "property": "password"}}],
                "target": {"template": {"data": {"x": "{{ password.nope.deeper }}"}}},
            },
            "value-as-lookup-key": {
                "data": [{"secretKey": "password", "remoteRef": {"key": "db", "property": "password"}}],
                "target": {"template": {"data": {"x": "{{ {}[password] }}"}}},
            },
        }
        for name, spec in failing.items():
            vs.external_secret(name, {"storeRef": {"name": "fake"}, **spec})
        vs.wait_data("ok", {"dsn": f"u:{PASSWORD}", "token": TOKEN})
        for name in failing:
            eventually(lambda name=name: _failed(vs, name), what=f"ExternalSecret {name} to fail", timeout=60)
        with urllib.request.urlopen(operator.metrics_url, timeout=5) as response:
            metrics = response.read().decode()
        logs = operator.logs()

    assert "sync failed" in logs and "synced" in logs  # the log really covers both paths
    # Who read what: provider reads, and values served from the cache or a shared read.
    audit = [json.loads(line)["audit"] for line in logs.splitlines() if '"audit"' in line]
    assert {"db", "plain"} <= {key for entry in audit for key in entry["keys"]}
    assert all(entry["store"] == f"SecretStore {namespace}/fake" for entry in audit)
    assert any(f"{namespace}/ok" in entry["requestedBy"] for entry in audit)
    statuses = json.dumps([vs.get_external_secret(n).get("status") for n in ["ok", *failing]])
    events = json.dumps([(e.reason, e.message) for e in vs.api.core.list_namespaced_event(namespace).items])
    assert "TemplateError" in events and "PropertyNotFound" in events
    for where, text in (("logs", logs), ("events", events), ("status", statuses), ("metrics", metrics)):
        for canary in CANARIES:
            if canary in text:  # not `assert ... in`: pytest would print the value
                pytest.fail(f"a secret value leaked into the operator's {where}")


def test_values_never_leak_through_find_decoding_templates_from_configmaps_or_metadata(
    vs: Vaultsync, run_operator: Any, namespace: str
) -> None:
    """The paths External Secrets Operator parity added that handle values: `dataFrom.find`,
    a decoding that chokes on the value, a template kept in a ConfigMap that fails on it, a
    value rendered into a label the API server refuses (its 422 names the value)."""
    vs.fake_store(
        "fake",
        [
            fake_entry("app/db", {"password": PASSWORD, "port": NOT_A_NUMBER}),
            fake_entry("app/plain", TOKEN),
        ],
    )
    vs.api.core.create_namespaced_config_map(
        namespace,
        {
            "metadata": {"name": "templates"},
            "data": {"port": "{{ port | int(default=none) + 1 }}", "ok": "u:{{ password }}"},
        },
    )
    with run_operator(namespace, "--namespace", namespace, "--verbose") as operator:
        vs.external_secret(
            "found",
            {"storeRef": {"name": "fake"}, "refreshInterval": "1s", "dataFrom": [{"find": {"path": "app/"}}]},
        )
        vs.external_secret(
            "from-configmap",
            {
                "storeRef": {"name": "fake"},
                "dataFrom": [{"extract": {"key": "app/db"}}],
                "target": {
                    "template": {
                        "templateFrom": [{"configMap": {"name": "templates", "items": [{"key": "ok"}]}}]
                    }
                },
            },
        )
        failing = {
            "not-base64": {
                "data": [{"secretKey": "t", "remoteRef": {"key": "app/plain", "decodingStrategy": "Base64"}}]
            },
            "configmap-template-chokes": {
                "dataFrom": [{"extract": {"key": "app/db"}}],
                "target": {
                    "template": {
                        "templateFrom": [{"configMap": {"name": "templates", "items": [{"key": "port"}]}}]
                    }
                },
            },
            "value-as-label": {
                "data": [{"secretKey": "token", "remoteRef": {"key": "app/plain"}}],
                "target": {"template": {"metadata": {"labels": {"leak": "{{ token }}!"}}}},
            },
        }
        for name, spec in failing.items():
            vs.external_secret(name, {"storeRef": {"name": "fake"}, **spec})
        vs.wait_data("from-configmap", {"ok": f"u:{PASSWORD}"})
        found = eventually(lambda: _synced_keys(vs, "found"), what="the find to sync", timeout=60)
        for name in failing:
            eventually(lambda name=name: _failed(vs, name), what=f"ExternalSecret {name} to fail", timeout=60)
        with urllib.request.urlopen(operator.metrics_url, timeout=5) as response:
            metrics = response.read().decode()
        logs = operator.logs()

    assert len(found) == 2  # both keys under the path, named after them (converted)
    statuses = json.dumps(
        [vs.get_external_secret(n).get("status") for n in ["found", "from-configmap", *failing]]
    )
    events = json.dumps([(e.reason, e.message) for e in vs.api.core.list_namespaced_event(namespace).items])
    assert "sync failed" in logs and "TemplateError" in events  # the failure paths really ran
    for where, text in (("logs", logs), ("events", events), ("status", statuses), ("metrics", metrics)):
        for canary in CANARIES:
            if canary in text:  # not `assert ... in`: pytest would print the value
                pytest.fail(f"a secret value leaked into the operator's {where}")


def _synced_keys(vs: Vaultsync, name: str) -> set[str]:
    assert vs.secret_exists(name), f"Secret {name} does not exist"
    keys = set(vs.secret_data(name))
    assert keys, "the Secret holds no key yet"
    return keys


def _failed(vs: Vaultsync, name: str) -> None:
    condition = vs.ready(name)
    assert condition.get("status") == "False", condition
