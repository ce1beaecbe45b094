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
  pick), then ``service_dnat``, one flow per (port, endpoint IP), does the DNAT.
  Affinity remembers the endpoint's IP, not its index, so it survives other endpoints
  coming and going; a client whose endpoint is gone is sent back for a fresh pick, which
  is learned in its place (kube-proxy drops a removed endpoint's ``recent`` list the same
  way);
* ``internalTrafficPolicy: Local``: only this node's endpoints; with none, dropped.  (Not a ``select`` group: on
  OpenFlow 1.3 a group cannot choose its selection method, and the default ``dp_hash``
  of OVS 3.1's userspace datapath leaves UDP ports out of the hash, so every UDP flow
  from one client would reach the same endpoint.)
* ``hairpin_snat``: a pod that reached itself (source == destination after DNAT) is
  SNATed to its gateway IP in zone 2, or it would answer itself directly and drop
  the reply; ``unsnat`` undoes that on the reply;
* ``commit``: every other new connection is committed (:func:`commit_direct`), as
  netfilter tracks every connection on a kube-proxy node.

The backend sees the client pod's own IP (no SNAT except hairpin).  Every flow of a
Service carries the Service's cookie, so a masked delete removes it whole.
"""

from __future__ import annotations

import collections
import zlib
from typing import Iterator

from controllers.flows import (
    ETH_TYPE_IP, OFPP_CONTROLLER, Ct, Flow, Learn, Match, Multipath, Nat, Output, Resubmit, SetField,
)
from controllers.pipeline import (
    COMMIT, CONNTRACK, CT_DNAT, CT_EST, CT_MARK_MASQUERADE, CT_NEW, CT_REL, CT_RPL, CT_SNAT, CT_TRK, HAIRPIN_SNAT,
    L3_FORWARDING, MAX_OPENFLOW_TIMEOUT, NODEPORT_DNAT, ROUTING, REG_AFFINITY, REG_ENDPOINT, REG_ENDPOINT_IP,
    REG_SCRATCH, REG_SERVICE_PORT, SERVICE_AFFINITY, SERVICE_DNAT, SERVICE_ENDPOINT, SERVICE_LB, SERVICE_PICK, UNSNAT,
    ZONE_HAIRPIN, ZONE_NODEPORT, ZONE_NODEPORT_DNAT, ZONE_SERVICE, Feature, Priority, cookie, ct_state,
)
from k8snet.model.cluster import Cluster, Node, Service, ServicePort

IP_PROTO = {"TCP": 6, "UDP": 17}


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
    """Conntrack plumbing; only when there is a Service to proxy or a policy to keep state
    for (it costs a recirculation)."""
    if not proxied(cluster) and not cluster.policies:
        return
    c = cookie(Feature.SERVICES)
    yield Flow(UNSNAT, Priority.SPECIFIC, Match.of(eth_type=ETH_TYPE_IP, ipv4_dst=str(node.gateway_ip)),
               (Ct(zone=ZONE_HAIRPIN, table=CONNTRACK, nat=Nat()),), cookie=c)
    if has_node_ports(cluster):
        # Replies to NodePort connections SNATed to this node come back to its IP: undo the
        # SNAT, then the DNAT (ZONE_NODEPORT_DNAT, where everything sent to the node's IP
        # also finds the DNAT of the NodePort connection it belongs to).
        yield Flow(UNSNAT, Priority.SPECIFIC, Match.of(eth_type=ETH_TYPE_IP, ipv4_dst=str(node.ip)),
                   (Ct(zone=ZONE_NODEPORT, table=NODEPORT_DNAT, nat=Nat()),), cookie=c)
        yield Flow(NODEPORT_DNAT, Priority.FALLBACK, Match.of(eth_type=ETH_TYPE_IP),
                   (Ct(zone=ZONE_NODEPORT_DNAT, table=CONNTRACK, nat=Nat()),), cookie=c)
        # A packet of such a connection (its DNAT entry carries the mark) skips the Service
        # zone: it is no new connection to a frontend.  (A new one is "new" here and goes on.)
        masqueraded = f"{CT_MARK_MASQUERADE:#x}/{CT_MARK_MASQUERADE:#x}"
        for state in (CT_EST, CT_REL):
            yield Flow(CONNTRACK, Priority.SPECIFIC,
                       Match.of(eth_type=ETH_TYPE_IP, ct_mark=masqueraded, ct_state=ct_state(state, CT_TRK)), (),
                       goto=SERVICE_LB, cookie=c)
        yield Flow(HAIRPIN_SNAT, Priority.HAIRPIN,
                   Match.of(eth_type=ETH_TYPE_IP, ct_mark=masqueraded, ct_state=ct_state(CT_TRK, clear=(CT_RPL,))),
                   (Ct(zone=ZONE_NODEPORT, table=ROUTING, commit=True, nat=Nat("src", str(node.ip))),), cookie=c)
    yield Flow(CONNTRACK, Priority.FALLBACK, Match.of(eth_type=ETH_TYPE_IP),
               (Ct(zone=ZONE_SERVICE, table=SERVICE_LB, nat=Nat()),), cookie=c)
    yield commit_direct(c)
    for pod in cluster.pods_on(node.name):
        yield Flow(HAIRPIN_SNAT, Priority.SPECIFIC,
                   Match.of(eth_type=ETH_TYPE_IP, ipv4_src=str(pod.ip), ipv4_dst=str(pod.ip)),
                   (Ct(zone=ZONE_HAIRPIN, table=ROUTING, commit=True, nat=Nat("src", str(node.gateway_ip))),),
                   cookie=c)


def commit_direct(c: int) -> Flow:
    """Every new connection that no NAT committed is committed in the Service zone.

    Why: a Service connection's entry has the endpoint and the client as its reply tuple,
    and lingers 30 s in TIME_WAIT after a TCP close.  A direct connection from the same
    client port to that endpoint (nginx proxying through a ClusterIP, then curl to the
    pod's IP, from a port the kernel handed out again) has the same reply tuple:
    uncommitted, its SYN-ACK matched the old entry, was un-DNATed to the VIP, and the
    connection hung.  Committed, the newer entry answers its replies (168 of 168 such
    collisions in tests/emulation/test_services.py), and the other way round a Service
    connection whose reply tuple a direct one holds gets its source port remapped by its
    DNAT, as the kernel's DNAT does.

    Not the kernel's null binding (``ct(commit, nat(src))``, which remaps the port on a
    clash: ``nf_nat_alloc_null_binding``): OVS 3.1.0's userspace conntrack aborts on it
    within minutes ("conntrack.c:1063: assertion conn->conn_type == CT_CONN_TYPE_DEFAULT
    failed in conn_update_state()" in each of 4 ``k8snet run policy faults``): an
    unchanged tuple puts the NAT companion entry in its connection's hash bucket with
    mirrored keys, and the lookup for the connection can return the companion.

    Committing also makes replies replies: uncommitted, a reply to the node's IP would
    look like a new connection to a NodePort frontend, and NetworkPolicy judges only the
    first packet of a connection (controllers/policy.py)."""
    return Flow(COMMIT, Priority.SPECIFIC,
                Match.of(eth_type=ETH_TYPE_IP, ct_state=ct_state(CT_NEW, CT_TRK, clear=(CT_SNAT, CT_DNAT))),
                (Ct(zone=ZONE_SERVICE, table=L3_FORWARDING, commit=True),), cookie=c)


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
    # Keyed on the client IP and the frontend's id (REG_SERVICE_PORT), not on the packet's
    # destination port: every piece of a fragmented datagram carries the first two, only
    # the first piece the third.
    return Learn(table=SERVICE_AFFINITY, priority=Priority.SPECIFIC, hard_timeout=timeout, cookie=c,
                 match_values=(("eth_type", ETH_TYPE_IP),),
                 match_fields=("ipv4_src", REG_SERVICE_PORT),
                 copies=((REG_ENDPOINT_IP, REG_ENDPOINT_IP, 32), (f"{proto}_src", REG_SCRATCH, 16)),
                 loads=((1, REG_AFFINITY, 0, 1),))


def _port_flows(service: Service, port: ServicePort, matches: Matches, pid: int, endpoints: tuple,
                c: int, masquerade: bool) -> Iterator[Flow]:
    """The load-balancing flows of one frontend (a ClusterIP:port or a NodePort)."""
    affinity = service.session_affinity == "ClientIP"
    lb_actions: tuple = (SetField(REG_SERVICE_PORT, pid),)
    if affinity:
        lb_actions += (SetField(REG_AFFINITY, 0), Resubmit(SERVICE_AFFINITY))
    for priority, match in matches:
        yield Flow(SERVICE_LB, priority, match, lb_actions, goto=SERVICE_PICK, cookie=c)
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
    # A fragmented datagram: its pieces must all pick the same endpoint, and only the first
    # has ports, so they hash the addresses alone (a new datagram that is not fragmented
    # still hashes its ports; later ones of the connection follow conntrack either way).
    yield Flow(SERVICE_PICK, Priority.FRAGMENT, Match.of(**proto_match, ip_frag="yes"),
               (Multipath(len(endpoints), REG_ENDPOINT, fields="symmetric_l3"),), goto=SERVICE_ENDPOINT, cookie=c)
    mark = (SetField("ct_mark", CT_MARK_MASQUERADE),) if masquerade else ()
    zone = ZONE_NODEPORT_DNAT if masquerade else ZONE_SERVICE
    for k, ep in enumerate(sorted(endpoints, key=lambda e: (int(e.ip), e.port))):
        dnat = Ct(zone=zone, table=HAIRPIN_SNAT, commit=True, exec=mark, nat=Nat("dst", str(ep.ip), ep.port))
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


def _frontend(service: Service, port: ServicePort, matches: Matches, pid: int, endpoints: tuple,
              local_only: bool, node: Node, c: int, masquerade: bool = False) -> Iterator[Flow]:
    if local_only:
        # Only this node's endpoints; none here means the traffic is dropped (as kube-proxy does).
        endpoints = tuple(e for e in endpoints if e.node == node.name)
        if not endpoints:
            yield from (Flow(SERVICE_LB, priority, match, (), cookie=c) for priority, match in matches)
            return
    if not endpoints:
        # The controller answers what it can (a later fragment has no header to answer).
        yield from (Flow(SERVICE_LB, priority, match, (Output(OFPP_CONTROLLER),), cookie=c)
                    for priority, match in matches)
        return
    yield from _port_flows(service, port, matches, pid, endpoints, c, masquerade)


Matches = tuple[tuple[int, Match], ...]


def frontend_matches(ip: str, protocol: str, port: int, only_port: bool) -> Matches:
    """How a new connection to ``ip:port`` is recognised, with the priority of each way.

    By conntrack's original tuple (``ct_nw_dst``, ``ct_tp_dst``), not by the packet's
    headers: conntrack reassembles a fragmented datagram and gives every fragment the
    datagram's state and addresses.  But OVS's userspace datapath fills ``ct_tp_dst``
    only where it parses the L4 header, which a later fragment does not have (its
    ``ct_tp_dst`` is 0: seen in ``dpctl/dump-flows`` as ``ct_tuple4(...,tp_dst=0),frag=later``).
    A later fragment can therefore only be told apart by address and protocol: when
    ``ip`` serves just this one ``protocol`` port (``only_port``), it follows the first
    fragment; otherwise it cannot be placed and is dropped (a known limit, README)."""
    out: list[tuple[int, Match]] = [(Priority.SPECIFIC, Match.of(
        eth_type=ETH_TYPE_IP, ct_state=ct_state(CT_NEW, CT_TRK), ct_nw_proto=IP_PROTO[protocol], ct_nw_dst=ip,
        ct_tp_dst=port))]
    if only_port:
        out.append((Priority.FRAGMENT, Match.of(eth_type=ETH_TYPE_IP, ct_state=ct_state(CT_NEW, CT_TRK),
                                                ct_nw_proto=IP_PROTO[protocol], ct_nw_dst=ip, ip_frag="later")))
    return tuple(out)


def service_flows(cluster: Cluster, node: Node) -> list[Flow]:
    flows: list[Flow] = []
    # How many ports each (frontend IP, protocol) serves: the node IP serves every NodePort.
    served = collections.Counter((str(s.cluster_ip), p.protocol) for s in proxied(cluster) for p in s.ports)
    served.update((str(node.ip), p.protocol) for s in proxied(cluster) for p in s.ports if p.node_port is not None)
    for service in proxied(cluster):
        c = cookie(Feature.SERVICES, service_object(service))
        vip = str(service.cluster_ip)
        for port in service.ports:
            endpoints = cluster.endpoints(service, port)
            matches = frontend_matches(vip, port.protocol, port.port, served[(vip, port.protocol)] == 1)
            flows += _frontend(service, port, matches, port_id(service, port), endpoints,
                               service.internal_traffic_policy == "Local", node, c)
            if port.node_port is not None:
                # NodePort: the node's own IP.  Cluster: any endpoint, the client SNATed to
                # this node (so replies return through it); Local: this node's endpoints,
                # the client's IP kept, nothing if there is none here.
                np_match = frontend_matches(str(node.ip), port.protocol, port.node_port,
                                            served[(str(node.ip), port.protocol)] == 1)
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
