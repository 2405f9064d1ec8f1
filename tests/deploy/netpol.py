"""A small evaluator of Kubernetes NetworkPolicy semantics (networking.k8s.io/v1), for the manifest tests.

It answers "is this one connection allowed?" the way the API documents it:
- a pod is isolated for a direction once any policy in its namespace selects it with that policyType;
  a pod not isolated allows everything in that direction;
- an isolated pod allows a connection that some rule of a selecting policy allows (rules add up);
- a rule without `to`/`from` matches every peer, without `ports` every port; a port entry without
  `port` matches every port of its protocol (TCP by default); `endPort` makes a range; a named port
  is resolved against the destination pod's container ports;
- a peer is an ipBlock (external addresses only: pod traffic is not matched by ipBlocks here, as the
  API advises) or namespaceSelector and/or podSelector (podSelector alone: the policy's namespace);
- a connection between two pods needs the source's egress AND the destination's ingress.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        present, value = expr["key"] in labels, labels.get(expr["key"])
        ok = {
            "In": present and value in expr.get("values", []),
            "NotIn": not present or value not in expr.get("values", []),
            "Exists": present,
            "DoesNotExist": not present,
        }[expr["operator"]]
        if not ok:
            return False
    return True


@dataclass(frozen=True)
class Pod:
    namespace: str
    labels: dict[str, str]
    namespace_labels: dict[str, str] = field(default_factory=dict)
    named_ports: dict[str, int] = field(default_factory=dict)

    def ns_labels(self) -> dict[str, str]:
        return {"kubernetes.io/metadata.name": self.namespace, **self.namespace_labels}


@dataclass(frozen=True)
class External:
    address: str


Peer = Pod | External


def _peer_matches(peer_rule: dict[str, Any], peer: Peer, policy_ns: str) -> bool:
    if "ipBlock" in peer_rule:
        if not isinstance(peer, External):
            return False
        addr = ipaddress.ip_address(peer.address)
        block = peer_rule["ipBlock"]
        net = ipaddress.ip_network(block["cidr"])
        if addr.version != net.version or addr not in net:
            return False
        return not any(
            addr.version == ipaddress.ip_network(e).version and addr in ipaddress.ip_network(e)
            for e in block.get("except", [])
        )
    if not isinstance(peer, Pod):
        return False
    if "namespaceSelector" in peer_rule:
        if not selects(peer_rule["namespaceSelector"], peer.ns_labels()):
            return False
    elif peer.namespace != policy_ns:
        return False
    return selects(peer_rule.get("podSelector", {}), peer.labels)


def _port_matches(entry: dict[str, Any], protocol: str, port: int, named: dict[str, int]) -> bool:
    if entry.get("protocol", "TCP") != protocol:
        return False
    if "port" not in entry:
        return True
    wanted = entry["port"]
    if isinstance(wanted, str):
        return named.get(wanted) == port
    return int(wanted) <= port <= int(entry.get("endPort", wanted))


class Policies:
    def __init__(self, objects: list[dict[str, Any]], default_namespace: str = "default") -> None:
        self.policies = [
            (o["metadata"].get("namespace", default_namespace), o["spec"])
            for o in objects
            if o["kind"] == "NetworkPolicy"
        ]

    def _direction_allows(
        self, pod: Pod, direction: str, peer: Peer, protocol: str, port: int, named: dict[str, int]
    ) -> bool:
        selecting = [
            spec
            for ns, spec in self.policies
            if ns == pod.namespace
            and selects(spec["podSelector"], pod.labels)
            and direction in spec.get("policyTypes", ["Ingress"])
        ]
        if not selecting:
            return True  # not isolated in this direction
        key, peers_key = direction.lower(), "to" if direction == "Egress" else "from"
        for spec in selecting:
            for rule in spec.get(key) or []:
                peers = rule.get(peers_key) or []
                ports = rule.get("ports") or []
                if peers and not any(_peer_matches(p, peer, pod.namespace) for p in peers):
                    continue
                if ports and not any(_port_matches(e, protocol, port, named) for e in ports):
                    continue
                return True
        return False

    def egress(self, src: Pod, dst: Peer, port: int, protocol: str = "TCP") -> bool:
        named = dst.named_ports if isinstance(dst, Pod) else {}
        return self._direction_allows(src, "Egress", dst, protocol, port, named)

    def ingress(self, dst: Pod, src: Peer, port: int, protocol: str = "TCP") -> bool:
        return self._direction_allows(dst, "Ingress", src, protocol, port, dst.named_ports)

    def connects(self, src: Peer, dst: Peer, port: int, protocol: str = "TCP") -> bool:
        """Both ends agree: the source's egress (if a pod) and the destination's ingress (if a pod)."""
        out = self.egress(src, dst, port, protocol) if isinstance(src, Pod) else True
        into = self.ingress(dst, src, port, protocol) if isinstance(dst, Pod) else True
        return out and into
