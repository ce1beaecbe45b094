"""What a flow's cookie stands for, in Kubernetes' words (pure: ``(cluster) -> names``).

Every flow carries a cookie: a feature byte, the controller's generation, and a 32-bit
object id (``controllers/pipeline.py``).  :func:`names` inverts the object ids each
feature uses, so a flow seen in a dump, a counter or a trace can be read as "Service
default/web" or "NetworkPolicy x/deny ingress[0]" rather than as a number.  Each
feature's id function is the one its flows are made with, so the two cannot drift.
"""

from __future__ import annotations

import zlib

from controllers.hostgw import peer_object
from controllers.pipeline import FEATURE_MASK, FEATURE_SHIFT, OBJECT_MASK, Feature, cookie
from controllers.podnet import pod_object
from controllers.policy import counter_names, isolation_cookie
from controllers.services import service_object
from k8snet.model.cluster import Cluster

#: What a feature's flows do when they are about no one object (object id 0).
FEATURES = {
    Feature.PODNET: "pod network: classification, ARP, table defaults",
    Feature.HOSTGW: "host-gw routing",
    Feature.VXLAN: "VXLAN tunnel: decapsulation",
    Feature.NODE_ROUTES: "node routes: the host networks",
    Feature.SERVICES: "Services: conntrack, NAT and reply plumbing",
    Feature.MTU: "pod MTU: oversize frames to the controller to be fragmented",
    Feature.POLICY: "NetworkPolicy: first packets judged, allowed connections committed",
}


def key(value: int) -> int:
    """A cookie without its generation: feature byte and object id."""
    return value & (FEATURE_MASK | OBJECT_MASK)


def names(cluster: Cluster) -> dict[int, str]:
    """Cookie (feature and object bits, :func:`key`) -> what its flows are about."""
    out = {cookie(feature): text for feature, text in FEATURES.items()}
    for pod in cluster.pods:
        out[cookie(Feature.PODNET, pod_object(pod))] = f"pod {pod.namespace}/{pod.name}: its port, addresses, delivery"
    for node in cluster.nodes:
        node_id = zlib.crc32(f"node/{node.name}".encode())
        out[cookie(Feature.HOSTGW, peer_object(node))] = f"host-gw route to {node.name}'s pods ({node.pod_cidr})"
        out[cookie(Feature.VXLAN, node_id)] = f"VXLAN tunnel to {node.name} ({node.ip}) for {node.pod_cidr}"
        out[cookie(Feature.NODE_ROUTES, node_id)] = f"route to node {node.name} ({node.ip})"
    for service in cluster.services:
        out[cookie(Feature.SERVICES, service_object(service))] = f"Service {service.namespace}/{service.name}"
    for value, what in counter_names(cluster).items():
        if "policy" in what:
            out[value] = f"NetworkPolicy {what['policy']} {what['direction']}[{what['rule']}]"
        else:
            out[value] = f"{what['pod']} isolated for {what['direction']}: no rule allowed it"
    for pod in cluster.pods:
        for direction in ("ingress", "egress"):
            out[isolation_cookie(pod, direction)] = (f"{pod.namespace}/{pod.name} isolated for {direction}: "
                                                     "never judged (itself, its own node, later fragments)")
    return out


def describe(cluster: Cluster, value: int, known: "dict[int, str] | None" = None) -> str:
    """One cookie as words; an id no object of ``cluster`` has says its feature and the id."""
    known = names(cluster) if known is None else known
    found = known.get(key(value))
    if found is not None:
        return found
    feature = (value & FEATURE_MASK) >> FEATURE_SHIFT
    try:
        label = Feature(feature).name.lower()
    except ValueError:
        return f"not k8snet's (cookie {value:#x})"
    return f"{label}: object {value & OBJECT_MASK:#x}, not in this cluster (stale?)"
