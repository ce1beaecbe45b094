"""One node's switch in a trace: the packet as an ``ofproto/trace`` flow, OVS's answer
read back as decisions named after Kubernetes objects, and where the packet goes next.

The flow is traced as the first packet of a new connection.  Every ``ct`` action resumes
as ``trk,new`` (OVS's default for ``--ct-next``), and the conntrack tuple fields
(``ct_nw_dst``, ``ct_tp_dst``, ...) are given in the flow itself: OVS's tracer keeps
the fields it was given across a recirculation but has no connection to take them from,
and for a new connection they are the packet's own addresses, which is what the Service
tables match (``controllers/services.py``, ``frontend_matches``).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Optional

from controllers import cookies
from controllers.pipeline import FEATURE_MASK, FEATURE_SHIFT, TABLES, Feature
from k8snet.model.cluster import BRIDGE_NAME, UPLINK_OFPORT, Cluster, Node, RouteKind
from topos.trace.hops import Decision, Headers, Outer
from topos.trace.ofproto import FlowStep, OfTrace, parse

IP_PROTO = {"icmp": 1, "tcp": 6, "udp": 17}
ETHERNET = 14
TABLE_NAMES = {t.id: t.name for t in TABLES}


def flow_of(h: Headers, in_port: str, tunnel: Optional[Outer] = None) -> str:
    """``h`` entering at ``in_port`` as ``ofproto/trace`` reads it."""
    if h.outer is not None:
        o = h.outer
        return (f"in_port={in_port},dl_src={o.eth_src},dl_dst={o.eth_dst},udp,nw_src={o.ip_src},"
                f"nw_dst={o.ip_dst},nw_ttl={o.ttl},udp_src=0,udp_dst={o.udp_dst}")
    parts = [f"in_port={in_port}"]
    if tunnel is not None:
        parts += [f"tun_id={tunnel.vni}", f"tun_src={tunnel.ip_src}", f"tun_dst={tunnel.ip_dst}"]
    parts += [f"dl_src={h.eth_src}", f"dl_dst={h.eth_dst}", h.protocol, f"nw_src={h.ip_src}",
              f"nw_dst={h.ip_dst}", f"nw_ttl={h.ttl}"]
    if h.protocol == "icmp":
        parts += ["icmp_type=8", "icmp_code=0"]
    else:
        parts += [f"{h.protocol}_src={h.sport}", f"{h.protocol}_dst={h.dport}"]
        if h.protocol == "tcp":
            parts.append("tcp_flags=0x002")       # a SYN: the first packet of a connection
    parts += ["ct_state=trk|new", f"ct_nw_src={h.ip_src}", f"ct_nw_dst={h.ip_dst}",
              f"ct_nw_proto={IP_PROTO[h.protocol]}"]
    if h.protocol != "icmp":
        parts += [f"ct_tp_src={h.sport}", f"ct_tp_dst={h.dport}"]
    return ",".join(parts)


@dataclass
class Exit:
    """Where the packet goes after the switch."""

    kind: str                   # pod | uplink | local | tunnel-in | dropped | rejected
    headers: Optional[Headers]
    port: Optional[int] = None  # the pod's OpenFlow port
    reason: str = ""


class SwitchStep:
    """Traces one packet through one node's switch."""

    def __init__(self, cluster: Cluster, node: Node, ovs: object):
        self.cluster, self.node, self.ovs = cluster, node, ovs
        self.known = cookies.names(cluster)

    def trace(self, h: Headers, in_port: str, tunnel: Optional[Outer] = None) -> tuple[OfTrace, str]:
        flow = flow_of(h, in_port, tunnel)
        return parse(self.ovs.appctl("ofproto/trace", BRIDGE_NAME, flow)), flow  # type: ignore[attr-defined]

    # ------------------------------------------------------------------ reading the answer
    def decisions(self, t: OfTrace, h: Headers) -> list[Decision]:
        out = []
        nats = iter(t.nats)
        for step in t.steps:
            if step.depth:
                continue
            acts: list[str] = []
            for a in step.actions:
                if a.startswith(("goto_table", "resubmit")) or (a == "drop" and step is not t.deciding_step()):
                    continue
                if acts and acts[-1].startswith("ct(") and a in acts[-1]:
                    continue          # the trace repeats what a ct() runs inside it
                acts.append(a)
            if not acts:
                continue
            why = cookies.describe(self.cluster, step.cookie, self.known) if step.cookie is not None else ""
            what = "; ".join(acts)
            if any(a.startswith(("nat(dst", "nat(src")) for a in step.actions):
                before, after = next(nats, ({}, {}))
                why = self._nat_why(step, before, after, h) or why
            table = ("outer packet: " if step.outer else "") + TABLE_NAMES.get(step.table, str(step.table))
            out.append(Decision(table, what, why))
        return out

    def _nat_why(self, step: FlowStep, before: dict[str, str], after: dict[str, str], h: Headers) -> str:
        if before.get("nw_dst") != after.get("nw_dst"):
            pod = next((p for p in self.cluster.pods if str(p.ip) == after.get("nw_dst")), None)
            svc = self._service_of(before.get("nw_dst", ""), int(before.get("tp_dst") or 0), h.protocol)
            endpoint = f"endpoint {pod.namespace}/{pod.name}" if pod else f"endpoint {after.get('nw_dst')}"
            return (f"{svc}: DNAT {before.get('nw_dst')}:{before.get('tp_dst')} -> "
                    f"{after.get('nw_dst')}:{after.get('tp_dst')} ({endpoint}, picked by the 5-tuple hash)")
        if before.get("nw_src") != after.get("nw_src"):
            if after.get("nw_src") == str(self.node.gateway_ip):
                return f"hairpin: SNAT to the pod gateway {self.node.gateway_ip} so the reply returns through the switch"
            return (f"SNAT {before.get('nw_src')} -> {after.get('nw_src')}: externalTrafficPolicy Cluster "
                    "(the reply must come back through this node to be un-NATed)")
        return ""

    def _service_of(self, ip: str, port: int, protocol: str) -> str:
        for svc in self.cluster.services:
            for sp in svc.ports:
                if sp.protocol.lower() != protocol:
                    continue
                hit = (str(svc.cluster_ip) == ip and sp.port == port) or \
                    (str(svc.load_balancer_ip) == ip and sp.port == port) or \
                    (sp.node_port == port and any(str(n.ip) == ip for n in self.cluster.nodes))
                if hit:
                    name = f" {sp.name}" if sp.name else ""
                    via = " (NodePort)" if sp.node_port == port and str(svc.cluster_ip) != ip else ""
                    return f"Service {svc.key} port{name} {sp.port}/{sp.protocol}{via}"
        return f"{ip}:{port}"

    def exit(self, t: OfTrace, h: Headers, in_port: str) -> Exit:
        """Where the packet leaves, with the headers it leaves with (``IN_PORT``: back out
        of the port it came in by, as a hairpin connection does)."""
        if t.decapsulates:
            return Exit("tunnel-in", h.with_(outer=None))
        limit = next((int(m.group(1)) for step in t.steps if step.depth == 0 for a in step.actions
                      if (m := re.match(r"check_pkt_larger\((\d+)\)", a))), None)
        if h.length is not None and limit is not None and h.length + ETHERNET > limit:
            return Exit("rejected", None, reason=f"{h.length + ETHERNET}-byte frame is larger than {limit} (the pod "
                                                 "MTU, check_pkt_larger): to the controller, which refuses it because "
                                                 "Don't Fragment is set (mtu_drops) and sends ICMP fragmentation "
                                                 f"needed, MTU {limit - ETHERNET}, back through conntrack to the "
                                                 "sender, as a Linux node would")
        after = self._headers_after(t, h)
        outputs = [o for o in t.outputs if not o.startswith("CONTROLLER")]
        if any(o.startswith("CONTROLLER") for o in t.outputs) and not outputs:
            step = t.deciding_step()
            feature = ((step.cookie or 0) & FEATURE_MASK) >> FEATURE_SHIFT if step else 0
            if feature == Feature.SERVICES:
                svc = self._service_of(h.ip_dst, h.dport or 0, h.protocol)
                answer = "a TCP reset" if h.protocol == "tcp" else "ICMP port unreachable"
                return Exit("rejected", None, reason=f"{svc} has no endpoints: the controller answers with "
                                                     f"{answer} from the VIP (kube-proxy's REJECT)")
            return Exit("dropped", None, reason="sent to the controller, which does not forward it")
        if t.ttl_exception:
            return Exit("dropped", None, reason=f"TTL {h.ttl} expires at the routing step "
                                                "(dec_ttl); the switch drops it without an ICMP time exceeded")
        if not outputs:
            return Exit("dropped", None, reason=self._drop_reason(t, h))
        out = outputs[-1]
        if out == "IN_PORT":
            out = "LOCAL" if in_port == "LOCAL" else f"output:{in_port}"
        if out == "LOCAL":
            return Exit("local", after)
        port = int(out.split(":")[1]) if out.startswith("output:") else None
        if port == UPLINK_OFPORT:
            return Exit("uplink", after)
        return Exit("pod", after, port=port)

    def _headers_after(self, t: OfTrace, h: Headers) -> Headers:
        f = t.final
        proto = h.protocol
        inner = h.with_(eth_src=f.get("dl_src", h.eth_src), eth_dst=f.get("dl_dst", h.eth_dst),
                        ip_src=f.get("nw_src", h.ip_src), ip_dst=f.get("nw_dst", h.ip_dst),
                        ttl=int(f.get("nw_ttl", h.ttl)),
                        sport=int(f["tp_src"]) if proto != "icmp" and "tp_src" in f else h.sport,
                        dport=int(f["tp_dst"]) if proto != "icmp" and "tp_dst" in f else h.dport)
        if t.tunnel is None:
            return inner
        vni = next((int(a.split("->")[0].split(":")[1], 0) for s in t.steps for a in s.actions
                    if a.startswith("set_field:") and a.endswith("->tun_id")), self.cluster.vni)
        return inner.with_(outer=Outer(eth_src=t.tunnel.src_mac, eth_dst=t.tunnel.dst_mac,
                                       ip_src=t.tunnel.src_ip, ip_dst=f.get("tun_dst", t.tunnel.dst_ip),
                                       ttl=64, udp_dst=self.cluster.vxlan_port, vni=vni))

    def _drop_reason(self, t: OfTrace, h: Headers) -> str:
        step = t.deciding_step()
        table = TABLE_NAMES.get(step.table, str(step.table)) if step else "?"
        why = cookies.describe(self.cluster, step.cookie, self.known) if step and step.cookie is not None else ""
        if table == "l3_forwarding":
            for peer in self.cluster.nodes:
                if ipaddress.IPv4Address(h.ip_dst) in peer.pod_cidr and peer.name != self.node.name:
                    route = self.cluster.route(self.node, peer)
                    if route.kind is RouteKind.NONE:
                        return f"no route: {route.reason}"
            return f"no route to {h.ip_dst} (table l3_forwarding: {why or 'no rule'})"
        if table in ("policy_ingress", "policy_egress"):
            return f"dropped at table {table} ({why}): NetworkPolicy: {self._policy_reason(h)}"
        return f"dropped at table {table}" + (f": {why}" if why else "")

    def _policy_reason(self, h: Headers) -> str:
        """The evaluator's account of the denial (:mod:`k8snet.model.policy_eval`): which
        policies select the pod and that none of their rules allows this peer and port --
        the prediction the switch just carried out."""
        from k8snet.model.policy_eval import evaluate

        def end(ip: str) -> "object":
            return next((p for p in self.cluster.pods if str(p.ip) == ip), None) or ipaddress.IPv4Address(ip)

        verdict = evaluate(self.cluster, end(h.ip_src), end(h.ip_dst), h.dport, h.protocol.upper())  # type: ignore
        return verdict.deciding.reason
