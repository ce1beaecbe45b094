"""``kubectl apply`` / ``kubectl delete`` for a running cluster: documents -> a new model.

Pure: the running :class:`~k8snet.model.cluster.Cluster` and some documents in, the cluster as
it should be out.  What exists keeps its addresses (a pod its IP, MAC and port; a
Service its ClusterIP and NodePorts), so applying the same file twice changes nothing.

* ``Deployment``: its pods become ``<name>-0 .. <name>-(replicas-1)``: scaling up adds
  pods (to the node with the fewest pods, or ``nodeName``), scaling down removes the
  highest-numbered ones, template changes (labels, ports, readiness) reach every replica.
* ``Pod``: created, or updated in place (labels, ports, readiness; not its node); a Pod
  document that gives no labels or ports keeps the pod's own (so a two-line document
  with the readiness annotation flips readiness without touching the rest).
* ``Service``, ``NetworkPolicy``, ``Namespace``: created or replaced (a Namespace
  document sets that namespace's labels, so policies whose namespaceSelector reads them
  follow).
* Readiness: the annotation ``k8snet.io/ready: "false"`` marks a pod not ready.
* ``delete``: the named Pods, Deployments (with their pods), Services and NetworkPolicies
  go; a deleted Namespace takes everything in it along, as the API server's namespace
  controller does.
* The Cluster document describes the machine and cannot be applied to a running one.
"""

from __future__ import annotations

import ipaddress
from typing import Optional

from k8snet.model.cluster import FIRST_POD_OFPORT, SERVICE_CIDR, Cluster, Pod, mac_from_ip
from k8snet.model.documents import parse_yaml
from k8snet.model.resolver import Overrides, PodIntent, Resolver
from k8snet.model.schema import Problem, SpecError
from k8snet.model.services import resolve_services
from k8snet.model.underlay import CORE_HOST, EXTERNAL_HOST, FLAT_SEGMENT_HOST, LB_HOST


def apply_text(current: Cluster, text: str, delete: bool = False) -> Cluster:
    resolver = Resolver(parse_yaml(text), Overrides())
    _, intents = resolver.read_documents()
    if resolver.cluster_doc_index is not None:
        resolver.fail(resolver.cluster_doc_index, "Cluster", "kind", "a running cluster's nodes, CIDRs, backend "
                      "and underlay cannot change; stop it and start it again with the new spec")
    if resolver.problems:
        raise SpecError(resolver.problems)
    pods = {(p.namespace, p.name): p for p in current.pods}
    services = {s.key: s for s in current.services}
    owned = {(ns, name) for ns, name in resolver.deployments}
    if delete:
        for ns, name in owned:
            for key in [k for k, p in pods.items() if p.namespace == ns and p.owner == name]:
                del pods[key]
        for intent in intents:
            if intent.owner is None:
                pods.pop((intent.namespace, intent.name), None)
        for _, _, doc in resolver.service_docs:
            services.pop(f"{doc.metadata.namespace}/{doc.metadata.name}", None)
        policies = {p.key: p for p in current.policies if (p.namespace, p.name) not in resolver.policies}
        namespaces = {n.name: n for n in current.namespaces}
        for (name,) in resolver.namespaces:
            namespaces.pop(name, None)
            pods = {k: p for k, p in pods.items() if p.namespace != name}
            services = {k: v for k, v in services.items() if v.namespace != name}
            policies = {k: v for k, v in policies.items() if v.namespace != name}
        return current.model_copy(update={"pods": _ordered(current, pods), "services": tuple(services.values()),
                                          "policies": tuple(policies.values()),
                                          "namespaces": tuple(namespaces.values())})

    wanted = {(i.namespace, i.name) for i in intents}
    for ns, name in owned:
        for key in [k for k, p in pods.items() if p.namespace == ns and p.owner == name and k not in wanted]:
            del pods[key]
    reserved = {n.name for n in current.nodes} | {r.host_name for r in current.underlay.racks} | \
        {FLAT_SEGMENT_HOST, CORE_HOST, EXTERNAL_HOST, LB_HOST}
    for intent in intents:
        key = (intent.namespace, intent.name)
        existing = pods.get(key)
        if existing is not None:
            if intent.node_name and intent.node_name != existing.node:
                resolver.fail(intent.doc, intent.what, intent.field, f"pod {intent.name!r} runs on {existing.node}; "
                              "a pod cannot move: delete it and apply it again")
                continue
            # A Pod document that names a Deployment's pod (to mark it not ready, say)
            # keeps what it does not say: its owner, and labels and ports if it gives none.
            pods[key] = existing.model_copy(update={"labels": intent.labels or existing.labels,
                                                    "ports": intent.ports or existing.ports,
                                                    "ready": intent.ready, "owner": intent.owner or existing.owner})
            continue
        pod = _place(current, list(pods.values()), intent, resolver)
        if pod is None:
            continue
        if pod.host_name in reserved:
            resolver.fail(intent.doc, intent.what, "metadata.name", f"{pod.host_name!r} is the name of a node or "
                          "underlay host; pod and node names must differ")
            continue
        pods[key] = pod
    if resolver.service_docs:
        resolved = resolve_services(resolver.service_docs, SERVICE_CIDR, previous=current,
                                    lb_pool=current.underlay.lb_pool, node_port_range=current.node_port_range)
        for index, what, field, message in resolved.problems:
            resolver.fail(index, what, field, message)
        for service in resolved.services:
            services[service.key] = service
    if resolver.problems:
        raise SpecError(resolver.problems)
    policies = {p.key: p for p in current.policies}
    policies.update({p.key: p for p in resolver.policies.values()})
    namespaces = {n.name: n for n in current.namespaces}
    namespaces.update({n.name: n for n in resolver.namespaces.values()})
    return current.model_copy(update={"pods": _ordered(current, pods), "services": tuple(services.values()),
                                      "policies": tuple(policies.values()),
                                      "namespaces": tuple(namespaces.values())})


def _ordered(current: Cluster, pods: dict[tuple[str, str], Pod]) -> tuple[Pod, ...]:
    """Existing pods keep their order; new ones follow in the order they were applied."""
    before = [(p.namespace, p.name) for p in current.pods]
    keys = [k for k in before if k in pods] + [k for k in pods if k not in set(before)]
    return tuple(pods[k] for k in keys)


def _place(current: Cluster, pods: list[Pod], intent: PodIntent, resolver: Resolver) -> Optional[Pod]:
    """A node, the lowest free IP on it and the lowest free OpenFlow port."""
    names = [n.name for n in current.nodes]
    if intent.node_name is not None and intent.node_name not in names:
        resolver.fail(intent.doc, intent.what, intent.field, f"node {intent.node_name!r} does not exist; "
                      f"nodes are: {', '.join(names)}")
        return None
    counts = {n: sum(1 for p in pods if p.node == n) for n in names}
    node = current.node(intent.node_name) if intent.node_name else \
        min(current.nodes, key=lambda n: (counts[n.name], n.index))
    on_node = [p for p in pods if p.node == node.name]
    used_ips = {p.ip for p in on_node}
    used_ports = {p.ofport for p in on_node}
    ip: Optional[ipaddress.IPv4Address] = next(
        (node.pod_cidr.network_address + k for k in range(2, node.pod_cidr.num_addresses - 1)
         if node.pod_cidr.network_address + k not in used_ips), None)
    if ip is None:
        resolver.fail(intent.doc, intent.what, intent.field, f"node {node.name} has no free pod address "
                      f"left in {node.pod_cidr}")
        return None
    ofport = next(p for p in range(FIRST_POD_OFPORT, FIRST_POD_OFPORT + 65000) if p not in used_ports)
    return Pod(name=intent.name, namespace=intent.namespace, node=node.name, ip=ip, mac=mac_from_ip(ip),
               ofport=ofport, labels=intent.labels, owner=intent.owner, ports=intent.ports, ready=intent.ready)


__all__ = ["apply_text", "Problem", "SpecError"]
