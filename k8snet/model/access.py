"""How a pod meets its node (``spec.access``): the seed article's access axis (pure).

* ``bridge`` -- a veth (or tap) into the node's switch, which behaves as Flannel's ``cni0``
  bridge: pods of one node share a subnet and reach each other without a router.
* ``routed-veth`` -- Calico's model (the seed's "Veth+pair"): the pod holds its IP as a /32
  and a default route via the link-local gateway 169.254.1.1, which its node answers; every
  packet is routed, even to a pod on the same node (one TTL less).
* ``macvlan`` -- the pod's ``eth0`` is a macvlan child (mode bridge) of its node's uplink,
  addressed from the node's pod CIDR: the pod sits on the node's underlay segment with a
  MAC of its own and its frames leave without the node's switch, so neither Services nor
  NetworkPolicy see them (as with the macvlan CNI plugin).  Pods hold the whole pod CIDR
  and their segment's subnet on-link and no default route (the macvlan plugin's pods use
  a gateway on that network; here none would know pod addresses, so none is given).
  What follows (:func:`macvlan_path`): pods and nodes on one segment reach each other by
  ARP, nothing crosses a router, and a pod never reaches its own node -- the kernel does
  not pass frames between a macvlan child and its parent.
* ``ipvlan`` -- refused where the kernel has no ipvlan driver (topos/datapath.py).
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from k8snet.model.cluster import Cluster, Node

#: The access modes a spec may name.
MODES = ("bridge", "routed-veth", "macvlan", "ipvlan")
#: Calico's pod default gateway: link-local, the same on every node, answered by the node.
LINK_LOCAL_GATEWAY = "169.254.1.1"
#: The macvlan mode of the pods' devices: children of one parent reach each other inside
#: the kernel, and the rest of the segment through the parent's wire.
MACVLAN_MODE = "bridge"


def pod_routes(access: str, pod_ip: str, prefixlen: int, gateway_ip: str,
               pod_cidr: str = "", segment: str = "") -> list[str]:
    """``ip -batch`` lines that give a pod its address and routes on ``eth0`` (``pod_cidr``:
    the cluster's, ``segment``: the node's underlay subnet; used by macvlan)."""
    if access == "routed-veth":
        return [f"addr replace {pod_ip}/32 dev eth0",
                f"route replace {LINK_LOCAL_GATEWAY} dev eth0 scope link",
                f"route replace default via {LINK_LOCAL_GATEWAY} dev eth0"]
    if access == "macvlan":
        whole = ipaddress.ip_network(pod_cidr)
        return [f"addr replace {pod_ip}/{whole.prefixlen} dev eth0",
                f"route replace {segment} dev eth0 scope link"]
    return [f"addr replace {pod_ip}/{prefixlen} dev eth0", f"route replace default via {gateway_ip} dev eth0"]


def macvlan_path(cluster: "Cluster", a: "Node", b: "Node", host_end: bool = False) -> tuple[bool, str]:
    """Can a macvlan pod of node ``a`` reach a pod of node ``b`` (``host_end``: node ``b``'s
    own address), and back?  Only on one L2 segment, and never a pod with its own node."""
    if host_end and a.name == b.name:
        return False, (f"macvlan: a pod and its own node never meet: the kernel passes no frame between a "
                       f"macvlan child and its parent ({a.name}'s uplink), and the pod's frames bypass "
                       f"{a.name}'s switch")
    if a.subnet != b.subnet:
        what = f"{b.name}" if host_end else f"{b.name}'s pods"
        return False, (f"macvlan: {a.name}'s pods sit on {a.subnet} and {what} on {b.subnet}; a macvlan pod "
                       f"reaches its own segment only, and no router there knows pod addresses")
    return True, ""


def macvlan_service(cluster: "Cluster", via: "Node | None", endpoint: "Node") -> tuple[bool, str]:
    """A Service connection to an endpoint on node ``endpoint`` when pods are macvlan:
    ``via`` None -- a pod is the client, and its packets never meet a switch that knows
    Services (it has no route to a ClusterIP); ``via`` a node -- that node's switch
    translates (a NodePort, the load balancer's pick, the node's own ClusterIP
    connection) and then reaches the endpoint on the wire: never its own pods."""
    if via is None:
        return False, ("macvlan: a pod's packets never meet a switch, and nothing else on their path knows "
                       "ClusterIPs (the pod has no route to them)")
    if via.name == endpoint.name:
        return False, (f"macvlan: {via.name}'s switch translates the Service but never reaches its own pods "
                       "(a macvlan child never hears its parent)")
    return macvlan_path(cluster, via, endpoint, host_end=True)
