"""Predict a packet's walk across the running cluster, hop by hop.

::

    pod web-0 ──eth0──▶ node-0 switch ──uplink──▶ gw-rack-0 ──core──▶ core ──r1──▶ gw-rack-1 ──▶ node-2 switch ──▶ pod web-2
     route get           ofproto/trace             ip route get          ...                        ofproto/trace
     (pod's kernel)      (the node's own flows)    (the router's kernel)                            (tnl_pop, then the inner packet)

Each switch is asked with OVS's own ``ofproto/trace`` on its live flow tables
(:mod:`topos.trace.switch`); each kernel -- a pod or node sending, a rack gateway, the
core, the load balancer -- with its own routing table (:mod:`topos.trace.links`); each
frame goes where the wiring sends it.  Nothing is sent: this is the prediction the
observed trace is compared with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from k8snet.model.access import LINK_LOCAL_GATEWAY
from k8snet.model.cluster import BRIDGE_NAME, TUNNEL_IFNAME, TUNNEL_OFPORT, UPLINK_IFNAME, UPLINK_OFPORT, Cluster, Pod
from k8snet.model.trace_ends import Question, TraceInputError
from topos.nodes import lb_targets
from topos.trace.hops import Decision, Headers, Hop, Outer, Trace
from topos.trace.links import Links, NoRoute
from topos.trace.switch import SwitchStep

MAX_HOPS = 40


@dataclass
class At:
    """Where the packet is about to be handled."""

    kind: str                       # switch | wire | kernel | pod
    host: str
    ifname: str = ""                # wire: the interface it leaves by; kernel: the one it came in by
    in_port: str = ""               # switch: the OpenFlow in_port
    tunnel: Optional[Outer] = None  # switch: the tunnel it came out of


class End(Exception):
    def __init__(self, verdict: str, reason: str):
        super().__init__(reason)
        self.verdict, self.reason = verdict, reason


class Walker:
    def __init__(self, net: Any):
        self.net = net
        self.cluster: Cluster = net.cluster
        self.links = Links(net, self.cluster)
        self.pods = {p.host_name: p for p in self.cluster.pods}
        self.nodes = {n.name: n for n in self.cluster.nodes}
        self._switches: dict[str, SwitchStep] = {}
        self.notes: list[str] = []
        self._masquerade: Optional[str] = None

    def switch(self, node: str) -> SwitchStep:
        if node not in self._switches:
            self._switches[node] = SwitchStep(self.cluster, self.nodes[node], self.net.node(node).ovs)
        return self._switches[node]

    # ------------------------------------------------------------------ the walk
    def predict(self, q: Question) -> Trace:
        hops: list[Hop] = []
        verdict, reason = "dropped", f"no end after {MAX_HOPS} hops (a loop?)"
        try:
            h, at = self._send(q, hops)
            for _ in range(MAX_HOPS):
                h, at = getattr(self, f"_{at.kind}")(h, at, hops)
        except End as end:
            verdict, reason = end.verdict, end.reason
        return Trace(question=q.describe(), hops=hops, verdict=verdict, reason=reason, notes=self.notes)

    def _send(self, q: Question, hops: list[Hop]) -> tuple[Headers, At]:
        """The source's own kernel: its route and the next hop's MAC."""
        src, dst = q.src, str(q.dst.ip)
        assert src.host is not None
        try:
            route = self.links.route(src.host, dst)
        except NoRoute as exc:
            if src.kind == "pod" and self.cluster.access == "macvlan":
                # (as the macvlan CNI's pods: what is off their wire, a ClusterIP among it, they cannot reach)
                hops.append(Hop(src.host, "pod", f"{src.name} eth0", arrived=Headers(
                    self.pods[src.host].mac, "", str(q.src.ip), dst, q.ttl, q.protocol, q.sport, q.dport)))
                raise End("dropped", f"{src.name} has no route to {dst} ({exc}): a macvlan pod reaches its own "
                                     "segment only, and no switch on its path knows Services")
            raise TraceInputError("DST", f"{src.name} has no route to {dst}: {exc}") from exc
        hop_ip = route.gateway or dst
        where = f"{src.name} {route.dev}"
        decisions = [Decision("route", f"{dst} " + (f"via {route.gateway} " if route.gateway else "on-link ")
                              + f"dev {route.dev}", f"{src.name}'s routing table")]
        if src.kind == "pod" and self.cluster.access == "macvlan":
            h, at = self._send_macvlan(q, route, hop_ip, decisions, hops)
            role = "pod"
        elif src.kind == "pod":
            pod = self.pods[src.host]
            node = self.nodes[pod.node]
            # (routed-veth: the pod's gateway is 169.254.1.1, answered with the same MAC)
            mac = node.gateway_mac if hop_ip in (str(node.gateway_ip), LINK_LOCAL_GATEWAY) else next(
                (p.mac for p in self.cluster.pods_on(pod.node) if str(p.ip) == hop_ip), None)
            if mac is None:
                raise TraceInputError("DST", f"{dst} is on {src.name}'s subnet but no pod has it: no ARP answer")
            decisions.append(Decision("arp", f"{hop_ip} is at {mac}", f"answered by {node.name}'s switch"))
            h = Headers(pod.mac, mac, str(pod.ip), dst, q.ttl, q.protocol, q.sport, q.dport)
            at = At("switch", node.name, in_port=str(pod.ofport))
            role = "pod"
        elif src.kind == "node":
            node = self.nodes[src.host]
            if hop_ip == str(node.gateway_ip):
                mac = node.gateway_mac
                answered = f"answered by {node.name}'s switch (the pod gateway)"
            else:
                member = self.links.next_hop_mac(node.name, UPLINK_IFNAME, hop_ip)
                if member is None:
                    raise TraceInputError("DST", f"no one answers ARP for {hop_ip} on {node.name}'s underlay")
                mac, answered = member.mac, f"{member.host} {member.ifname}"
            decisions.append(Decision("arp", f"{hop_ip} is at {mac}", answered))
            h = Headers(node.mac, mac, str(node.ip), dst, q.ttl, q.protocol, q.sport, q.dport)
            at = At("switch", node.name, in_port="LOCAL")
            role = "node"
        else:
            member = self.links.next_hop_mac(src.host, route.dev, hop_ip)
            if member is None:
                raise TraceInputError("DST", f"no one answers ARP for {hop_ip} on {src.name}'s {route.dev}")
            decisions.append(Decision("arp", f"{hop_ip} is at {member.mac}", f"{member.host} {member.ifname}"))
            h = Headers(self.links.mac(src.host, route.dev), member.mac, str(src.ip), dst, q.ttl, q.protocol,
                        q.sport, q.dport)
            at = At("wire", src.host, ifname=route.dev)
            role = "host"
        h = h.with_(length=q.size)
        hop = Hop(src.host, role, where, arrived=h, left=h, out=route.dev, decisions=decisions, out_if=route.dev)
        hops.append(hop)
        mtu = route.mtu or self.links.mtu(src.host, route.dev)
        if q.size and q.size > mtu:
            hop.left, hop.out_if = None, ""
            raise End("dropped", f"{src.name}'s kernel refuses to send {q.size} bytes with Don't Fragment out of "
                                 f"{route.dev} (MTU {mtu}): EMSGSIZE, nothing leaves")
        return h, at

    def _send_macvlan(self, q: Question, route: Any, hop_ip: str, decisions: list[Decision],
                      hops: list[Hop]) -> tuple[Headers, At]:
        """A macvlan pod sends on its parent's wire: a sibling (same parent) is reached
        inside the kernel, anything else through the segment -- never the parent's own
        node, which the kernel keeps apart from its children."""
        src, dst = q.src, str(q.dst.ip)
        assert src.host is not None
        pod = self.pods[src.host]
        node = self.nodes[pod.node]
        sibling = next((p for p in self.cluster.pods_on(pod.node) if str(p.ip) == hop_ip), None)
        member = None if sibling else self.links.next_hop_mac(node.name, UPLINK_IFNAME, hop_ip)
        if sibling is None and member is None:
            unsent = Headers(pod.mac, "", str(pod.ip), dst, q.ttl, q.protocol, q.sport, q.dport)
            hops.append(Hop(src.host, "pod", f"{src.name} {route.dev}", arrived=unsent, decisions=decisions))
            why = (f"{hop_ip} is {node.name}, this macvlan pod's own node: the kernel passes no frame between a "
                   "macvlan child and its parent" if hop_ip == str(node.ip)
                   else f"no one on {node.name}'s segment answers ARP for {hop_ip}")
            raise End("dropped", f"{src.name}: {why}")
        mac = sibling.mac if sibling else member.mac  # type: ignore[union-attr]
        answer = (f"{sibling.namespace}/{sibling.name}, a macvlan sibling (mode bridge: inside the kernel)"
                  if sibling else f"{member.host} {member.ifname}")  # type: ignore[union-attr]
        decisions.append(Decision("arp", f"{hop_ip} is at {mac}", answer))
        h = Headers(pod.mac, mac, str(pod.ip), dst, q.ttl, q.protocol, q.sport, q.dport)
        if sibling is not None:
            return h, At("pod", sibling.host_name)
        return h, At("wire", node.name, ifname=UPLINK_IFNAME)

    def _switch(self, h: Headers, at: At, hops: list[Hop]) -> tuple[Headers, At]:
        step = self.switch(at.host)
        trace, _ = step.trace(h, at.in_port, at.tunnel)
        exit_ = step.exit(trace, h, at.in_port)
        port_name = {str(UPLINK_OFPORT): UPLINK_IFNAME, "LOCAL": "LOCAL",
                     str(TUNNEL_OFPORT): TUNNEL_IFNAME}.get(at.in_port) or self._pod_port(at)
        hop = Hop(at.host, "switch", f"{at.host} {BRIDGE_NAME} in {port_name}", arrived=h,
                  left=exit_.headers, decisions=step.decisions(trace, h),
                  in_if="" if at.in_port == str(TUNNEL_OFPORT) else BRIDGE_NAME if at.in_port == "LOCAL" else port_name)
        hops.append(hop)
        if exit_.kind in ("dropped", "rejected"):
            hop.left = None
            raise End(exit_.kind, f"{at.host}: {exit_.reason}")
        assert exit_.headers is not None
        out = exit_.headers
        if exit_.kind == "tunnel-in":
            assert h.outer is not None
            hop.out = "vxlan0 (decapsulated)"
            return out, At("switch", at.host, in_port=str(TUNNEL_OFPORT), tunnel=h.outer)
        if exit_.kind == "pod":
            pod = next(p for p in self.cluster.pods_on(at.host) if p.ofport == exit_.port)
            hop.out, hop.out_if = f"{pod.port_name} -> pod {pod.namespace}/{pod.name}", pod.port_name
            return out, At("pod", pod.host_name)
        if exit_.kind == "local":
            hop.out, hop.out_if = "LOCAL (the node's kernel)", BRIDGE_NAME
            return out, At("kernel", at.host, ifname=BRIDGE_NAME)
        hop.out, hop.out_if = UPLINK_IFNAME + (" (VXLAN)" if out.outer else ""), UPLINK_IFNAME
        return out, At("wire", at.host, ifname=UPLINK_IFNAME)

    def _pod_port(self, at: At) -> str:
        pod = next((p for p in self.cluster.pods_on(at.host) if str(p.ofport) == at.in_port), None)
        return pod.port_name if pod else at.in_port

    def _pod(self, h: Headers, at: At, hops: list[Hop]) -> tuple[Headers, At]:
        pod: Pod = self.pods[at.host]
        hops.append(Hop(at.host, "pod", f"pod {pod.namespace}/{pod.name} eth0", arrived=h, in_if="eth0"))
        if h.ip_dst == str(pod.ip) and h.eth_dst == pod.mac:
            raise End("delivered", f"delivered to pod {pod.namespace}/{pod.name} ({pod.ip})")
        raise End("dropped", f"pod {pod.namespace}/{pod.name} got a packet for {h.ip_dst} / {h.eth_dst}: not its own")

    def _wire(self, h: Headers, at: At, hops: list[Hop]) -> tuple[Headers, At]:
        mac = h.outer.eth_dst if h.outer else h.eth_dst
        segment = self.links.segment_name(at.host, at.ifname)
        member = self.links.receiver(at.host, at.ifname, mac)
        if member is None:
            hops.append(Hop(at.host, "segment", segment, arrived=h))
            raise End("dropped", f"no one on {segment} has MAC {mac}")
        if not segment.startswith("link "):
            bridge_host = segment.split()[0]
            port_in = at.ifname if at.host == bridge_host else self.links.peer[(at.host, at.ifname)][1]
            port_out = member.ifname if member.host == bridge_host else self.links.port(member)
            hops.append(Hop(bridge_host, "segment", segment, arrived=h, left=h,
                            out=f"to {member.host} {member.ifname}", in_if=port_in, out_if=port_out,
                            decisions=[Decision("bridge", f"{mac} -> {member.host} {member.ifname}",
                                                "the frame's destination MAC")]))
        if member.ifname == UPLINK_IFNAME and member.host in self.nodes:
            return h, At("switch", member.host, in_port=str(UPLINK_OFPORT))
        if member.host in self.pods:  # a macvlan child takes it before its parent's switch
            return h, At("pod", member.host)
        return h, At("kernel", member.host, ifname=member.ifname)

    def _kernel(self, h: Headers, at: At, hops: list[Hop]) -> tuple[Headers, At]:
        """A host's kernel takes the packet in: its own address, or routed on (routers)."""
        hop = Hop(at.host, "router" if Links.is_router(at.host, self.cluster) else "host",
                  f"{at.host} kernel in {at.ifname}", arrived=h, in_if=at.ifname)
        hops.append(hop)
        decisions = hop.decisions
        h = self._load_balance(h, at, decisions)
        routed = h.outer if h.outer else h
        if self.links.owns(at.host, routed.ip_dst):
            raise End("delivered", f"delivered to {at.host}'s own stack ({routed.ip_dst})")
        if hop.role != "router" and at.host not in self.nodes:
            raise End("dropped", f"{at.host} does not forward: {routed.ip_dst} is not its address")
        if routed.ttl <= 1:
            raise End("dropped", f"TTL {routed.ttl} expires at {at.host}: the kernel drops it and answers "
                                 "ICMP time exceeded")
        try:
            route = self.links.route(at.host, routed.ip_dst, routed.ip_src, at.ifname)
        except NoRoute as exc:
            raise End("dropped", f"{at.host} has no route to {routed.ip_dst}: {exc}")
        if route.local:
            raise End("delivered", f"delivered to {at.host}'s own stack ({routed.ip_dst})")
        hop_ip = route.gateway or routed.ip_dst
        decisions.append(Decision("route", f"{routed.ip_dst} " + (f"via {route.gateway} " if route.gateway
                                                                  else "on-link ") + f"dev {route.dev}",
                                  f"{at.host}'s routing table"))
        member = self.links.next_hop_mac(at.host, route.dev, hop_ip)
        if member is None:
            raise End("dropped", f"{at.host}: no one answers ARP for {hop_ip} on {route.dev}")
        decisions.append(Decision("arp", f"{hop_ip} is at {member.mac}", f"{member.host} {member.ifname}"))
        size = (h.length or 0) + (50 if h.outer else 0)
        mtu = self.links.mtu(at.host, route.dev)
        if h.length and size > mtu:
            raise End("dropped", f"{at.host}: {size} bytes with Don't Fragment do not fit {route.dev} (MTU {mtu}): "
                                 "the kernel drops it and answers ICMP fragmentation needed")
        changes: dict[str, Any] = dict(eth_src=self.links.mac(at.host, route.dev), eth_dst=member.mac,
                                       ttl=routed.ttl - 1)
        if self._masquerade and h.outer is None:
            changes["ip_src"], self._masquerade = self._masquerade, None
        out = h.with_(outer=h.outer.__class__(**{**h.outer.__dict__, **changes})) if h.outer else h.with_(**changes)
        hop.left, hop.out, hop.out_if = out, route.dev, route.dev
        if at.host in self.nodes and route.dev == BRIDGE_NAME:
            return out, At("switch", at.host, in_port="LOCAL")
        return out, At("wire", at.host, ifname=route.dev)

    def _load_balance(self, h: Headers, at: At, decisions: list[Decision]) -> Headers:
        """The emulated cloud load balancer's nftables DNAT (and masquerade) of a VIP."""
        lb = self.cluster.underlay.lb
        if lb is None or at.host != lb.name or h.outer is not None or h.dport is None:
            return h
        target = lb_targets(self.cluster).get((h.ip_dst, h.dport, h.protocol))
        if target is None:
            return h
        nodes, node_port = target
        if not nodes:
            raise End("dropped", f"{lb.name}: {h.ip_dst}:{h.dport} has no node to send to (its rule drops)")
        pick = nodes[0]
        others = ", ".join(f"{n}:{node_port}" for n in nodes[1:])
        decisions.append(Decision("nftables", f"dnat {h.ip_dst}:{h.dport} -> {pick}:{node_port}",
                                  f"the LoadBalancer's pick (numgen random over {len(nodes)} nodes)"
                                  + (f"; it may as well be {others}" if others else "")))
        decisions.append(Decision("nftables", f"masquerade {h.ip_src} -> {lb.ip}",
                                  "so the node's reply returns through the load balancer"))
        if others:
            self.notes.append(f"{lb.name} picks a node at random per connection: this trace follows {pick}; "
                              f"the others are {others}")
        # Masquerade happens after routing (postrouting): route with the client's address.
        self._masquerade = str(lb.ip)
        return h.with_(ip_dst=pick, dport=node_port)
