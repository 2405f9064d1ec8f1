"""deploy/k8s NetworkPolicies allow exactly the flows Connect needs, in both overlays.

The rendered policies are evaluated (tests/deploy/netpol.py) for every pairing of a Connect pod with a
set of peers and ports, and compared with the reference below, written from docs/deployment.md's flow
table: each intended flow is open, and every other probed connection is closed.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.deploy.deploy_helpers import of_kind
from tests.deploy.netpol import External, Peer, Pod, Policies

SERVICE_PORTS = {"catalog": 8000, "scheduler": 8001, "executor": 8002, "logsink": 8003}
BACKEND_PORTS = {5671, 5672, 27017}  # AMQPS, AMQP, MongoDB
SMTP_AND_WEBHOOK_PORTS = {25, 465, 587, 443}
METADATA = "169.254.169.254"
PROBE_PORTS = sorted(
    {1, 22, 2222, 25, 465, 587, 443, 80, 8080, 8443, 53, 5671, 5672, 15672, 27017, 6443, 10250, 65535}
    | set(SERVICE_PORTS.values())
)

PARTNER_V4, PARTNER_V6, PRIVATE_PARTNER = "203.0.113.7", "2001:db8::7", "10.20.0.5"


def connect_pod(namespace: str, component: str) -> Pod:
    labels = {"app.kubernetes.io/name": "connect", "app.kubernetes.io/component": component}
    return Pod(namespace, labels, named_ports={"http": SERVICE_PORTS[component]})


def peers(namespace: str) -> dict[str, Peer]:
    return {
        "partner-v4": External(PARTNER_V4),
        "partner-v6": External(PARTNER_V6),
        "partner-private": External(PRIVATE_PARTNER),  # an SFTP server over a VPN
        "metadata": External(METADATA),
        "prometheus": Pod("monitoring", {"app.kubernetes.io/name": "prometheus"}),
        "ingress-controller": Pod("ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"}),
        "same-namespace-pod": Pod(namespace, {"app": "rabbitmq"}),
        "kube-system-pod": Pod("kube-system", {"k8s-app": "kube-dns"}),
    }


# ---------------------------------------------------------------------------- the reference


def expected_egress(component: str, peer_name: str, protocol: str, port: int) -> bool:
    if port == 53:
        return True  # DNS, TCP and UDP, wherever the resolver is
    if protocol != "TCP":
        return False
    if port in BACKEND_PORTS:
        return True  # RabbitMQ and MongoDB, in or outside the cluster
    external = peer_name.startswith("partner-")  # never the metadata endpoint, never in-cluster pods
    if component in ("catalog", "executor"):
        return external  # SFTP on any port (probe, host key, transfers); REST destinations
    if component == "logsink":
        return external and port in SMTP_AND_WEBHOOK_PORTS
    return False


def expected_ingress(component: str, peer_name: str, protocol: str, port: int) -> bool:
    if protocol != "TCP" or port != SERVICE_PORTS[component]:
        return False
    if component == "catalog":
        return True  # the API and console, e.g. through the ingress controller
    return peer_name == "prometheus"  # /metrics from the monitoring namespace only


def namespace_of(objects: list[dict[str, Any]]) -> str:
    (namespace,) = {o["metadata"]["namespace"] for o in of_kind(objects, "NetworkPolicy")}
    return str(namespace)


# ---------------------------------------------------------------------------- the manifests


@pytest.mark.parametrize("component", sorted(SERVICE_PORTS))
def test_egress_is_exactly_the_intended_flows(objects: list[dict[str, Any]], component: str) -> None:
    namespace = namespace_of(objects)
    policies = Policies(objects)
    pod = connect_pod(namespace, component)
    wrong = [
        (name, protocol, port, allowed)
        for name, peer in peers(namespace).items()
        for protocol in ("TCP", "UDP")
        for port in PROBE_PORTS
        if (allowed := policies.egress(pod, peer, port, protocol))
        != expected_egress(component, name, protocol, port)
    ]
    assert not wrong, (
        f"{component} egress differs from the intended flows (peer, proto, port, allowed): {wrong}"
    )


@pytest.mark.parametrize("component", sorted(SERVICE_PORTS))
def test_ingress_is_exactly_the_intended_flows(objects: list[dict[str, Any]], component: str) -> None:
    namespace = namespace_of(objects)
    policies = Policies(objects)
    pod = connect_pod(namespace, component)
    wrong = [
        (name, protocol, port, allowed)
        for name, peer in peers(namespace).items()
        if isinstance(peer, Pod)
        for protocol in ("TCP", "UDP")
        for port in PROBE_PORTS
        if (allowed := policies.ingress(pod, peer, port, protocol))
        != expected_ingress(component, name, protocol, port)
    ]
    assert not wrong, f"{component} ingress differs from the intended flows: {wrong}"


def test_named_flows_connect_end_to_end(objects: list[dict[str, Any]]) -> None:
    """The flows of docs/deployment.md, each checked at both ends where both are pods."""
    ns = namespace_of(objects)
    p = Policies(objects)
    pod = {c: connect_pod(ns, c) for c in SERVICE_PORTS}
    sftp_odd_port, sftp_vpn = External(PARTNER_V4), External(PRIVATE_PARTNER)
    assert p.connects(pod["catalog"], sftp_odd_port, 2222), "catalog: test connection / fetch host key"
    assert p.connects(pod["catalog"], sftp_vpn, 22)
    assert p.connects(pod["executor"], sftp_odd_port, 2222), "executor: SFTP on the connection's port"
    assert p.connects(pod["executor"], External(PARTNER_V6), 443), "executor: REST destination"
    assert p.connects(pod["executor"], External(PARTNER_V4), 8443), "executor: REST destination on its port"
    for port in SMTP_AND_WEBHOOK_PORTS:
        assert p.connects(pod["logsink"], External(PARTNER_V4), port), f"logsink: SMTP/webhook {port}"
    rabbit_in_cluster = Pod(ns, {"app": "rabbitmq"})
    for component, src in pod.items():
        assert p.connects(src, rabbit_in_cluster, 5672), f"{component} → RabbitMQ"
        assert p.connects(src, External(PRIVATE_PARTNER), 27017), f"{component} → MongoDB"
        assert p.connects(src, External("10.96.0.10"), 53, "UDP"), f"{component} → DNS"
        prometheus = Pod("monitoring", {"app.kubernetes.io/name": "prometheus"})
        assert p.connects(prometheus, src, SERVICE_PORTS[component]), f"Prometheus → {component} metrics"
    # Connect's services talk through the broker only, never to each other.
    assert not p.connects(pod["catalog"], pod["executor"], 8002)
    assert not p.connects(pod["executor"], External(METADATA), 80), "cloud metadata stays closed"


# ---------------------------------------------------------------------------- the evaluator itself


def test_evaluator_semantics() -> None:
    web = Pod("a", {"app": "web"}, named_ports={"http": 8080})
    deny_ingress = {
        "kind": "NetworkPolicy",
        "metadata": {"namespace": "a"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
    }
    allow = {
        "kind": "NetworkPolicy",
        "metadata": {"namespace": "a"},
        "spec": {
            "podSelector": {"matchLabels": {"app": "web"}},
            "ingress": [{"from": [{"podSelector": {}}], "ports": [{"port": "http"}]}],
        },
    }
    other_ns = Pod("b", {"app": "x"})
    same_ns = Pod("a", {"app": "x"})
    assert Policies([]).ingress(web, other_ns, 1), "no policy: not isolated"
    assert not Policies([deny_ingress]).ingress(web, same_ns, 8080)
    assert Policies([deny_ingress]).egress(web, other_ns, 1), "isolated for ingress only"
    both = Policies([deny_ingress, allow])
    assert both.ingress(web, same_ns, 8080), "named port resolved, podSelector alone is the same namespace"
    assert not both.ingress(web, other_ns, 8080)
    assert not both.ingress(web, same_ns, 8081)
    assert not both.ingress(web, same_ns, 8080, "UDP")
    ranged = {
        "kind": "NetworkPolicy",
        "metadata": {"namespace": "a"},
        "spec": {
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [
                {
                    "to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}],
                    "ports": [{"port": 2000, "endPort": 2010}],
                }
            ],
        },
    }
    r = Policies([ranged])
    assert r.egress(web, External("10.2.3.4"), 2005)
    assert not r.egress(web, External("10.1.3.4"), 2005), "except"
    assert not r.egress(web, External("10.2.3.4"), 2011), "endPort"
    assert not r.egress(web, External("2001:db8::1"), 2005), "other address family"
    assert not r.egress(web, same_ns, 2005), "ipBlocks do not match pods"
