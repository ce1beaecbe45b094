"""host-gw: reach a peer node's pods by sending to the peer node's own MAC.

Flannel's host-gw installs, on every node, ``10.244.P.0/24 via <peer node IP>`` for
each peer.  The kernel resolves the peer IP to its MAC on the shared L2 segment and
sends the pod packet there unencapsulated.  Here the same next hop is one flow per
peer: new source MAC (this node), new destination MAC (the peer), ``dec_ttl``, out of
the uplink.  That is also why host-gw needs every node on one L2 segment: the next
hop *is* the peer's MAC.

On a routed underlay a peer in another rack has no MAC on this segment; Flannel's
host-gw then installs nothing for it, and neither does this module (the compiler only
asks for peers that :meth:`k8snet.model.cluster.Cluster.route` says are ``direct``).
"""

from __future__ import annotations

import zlib
from typing import Iterator

from controllers.flows import ETH_TYPE_IP, DecTtl, Flow, Match, Output, SetField
from controllers.pipeline import L3_FORWARDING, Feature, Priority, cookie
from k8snet.model.cluster import UPLINK_OFPORT, Node


def peer_object(peer: Node) -> int:
    return zlib.crc32(f"node/{peer.name}".encode())


def peer_flows(node: Node, peer: Node) -> Iterator[Flow]:
    """``peer.pod_cidr via peer`` on the shared segment."""
    yield Flow(L3_FORWARDING, Priority.ROUTE_SUBNET, Match.of(eth_type=ETH_TYPE_IP, ipv4_dst=str(peer.pod_cidr)),
               (SetField("eth_src", node.mac), SetField("eth_dst", peer.mac), DecTtl(), Output(UPLINK_OFPORT)),
               cookie=cookie(Feature.HOSTGW, peer_object(peer)))
