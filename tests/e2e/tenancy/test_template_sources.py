"""A tenant's templateFrom cannot read another team's ConfigMap or Secret through the operator.

Attack: the operator reads ConfigMaps and Secrets of every namespace it serves. A tenant who
may only touch its own namespace names the bystander's private Secret as a template source
(with `namespace:`, which ESO's schema does not even have), to have its content rendered into
a Secret of the tenant's namespace. Defence: a template source is read only in the
ExternalSecret's own namespace (models.ExternalSecret); any other namespace is `InvalidSpec`
naming the field, and without `namespace` the name is looked for in the tenant's namespace.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.e2e.conftest import fake_entry
from tests.e2e.tenancy.conftest import Bystander, Tenant

pytestmark = pytest.mark.e2e

SETTLE_SECONDS = 3.0
BYSTANDER_TOKEN = "bystander-private-token"


def stealing(source: dict[str, Any]) -> dict[str, Any]:
    return {
        "storeRef": {"name": "fake"},
        "refreshInterval": "1h",
        "data": [{"secretKey": "password", "remoteRef": {"key": "db"}}],
        "target": {"name": "loot", "template": {"templateFrom": [source]}},
    }


def test_a_tenant_cannot_template_from_another_namespace(
    tenant: Tenant, bystander: Bystander, tenancy_operator: Any
) -> None:
    tenant.vs.fake_store("fake", [fake_entry("db", "tenant-value")])
    items = [{"key": "token"}]
    with tenancy_operator():
        tenant.vs.external_secret(
            "other-namespace",
            stealing(
                {
                    "secret": {
                        "name": bystander.private_secret,
                        "namespace": bystander.namespace,
                        "items": items,
                    }
                }
            ),
        )
        condition = tenant.vs.wait_reason("other-namespace", "InvalidSpec")
        assert condition["message"] == (
            "spec.target.template.templateFrom[0].secret.namespace: a template is read only from the "
            f"ExternalSecret's own namespace ({tenant.namespace}), not from '{bystander.namespace}'"
        )
        tenant.vs.external_secret(
            "same-name", stealing({"secret": {"name": bystander.private_secret, "items": items}})
        )
        condition = tenant.vs.wait_reason("same-name", "TemplateError")
        assert condition["message"] == (
            "spec.target.template.templateFrom[0].secret.name: Secret "
            f"{tenant.namespace}/{bystander.private_secret} does not exist"
        )
        time.sleep(SETTLE_SECONDS)
        assert not tenant.vs.secret_exists("loot")
        bystander.assert_still_syncing()
    private = bystander.vs.secret_data(bystander.private_secret)
    assert private == {"token": BYSTANDER_TOKEN}  # untouched
