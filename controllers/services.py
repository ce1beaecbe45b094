"""kube-proxy in OpenFlow: ClusterIP load balancing at the client's node.

kube-proxy's iptables mode gives each Service port a chain that picks one endpoint
at random and DNATs to it; conntrack remembers the choice and undoes it on replies.
Here, on every node:

* ``conntrack``: every IP packet goes through ``ct(zone=1, nat)``: replies get the VIP
  back as their source, later packets of a connection get its DNAT again;
* ``service_lb``: a *new* connection to ``VIP:port/proto`` picks one of the port's N
  ready endpoints: ``multipath(symmetric_l3l4+udp, hrw, N)`` hashes the 5-tuple into
  ``reg3`` (kube-proxy's random pick, made per connection); with no endpoint the packet
  goes to the controller, which answers with a TCP reset or an ICMP port unreachable
  (kube-proxy's REJECT), so the client fails at once instead of timing out;
* ``service_endpoint``: one flow per (port, endpoint index):
  ``ct(commit, zone=1, nat(dst=endpoint:targetPort))``; for ``sessionAffinity:
  ClientIP`` instead the endpoint's IP into reg7 and a ``learn`` of it
  (``service_affinity`` holds what was learned, ``service_pick`` prefers it to a fresh
  pick), then ``service_dnat``, one flow per (port, endpoint IP), does the DNAT.  Affinity remembers the endpoint's IP, not its
  index, so it survives other endpoints coming and going; a client whose endpoint is
  gone is sent back for a fresh pick, which is learned in its place (kube-proxy drops
  a removed endpoint's ``recent`` list the same way);
* ``internalTrafficPolicy: Local``: only this node's endpoints; with none, dropped.  (Not a ``select`` group: on
  OpenFlow 1.3 a group cannot choose its selection method, and the default ``dp_hash``
  of OVS 3.1's userspace datapath leaves UDP ports out of the hash, so every UDP flow
  from one client would reach the same endpoint.)
* ``hairpin_snat``: a pod that reached itself (source == destination after DNAT) is
  SNATed to its gateway IP in zone 2, or it would answer itself directly and drop
  the reply; ``unsnat`` undoes that on the reply.

The backend sees the client pod's own IP (no SNAT except hairpin).  Every flow of a
Service carries the Service's cookie, so a masked delete removes it whole.
"""

from __future__ import annotations

import zlib
from typing import Iterator

from controllers.flows import (
    ETH_TYPE_IP, OFPP_CONTROLLER, Ct, Flow, Learn, Match, Multipath, Nat, Output, Resubmit, SetField,
)
from controllers.pipeline import (
    CONNTRACK, CT_MARK_MASQUERADE, CT_NEW, CT_RPL, CT_TRK, HAIRPIN_SNAT, L3_FORWARDING, MAX_OPENFLOW_TIMEOUT,
    REG_AFFINITY, REG_ENDPOINT, REG_ENDPOINT_IP, REG_SCRATCH, REG_SERVICE_PORT, SERVICE_AFFINITY, SERVICE_DNAT,
    SERVICE_ENDPOINT, SERVICE_LB, SERVICE_PICK, UNSNAT, ZONE_HAIRPIN, ZONE_NODEPORT, ZONE_SERVICE, Feature, Priority, cookie, ct_state,
)
from k8snet.model.cluster import Cluster, Node, Service, ServicePort

IP_PROTO = {"TCP": 6, "UDP": 17}
PORT_FIELD = {"TCP": "tcp_dst", "UDP": "udp_dst"}


def service_object(service: Service) -> int:
    return zlib.crc32(f"svc/{service.key}".encode())


def port_id(service: Service, port: ServicePort, frontend: str = "clusterip") -> int:
    """A stable 32-bit id per Service port and frontend (stable across runs and changes)."""
    key = f"svc/{service.key}/{port.port}/{port.protocol}/{frontend}"
    return (zlib.crc32(key.encode()) & 0x7FFFFFFF) or 1


def has_node_ports(cluster: Cluster) -> bool:
    return any(p.node_port is not None for s in proxied(cluster) for p in s.ports)


def proxied(cluster: Cluster) -> list[Service]:
    return [s for s in cluster.services if s.proxied]


def node_flows(cluster: Cluster, node: Node) -> Iterator[Flow]:
    """Conntrack plumbing; only when there is a Service to proxy (it costs a recirculation)."""
    if not proxied(cluster):
        return
    c = cookie(Feature.SERVICES)
    yield Flow(UNSNAT, Priority.SPECIFIC, Match.of(eth_type=ETH_TYPE_IP, ipv4_dst=str(node.gateway_ip)),
               (Ct(zone=ZONE_HAIRPIN, table=CONNTRACK, nat=Nat()),), cookie=c)
    if has_node_ports(cluster):
        # Replies to NodePort connections SNATed to this node come back to its IP.
        yield Flow(UNSNAT, Priority.SPECIFIC, Match.of(eth_type=ETH_TYPE_IP, ipv4_dst=str(node.ip)),
                   (Ct(zone=ZONE_NODEPORT, table=CONNTRACK, nat=Nat()),), cookie=c)
        yield Flow(HAIRPIN_SNAT, Priority.HAIRPIN,
                   Match.of(eth_type=ETH_TYPE_IP, ct_mark=f"{CT_MARK_MASQUERADE:#x}/{CT_MARK_MASQUERADE:#x}",
                            ct_state=ct_state(CT_TRK, clear=(CT_RPL,))),
                   (Ct(zone=ZONE_NODEPORT, table=L3_FORWARDING, commit=True, nat=Nat("src", str(node.ip))),), cookie=c)
    yield Flow(CONNTRACK, Priority.FALLBACK, Match.of(eth_type=ETH_TYPE_IP),
               (Ct(zone=ZONE_SERVICE, table=SERVICE_LB, nat=Nat()),), cookie=c)
    for pod in cluster.pods_on(node.name):
        yield Flow(HAIRPIN_SNAT, Priority.SPECIFIC,
                   Match.of(eth_type=ETH_TYPE_IP, ipv4_src=str(pod.ip), ipv4_dst=str(pod.ip)),
                   (Ct(zone=ZONE_HAIRPIN, table=L3_FORWARDING, commit=True, nat=Nat("src", str(node.gateway_ip))),),
                   cookie=c)


def affinity_learn(service: Service, port: ServicePort, c: int) -> Learn:
    """Remember client -> endpoint for ``sessionAffinity: ClientIP``.

    Every new connection learns again, so the timeout runs from the client's latest
    connection (kube-proxy's ``recent --set``).  Up to 65535 s the learned flow's own
    hard_timeout does it; beyond (up to 86400) OpenFlow's 16-bit timeouts cannot, so the
    flow is learned without one and the controller deletes it once it is older than the
    timeout (:meth:`controllers.app.K8snetController.sweep_affinity`).  Loading the client's
    source port makes each learn a replacement, so the flow's age restarts with it."""
    proto = port.protocol.lower()
    timeout = service.affinity_timeout if service.affinity_timeout <= MAX_OPENFLOW_TIMEOUT else 0
    return Learn(table=SERVICE_AFFINITY, priority=Priority.SPECIFIC, hard_timeout=timeout, cookie=c,
                 match_values=(("eth_type", ETH_TYPE_IP), ("ip_proto", IP_PROTO[port.protocol])),
                 match_fields=("ipv4_src", "ipv4_dst", f"{proto}_dst"),
                 copies=((REG_ENDPOINT_IP, REG_ENDPOINT_IP, 32), (f"{proto}_src", REG_SCRATCH, 16)),
                 loads=((1, REG_AFFINITY, 0, 1),))


def _port_flows(service: Service, port: ServicePort, match: Match, pid: int, endpoints: tuple,
                c: int, masquerade: bool) -> Iterator[Flow]:
    """The load-balancing flows of one frontend (a ClusterIP:port or a NodePort)."""
    affinity = service.session_affinity == "ClientIP"
    lb_actions: tuple = (SetField(REG_SERVICE_PORT, pid),)
    if affinity:
        lb_actions += (SetField(REG_AFFINITY, 0), Resubmit(SERVICE_AFFINITY))
    yield Flow(SERVICE_LB, Priority.SPECIFIC, match, lb_actions, goto=SERVICE_PICK, cookie=c)
    proto_match = {"eth_type": ETH_TYPE_IP, "ip_proto": IP_PROTO[port.protocol], REG_SERVICE_PORT: pid}
    if affinity:
        # The client's remembered endpoint (reg7, loaded by the learned flow).
        yield Flow(SERVICE_PICK, Priority.SPECIFIC, Match.of(**proto_match, **{REG_AFFINITY: "0x1/0x1"}), (),
                   goto=SERVICE_DNAT, cookie=c)
        # ...unless it is gone: forget it and pick afresh (the new pick is learned in its place).
        yield Flow(SERVICE_DNAT, Priority.FALLBACK, Match.of(**proto_match, **{REG_AFFINITY: "0x1/0x1"}),
                   (SetField(REG_AFFINITY, 0), Resubmit(SERVICE_PICK)), cookie=c)
    yield Flow(SERVICE_PICK, Priority.FALLBACK, Match.of(**proto_match),
               (Multipath(len(endpoints), REG_ENDPOINT),), goto=SERVICE_ENDPOINT, cookie=c)
    mark = (SetField("ct_mark", CT_MARK_MASQUERADE),) if masquerade else ()
    for k, ep in enumerate(sorted(endpoints, key=lambda e: (int(e.ip), e.port))):
        dnat = Ct(zone=ZONE_SERVICE, table=HAIRPIN_SNAT, commit=True, exec=mark, nat=Nat("dst", str(ep.ip), ep.port))
        if not affinity:
            # No memory to keep: DNAT straight from the pick (one flow per endpoint).
            yield Flow(SERVICE_ENDPOINT, Priority.SPECIFIC, Match.of(**proto_match, **{REG_ENDPOINT: k}), (dnat,),
                       cookie=c)
            continue
        yield Flow(SERVICE_ENDPOINT, Priority.SPECIFIC, Match.of(**proto_match, **{REG_ENDPOINT: k}),
                   (SetField(REG_ENDPOINT_IP, int(ep.ip)), affinity_learn(service, port, c)), goto=SERVICE_DNAT,
                   cookie=c)
        yield Flow(SERVICE_DNAT, Priority.SPECIFIC, Match.of(**proto_match, **{REG_ENDPOINT_IP: int(ep.ip)}),
                   (dnat,), cookie=c)


def _frontend(service: Service, port: ServicePort, match: Match, pid: int, endpoints: tuple, local_only: bool,
              node: Node, c: int, masquerade: bool = False) -> Iterator[Flow]:
    if local_only:
        # Only this node's endpoints; none here means the traffic is dropped (as kube-proxy does).
        endpoints = tuple(e for e in endpoints if e.node == node.name)
        if not endpoints:
            yield Flow(SERVICE_LB, Priority.SPECIFIC, match, (), cookie=c)
            return
    if not endpoints:
        yield Flow(SERVICE_LB, Priority.SPECIFIC, match, (Output(OFPP_CONTROLLER),), cookie=c)
        return
    yield from _port_flows(service, port, match, pid, endpoints, c, masquerade)


def service_flows(cluster: Cluster, node: Node) -> list[Flow]:
    flows: list[Flow] = []
    for service in proxied(cluster):
        c = cookie(Feature.SERVICES, service_object(service))
        vip = str(service.cluster_ip)
        for port in service.ports:
            endpoints = cluster.endpoints(service, port)
            l4 = {PORT_FIELD[port.protocol]: port.port}
            match = Match.of(eth_type=ETH_TYPE_IP, ip_proto=IP_PROTO[port.protocol], ipv4_dst=vip,
                             ct_state=ct_state(CT_NEW, CT_TRK), **l4)
            flows += _frontend(service, port, match, port_id(service, port), endpoints,
                               service.internal_traffic_policy == "Local", node, c)
            if port.node_port is not None:
                # NodePort: the node's own IP.  Cluster: any endpoint, the client SNATed to
                # this node (so replies return through it); Local: this node's endpoints,
                # the client's IP kept, nothing if there is none here.
                np_match = Match.of(eth_type=ETH_TYPE_IP, ip_proto=IP_PROTO[port.protocol], ipv4_dst=str(node.ip),
                                    ct_state=ct_state(CT_NEW, CT_TRK), **{PORT_FIELD[port.protocol]: port.node_port})
                local = service.external_traffic_policy == "Local"
                flows += _frontend(service, port, np_match, port_id(service, port, "nodeport"), endpoints, local,
                                   node, c, masquerade=not local)
        # Anything else sent to the VIP (other ports, ping) has nowhere to go.
        flows.append(Flow(SERVICE_LB, Priority.FALLBACK, Match.of(eth_type=ETH_TYPE_IP, ipv4_dst=vip), (),
                          cookie=c))
    return flows


def long_affinity_timeouts(cluster: Cluster) -> dict[int, int]:
    """Service cookie object -> affinity timeout, for timeouts OpenFlow cannot hold."""
    return {service_object(s): s.affinity_timeout for s in proxied(cluster)
            if s.session_affinity == "ClientIP" and s.affinity_timeout > MAX_OPENFLOW_TIMEOUT}
