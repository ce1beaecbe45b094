"""bgp: reach other nodes' pods where BGP says, not where the model says.

A Calico node's kernel forwards by the routes its BIRD installed: a peer's pod CIDR via the
peer itself when they share a segment, via the rack gateway otherwise (the gateway's BIRD
learned it over eBGP from the core and reflected it with itself as next hop).  Here OVS
forwards, so the routes the node's daemon installed (``Cluster.bgp_routes``, read from the
node's namespace by topos/bgp.py's route watcher) become one flow each: this node's MAC as
source, the next hop's MAC as destination, ``dec_ttl``, out of the uplink.  A withdrawn route
takes its flow with it; the cluster range's blackhole (controllers/noderoutes.py) then drops
what has no route, as a node without the route would.

Before any route was observed (``k8snet flows`` on a file) the compiler shows the flows of a
converged fabric (:meth:`k8snet.model.cluster.Cluster.bgp_next_hop`).
"""

from __future__ import annotations

import zlib
from typing import Iterator

from controllers.flows import ETH_TYPE_IP, DecTtl, Flow, Match, Output, SetField
from controllers.pipeline import L3_FORWARDING, Feature, Priority, cookie
from k8snet.model.cluster import UPLINK_OFPORT, Cluster, Node


def flows(cluster: Cluster, node: Node) -> Iterator[Flow]:
    """One flow per peer pod CIDR this node has a route for."""
    for peer in cluster.peers_of(node.name):
        via = cluster.bgp_next_hop(node, peer.pod_cidr)
        mac = cluster.underlay_mac(via) if via is not None else None
        if mac is None:
            continue  # not learned (or a next hop that is no neighbour here): the blackhole drops it
        yield Flow(L3_FORWARDING, Priority.ROUTE_SUBNET, Match.of(eth_type=ETH_TYPE_IP, ipv4_dst=str(peer.pod_cidr)),
                   (SetField("eth_src", node.mac), SetField("eth_dst", mac), DecTtl(), Output(UPLINK_OFPORT)),
                   cookie=cookie(Feature.BGP, zlib.crc32(f"route/{peer.pod_cidr}".encode())))
