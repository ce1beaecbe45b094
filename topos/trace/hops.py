"""A traced packet's walk as data: the headers at each place, what changed there and why.

Plain dataclasses, so a notebook gets the same thing as the terminal: ``to_json`` is what
``k8snet trace --json`` writes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Optional


@dataclass(frozen=True)
class Outer:
    """The VXLAN header a tunnelled packet carries on the underlay."""

    eth_src: str
    eth_dst: str
    ip_src: str
    ip_dst: str
    ttl: int
    udp_dst: int
    vni: int


@dataclass(frozen=True)
class Headers:
    """The packet as it is at one place (the inner packet when it is tunnelled)."""

    eth_src: str
    eth_dst: str
    ip_src: str
    ip_dst: str
    ttl: int
    protocol: str
    sport: Optional[int] = None
    dport: Optional[int] = None
    outer: Optional[Outer] = None
    #: The IP packet's length, when the trace asked for a size (the outer adds 50 bytes).
    length: Optional[int] = None

    def with_(self, **changes: Any) -> "Headers":
        return replace(self, **changes)

    def changes_to(self, after: "Headers") -> list[str]:
        """What differs from ``self`` to ``after``, as ``field old -> new`` lines."""
        out = []
        for name in ("eth_src", "eth_dst", "ip_src", "ip_dst", "ttl", "sport", "dport"):
            old, new = getattr(self, name), getattr(after, name)
            if old != new:
                out.append(f"{name} {old} -> {new}")
        if self.outer is None and after.outer is not None:
            o = after.outer
            out.append(f"+ VXLAN vni {o.vni}: {o.ip_src} -> {o.ip_dst} udp/{o.udp_dst}, {o.eth_src} -> {o.eth_dst}")
        elif self.outer is not None and after.outer is None:
            out.append("- VXLAN header removed")
        elif self.outer is not None and after.outer is not None:
            for name in ("eth_src", "eth_dst", "ttl"):
                old, new = getattr(self.outer, name), getattr(after.outer, name)
                if old != new:
                    out.append(f"outer {name} {old} -> {new}")
        return out


@dataclass
class Decision:
    """One rule or lookup that did something to the packet."""

    where: str       # an OpenFlow table name, "route", "nftables", "arp", "deliver"
    what: str        # the action: "dec_ttl", "nat(dst=10.244.2.2:80)", "via 192.168.0.1 dev core"
    why: str         # the Kubernetes object or model fact behind it


@dataclass
class Hop:
    """One place the packet passes: a pod, a node's switch, a segment, a router."""

    host: str                       # the network namespace (Mininet host)
    role: str                       # pod | node | switch | segment | router | host
    where: str                      # "node-0 br-k8s in pod0", "gw-rack-0 kernel", ...
    arrived: Headers
    left: Optional[Headers] = None  # None where the walk ends
    out: str = ""                   # the interface it leaves by ("uplink", "core", "eth0 -> pod web-1")
    decisions: list[Decision] = field(default_factory=list)
    #: The kernel interfaces of ``host`` it comes in and goes out by, where a capture can
    #: see it ("" where none can: OVS's tunnel port, or where the walk ends).
    in_if: str = ""
    out_if: str = ""
    #: Filled by an observed trace: the packet as captured there, and each difference.
    seen_in: Optional[Headers] = None
    seen_out: Optional[Headers] = None
    mismatch: list[str] = field(default_factory=list)

    def changes(self) -> list[str]:
        return self.arrived.changes_to(self.left) if self.left is not None else []


@dataclass
class Trace:
    question: str
    hops: list[Hop]
    verdict: str          # delivered | dropped | rejected
    reason: str           # why it ends where it does, in words
    kind: str = "predicted"           # predicted | observed (prediction and captures side by side)
    notes: list[str] = field(default_factory=list)
    #: Observed traces: where the real packet was last seen, and whether it all agreed.
    seen_last: str = ""
    agrees: Optional[bool] = None
    #: Observed traces: the answer as it reached the source (an echo reply, a SYN-ACK or
    #: reset, a datagram back), and what it was -- None when none came.
    reply: Optional[Headers] = None
    reply_kind: str = ""

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for hop, raw in zip(self.hops, out["hops"]):
            raw["changes"] = hop.changes()
        return out
