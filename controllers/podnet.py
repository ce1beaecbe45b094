"""Pod network on one node: classification, the gateway ARP responder, local delivery.

This is what Flannel's ``cni0`` bridge plus the node kernel do for a node's own pods:
pods ARP for their gateway (``10.244.N.1``) and for each other; same-node traffic is
bridged; traffic to or from the node's host network is routed through the gateway.  With
``access: routed-veth`` (Calico) pods ask only for 169.254.1.1, and everything is routed.
"""

from __future__ import annotations

import zlib
from typing import Iterator

from controllers import egress
from controllers.flows import (
    ETH_TYPE_ARP, ETH_TYPE_IP, OFPP_IN_PORT, OFPP_LOCAL, ClearInPort, DecTtl, Flow, Match, Move, Output,
    SetField,
)
from controllers.pipeline import (
    ARP, CLASSIFIER, COMMIT, CONNTRACK, EGRESS, EGRESS_OUT, HAIRPIN_SNAT, IP_INGRESS, L3_FORWARDING, NODEPORT_DNAT,
    POLICY_EGRESS, POLICY_INGRESS, REG_SOURCE, ROUTING, SERVICE_AFFINITY,
    SERVICE_DNAT, SERVICE_ENDPOINT, SERVICE_LB, SERVICE_PICK, UNSNAT,
    Feature, Priority, Source, cookie, source_match,
)
from k8snet.model.access import LINK_LOCAL_GATEWAY
from k8snet.model.cluster import UPLINK_OFPORT, Cluster, Node, Pod


def pod_object(pod: Pod) -> int:
    """A stable 32-bit object id for a pod's cookie."""
    return zlib.crc32(f"pod/{pod.namespace}/{pod.name}".encode())


def arp_reply(mac: str, ip: str) -> tuple:
    """Turn an ARP request into the reply "``ip`` is at ``mac``", sent back where it came from."""
    return (
        Move("eth_src", "eth_dst"),
        SetField("eth_src", mac),
        SetField("arp_op", 2),
        Move("arp_sha", "arp_tha"),
        Move("arp_spa", "arp_tpa"),
        SetField("arp_sha", mac),
        SetField("arp_spa", ip),
        Output(OFPP_IN_PORT),
    )


def flows(cluster: Cluster, node: Node) -> Iterator[Flow]:
    node_cookie = cookie(Feature.PODNET)
    yield from _classifier(cluster, node, node_cookie)
    yield from _arp(cluster, node, node_cookie)
    if cluster.access == "macvlan":
        yield from _macvlan(cluster, node)
    else:
        for pod in cluster.pods_on(node.name):
            yield from _pod(cluster, node, pod)
    yield Flow(L3_FORWARDING, Priority.ROUTE_HOST, Match.of(eth_type=ETH_TYPE_IP, ipv4_dst=str(node.ip)),
               (SetField("eth_src", node.gateway_mac), SetField("eth_dst", node.mac), Output(OFPP_LOCAL)),
               cookie=node_cookie)
    for table in (CLASSIFIER, ARP, L3_FORWARDING):
        yield Flow(table, Priority.DROP, Match(), (), cookie=node_cookie)
    # The Service and policy stages pass everything on unless their features say otherwise.
    for table, nxt in ((UNSNAT, CONNTRACK), (NODEPORT_DNAT, CONNTRACK), (CONNTRACK, SERVICE_LB),
                       (SERVICE_LB, HAIRPIN_SNAT), (HAIRPIN_SNAT, ROUTING), (POLICY_EGRESS, POLICY_INGRESS),
                       (POLICY_INGRESS, COMMIT), (COMMIT, L3_FORWARDING)):
        yield Flow(table, Priority.DROP, Match(), (), goto=nxt, cookie=node_cookie)
    for table in (SERVICE_AFFINITY, SERVICE_PICK, SERVICE_ENDPOINT, SERVICE_DNAT, EGRESS, EGRESS_OUT):
        yield Flow(table, Priority.DROP, Match(), (), cookie=node_cookie)


def _source(source: Source) -> SetField:
    return SetField(REG_SOURCE, int(source))


def _classifier(cluster: Cluster, node: Node, c: int) -> Iterator[Flow]:
    yield Flow(CLASSIFIER, Priority.SPECIFIC, Match.of(in_port=UPLINK_OFPORT, eth_type=ETH_TYPE_ARP),
               (_source(Source.UPLINK),), goto=ARP, cookie=c)
    # The underlay reaches the node's own IP and its pods through the IP stages (the
    # node may be the client of a Service whose replies need un-DNAT).  VXLAN for this
    # node goes straight to LOCAL, where OVS decapsulates it: no conntrack for the outer
    # packet, the inner one passes through it on its way in from the tunnel port.
    if cluster.encapsulates:
        yield Flow(CLASSIFIER, Priority.SPECIFIC,
                   Match.of(in_port=UPLINK_OFPORT, eth_type=ETH_TYPE_IP, ip_proto=17, ipv4_dst=str(node.ip),
                            udp_dst=cluster.vxlan_port), (Output(OFPP_LOCAL),), cookie=c)
    # Underlay IP forgets its ingress port once classified (reg0 keeps where it came
    # from): a NodePort connection from outside, served by a pod on another node, leaves
    # by the uplink it came in on, which OpenFlow drops unless in_port is cleared.
    for priority, dst in ((Priority.ROUTE_HOST, node.ip), (Priority.ROUTE_SUBNET, node.pod_cidr)):
        yield Flow(CLASSIFIER, priority, Match.of(in_port=UPLINK_OFPORT, eth_type=ETH_TYPE_IP, ipv4_dst=str(dst)),
                   (_source(Source.UPLINK), ClearInPort()), goto=IP_INGRESS, cookie=c)
    yield Flow(CLASSIFIER, Priority.SPECIFIC, Match.of(in_port=OFPP_LOCAL, eth_type=ETH_TYPE_ARP),
               (_source(Source.LOCAL),), goto=ARP, cookie=c)
    for dst in (cluster.pod_cidr, cluster.service_cidr, node.ip):
        yield Flow(CLASSIFIER, Priority.ROUTE_SUBNET,
                   Match.of(in_port=OFPP_LOCAL, eth_type=ETH_TYPE_IP, ipv4_dst=str(dst)),
                   (_source(Source.LOCAL),), goto=IP_INGRESS, cookie=c)
    # Everything else the node's own stack sends belongs on the underlay.
    yield Flow(CLASSIFIER, Priority.FALLBACK, Match.of(in_port=OFPP_LOCAL), (Output(UPLINK_OFPORT),),
               cookie=c)


def _arp(cluster: Cluster, node: Node, c: int) -> Iterator[Flow]:
    gateway = str(node.gateway_ip)
    for source in (Source.POD, Source.LOCAL):
        yield Flow(ARP, Priority.SPECIFIC,
                   Match.of(eth_type=ETH_TYPE_ARP, arp_op=1, arp_tpa=gateway,
                            **{REG_SOURCE: source_match(source)}),
                   arp_reply(node.gateway_mac, gateway), cookie=c)
    if cluster.access == "routed-veth":
        # Calico's pods route everything via 169.254.1.1, which the node answers (Calico's
        # host veth does it by proxy ARP); the pods send every packet to the gateway MAC,
        # so even a pod on this node is reached by the routed flow below (TTL - 1).
        yield Flow(ARP, Priority.SPECIFIC,
                   Match.of(eth_type=ETH_TYPE_ARP, arp_op=1, arp_tpa=LINK_LOCAL_GATEWAY,
                            **{REG_SOURCE: source_match(Source.POD)}),
                   arp_reply(node.gateway_mac, LINK_LOCAL_GATEWAY), cookie=c)
    # Underlay ARP between the node's stack and its neighbours passes untouched.
    yield Flow(ARP, Priority.FALLBACK, Match.of(eth_type=ETH_TYPE_ARP, **{REG_SOURCE: source_match(Source.LOCAL)}),
               (Output(UPLINK_OFPORT),), cookie=c)
    yield Flow(ARP, Priority.FALLBACK, Match.of(eth_type=ETH_TYPE_ARP, **{REG_SOURCE: source_match(Source.UPLINK)}),
               (Output(OFPP_LOCAL),), cookie=c)


def _pod(cluster: Cluster, node: Node, pod: Pod) -> Iterator[Flow]:
    c = cookie(Feature.PODNET, pod_object(pod))
    ip = str(pod.ip)
    # Spoof guard: a pod port only accepts the pod's own MAC and IP.
    yield Flow(CLASSIFIER, Priority.SPECIFIC,
               Match.of(in_port=pod.ofport, eth_src=pod.mac, eth_type=ETH_TYPE_ARP, arp_spa=ip),
               (_source(Source.POD),), goto=ARP, cookie=c)
    yield Flow(CLASSIFIER, Priority.SPECIFIC,
               Match.of(in_port=pod.ofport, eth_src=pod.mac, eth_type=ETH_TYPE_IP, ipv4_src=ip),
               (_source(Source.POD),), goto=IP_INGRESS, cookie=c)
    # Pods on one node share a subnet and ARP for each other, as on cni0 (with routed-veth
    # they hold /32s and ask only for their gateway: this is never used).
    yield Flow(ARP, Priority.ROUTE_HOST,
               Match.of(eth_type=ETH_TYPE_ARP, arp_op=1, arp_tpa=ip, **{REG_SOURCE: source_match(Source.POD)}),
               arp_reply(pod.mac, ip), cookie=c)
    # Bridged (same node, addressed to the pod's MAC): no TTL change.
    yield Flow(L3_FORWARDING, Priority.SPECIFIC, Match.of(eth_type=ETH_TYPE_IP, eth_dst=pod.mac, ipv4_dst=ip),
               (Output(pod.ofport),), cookie=c)
    # A pod that reached itself through a Service VIP: back out of the port it came in on.
    yield Flow(L3_FORWARDING, Priority.HAIRPIN, Match.of(in_port=pod.ofport, eth_type=ETH_TYPE_IP, ipv4_dst=ip),
               (SetField("eth_src", node.gateway_mac), SetField("eth_dst", pod.mac), Output(OFPP_IN_PORT)),
               cookie=c)
    # Routed to the pod (from the node, or from a peer node): gateway MAC, TTL - 1.
    # (On VXLAN clusters through the egress check: from outside, a packet may exceed the pod MTU.)
    actions, goto = egress.out(cluster, pod.ofport)
    yield Flow(L3_FORWARDING, Priority.ROUTE_HOST, Match.of(eth_type=ETH_TYPE_IP, ipv4_dst=ip),
               (SetField("eth_src", node.gateway_mac), SetField("eth_dst", pod.mac), DecTtl(), *actions),
               goto=goto, cookie=c)


def _macvlan(cluster: Cluster, node: Node) -> Iterator[Flow]:
    """``access: macvlan``: pods are not on the switch.  This node's own pods are its
    uplink's children, whose frames the kernel hands them before the switch's packet
    socket could matter -- the copy the switch also reads is dropped, and nothing of the
    node's reaches them (a child and its parent never meet).  A macvlan pod of another node
    on this segment is a neighbour on the wire: the node reaches it (its host network, a
    Service's DNAT) by the pod's MAC straight out of the uplink, no router, no TTL change,
    as a host on that L2 network would after ARP."""
    yield Flow(CLASSIFIER, Priority.SPECIFIC,
               Match.of(in_port=UPLINK_OFPORT, eth_type=ETH_TYPE_IP, ipv4_dst=str(node.pod_cidr)), (),
               cookie=cookie(Feature.PODNET))
    yield Flow(L3_FORWARDING, Priority.ROUTE_SUBNET, Match.of(eth_type=ETH_TYPE_IP, ipv4_dst=str(node.pod_cidr)), (),
               cookie=cookie(Feature.PODNET))
    for pod in cluster.pods:
        peer = cluster.node(pod.node)
        if peer.name == node.name or peer.subnet != node.subnet:
            continue
        yield Flow(L3_FORWARDING, Priority.ROUTE_HOST, Match.of(eth_type=ETH_TYPE_IP, ipv4_dst=str(pod.ip)),
                   (SetField("eth_src", node.mac), SetField("eth_dst", pod.mac), Output(UPLINK_OFPORT)),
                   cookie=cookie(Feature.PODNET, pod_object(pod)))
