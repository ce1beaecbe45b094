"""The NetworkPolicy verdict of one connection, from the model alone (pure): the prediction.

Kubernetes' semantics, as the API reference for ``networking.k8s.io/v1`` and the
concepts page "Network Policies" state them, and as sig-network's e2e suite
(``test/e2e/network/netpol``) checks them with its truth tables:

* A pod is *isolated* for ingress (egress) when at least one policy in its namespace
  selects it (``podSelector``) and has that type in its ``policyTypes``.  A pod that is
  not isolated accepts (sends) everything.
* An isolated pod's traffic is allowed when some rule of some selecting policy allows it
  (policies add up, none takes away).  A rule allows a peer when its ``from``/``to`` is
  empty or one of its peers matches, and the port when its ``ports`` is empty or one of
  them matches.
* A connection needs both ends: the source pod's egress and the destination pod's
  ingress.  Replies of an allowed connection need nothing (stateful).
* Traffic between a pod and its own node is always allowed; a pod talking to itself is
  not judged (the e2e suite skips those pairs).
* A peer's ``podSelector`` alone picks pods in the policy's namespace, a
  ``namespaceSelector`` alone every pod in the namespaces it picks, both together the
  pods that match both; ``ipBlock`` matches addresses (pod IPs too: implementations may
  differ there, Kubernetes leaves it open; k8snet matches them, as Calico and Antrea do).
* A named port is the destination pod's container port of that name and protocol.  A
  rule with ports never allows ICMP; a rule without ports allows every protocol.

The flows that enforce policies (:mod:`controllers.policy`, once written) are tested
against this module: it is what a pair *should* do.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Optional, Union

from k8snet.model.cluster import Cluster, Pod
from k8snet.model.policy import NetworkPolicy, Peer, Rule

Endpoint = Union[Pod, ipaddress.IPv4Address]
PROTOCOLS = ("TCP", "UDP", "ICMP")


@dataclass(frozen=True)
class Decision:
    """One end's half of a verdict: the source pod's egress or the destination pod's ingress."""

    direction: str            # "egress" or "ingress"
    allowed: bool
    #: The policy and rule index that allowed it (None: nothing needed allowing it).
    policy: Optional[str] = None
    rule: Optional[int] = None
    #: The policies that select the pod for this direction (empty: not isolated).
    selecting: tuple[str, ...] = ()
    reason: str = ""

    def __str__(self) -> str:
        return self.reason


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    egress: Decision
    ingress: Decision

    @property
    def deciding(self) -> Decision:
        """The half that decided: the one that denied, else the one a rule allowed
        (ingress first), else ingress."""
        for half in (self.egress, self.ingress):
            if not half.allowed:
                return half
        return next((h for h in (self.ingress, self.egress) if h.policy), self.ingress)

    def __str__(self) -> str:
        word = "allowed" if self.allowed else "denied"
        return f"{word}: egress: {self.egress}; ingress: {self.ingress}"

    def as_dict(self) -> dict:
        half = lambda d: {"allowed": d.allowed, "policy": d.policy, "rule": d.rule,
                          "selecting": list(d.selecting), "reason": d.reason}
        return {"allowed": self.allowed, "egress": half(self.egress), "ingress": half(self.ingress),
                "deciding": f"{self.deciding.policy} {self.deciding.direction}[{self.deciding.rule}]"
                if self.deciding.policy else None}


def ip_of(endpoint: Endpoint) -> ipaddress.IPv4Address:
    return endpoint.ip if isinstance(endpoint, Pod) else endpoint


def name_of(endpoint: Endpoint) -> str:
    return f"{endpoint.namespace}/{endpoint.name}" if isinstance(endpoint, Pod) else str(endpoint)


def endpoint(cluster: Cluster, text: str) -> Endpoint:
    """A pod (``name``, ``namespace/name`` or its host name ``name.namespace``) or an IP;
    an IP that is a pod's is that pod.  ValueError names what exists."""
    try:
        ip = ipaddress.IPv4Address(text)
    except ValueError:
        ip = None
    if ip is not None:
        return next((p for p in cluster.pods if p.ip == ip), ip)
    for pod in cluster.pods:
        if text in (pod.host_name, f"{pod.namespace}/{pod.name}"):
            return pod
    raise ValueError(f"no pod {text!r}; pods are: {', '.join(p.host_name for p in cluster.pods)}")


def _own_node(cluster: Cluster, pod: Pod, other: Endpoint) -> bool:
    """Is ``other`` the pod's own node (its underlay address or its address on the pod network)?"""
    node = cluster.node(pod.node)
    return not isinstance(other, Pod) and other in (node.ip, node.gateway_ip)


def peer_matches(cluster: Cluster, policy: NetworkPolicy, peer: Peer, other: Endpoint) -> bool:
    if peer.ip_block is not None:
        return peer.ip_block.contains(ip_of(other))
    if not isinstance(other, Pod):
        return False
    if peer.namespace_selector is not None:
        in_namespace = peer.namespace_selector.matches(cluster.namespace(other.namespace).labels)
    else:
        in_namespace = other.namespace == policy.namespace
    return in_namespace and (peer.pod_selector is None or peer.pod_selector.matches(other.labels))


def port_matches(rule: Rule, dst: Endpoint, port: Optional[int], protocol: str) -> bool:
    if not rule.ports:
        return True
    if protocol not in ("TCP", "UDP") or port is None:
        return False
    for allowed in rule.ports:
        if allowed.protocol != protocol:
            continue
        if allowed.port is None:
            return True
        if isinstance(allowed.port, int):
            if allowed.port <= port <= (allowed.end_port or allowed.port):
                return True
        elif isinstance(dst, Pod) and dst.resolve_port(allowed.port, protocol) == port:
            return True
    return False


def selecting(cluster: Cluster, pod: Pod, direction: str) -> tuple[NetworkPolicy, ...]:
    """The policies that isolate ``pod`` for ``direction``, in the model's order."""
    return tuple(p for p in cluster.policies if p.namespace == pod.namespace and p.governs(direction)
                 and p.pod_selector.matches(pod.labels))


def decide(cluster: Cluster, direction: str, pod: Pod, other: Endpoint, dst: Endpoint,
           port: Optional[int], protocol: str) -> Decision:
    """``pod``'s ``direction`` half for traffic with ``other`` (the peer) going to ``dst``."""
    what = f"{port}/{protocol}" if port is not None else protocol
    who = f"{pod.namespace}/{pod.name}"
    if _own_node(cluster, pod, other):
        return Decision(direction, True, reason=f"{other} is {who}'s own node: always allowed")
    policies = selecting(cluster, pod, direction)
    keys = tuple(p.key for p in policies)
    if not policies:
        return Decision(direction, True, reason=f"{who} is not isolated for {direction} (no policy selects it)")
    for policy in policies:
        for index, rule in enumerate(policy.rules(direction)):
            peers_ok = rule.peers is None or any(peer_matches(cluster, policy, p, other) for p in rule.peers)
            if peers_ok and port_matches(rule, dst, port, protocol):
                return Decision(direction, True, policy.key, index, keys,
                                f"allowed by {policy.key} {direction}[{index}]")
    count = f"the {len(keys)} polic{'y' if len(keys) == 1 else 'ies'}"
    return Decision(direction, False, None, None, keys,
                    f"no rule of {count} selecting {who} for {direction} ({', '.join(keys)}) allows "
                    f"{name_of(other)} on {what}")


def evaluate(cluster: Cluster, src: Endpoint, dst: Endpoint, port: Optional[int] = None,
             protocol: str = "TCP") -> Verdict:
    """Would a new connection from ``src`` to ``dst`` (after any DNAT: ``dst`` is the pod
    that receives it, ``src`` the address it arrives from) be allowed?  ``port`` is the
    destination port (None for ICMP)."""
    protocol = protocol.upper()
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol {protocol!r}: use one of {', '.join(PROTOCOLS)}")
    if protocol != "ICMP" and port is None:
        raise ValueError(f"a {protocol} verdict needs the destination port")
    if isinstance(src, Pod) and isinstance(dst, Pod) and (src.namespace, src.name) == (dst.namespace, dst.name):
        same = Decision("egress", True, reason="a pod to itself is not judged")
        return Verdict(True, same, Decision("ingress", True, reason=same.reason))
    if isinstance(src, Pod):
        egress = decide(cluster, "egress", src, dst, dst, port, protocol)
    else:
        egress = Decision("egress", True, reason=f"{src} is not a pod: no egress policy applies")
    if isinstance(dst, Pod):
        ingress = decide(cluster, "ingress", dst, src, dst, port, protocol)
    else:
        ingress = Decision("ingress", True, reason=f"{dst} is not a pod: no ingress policy applies")
    return Verdict(egress.allowed and ingress.allowed, egress, ingress)


def truth_table(cluster: Cluster, port: Optional[int] = None, protocol: str = "TCP",
                pods: Optional[tuple[Pod, ...]] = None) -> dict[tuple[str, str], Verdict]:
    """Every ordered pair of distinct pods -> its verdict, keyed by ``namespace/name``."""
    pods = cluster.pods if pods is None else pods
    return {(name_of(a), name_of(b)): evaluate(cluster, a, b, port, protocol)
            for a in pods for b in pods if a is not b}
