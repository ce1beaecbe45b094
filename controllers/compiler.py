"""Pure: (cluster model, node) -> everything that node's switch should hold.

No I/O and no os-ken here, so the same function feeds the controller, the flow tests
(which load its output into a throwaway OVS and trace packets through it) and
``k8snet flows`` for a human to read.
"""

from __future__ import annotations

from controllers import hostgw, podnet
from controllers.flows import Desired, merge
from topos.model import Backend, Cluster


def compile_node(cluster: Cluster, node_name: str) -> Desired:
    node = cluster.node(node_name)
    parts = [podnet.flows(cluster, node)]
    if cluster.backend is Backend.HOST_GW:
        parts.append(hostgw.flows(cluster, node))
    desired = Desired(flows=merge(*parts))
    desired.flows_by_key()  # raises if two features claimed the same table/priority/match
    return desired


def compile_cluster(cluster: Cluster) -> dict[str, Desired]:
    return {node.name: compile_node(cluster, node.name) for node in cluster.nodes}
