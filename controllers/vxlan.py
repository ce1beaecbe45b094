"""VXLAN: reach a peer node's pods through a tunnel to the peer's node IP.

Flannel's VXLAN backend gives each node a ``flannel.1`` device (VNI 1, UDP 8472) and,
per peer, a route ``10.244.P.0/24 via 10.244.P.0 dev flannel.1 onlink`` plus a
permanent neighbour and FDB entry that map the peer's VTEP MAC to its node IP.  Here
each node bridge has one flow-based VXLAN port (``remote_ip=flow``, ``key=flow``) and
the controller does the same mapping in one flow per peer: set ``tun_dst`` to the
peer's node IP and ``tun_id`` to the VNI, give the inner frame the gateways' MACs,
``dec_ttl``, out of the tunnel port.  Decapsulated packets arrive on the tunnel port
and are accepted only for this node's pod CIDR and the cluster's VNI.

OVS's userspace tunnelling routes the outer packet with the node namespace's own
routes and ARP, so the same flows work on a flat underlay and across rack gateways.
"""

from __future__ import annotations

import zlib
from typing import Iterator

from controllers import egress
from controllers.flows import ETH_TYPE_IP, DecTtl, Flow, Match, SetField
from controllers.pipeline import (
    CLASSIFIER, IP_INGRESS, L3_FORWARDING, REG_SOURCE, Feature, Priority, Source, cookie,
)
from k8snet.model.cluster import TUNNEL_OFPORT, Cluster, Node


def node_flows(cluster: Cluster, node: Node) -> Iterator[Flow]:
    """Accept decapsulated traffic for this node's pods."""
    yield Flow(CLASSIFIER, Priority.ROUTE_SUBNET,
               Match.of(in_port=TUNNEL_OFPORT, tunnel_id=cluster.vni, eth_type=ETH_TYPE_IP,
                        ipv4_dst=str(node.pod_cidr)),
               (SetField(REG_SOURCE, int(Source.TUNNEL)),), goto=IP_INGRESS,
               cookie=cookie(Feature.VXLAN))


def peer_flows(cluster: Cluster, node: Node, peer: Node) -> Iterator[Flow]:
    """``peer.pod_cidr`` through the tunnel to ``peer.ip`` (through the egress check:
    what would not fit the pod MTU is fragmented first, controllers/egress.py)."""
    actions, goto = egress.out(cluster, TUNNEL_OFPORT)
    yield Flow(L3_FORWARDING, Priority.ROUTE_SUBNET, Match.of(eth_type=ETH_TYPE_IP, ipv4_dst=str(peer.pod_cidr)),
               (SetField("tun_ipv4_dst", str(peer.ip)), SetField("tunnel_id", cluster.vni),
                SetField("eth_src", node.gateway_mac), SetField("eth_dst", peer.gateway_mac), DecTtl(), *actions),
               goto=goto, cookie=cookie(Feature.VXLAN, zlib.crc32(f"node/{peer.name}".encode())))
