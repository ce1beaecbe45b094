"""What the network model predicts about reachability: every pair, and whether the backend can carry it.

The Kubernetes network model requires every pod to reach every pod and every node (and
the other way round) without NAT.  Which pairs a backend *can* carry on a given underlay
follows from the model alone (:meth:`k8snet.model.cluster.Cluster.route`): host-gw
needs both nodes on one L2 segment, VXLAN crosses gateways.  The probe
(:mod:`topos.probe`) measures the same pairs, so each measured pair carries its
prediction and, when it is unreachable, the reason.

Pure: used before anything is built (``pytest --k8snet-spec`` makes one test per pair
at collection time) and after (``k8snet check`` compares).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Union

from k8snet.model.access import macvlan_path
from k8snet.model.cluster import Cluster, Pod, RouteKind
from k8snet.model.policy_eval import Endpoint, Verdict, evaluate

#: The path kinds of the matrix, in the order they are reported.
KINDS = ("pod-pod-cross-node", "pod-pod-same-node", "pod-node", "node-pod")


@dataclass(frozen=True)
class Pair:
    src: str
    dst: str
    dst_ip: str
    kind: str          # pod-pod-same-node | pod-pod-cross-node | node-pod | pod-node
    predicted: bool    # what the backend on this underlay can do, and the policies allow
    reason: str = ""   # why not, when predicted is False
    #: The NetworkPolicy verdict that denies the pair (ICMP, as probed); empty when none does.
    denied_by: str = ""
    #: Can the backend carry the pair on this underlay at all (whatever the policies say)?
    carried: bool = True

    @property
    def required(self) -> bool:
        """Must be reachable: the network model requires every pair that no policy denies."""
        return not self.denied_by

    @property
    def id(self) -> str:
        """``src->dst``: how a pair is named in test ids and messages."""
        return f"{self.src}->{self.dst}"


def round_trip(cluster: Cluster, a: str, b: str) -> tuple[bool, str]:
    """Can traffic between nodes ``a`` and ``b``'s pods make the round trip?  Both
    directions need a route to the other's pod CIDR (:meth:`Cluster.route`); macvlan pods
    bypass their switches and need one segment instead (:func:`macvlan_path`)."""
    na, nb = cluster.node(a), cluster.node(b)
    if cluster.access == "macvlan":
        return macvlan_path(cluster, na, nb)
    for x, y in ((na, nb), (nb, na)):
        route = cluster.route(x, y)
        if route.kind is RouteKind.NONE:
            return False, route.reason
    return True, ""


def node_to_pod(cluster: Cluster, node: str, pod_node: str) -> tuple[bool, str]:
    """A node's host network and a pod: the node needs a route to the pod's CIDR; the
    pod reaches the node IP over the underlay in any case.  (macvlan: :func:`macvlan_path`.)"""
    if cluster.access == "macvlan":
        return macvlan_path(cluster, cluster.node(pod_node), cluster.node(node), host_end=True)
    route = cluster.route(cluster.node(node), cluster.node(pod_node))
    return route.kind is not RouteKind.NONE, route.reason


def enforced(cluster: Cluster) -> bool:
    """Do the policies act on pod traffic?  Not with macvlan: pods' frames never meet a
    switch (Kubernetes' NetworkPolicy is only as good as the CNI that enforces it)."""
    return cluster.access != "macvlan"


def _pair(cluster: Cluster, src: str, dst: str, dst_ip: str, kind: str, route: tuple[bool, str],
          src_end: Endpoint, dst_end: Endpoint) -> Pair:
    """A pair with the backend's prediction and, with policies, their ICMP verdict."""
    carried, reason = route
    denied = ""
    if cluster.policies and enforced(cluster):
        verdict = evaluate(cluster, src_end, dst_end, None, "ICMP")
        denied = "" if verdict.allowed else f"NetworkPolicy: {verdict.deciding.reason}"
    return Pair(src, dst, dst_ip, kind, carried and not denied, reason or denied, denied, carried)


def pairs(cluster: Cluster) -> list[Pair]:
    """Every ordered pair the matrix probes, with what the network model expects."""
    out = []
    for src in cluster.pods:
        for dst in cluster.pods:
            if src is dst:
                continue
            kind = "pod-pod-same-node" if src.node == dst.node else "pod-pod-cross-node"
            out.append(_pair(cluster, src.host_name, dst.host_name, str(dst.ip), kind,
                             round_trip(cluster, src.node, dst.node), src, dst))
    for node in cluster.nodes:
        for pod in cluster.pods:
            out.append(_pair(cluster, node.name, pod.host_name, str(pod.ip), "node-pod",
                             node_to_pod(cluster, node.name, pod.node), node.ip, pod))
    for pod in cluster.pods:
        for node in cluster.nodes:
            out.append(_pair(cluster, pod.host_name, node.name, str(node.ip), "pod-node",
                             node_to_pod(cluster, node.name, pod.node), pod, node.ip))
    return out


@dataclass(frozen=True)
class PortPair:
    """One L4 probe of the matrix: a pair whose destination pod declares ``port`` (a
    container port), with what the backend can carry and what the policies allow there."""

    pair: Pair
    port: int
    protocol: str      # TCP | UDP
    name: str          # the container port's name ("" when unnamed)
    predicted: bool
    reason: str = ""
    #: The NetworkPolicy verdict that denies this port; empty when none does.
    denied_by: str = ""

    @property
    def required(self) -> bool:
        return not self.denied_by

    @property
    def id(self) -> str:
        return f"{self.pair.id}:{self.port}/{self.protocol.lower()}"


def ends(cluster: Cluster, pair: Pair) -> tuple[Endpoint, Endpoint]:
    """A pair's source and destination as the policy evaluator sees them: a pod, or a
    node's underlay address (host-network traffic)."""
    def one(name: str) -> Endpoint:
        pod = next((p for p in cluster.pods if p.host_name == name), None)
        return pod if pod is not None else cluster.node(name).ip
    return one(pair.src), one(pair.dst)


def verdict(cluster: Cluster, pair: Pair, port: Optional[int] = None, protocol: str = "ICMP") -> Verdict:
    """The policy evaluator's verdict on a pair (ICMP, or a port), with the deciding rule."""
    return evaluate(cluster, *ends(cluster, pair), port, protocol)


def declared_ports(pod: Pod) -> list[tuple[int, str, str]]:
    """The distinct (port, protocol, name) a pod's containers declare, sorted."""
    return sorted({(p.port, p.protocol, p.name or "") for p in pod.ports if p.protocol in ("TCP", "UDP")})


def port_pairs(cluster: Cluster, matrix_pairs: Optional[list[Pair]] = None) -> list[PortPair]:
    """The L4 probes: for every pair whose destination is a pod (pod->pod, node->pod),
    each port that pod declares (TCP and UDP), predicted from the route and the policies'
    verdict for that port (a pod's ports are where a Kubernetes workload listens; the
    ICMP row says nothing about them when a policy names ports)."""
    out = []
    for pair in pairs(cluster) if matrix_pairs is None else matrix_pairs:
        src, dst = ends(cluster, pair)
        if not isinstance(dst, Pod):
            continue
        for port, protocol, name in declared_ports(dst):
            denied = ""
            if cluster.policies and enforced(cluster):
                verdict = evaluate(cluster, src, dst, port, protocol)
                denied = "" if verdict.allowed else f"NetworkPolicy: {verdict.deciding.reason}"
            route_reason = "" if pair.carried else pair.reason
            out.append(PortPair(pair, port, protocol, name, pair.carried and not denied, route_reason or denied,
                                denied))
    return out


# --------------------------------------------------------------------------- expectations
#: What a test may expect of the matrix (see :func:`expectation`).
Expected = Union[bool, str, Mapping[Union[str, tuple[str, str]], bool], Callable[[Pair], bool]]


def expectation(expected: Expected, default: bool = True) -> Callable[[Pair], bool]:
    """Turn what a test expects into a function pair -> should it be reachable.

    * ``"all"`` or ``True``: every pair (the Kubernetes network model); ``False``: none;
    * ``"predicted"``: what the backend can carry on this underlay (:func:`pairs`);
    * a mapping from ``"src->dst"`` (shell wildcards allowed: ``"web-[01]->*"``) or
      ``(src, dst)`` to True/False; when several keys match a pair the last one wins, and
      a pair no key matches is expected to be ``default``;
    * any function of a :class:`Pair`.
    """
    if isinstance(expected, bool):
        return lambda pair: expected
    if isinstance(expected, str):
        if expected == "all":
            return lambda pair: True
        if expected == "predicted":
            return lambda pair: pair.predicted
        raise ValueError(f"expected={expected!r}: use 'all', 'predicted', True, False, a mapping "
                         "{'src->dst': bool} (wildcards allowed) or a function of the pair")
    if isinstance(expected, Mapping):
        rules: list[tuple[str, bool]] = []
        for key, value in expected.items():
            if isinstance(key, tuple) and len(key) == 2:
                key = f"{key[0]}->{key[1]}"
            if not isinstance(key, str) or "->" not in key or not isinstance(value, bool):
                raise ValueError(f"expected: {key!r}: {value!r} is not 'src->dst': True/False")
            rules.append((key, value))

        def by_rules(pair: Pair) -> bool:
            verdict = default
            for pattern, value in rules:
                if fnmatch.fnmatchcase(pair.id, pattern):
                    verdict = value
            return verdict

        return by_rules
    if callable(expected):
        return lambda pair: bool(expected(pair))
    raise ValueError(f"expected={expected!r}: use 'all', 'predicted', a bool, a mapping or a function")


def mismatch_line(pair: Pair, wanted: bool, reachable: bool, detail: str = "") -> str:
    """One readable line for a pair that did not do what was expected: what was expected,
    what happened, and what the backend predicts (with its reason)."""
    word = {True: "reachable", False: "unreachable"}
    prediction = "predicted reachable" if pair.predicted else f"predicted unreachable: {pair.reason}"
    extra = f" ({detail})" if detail else ""
    return (f"{pair.src} -> {pair.dst} [{pair.kind}, {pair.dst_ip}]: expected {word[wanted]}, "
            f"was {word[reachable]}{extra}; {prediction}")
