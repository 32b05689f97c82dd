"""The chart's optional NetworkPolicy: off by default, and when on, exactly the traffic the
operator needs: egress to the API server, the cluster DNS and the vaults the admin lists;
ingress only to the health and metrics ports.

Rendering needs only helm; `test_chart_installs` also sends the "network-policy" value set
through a server-side dry run, so the API server validates the object.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.chart.helm import NETWORK_POLICY, HelmFailed, Manifest, find, only, render, template

FULLNAME = "vs-vaultsync"


def policy(values: dict[str, Any], tmp_path: Path) -> tuple[Manifest, Manifest]:
    manifests = render(values, tmp_path)
    return only(manifests, "NetworkPolicy", FULLNAME), only(manifests, "Deployment", FULLNAME)


def test_no_network_policy_by_default(tmp_path: Path) -> None:
    assert find(render({}, tmp_path), "NetworkPolicy") == []


def test_the_policy_selects_exactly_the_operator_pods(tmp_path: Path) -> None:
    np, deployment = policy({"networkPolicy": NETWORK_POLICY}, tmp_path)
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = np["spec"]["podSelector"]["matchLabels"]
    assert selector and selector.items() <= pod_labels.items()
    assert selector == deployment["spec"]["selector"]["matchLabels"]
    assert np["metadata"]["namespace"] == "vaultsync"
    assert sorted(np["spec"]["policyTypes"]) == ["Egress", "Ingress"]


def test_ingress_is_only_the_health_and_metrics_ports_from_the_listed_peers(tmp_path: Path) -> None:
    np, deployment = policy({"networkPolicy": NETWORK_POLICY}, tmp_path)
    (rule,) = np["spec"]["ingress"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    named_ports = {p["name"] for p in container["ports"]}
    assert {p["port"] for p in rule["ports"]} == {"health", "metrics"} == named_ports
    assert {p["protocol"] for p in rule["ports"]} == {"TCP"}
    assert rule["from"] == NETWORK_POLICY["ingressFrom"]


def test_ingress_without_listed_peers_is_still_limited_to_the_two_ports(tmp_path: Path) -> None:
    values = {"networkPolicy": {**NETWORK_POLICY, "ingressFrom": []}}
    np, _ = policy(values, tmp_path)
    (rule,) = np["spec"]["ingress"]
    assert "from" not in rule
    assert {p["port"] for p in rule["ports"]} == {"health", "metrics"}


def egress_peers(np: Manifest) -> list[tuple[frozenset[str], frozenset[tuple[Any, str]]]]:
    """Each egress rule as (its destinations, its (port, protocol) pairs)."""
    out = []
    for rule in np["spec"]["egress"]:
        dests = frozenset(peer["ipBlock"]["cidr"] if "ipBlock" in peer else "dns-pods" for peer in rule["to"])
        out.append((dests, frozenset((p["port"], p["protocol"]) for p in rule["ports"])))
    return out


def test_egress_is_the_api_server_dns_and_the_listed_vaults_only(tmp_path: Path) -> None:
    np, _ = policy({"networkPolicy": NETWORK_POLICY}, tmp_path)
    assert egress_peers(np) == [
        (frozenset({"10.96.0.1/32", "172.18.0.2/32"}), frozenset({(6443, "TCP")})),
        (frozenset({"dns-pods"}), frozenset({(53, "UDP"), (53, "TCP")})),
        (frozenset({"10.20.0.0/16"}), frozenset({(8200, "TCP")})),
        (frozenset({"0.0.0.0/0"}), frozenset({(443, "TCP")})),
    ]
    dns = np["spec"]["egress"][1]["to"][0]
    assert dns["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}
    assert dns["podSelector"] == {"matchLabels": {"k8s-app": "kube-dns"}}
    for rule in np["spec"]["egress"]:
        for peer in rule["to"]:
            assert "except" not in peer.get("ipBlock", {})


def test_dns_can_be_left_out(tmp_path: Path) -> None:
    values = {"networkPolicy": {**NETWORK_POLICY, "dns": {"enabled": False}}}
    np, _ = policy(values, tmp_path)
    assert all(53 not in {p["port"] for p in rule["ports"]} for rule in np["spec"]["egress"])


def test_enabling_it_without_the_api_server_addresses_fails_naming_the_value(tmp_path: Path) -> None:
    with pytest.raises(HelmFailed, match=r"networkPolicy\.apiServer\.cidrs"):
        template({"networkPolicy": {"enabled": True}}, tmp_path)


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"networkPolicy": {"enabled": "yes"}}, "/networkPolicy/enabled"),
        (
            {"networkPolicy": {"apiServer": {"cidrs": ["kubernetes.default"]}}},
            "/networkPolicy/apiServer/cidrs/0",
        ),
        ({"networkPolicy": {"vaultEndpoints": [{"cidr": "10.0.0.0/8"}]}}, "ports"),
        ({"networkPolicy": {"vaultEndpoints": [{"cidr": "10.0.0.0/8", "ports": [0]}]}}, "ports/0"),
        ({"networkPolicy": {"egress": []}}, "egress"),
        ({"fakeProvider": {"enabled": "true"}}, "/fakeProvider/enabled"),
    ],
)
def test_the_schema_rejects_malformed_network_policy_values(
    values: dict[str, Any], complaint: str, tmp_path: Path
) -> None:
    with pytest.raises(HelmFailed, match="values don't meet the specifications") as failure:
        template(values, tmp_path)
    assert complaint in str(failure.value)


def test_the_fake_provider_is_off_unless_the_value_turns_it_on(tmp_path: Path) -> None:
    def env(values: dict[str, Any]) -> dict[str, Any]:
        deployment = only(render(values, tmp_path), "Deployment", FULLNAME)
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        return {e["name"]: e.get("value") for e in container["env"]}

    assert "VAULTSYNC_ENABLE_FAKE_PROVIDER" not in env({})
    assert env({"fakeProvider": {"enabled": True}})["VAULTSYNC_ENABLE_FAKE_PROVIDER"] == "true"
