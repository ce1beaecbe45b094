"""NetworkPolicy in OpenFlow on one node (pure: ``(cluster, node) -> flows``).

Where: after the Service stages, before routing, so a connection is judged on the pod
that receives it (after DNAT) and on the address it arrives from (after a NodePort's
SNAT), as Kubernetes specifies.  Each node judges its own pods: their egress
(``policy_egress``: packets from a local pod port) and their ingress (``policy_ingress``:
packets whose destination is a local pod).  ``commit`` then commits the new
connection to conntrack (controllers/services.py, ``commit_direct``) so that its later
packets and its replies pass without being judged again.

What is judged: the first packet of a connection (``ct_state=+new``).  Established
packets and replies (``-new``) pass: a policy change leaves open connections open, as
Kubernetes leaves it to the implementation and as Antrea and Calico do.  Only connections
that have not seen a reply are ``+new``, so the retransmitted SYN of a Service connection
that a policy refused (DNAT already committed it) is judged, and refused, again.

How (Antrea's layout): a rule with N peers and M ports costs N + M flows, not N x M,
through OVS conjunctive matches: clause 1 matches the peer's address, clause 2 the
protocol and port, ``conj_id`` the pair; the conj_id flow's cookie names the policy and
rule, so its packet count is that rule's traffic.  A rule without ports or without peers
needs no conjunction.  Every isolated pod ends with a drop flow per direction, whose
count is what the policies refused it.  Named ports are resolved on the destination pod
(for egress: clause 2 matches destination address and port together).  Traffic between
a pod and its own node is always allowed.

IP fragments: a datagram's first fragment carries its ports and is judged like any
packet; later fragments (``ip_frag=later``, no ports) pass, since without the first
fragment the receiver can never reassemble them (the first-fragment rule of RFC 1858).
"""

from __future__ import annotations

import ipaddress
import zlib
from dataclasses import dataclass
from typing import Any, Iterator, NamedTuple, Optional

from controllers.flows import ETH_TYPE_IP, Flow, Match
from controllers.pipeline import (
    COMMIT, CT_NEW, CT_TRK, L3_FORWARDING, POLICY_EGRESS, POLICY_INGRESS, REG_SOURCE, Feature, Priority, Source,
    cookie, ct_state, source_match,
)
from k8snet.model.cluster import Cluster, Node, Pod
from k8snet.model.policy import NetworkPolicy, Peer, PolicyPort, Rule
from k8snet.model.policy_eval import peer_matches, selecting

IP_PROTO = {"TCP": 6, "UDP": 17}


@dataclass(frozen=True)
class Conjunction:
    """``conjunction(id, k/n)``: this flow is clause ``k`` of ``n`` of conjunctive flow ``id``."""

    id: int
    clause: int
    n_clauses: int

    def ofctl(self) -> str:
        return f"conjunction({self.id},{self.clause}/{self.n_clauses})"

    def osken(self, parser: Any, ofp: Any) -> Any:
        # On the wire the clause is counted from 0 (OVS's nx_action_conjunction).
        return parser.NXActionConjunction(clause=self.clause - 1, n_clauses=self.n_clauses, id_=self.id)


def policy_object(key: str) -> int:
    return zlib.crc32(f"policy/{key}".encode())


def rule_cookie(policy: NetworkPolicy, direction: str, index: int) -> int:
    return cookie(Feature.POLICY, zlib.crc32(f"policy/{policy.key}/{direction}/{index}".encode()))


def isolation_cookie(pod: Pod, direction: str) -> int:
    return cookie(Feature.POLICY, zlib.crc32(f"isolated/{pod.namespace}/{pod.name}/{direction}".encode()))


def drop_cookie(pod: Pod, direction: str) -> int:
    """The cookie of an isolated pod's drop flow: its packet count is what no rule allowed."""
    return cookie(Feature.POLICY, zlib.crc32(f"dropped/{pod.namespace}/{pod.name}/{direction}".encode()))


def counter_names(cluster: Cluster) -> dict[int, dict[str, Any]]:
    """Cookie (feature and object bits) -> what its flows count: a policy's rule, or what
    an isolated pod's policies refused.  For reading flow statistics after a run."""
    names: dict[int, dict[str, Any]] = {}
    for policy in cluster.policies:
        for direction in ("ingress", "egress"):
            for index, _ in enumerate(policy.rules(direction)):
                names[rule_cookie(policy, direction, index)] = {"policy": policy.key, "direction": direction,
                                                                "rule": index, "verdict": "allowed"}
    for pod in cluster.pods:
        for direction in ("ingress", "egress"):
            names[drop_cookie(pod, direction)] = {"pod": f"{pod.namespace}/{pod.name}", "direction": direction,
                                                  "verdict": "dropped"}
    return names


def port_masks(low: int, high: int) -> list[tuple[int, int]]:
    """The (value, mask) pairs that cover ``low..high`` exactly (16-bit ports)."""
    out = []
    while low <= high:
        size = low & -low if low else 1 << 16
        while size > high - low + 1:
            size >>= 1
        out.append((low, 0xFFFF & ~(size - 1)))
        low += size
    return out


def peer_networks(cluster: Cluster, policy: NetworkPolicy, peer: Peer) -> list[ipaddress.IPv4Network]:
    """The addresses a peer stands for, as IPv4 prefixes (an IPv6 ipBlock: none here)."""
    if peer.ip_block is not None:
        block = peer.ip_block
        if block.cidr.version != 4:
            return []
        nets = [block.cidr]
        for hole in block.excepted:
            nets = [part for net in nets for part in
                    (net.address_exclude(hole) if hole.subnet_of(net) else [net])]
        return sorted(nets)
    return [ipaddress.IPv4Network(f"{p.ip}/32") for p in cluster.pods if peer_matches(cluster, policy, peer, p)]


def _port_matches(port: PolicyPort, dst_pods: list[Pod], direction: str, subject: Pod) -> list[dict[str, Any]]:
    """Match fields for one ``ports`` entry: protocol and port (range), or for a named
    port the destination pod's number (with its address, on egress)."""
    proto = IP_PROTO[port.protocol]
    field = f"{port.protocol.lower()}_dst"
    if port.port is None:
        return [{"ip_proto": proto}]
    if isinstance(port.port, int):
        return [{"ip_proto": proto, field: f"{value:#x}/{mask:#x}" if mask != 0xFFFF else value}
                for value, mask in port_masks(port.port, port.end_port or port.port)]
    out = []
    for pod in ([subject] if direction == "ingress" else dst_pods):
        number = pod.resolve_port(port.port, port.protocol)
        if number is not None:
            extra = {} if direction == "ingress" else {"ipv4_dst": str(pod.ip)}
            out.append({"ip_proto": proto, field: number, **extra})
    return out


class _Builder:
    """Collects the flows of one node; clause flows that share a match are merged into one
    flow carrying every conjunction action (OpenFlow allows one flow per match)."""

    def __init__(self) -> None:
        self.plain: dict[tuple[int, int, Match], Flow] = {}
        self.clauses: dict[tuple[int, Match], list[Conjunction]] = {}
        self.next_id = 1

    def add(self, flow: Flow) -> None:
        self.plain.setdefault(flow.key, flow)

    def clause(self, table: int, match: Match, conj: Conjunction) -> None:
        self.clauses.setdefault((table, match), []).append(conj)

    def flows(self, c: int) -> Iterator[Flow]:
        yield from self.plain.values()
        for (table, match), conjs in self.clauses.items():
            yield Flow(table, Priority.ROUTE_SUBNET, match, tuple(sorted(set(conjs), key=lambda j: (j.id, j.clause))),
                       cookie=c)


class _Side(NamedTuple):
    """Where one pod's one direction is judged: the table, the table after it, the match
    on the pod's own end, and the field that holds the other end."""

    table: int
    next_table: int
    own: dict[str, Any]
    peer_field: str


def _side(pod: Pod, direction: str) -> _Side:
    if direction == "egress":
        return _Side(POLICY_EGRESS, POLICY_INGRESS, {"ipv4_src": str(pod.ip), REG_SOURCE: source_match(Source.POD)},
                     "ipv4_dst")
    return _Side(POLICY_INGRESS, COMMIT, {"ipv4_dst": str(pod.ip)}, "ipv4_src")


def _rule_flows(b: _Builder, cluster: Cluster, policy: NetworkPolicy, index: int, rule: Rule, pod: Pod,
                direction: str) -> None:
    table, nxt, own, peer_field = _side(pod, direction)
    c = rule_cookie(policy, direction, index)
    peers: Optional[list[ipaddress.IPv4Network]] = None
    if rule.peers is not None:
        peers = sorted({n for p in rule.peers for n in peer_networks(cluster, policy, p)})
        if not peers:
            return  # its peers stand for nobody: it allows nothing
    ports: Optional[list[dict[str, Any]]] = None
    if rule.ports:
        dst_pods = list(cluster.pods)
        ports = [m for p in rule.ports for m in _port_matches(p, dst_pods, direction, pod)]
        if not ports:
            return  # named ports no destination has
    base = {"eth_type": ETH_TYPE_IP, **own}
    if peers is None and ports is None:
        b.add(Flow(table, Priority.ROUTE_HOST, Match.of(**base), (), goto=nxt, cookie=c))
    elif ports is None:
        for net in peers or ():
            b.add(Flow(table, Priority.ROUTE_HOST, Match.of(**base, **{peer_field: _net(net)}), (), goto=nxt, cookie=c))
    elif peers is None:
        for fields in ports:
            b.add(Flow(table, Priority.ROUTE_HOST, Match.of(**base, **fields), (), goto=nxt, cookie=c))
    else:
        conj = b.next_id
        b.next_id += 1
        for net in peers:
            b.clause(table, Match.of(**base, **{peer_field: _net(net)}), Conjunction(conj, 1, 2))
        for fields in ports:
            b.clause(table, Match.of(**base, **fields), Conjunction(conj, 2, 2))
        b.add(Flow(table, Priority.ROUTE_SUBNET, Match.of(conj_id=conj, eth_type=ETH_TYPE_IP), (), goto=nxt, cookie=c))


def _net(net: ipaddress.IPv4Network) -> str:
    return str(net.network_address) if net.prefixlen == 32 else str(net)


def node_flows(cluster: Cluster, node: Node) -> Iterator[Flow]:
    """The rules of every policy that selects one of ``node``'s pods."""
    if not cluster.policies:
        return  # the tables pass everything on (controllers/podnet.py)
    c = cookie(Feature.POLICY)
    ip = {"eth_type": ETH_TYPE_IP}
    # Only the first packet of a connection is judged.
    yield Flow(POLICY_EGRESS, Priority.PASS_THROUGH, Match.of(**ip, ct_state=ct_state(CT_TRK, clear=(CT_NEW,))), (),
               goto=L3_FORWARDING, cookie=c)
    b = _Builder()
    own_node = [str(node.ip), str(node.gateway_ip)]
    for pod in cluster.pods_on(node.name):
        for direction in ("egress", "ingress"):
            policies = selecting(cluster, pod, direction)
            if not policies:
                continue
            table, nxt, mine, other = _side(pod, direction)
            # A pod talking to itself is not judged (the e2e suite leaves those pairs out).
            b.add(Flow(table, Priority.SPECIFIC, Match.of(**ip, **mine, **{other: str(pod.ip)}), (), goto=nxt,
                       cookie=isolation_cookie(pod, direction)))
            for address in own_node:
                b.add(Flow(table, Priority.SPECIFIC, Match.of(**ip, **mine, **{other: address}), (), goto=nxt,
                           cookie=isolation_cookie(pod, direction)))
            # Only a datagram's first fragment carries its ports: it is judged; the later
            # ones pass (alone they can never be reassembled), as a packet filter that
            # judges the first fragment does (RFC 1858).
            b.add(Flow(table, Priority.FRAGMENT, Match.of(**ip, **mine, ip_frag="later"), (), goto=nxt,
                       cookie=isolation_cookie(pod, direction)))
            for policy in policies:
                for index, rule in enumerate(policy.rules(direction)):
                    _rule_flows(b, cluster, policy, index, rule, pod, direction)
            b.add(Flow(table, Priority.FALLBACK, Match.of(**ip, **mine), (), cookie=drop_cookie(pod, direction)))
    yield from b.flows(c)
