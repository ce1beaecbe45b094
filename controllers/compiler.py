"""Pure: (cluster model, node) -> everything that node's switch should hold.

No I/O and no os-ken here, so the same function feeds the controller, the flow tests
(which load its output into a throwaway OVS and trace packets through it) and
``k8snet flows`` for a human to read.  Which peer gets which kind of route comes from
:meth:`k8snet.model.cluster.Cluster.route`, the same decision the reachability checker uses
for its expectations.
"""

from __future__ import annotations

from typing import Iterator

from controllers import egress, hostgw, noderoutes, podnet, services, vxlan
from controllers.flows import Desired, Flow, merge
from k8snet.model.cluster import Cluster, Node, RouteKind
from k8snet.model.schema import Problem, SpecError


def _pod_routes(cluster: Cluster, node: Node) -> Iterator[Flow]:
    for peer in cluster.peers_of(node.name):
        kind = cluster.route(node, peer).kind
        if kind is RouteKind.DIRECT:
            yield from hostgw.peer_flows(node, peer)
        elif kind is RouteKind.VXLAN:
            yield from vxlan.peer_flows(cluster, node, peer)


def unenforced(cluster: Cluster) -> list[Problem]:
    """What the model holds that no flow here implements yet.  Refused before anything is
    started (exit 2 on the command line), never silently left out: a NetworkPolicy that
    the switches ignored would make every measurement of it a lie."""
    return [Problem(None, f"NetworkPolicy {p.key}", "", "NetworkPolicy documents are read, validated and "
                    "evaluated (k8snet.model.policy_eval) but the switches do not enforce them yet; remove "
                    "them to build this cluster") for p in cluster.policies]


def refuse_unenforced(cluster: Cluster) -> None:
    """SpecError listing :func:`unenforced`, if any."""
    problems = unenforced(cluster)
    if problems:
        raise SpecError(problems)


def compile_node(cluster: Cluster, node_name: str) -> Desired:
    node = cluster.node(node_name)
    parts = [podnet.flows(cluster, node), noderoutes.flows(cluster, node), _pod_routes(cluster, node),
             services.node_flows(cluster, node), services.service_flows(cluster, node)]
    if cluster.encapsulates:
        parts.append(vxlan.node_flows(cluster, node))
    parts.append(egress.node_flows(cluster, node))
    desired = Desired(flows=merge(*parts))
    # Raises if two features claimed the same table/priority/match (two Service ports
    # hashing to one port id would show up here too).
    desired.flows_by_key()
    return desired


def compile_cluster(cluster: Cluster) -> dict[str, Desired]:
    return {node.name: compile_node(cluster, node.name) for node in cluster.nodes}
