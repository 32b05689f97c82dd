"""Every endpoint field of every provider takes an origin and nothing else, named in the refusal.

The same rule is in the CRDs (CEL, proven on a real API server by
tests/e2e/test_crd_validation.py) and in the provider models (here), for objects the API
server never checked. The CRDs' regular expression is the one `vaultsync.origins` builds,
and it is tried here on the same inputs as the model.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from vaultsync.constants import ORIGIN_MAX_LENGTH
from vaultsync.errors import InvalidStoreConfig
from vaultsync.origins import HTTP_SCHEMES, HTTPS_ONLY, check_origin, origin_of, origin_pattern
from vaultsync.providers import PROVIDERS

CRD_DIR = Path(__file__).resolve().parents[2] / "crds"
TOKEN_AUTH = {"token": {"secretRef": {"name": "t", "key": "token"}}}
AZURE_AUTH = {"clientSecret": {"clientId": "app", "secretRef": {"name": "s", "key": "k"}}}


def vault(server: str) -> dict[str, Any]:
    return {"server": server, "auth": TOKEN_AUTH}


def aws(endpoint: str) -> dict[str, Any]:
    return {"region": "eu-west-1", "endpoint": endpoint}


def azure_vault_url(url: str) -> dict[str, Any]:
    return {"vaultUrl": url, "tenantId": "t", "auth": AZURE_AUTH}


def azure_authority(url: str) -> dict[str, Any]:
    return {
        "vaultUrl": "https://shop.vault.azure.net",
        "tenantId": "t",
        "authorityHost": url,
        "auth": AZURE_AUTH,
    }


# (provider, field as the CRD names it, a config with the value in it, the CRD property path, schemes)
FIELDS = [
    ("vault", "server", vault, ("vault", "server"), HTTP_SCHEMES),
    ("aws", "endpoint", aws, ("aws", "endpoint"), HTTP_SCHEMES),
    ("azurekv", "vaultUrl", azure_vault_url, ("azurekv", "vaultUrl"), HTTPS_ONLY),
    ("azurekv", "authorityHost", azure_authority, ("azurekv", "authorityHost"), HTTPS_ONLY),
]
HOST = "vault.example.com"
BAD_FORMS = {
    "path": f"https://{HOST}/v1/anything",
    "path after a port": f"https://{HOST}:8200/x",
    "fragment": "https://10.0.0.5/steal#",
    "query": f"https://{HOST}?x=1",
    "userinfo": f"https://{HOST}@10.0.0.5",
    "userinfo with password": f"https://a:b@{HOST}",
    "space": f"https://{HOST} ",
    "space inside": "https://vault .example.com",
    "leading space": f" https://{HOST}",
    "newline": f"https://{HOST}\n",
    "tab": f"https://{HOST}\t",
    "control character": f"https://{HOST}\x00",
    "non-http scheme": f"ftp://{HOST}",
    "file scheme": "file:///etc/passwd",
    "no scheme": HOST,
    "scheme without host": "https://",
    "backslash": f"https://{HOST}\\@10.0.0.5",
    "overlong": "https://" + "a" * (ORIGIN_MAX_LENGTH - len("https://") - 3) + ".com",
    "host name too long": "https://" + ".".join(["a" * 63] * 4),
    "port out of range": f"https://{HOST}:65536",
    "port zero": f"https://{HOST}:0",
    "empty port": f"https://{HOST}:",
    "double dot": "https://vault..example.com",
    "not an IPv6 address": "https://[zz::1]",
    "percent encoding": "https://vault%2eexample.com",
    "unicode host": "https://v\u0430ult.example.com",  # a Cyrillic a
}
GOOD_ORIGINS = [
    f"https://{HOST}",
    f"https://{HOST}/",
    f"https://{HOST}:8200",
    "https://10.0.0.5:8200",
    "https://[fd00::1]:8200",
    "https://localhost",
    "https://VAULT.Example.com:443",
    "https://" + ".".join(["a" * 63] * 3 + ["b" * 61]) + ":65535",  # the longest host name
]


@functools.cache
def load_crd(name: str) -> Any:
    return yaml.safe_load((CRD_DIR / name).read_text())


def crd_rule(name: str, path: tuple[str, str]) -> str:
    """The regular expression in the CRD's CEL rule of one field."""
    doc = load_crd(name)
    spec = doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    prop = spec["properties"]["provider"]["properties"][path[0]]["properties"][path[1]]
    (rule,) = [v["rule"] for v in prop["x-kubernetes-validations"]]
    match = re.search(r"self\.matches\(r'(.*)'\)", rule)
    assert match, rule
    return match.group(1)


def refusal(provider: str, config: dict[str, Any]) -> str:
    with pytest.raises(InvalidStoreConfig) as caught:
        PROVIDERS[provider].parse_config(config)
    return caught.value.message


@pytest.mark.parametrize("form", sorted(BAD_FORMS))
@pytest.mark.parametrize(("provider", "field", "make", "path", "schemes"), FIELDS, ids=[f[1] for f in FIELDS])
def test_a_bad_endpoint_is_refused_naming_the_field_and_the_rule(
    provider: str, field: str, make: Any, path: tuple[str, str], schemes: tuple[str, ...], form: str
) -> None:
    message = refusal(provider, make(BAD_FORMS[form]))
    assert message.startswith(f"spec.provider.{provider}.{field}: ")
    assert "must be an origin" in message
    assert "10.0.0.5" not in message  # the value itself is not repeated


@pytest.mark.parametrize("form", sorted(BAD_FORMS))
@pytest.mark.parametrize("crd", ["secretstores.yaml", "clustersecretstores.yaml"])
@pytest.mark.parametrize(("provider", "field", "make", "path", "schemes"), FIELDS, ids=[f[1] for f in FIELDS])
def test_the_crd_rule_refuses_the_same_bad_endpoints(
    provider: str, field: str, make: Any, path: tuple[str, str], schemes: tuple[str, ...], crd: str, form: str
) -> None:
    value = BAD_FORMS[form]
    accepted = re.fullmatch(crd_rule(crd, path), value) is not None and len(value) <= ORIGIN_MAX_LENGTH
    semantic = form in ("double dot", "not an IPv6 address", "host name too long")  # the model checks these
    assert accepted is False or semantic


@pytest.mark.parametrize("crd", ["secretstores.yaml", "clustersecretstores.yaml"])
@pytest.mark.parametrize(("provider", "field", "make", "path", "schemes"), FIELDS, ids=[f[1] for f in FIELDS])
def test_the_crd_rule_is_the_models_rule(
    provider: str, field: str, make: Any, path: tuple[str, str], schemes: tuple[str, ...], crd: str
) -> None:
    assert crd_rule(crd, path) == origin_pattern(schemes)


@pytest.mark.parametrize("origin", GOOD_ORIGINS)
@pytest.mark.parametrize(("provider", "field", "make", "path", "schemes"), FIELDS, ids=[f[1] for f in FIELDS])
def test_a_good_origin_is_accepted(
    provider: str, field: str, make: Any, path: tuple[str, str], schemes: tuple[str, ...], origin: str
) -> None:
    config = PROVIDERS[provider].parse_config(make(origin))
    stored = getattr(config, re.sub(r"([A-Z])", r"_\1", field).lower())
    assert stored == origin.rstrip("/")
    assert re.fullmatch(crd_rule("secretstores.yaml", path), origin)


@pytest.mark.parametrize("provider", ["vault", "aws"])
def test_vault_and_aws_accept_plain_http_for_servers_inside_the_cluster(provider: str) -> None:
    make = vault if provider == "vault" else aws
    PROVIDERS[provider].parse_config(make("http://vault.vault.svc:8200"))


@pytest.mark.parametrize("field", ["vaultUrl", "authorityHost"])
def test_azure_endpoints_must_be_https(field: str) -> None:
    make = azure_vault_url if field == "vaultUrl" else azure_authority
    assert refusal("azurekv", make("http://shop.vault.azure.net")).startswith(
        f"spec.provider.azurekv.{field}: "
    )


@pytest.mark.parametrize("region", ["eu-west-1", "us-gov-west-1", "cn-north-1"])
def test_an_aws_region_is_accepted(region: str) -> None:
    PROVIDERS["aws"].parse_config({"region": region})


@pytest.mark.parametrize(
    "region", ["", "eu-west-1.evil.example.com#", "eu west 1", "eu-west-1/", "a@b", "EU-WEST-1", "x" * 65]
)
def test_an_aws_region_that_would_change_the_host_name_is_refused(region: str) -> None:
    assert refusal("aws", {"region": region}).startswith("spec.provider.aws.region: ")


def test_an_empty_aws_endpoint_means_aws_own() -> None:
    assert PROVIDERS["aws"].parse_config({"region": "eu-west-1"}).endpoint == ""  # type: ignore[attr-defined]


def test_the_origin_of_a_url_makes_the_default_port_explicit_for_comparison() -> None:
    assert origin_of("https://Vault.example.com/v1/x?y#z") == "https://vault.example.com:443"
    assert origin_of("http://vault:80/") == origin_of("http://vault")
    assert origin_of("http://[fd00::1]:8200/v1") == "http://[fd00::1]:8200"
    assert origin_of("http://vault:8200") != origin_of("http://vault:8201")


def test_check_origin_keeps_the_origin_without_a_trailing_slash() -> None:
    assert check_origin("https://vault:8200/", HTTP_SCHEMES) == "https://vault:8200"


@pytest.mark.parametrize("tenant", ["..", "a/../b", "tenant\n", "a/b", "-a", "a..b", "x" * 257])
def test_an_azure_tenant_that_would_change_the_token_url_is_refused(tenant: str) -> None:
    config = {**azure_vault_url("https://shop.vault.azure.net"), "tenantId": tenant}
    assert refusal("azurekv", config).startswith("spec.provider.azurekv.tenantId: ")


@pytest.mark.parametrize("tenant", ["7d1b4c3a-0000-4000-8000-00000000a2ce", "contoso.onmicrosoft.com"])
def test_an_azure_tenant_id_or_domain_is_accepted(tenant: str) -> None:
    PROVIDERS["azurekv"].parse_config({**azure_vault_url("https://shop.vault.azure.net"), "tenantId": tenant})
