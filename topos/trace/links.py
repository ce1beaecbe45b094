"""Where a frame goes when it leaves an interface, and what the kernel decides: the
underlay half of a trace.

The running cluster's own links are the map (Mininet's link list: each veth's two ends).
A frame sent out of ``(host, ifname)`` reaches the other end of its link; if that end is a
port of a Linux bridge (the flat underlay's ``fabric``, a rack's ``segment``), the bridge
hands it to the member whose MAC it is addressed to.  Which MAC a next hop has is what ARP
would answer: taken from the model for what k8snet programs itself (pod gateways, node
MACs, external hosts), and from the namespace (``ip -j addr``) for the routers' own
interfaces, whose MACs the kernel chose.  Routing decisions are the kernel's own:
``ip -j route get`` in the router's namespace, with the packet's source and input
interface, so policy routing and the kernel's rules are what they are.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Optional

from k8snet.model.cluster import UPLINK_IFNAME, Cluster
from k8snet.model.underlay import CORE_HOST
from k8snet.procs import run
from topos.attach import tapped_links


@dataclass(frozen=True)
class Member:
    """Something on an L2 domain: who answers ARP for ``ip`` with ``mac``, and where a
    frame for it enters (``host``'s interface ``ifname``; a node's switch at ``uplink``)."""

    ip: str
    mac: str
    host: str
    ifname: str


@dataclass(frozen=True)
class Route:
    """``ip route get``'s answer: out ``dev``, to ``gateway`` (None: on-link), or ``local``."""

    dev: str
    gateway: Optional[str]
    local: bool = False
    mtu: Optional[int] = None       # a route's own MTU (a node's route to the pod CIDR on VXLAN)


class NoRoute(Exception):
    pass


class Links:
    """The running network's wiring, queried lazily and cached for one trace."""

    def __init__(self, net: Any, cluster: Cluster):
        self.mininet = net.net
        self.cluster = cluster
        self.peer: dict[tuple[str, str], tuple[str, str]] = {}
        ends = [((link.intf1.node.name, link.intf1.name), (link.intf2.node.name, link.intf2.name))
                for link in self.mininet.links]
        for a, b in ends + tapped_links(cluster):  # (a tap's OVS port and its device count as a link)
            self.peer[a], self.peer[b] = b, a
        self._links: dict[str, list[dict[str, Any]]] = {}
        self._addrs: dict[str, list[dict[str, Any]]] = {}

    # ------------------------------------------------------------------ the kernel's view
    def _ip_json(self, host: str, *args: str) -> Any:
        out = run(["mnexec", "-a", str(self.mininet[host].pid), "ip", "-j", *args], timeout=10, check=False)
        if out.returncode != 0:
            raise NoRoute(out.stderr.strip() or f"ip {' '.join(args)} failed")
        return json.loads(out.stdout or "[]")

    def links_of(self, host: str) -> list[dict[str, Any]]:
        if host not in self._links:
            self._links[host] = self._ip_json(host, "link", "show")
        return self._links[host]

    def addrs_of(self, host: str) -> list[dict[str, Any]]:
        if host not in self._addrs:
            self._addrs[host] = self._ip_json(host, "addr", "show")
        return self._addrs[host]

    def mac(self, host: str, ifname: str) -> str:
        return next(link["address"] for link in self.links_of(host) if link["ifname"] == ifname)

    def mtu(self, host: str, ifname: str) -> int:
        return next(int(link["mtu"]) for link in self.links_of(host) if link["ifname"] == ifname)

    def master(self, host: str, ifname: str) -> Optional[str]:
        return next((link.get("master") for link in self.links_of(host) if link["ifname"] == ifname), None)

    def is_bridge(self, host: str, ifname: str) -> bool:
        return any(link.get("master") == ifname for link in self.links_of(host))

    def owns(self, host: str, ip: str) -> bool:
        return any(a.get("local") == ip for link in self.addrs_of(host) for a in link.get("addr_info", []))

    def route(self, host: str, dst: str, src: Optional[str] = None, iif: Optional[str] = None) -> Route:
        """The kernel's route for a packet to ``dst`` (arriving on ``iif`` from ``src``)."""
        args = ["route", "get", dst]
        if src and iif:
            args += ["from", src, "iif", iif]
        answer = self._ip_json(host, *args)[0]
        metrics = {k: v for m in answer.get("metrics", []) for k, v in m.items()}
        return Route(dev=answer.get("dev", ""), gateway=answer.get("gateway"),
                     local=answer.get("type") == "local", mtu=metrics.get("mtu"))

    # ------------------------------------------------------------------ L2 domains
    def members(self, host: str, ifname: str) -> list[Member]:
        """Everything a frame out of ``(host, ifname)`` can be addressed to."""
        if self.is_bridge(host, ifname):
            # A bridge device of this host's own (a rack gateway's ``segment``): its ports.
            return [m for link in self.links_of(host) if link.get("master") == ifname
                    for m in self._ends(*self.peer[(host, link["ifname"])])
                    if (host, link["ifname"]) in self.peer]
        peer = self.peer.get((host, ifname))
        if peer is None:
            return []
        bridge = self.master(*peer)
        if bridge is None:
            return self._ends(*peer)
        out = []
        for link in self.links_of(peer[0]):
            if link.get("master") == bridge and (peer[0], link["ifname"]) != peer:
                far = self.peer.get((peer[0], link["ifname"]))
                if far is not None:
                    out += self._ends(*far)
        # The bridge's own address: a rack gateway routes what is sent to its MAC.
        for addr in self._ip_addrs(peer[0], bridge):
            out.append(Member(addr, self.mac(peer[0], bridge), peer[0], bridge))
        return out

    def _ip_addrs(self, host: str, ifname: str) -> list[str]:
        return [a["local"] for link in self.addrs_of(host) if link["ifname"] == ifname
                for a in link.get("addr_info", []) if a.get("family") == "inet"]

    def _ends(self, host: str, ifname: str) -> list[Member]:
        """What answers at the far end of a link: a node's uplink is its switch, which
        carries the node's own IP and MAC (the kernel's address is on ``br-k8s``)."""
        if ifname == UPLINK_IFNAME and host in {n.name for n in self.cluster.nodes}:
            node = self.cluster.node(host)
            # (macvlan: the node's pods are on its uplink's wire too, each with its own MAC)
            pods = self.cluster.pods_on(host) if self.cluster.access == "macvlan" else []
            return [Member(str(node.ip), node.mac, host, ifname)] + [
                Member(str(p.ip), p.mac, p.host_name, "eth0") for p in pods]
        mac = self.mac(host, ifname)
        return [Member(addr, mac, host, ifname) for addr in self._ip_addrs(host, ifname)] or \
            [Member("", mac, host, ifname)]

    def port(self, member: Member) -> str:
        """The interface of the far side of ``member``'s link (its bridge port): a macvlan
        pod's is its parent's, the node's uplink."""
        pod = next((p for p in self.cluster.pods if p.host_name == member.host), None)
        if pod is not None and (member.host, member.ifname) not in self.peer:
            return self.peer[(pod.node, UPLINK_IFNAME)][1]
        return self.peer[(member.host, member.ifname)][1]

    def next_hop_mac(self, host: str, ifname: str, ip: str) -> Optional[Member]:
        """Who answers ARP for ``ip`` on the domain of ``(host, ifname)``."""
        return next((m for m in self.members(host, ifname) if m.ip == ip), None)

    def receiver(self, host: str, ifname: str, mac: str) -> Optional[Member]:
        """Where a frame to ``mac`` sent out of ``(host, ifname)`` is taken in."""
        return next((m for m in self.members(host, ifname) if m.mac == mac), None)

    def segment_name(self, host: str, ifname: str) -> str:
        """What the frame crosses: ``underlay fabric``, ``gw-rack-0 segment``, or the link."""
        if self.is_bridge(host, ifname):
            return f"{host} {ifname}"
        peer = self.peer.get((host, ifname))
        if peer is None:
            return "nowhere"
        bridge = self.master(*peer)
        if bridge is not None:
            return f"{peer[0]} {bridge}"
        return f"link {host}:{ifname} - {peer[0]}:{peer[1]}"

    @staticmethod
    def is_router(host: str, cluster: Cluster) -> bool:
        return host == CORE_HOST or any(r.host_name == host for r in cluster.underlay.racks) or \
            (cluster.underlay.lb is not None and host == cluster.underlay.lb.name)
