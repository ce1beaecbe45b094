"""Pure: (cluster model, node) -> everything that node's switch should hold.

No I/O and no os-ken here, so the same function feeds the controller, the flow tests
(which load its output into a throwaway OVS and trace packets through it) and
``k8snet flows`` for a human to read.  Which peer gets which kind of route comes from
:meth:`k8snet.model.cluster.Cluster.route`, the same decision the reachability checker uses
for its expectations.
"""

from __future__ import annotations

from typing import Iterator

from controllers import bgp, egress, hostgw, noderoutes, podnet, policy, services, vxlan
from controllers.flows import Desired, Flow, merge
from k8snet.model.cluster import Backend, Cluster, Node, RouteKind


def _pod_routes(cluster: Cluster, node: Node) -> Iterator[Flow]:
    if cluster.access == "macvlan":
        return  # pods are on the wire, not behind their nodes' switches (controllers/podnet.py)
    if cluster.backend is Backend.BGP:
        yield from bgp.flows(cluster, node)  # what BGP learned, not the model's decision
        return
    for peer in cluster.peers_of(node.name):
        kind = cluster.route(node, peer).kind
        if kind is RouteKind.DIRECT:
            yield from hostgw.peer_flows(node, peer)
        elif kind is RouteKind.VXLAN:
            yield from vxlan.peer_flows(cluster, node, peer)


def compile_node(cluster: Cluster, node_name: str) -> Desired:
    node = cluster.node(node_name)
    parts = [podnet.flows(cluster, node), noderoutes.flows(cluster, node), _pod_routes(cluster, node),
             services.node_flows(cluster, node), services.service_flows(cluster, node)]
    if cluster.encapsulates:
        parts.append(vxlan.node_flows(cluster, node))
    parts.append(egress.node_flows(cluster, node))
    parts.append(policy.node_flows(cluster, node))
    desired = Desired(flows=merge(*parts))
    # Raises if two features claimed the same table/priority/match (two Service ports
    # hashing to one port id would show up here too).
    desired.flows_by_key()
    return desired


def compile_cluster(cluster: Cluster) -> dict[str, Desired]:
    return {node.name: compile_node(cluster, node.name) for node in cluster.nodes}
