"""The OpenFlow pipeline of every node bridge, declared once.

Tables are listed in the order a packet walks them; their ids come from that order,
so no other module writes a bare table number.  Priorities, register bits and cookie
categories live here too.

::

    classifier ──ARP──▶ arp ──▶ reply to IN_PORT / uplink <-> LOCAL
        │
        └──IP──▶ unsnat ─▶ nodeport_dnat ─▶ conntrack ─▶ service_lb ─▶ service_pick ─▶ service_endpoint ─▶ service_dnat ─▶ hairpin_snat ─▶ l3_forwarding
               (ct zone 2   (ct zone 4,       (ct zone 1,  (resubmit to   (affinity hit,  (reg7 = endpoint    (ct commit,     (ct zone 2      │
                or 3)        nat; node IP)     nat)         service_       else multipath  IP [, learn it])    nat dst=reg7)   or 3, nat src)  ▼
                                           affinity)      -> reg3)                                        policy_egress ─▶ policy_ingress ─▶ commit
                                                                                                           (new connections only: NetworkPolicy)  (ct commit)
                                                                                                                                                │
                                                                                                                                                ▼
                                 l3_forwarding ─▶ local pod / LOCAL / uplink (host-gw) / vxlan0 (VXLAN)

* ``classifier``: where did the packet come from?  A pod port (only with the pod's
  own MAC and IP: a spoof guard), the uplink (the underlay), or LOCAL (the node's own
  network stack).  The source class is written to ``REG_SOURCE``.
* ``arp``: answers ARP for the pod gateway (for pods and for the node's kernel, whose
  route to the pod CIDR points at the gateway) and for same-node pods; lets underlay
  ARP pass between the uplink and LOCAL.
* ``l3_forwarding``: routes by destination IP like the node kernel does in Flannel:
  same-node pods are bridged (no TTL change), routed packets get new MACs and
  ``dec_ttl``; a remote pod CIDR goes to the peer node's MAC (host-gw) or into the
  VXLAN port with ``tun_dst`` = the peer's node IP; a peer's node IP goes to the
  underlay next hop (the peer, or the rack gateway).

VXLAN uses OVS's native (userspace) tunnelling: the encapsulated packet re-enters the
bridge from LOCAL and leaves through the uplink like any node traffic; a VXLAN packet
for the node IP is decapsulated where it would be delivered to LOCAL and re-enters from
the tunnel port, where the classifier accepts it for this node's pod CIDR.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


@dataclass(frozen=True)
class Table:
    name: str
    id: int
    purpose: str


_ORDER = (
    ("classifier", "source class and spoof guard (pod port, uplink, LOCAL, VXLAN tunnel)"),
    ("arp", "ARP responder for the pod gateway and local pods; underlay ARP passes through"),
    ("unsnat", "replies to hairpin connections (sent to the gateway IP) undo their SNAT"),
    ("nodeport_dnat", "what was sent to the node's IP passes the zone of the NodePort connections "
                      "masqueraded to it (externalTrafficPolicy Cluster): their DNAT, or its undoing"),
    ("conntrack", "every IP packet through conntrack in the Service zone: replies get the VIP back"),
    ("service_lb", "a new connection to a ClusterIP:port picks one of the port's endpoints "
                   "(multipath hash into a register), or is rejected when there is none"),
    ("service_affinity", "learned ClientIP affinity: client+VIP+port -> the endpoint it had "
                         "(entered by resubmit; learned in service_endpoint)"),
    ("service_pick", "an affinity hit keeps its endpoint, else multipath picks one"),
    ("service_endpoint", "a fresh pick: DNAT to it; with affinity, its IP into reg7 and learn it"),
    ("service_dnat", "by endpoint IP: ct(commit, nat(dst=endpoint:targetPort)); a remembered endpoint "
                     "that is gone goes back to service_pick for a fresh one"),
    ("hairpin_snat", "a pod that reached itself through a VIP is SNATed to the gateway IP; a "
                     "NodePort connection with externalTrafficPolicy Cluster to the node's IP"),
    ("policy_egress", "NetworkPolicy: a new connection from a local pod, against the policies that "
                      "isolate it for egress (conjunctive matches, controllers/policy.py)"),
    ("policy_ingress", "NetworkPolicy: a new connection to a local pod (after DNAT), against the "
                       "policies that isolate it for ingress"),
    ("commit", "a new connection that no NAT committed is committed: its replies pass as replies, "
               "not as those of an older Service connection with the same reply tuple "
               "(controllers/services.py, commit_direct)"),
    ("l3_forwarding", "routing by destination IP: local pod, own node, peer pods (host-gw or "
                      "VXLAN) and peer nodes"),
    ("egress", "VXLAN clusters: a packet into a pod or the tunnel, checked against the pod MTU"),
    ("egress_out", "out of the port in REG_OUT_PORT, or, when larger than the pod MTU, to the "
                   "controller, which fragments it (controllers/egress.py)"),
)
TABLES: tuple[Table, ...] = tuple(Table(name, i, purpose) for i, (name, purpose) in enumerate(_ORDER))
T = {t.name: t.id for t in TABLES}
CLASSIFIER = T["classifier"]
ARP = T["arp"]
UNSNAT = T["unsnat"]
NODEPORT_DNAT = T["nodeport_dnat"]
CONNTRACK = T["conntrack"]
SERVICE_LB = T["service_lb"]
SERVICE_AFFINITY = T["service_affinity"]
SERVICE_PICK = T["service_pick"]
SERVICE_ENDPOINT = T["service_endpoint"]
SERVICE_DNAT = T["service_dnat"]
HAIRPIN_SNAT = T["hairpin_snat"]
POLICY_EGRESS = T["policy_egress"]
POLICY_INGRESS = T["policy_ingress"]
COMMIT = T["commit"]
L3_FORWARDING = T["l3_forwarding"]
EGRESS = T["egress"]
EGRESS_OUT = T["egress_out"]

#: Where classified IP traffic enters the routing stages.
IP_INGRESS = UNSNAT
#: Where a packet goes once the Service stages are done with it: the policy stages, then routing.
ROUTING = POLICY_EGRESS

#: Conntrack zones: Service DNAT, and the hairpin and NodePort SNATs kept apart from it.
ZONE_SERVICE = 1
ZONE_HAIRPIN = 2
ZONE_NODEPORT = 3
#: The DNAT of a NodePort connection that is also SNATed to the node (externalTrafficPolicy
#: Cluster).  OVS keeps one NAT per conntrack entry, so such a connection has two entries,
#: and the DNAT one's reply tuple is the endpoint and the client *before* the SNAT -- the
#: tuple of a direct connection between them.  Kept in ZONE_SERVICE, it took over such a
#: connection's replies: a pod that had reached web-0 through node-0's NodePort from port
#: S, then through a ClusterIP from the same port S, had web-0's SYN-ACK turned into one
#: "from node-0:NodePort" by node-0 (1.6 % of such connections failed in a stress run, and
#: CI saw the same on NodePorts).  In a zone of its own only the NodePort's packets meet it:
#: what is sent to the node's IP, and replies the NodePort SNAT (ZONE_NODEPORT) gave back.
ZONE_NODEPORT_DNAT = 4
#: ct_mark bit on a Service connection that must also be SNATed to the node's IP
#: (NodePort with externalTrafficPolicy Cluster), so every packet of it is, not the first only.
CT_MARK_MASQUERADE = 0x1

#: ct_state bits (value/mask as ovs-ofctl and OXM take them).
CT_NEW, CT_EST, CT_REL, CT_RPL, CT_TRK, CT_SNAT, CT_DNAT = 0x01, 0x02, 0x04, 0x08, 0x20, 0x40, 0x80


def ct_state(*set_bits: int, clear: tuple[int, ...] = ()) -> str:
    value = sum(set_bits)
    return f"{value:#x}/{value + sum(clear):#x}"


class Priority(IntEnum):
    """Flow priorities. Higher wins; related flows are spaced so others fit between."""

    HAIRPIN = 220          # a packet that must leave by the port it came in on
    PASS_THROUGH = 210     # traffic that must bypass everything below (underlay ARP)
    SPECIFIC = 200         # exact matches: a pod's port, a pod's MAC, the gateway IP
    ROUTE_HOST = 190       # /32 routes: a pod IP, a node IP
    ROUTE_SUBNET = 180     # subnet routes: a peer's pod CIDR, the cluster CIDR
    BLACKHOLE = 170        # cluster ranges with no route: dropped, never sent outside
    FRAGMENT = 150         # an IP fragment: decided without the L4 ports its later pieces lack
    FALLBACK = 100         # whatever else a source may send
    DEFAULT_ROUTE = 10     # everything else: outside the cluster
    DROP = 0               # the table miss


#: REG_SOURCE[0..3] holds where the packet entered the bridge.
REG_SOURCE = "reg0"
SOURCE_MASK = 0xF
#: The Service port a new connection is for, and the index of the endpoint picked for it.
REG_SERVICE_PORT = "reg2"
REG_ENDPOINT = "reg3"
#: REG_AFFINITY[0]: set by a learned affinity flow that matched; REG_SCRATCH: the client's
#: source port, written by every learn so that each new connection *replaces* the learned
#: flow (resetting its age) rather than refreshing it.
REG_AFFINITY = "reg4"
REG_SCRATCH = "reg5"
#: The chosen endpoint's IP (what affinity remembers: an index would shift when endpoints change).
REG_ENDPOINT_IP = "reg7"
#: VXLAN clusters: the port a pod-bound or tunnel-bound packet leaves by (table egress_out).
REG_OUT_PORT = "reg6"
#: REG_SOURCE bit set by check_pkt_larger when a packet exceeds the pod MTU.
OVERSIZE_BIT = 8
#: The switch's fragment handling (OFPT_SET_CONFIG flags), sent when a switch connects:
#: OVS's ``nx-match`` (``ovs-ofctl set-frags``), under which a first fragment's L4 ports
#: are matchable (later fragments' are 0).  Under the default ``normal`` every fragment's
#: ports read 0, so a NetworkPolicy port rule could never allow a datagram larger than the
#: MTU (measured: 4,000 bytes to an allowed UDP port were dropped, answered after this).
FRAG_NX_MATCH = 3
#: The switch's miss_send_len, set with the flags (OpenFlow 1.3's default).
MISS_SEND_LEN = 128
#: OpenFlow timeouts are 16-bit; longer affinity timeouts are enforced by the controller.
MAX_OPENFLOW_TIMEOUT = 0xFFFF


class Source(IntEnum):
    POD = 1
    UPLINK = 2
    LOCAL = 3
    TUNNEL = 4


def source_match(source: Source) -> str:
    return f"{int(source):#x}/{SOURCE_MASK:#x}"


class Feature(IntEnum):
    """Cookie categories: the top byte of every cookie says which feature owns a flow,
    so one masked delete removes a feature, and a dump says who installed what."""

    PODNET = 0x01
    HOSTGW = 0x02
    VXLAN = 0x03
    NODE_ROUTES = 0x04
    SERVICES = 0x05
    MTU = 0x06
    POLICY = 0x07
    BGP = 0x08


FEATURE_SHIFT = 56
FEATURE_MASK = 0xFF << FEATURE_SHIFT
#: Bits 32..47: the controller run (generation) that installed the flow.  A restarted
#: controller re-adds every flow with its own generation, then deletes flows whose
#: generation is older: they are stale (Antrea's "round" in the cookie).
GENERATION_SHIFT = 32
GENERATION_MASK = 0xFFFF << GENERATION_SHIFT
OBJECT_MASK = 0xFFFFFFFF


def cookie(feature: Feature, obj: int = 0) -> int:
    """Cookie for a flow of ``feature`` about object ``obj`` (generation left 0:
    the controller adds its own when it sends the flow)."""
    return (int(feature) << FEATURE_SHIFT) | (obj & OBJECT_MASK)


def with_generation(value: int, generation: int) -> int:
    return (value & ~GENERATION_MASK) | ((generation & 0xFFFF) << GENERATION_SHIFT)


def generation_of(value: int) -> int:
    return (value & GENERATION_MASK) >> GENERATION_SHIFT


@dataclass(frozen=True)
class StaleDelete:
    """One OpenFlow delete by cookie mask (``table`` None: every table)."""
    table: "int | None"
    cookie: int
    mask: int


def stale_deletes(generation: int) -> list[StaleDelete]:
    """Deletes that remove every flow whose generation is not ``generation``, without
    reading the switch's flows first.

    Why: a replay used to dump the switch's flows and parse each (os-ken parses a flow
    stats reply in Python, ~0.1 ms a flow), which made a restarted controller's resync
    grow with the flow count.  A flow of another generation differs from ours in at least
    one of the 16 generation bits, so one delete per bit, matching that bit's opposite
    value under a one-bit cookie mask, reaches exactly those flows.  Flows with no
    generation (0) are switch state learned by the ``learn`` action -- ClientIP affinity,
    which outlives a controller as kube-proxy's ``recent`` lists outlive kube-proxy: the
    deletes for the bits we have *set* would reach them, so those go table by table and
    skip ``service_affinity``.  (A flow added by hand in a table outside the pipeline
    whose generation bits are a subset of ours is left alone.)"""
    out: list[StaleDelete] = []
    for bit in range(16):
        mask = 1 << (GENERATION_SHIFT + bit)
        if generation & (1 << bit):
            out += [StaleDelete(t.id, 0, mask) for t in TABLES if t.id != SERVICE_AFFINITY]
        else:
            out.append(StaleDelete(None, mask, mask))
    return out
