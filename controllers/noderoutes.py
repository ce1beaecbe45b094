"""Pods reaching other nodes' host network (their node IPs), on any backend.

In Flannel a pod's packet for a peer's node IP leaves through its node's kernel, which
sends it on the underlay: straight to the peer on a shared segment, else to the rack
gateway.  One flow per peer does the same here, with the next hop from
:meth:`k8snet.model.cluster.Cluster.underlay_next_hop`.  The reply comes back by whatever
route the peer has to this node's pod CIDR (host-gw or VXLAN), so on host-gw across
racks the request arrives and the reply is lost -- as in Flannel.

Anything else a node routes (a NodePort's reply to an outside client, a pod talking to
the outside) goes to the node's default next hop: its rack gateway, or on a flat
underlay the external host, the segment's way out.
"""

from __future__ import annotations

import zlib
from typing import Iterator

from controllers.flows import ETH_TYPE_IP, DecTtl, Flow, Match, Output, SetField
from controllers.pipeline import L3_FORWARDING, Feature, Priority, cookie
from k8snet.model.cluster import UPLINK_OFPORT, Cluster, Node


def flows(cluster: Cluster, node: Node) -> Iterator[Flow]:
    c = cookie(Feature.NODE_ROUTES)
    # Cluster ranges without a route stay inside (host-gw across racks: dropped here, as
    # a Flannel node drops them); everything else goes to the node's default next hop.
    for cidr in (cluster.pod_cidr, cluster.service_cidr):
        yield Flow(L3_FORWARDING, Priority.BLACKHOLE, Match.of(eth_type=ETH_TYPE_IP, ipv4_dst=str(cidr)), (), cookie=c)
    # Hosts outside the cluster on this node's own segment are reached directly.
    for host in cluster.underlay.outside_hosts():
        if host.ip in node.subnet:
            yield Flow(L3_FORWARDING, Priority.ROUTE_HOST, Match.of(eth_type=ETH_TYPE_IP, ipv4_dst=str(host.ip)),
                       (SetField("eth_src", node.mac), SetField("eth_dst", host.mac), DecTtl(), Output(UPLINK_OFPORT)),
                       cookie=c)
    next_hop = cluster.default_next_hop(node)
    if next_hop:
        yield Flow(L3_FORWARDING, Priority.DEFAULT_ROUTE, Match.of(eth_type=ETH_TYPE_IP),
                   (SetField("eth_src", node.mac), SetField("eth_dst", next_hop), DecTtl(), Output(UPLINK_OFPORT)),
                   cookie=c)
    for peer in cluster.peers_of(node.name):
        yield Flow(L3_FORWARDING, Priority.ROUTE_HOST, Match.of(eth_type=ETH_TYPE_IP, ipv4_dst=str(peer.ip)),
                   (SetField("eth_src", node.mac), SetField("eth_dst", cluster.underlay_next_hop(node, peer)),
                    DecTtl(), Output(UPLINK_OFPORT)),
                   cookie=cookie(Feature.NODE_ROUTES, zlib.crc32(f"node/{peer.name}".encode())))
