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
  ``ct(commit, zone=1, nat(dst=endpoint:targetPort))``.  (Not a ``select`` group: on
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
    ETH_TYPE_IP, OFPP_CONTROLLER, Ct, Flow, Group, Match, Multipath, Nat, Output, SetField,
)
from controllers.pipeline import (
    CONNTRACK, CT_NEW, CT_TRK, HAIRPIN_SNAT, L3_FORWARDING, REG_ENDPOINT, REG_SERVICE_PORT,
    SERVICE_ENDPOINT, SERVICE_LB, UNSNAT, ZONE_HAIRPIN, ZONE_SERVICE, Feature, Priority, cookie, ct_state,
)
from topos.model import Cluster, Node, Service, ServicePort

IP_PROTO = {"TCP": 6, "UDP": 17}
PORT_FIELD = {"TCP": "tcp_dst", "UDP": "udp_dst"}


def service_object(service: Service) -> int:
    return zlib.crc32(f"svc/{service.key}".encode())


def port_id(service: Service, port: ServicePort) -> int:
    """A stable 32-bit id per Service port (stable across runs and model changes)."""
    return (zlib.crc32(f"svc/{service.key}/{port.port}/{port.protocol}".encode()) & 0x7FFFFFFF) or 1


def proxied(cluster: Cluster) -> list[Service]:
    return [s for s in cluster.services if s.proxied]


def node_flows(cluster: Cluster, node: Node) -> Iterator[Flow]:
    """Conntrack plumbing; only when there is a Service to proxy (it costs a recirculation)."""
    if not proxied(cluster):
        return
    c = cookie(Feature.SERVICES)
    yield Flow(UNSNAT, Priority.SPECIFIC, Match.of(eth_type=ETH_TYPE_IP, ipv4_dst=str(node.gateway_ip)),
               (Ct(zone=ZONE_HAIRPIN, table=CONNTRACK, nat=Nat()),), cookie=c)
    yield Flow(CONNTRACK, Priority.FALLBACK, Match.of(eth_type=ETH_TYPE_IP),
               (Ct(zone=ZONE_SERVICE, table=SERVICE_LB, nat=Nat()),), cookie=c)
    for pod in cluster.pods_on(node.name):
        yield Flow(HAIRPIN_SNAT, Priority.SPECIFIC,
                   Match.of(eth_type=ETH_TYPE_IP, ipv4_src=str(pod.ip), ipv4_dst=str(pod.ip)),
                   (Ct(zone=ZONE_HAIRPIN, table=L3_FORWARDING, commit=True, nat=Nat("src", str(node.gateway_ip))),),
                   cookie=c)


def service_flows(cluster: Cluster, node: Node) -> tuple[list[Flow], list[Group]]:
    flows: list[Flow] = []
    groups: list[Group] = []
    for service in proxied(cluster):
        c = cookie(Feature.SERVICES, service_object(service))
        vip = str(service.cluster_ip)
        for port in service.ports:
            match = Match.of(eth_type=ETH_TYPE_IP, ip_proto=IP_PROTO[port.protocol], ipv4_dst=vip,
                             ct_state=ct_state(CT_NEW, CT_TRK), **{PORT_FIELD[port.protocol]: port.port})
            endpoints = cluster.endpoints(service, port)
            if not endpoints:
                flows.append(Flow(SERVICE_LB, Priority.SPECIFIC, match, (Output(OFPP_CONTROLLER),), cookie=c))
                continue
            pid = port_id(service, port)
            flows.append(Flow(SERVICE_LB, Priority.SPECIFIC, match,
                              (SetField(REG_SERVICE_PORT, pid), Multipath(len(endpoints), REG_ENDPOINT)),
                              goto=SERVICE_ENDPOINT, cookie=c))
            for k, ep in enumerate(sorted(endpoints, key=lambda e: (int(e.ip), e.port))):
                flows.append(Flow(SERVICE_ENDPOINT, Priority.SPECIFIC,
                                  Match.of(eth_type=ETH_TYPE_IP, **{REG_SERVICE_PORT: pid, REG_ENDPOINT: k}),
                                  (Ct(zone=ZONE_SERVICE, table=HAIRPIN_SNAT, commit=True,
                                      nat=Nat("dst", str(ep.ip), ep.port)),), cookie=c))
        # Anything else sent to the VIP (other ports, ping) has nowhere to go.
        flows.append(Flow(SERVICE_LB, Priority.FALLBACK, Match.of(eth_type=ETH_TYPE_IP, ipv4_dst=vip), (),
                          cookie=c))
    return flows, groups
