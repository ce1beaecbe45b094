"""How a pod meets its node (``spec.access``): the seed article's access axis (pure).

* ``bridge`` -- a veth (or tap) into the node's switch, which behaves as Flannel's ``cni0``
  bridge: pods of one node share a subnet and reach each other without a router.
* ``routed-veth`` -- Calico's model (the seed's "Veth+pair"): the pod holds its IP as a /32
  and a default route via the link-local gateway 169.254.1.1, which its node answers; every
  packet is routed, even to a pod on the same node (one TTL less).
* ``macvlan`` / ``ipvlan`` -- children of the node's uplink (not built yet / refused where
  the kernel has no ipvlan driver: topos/datapath.py).
"""

from __future__ import annotations

#: The access modes a spec may name.
MODES = ("bridge", "routed-veth", "macvlan", "ipvlan")
#: Calico's pod default gateway: link-local, the same on every node, answered by the node.
LINK_LOCAL_GATEWAY = "169.254.1.1"


def pod_routes(access: str, pod_ip: str, prefixlen: int, gateway_ip: str) -> list[str]:
    """``ip -batch`` lines that give a pod its address and routes on ``eth0``."""
    if access == "routed-veth":
        return [f"addr replace {pod_ip}/32 dev eth0",
                f"route replace {LINK_LOCAL_GATEWAY} dev eth0 scope link",
                f"route replace default via {LINK_LOCAL_GATEWAY} dev eth0"]
    return [f"addr replace {pod_ip}/{prefixlen} dev eth0", f"route replace default via {gateway_ip} dev eth0"]
