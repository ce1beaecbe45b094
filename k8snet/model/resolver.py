"""Validated documents -> a resolved :class:`~k8snet.model.cluster.Cluster`.

Every problem is reported with the document index (1-based, as an editor counts
``---`` sections), the object, the field path and what is allowed, and nothing is
built until the whole file is valid.  The scheduler is deliberately simple and
deterministic: ``nodeName`` pins a pod, every other pod goes to the node with the
fewest pods (ties to the first node), which spreads replicas evenly.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Optional

from pydantic import ValidationError

from k8snet.model.cluster import (
    FIRST_POD_OFPORT, SERVICE_CIDR, Backend, Cluster, ContainerPort, Node, Pod, Underlay, UnderlayType,
    mac_from_ip,
)
from k8snet.model.access import MODES
from k8snet.model.bgp import DEFAULT_AS, as_problem
from k8snet.model.impairment import Direction
from k8snet.model.links import impairments_of, underlay_links, unknown_link
from k8snet.model.dns import DNS_IP, DNS_NAME, DNS_NAMESPACE
from k8snet.model.documents import CLUSTER_API, KINDS_HELP, KNOWN_KINDS, NOT_YET, pydantic_problems, shown
from k8snet.model.policy import Namespace, NetworkPolicy
from k8snet.model.policy_schema import NamespaceDoc, NetworkPolicyDoc
from k8snet.model.schema import (
    MAX_NODES, MAX_PODS, BackendIn, ClusterDoc, ClusterSpecIn, DeploymentDoc, NodeIn, PodDoc, Problem, ServiceDoc,
    SpecError, _In,
    check_backend, parse_port_range,
)
from k8snet.model.services import resolve_services
from k8snet.model.underlay import UnderlayPlan, plan_underlay


@dataclass(frozen=True)
class Overrides:
    """Command-line options that override the spec (``--nodes``, ``--pods-per-node``,
    ``--backend``)."""

    nodes: Optional[int] = None
    pods_per_node: Optional[int] = None
    backend: Optional[str] = None
    #: Turn cluster DNS on or off (``k8snet run`` turns it on for the ingress scenario).
    dns: Optional[bool] = None
    #: Replace spec.serviceNodePortRange (``k8snet run`` widens it for NodePort 23456).
    node_port_range: Optional[tuple[int, int]] = None
    #: ``--offload`` and ``--datapath`` (topos/datapath.py).
    offload: Optional[str] = None
    datapath_type: Optional[str] = None
    #: ``--attach``.
    attach: Optional[str] = None
    #: ``--access``.
    access: Optional[str] = None


@dataclass
class PodIntent:
    doc: int
    what: str
    name: str
    namespace: str
    labels: dict[str, str]
    node_name: Optional[str]
    owner: Optional[str]
    field: str
    ports: tuple[ContainerPort, ...] = ()
    ready: bool = True


#: A pod is a Service endpoint while Ready; ``k8snet.io/ready: "false"`` marks it not ready
#: (k8snet runs no readiness probes, so the annotation stands in for one).
READY_ANNOTATION = "k8snet.io/ready"


def ready(annotations: dict[str, str]) -> bool:
    return annotations.get(READY_ANNOTATION, "true").lower() != "false"


def container_ports(spec: Any) -> tuple[ContainerPort, ...]:
    return tuple(ContainerPort(name=p.name, port=p.container_port, protocol=p.protocol)
                 for c in spec.containers for p in c.ports)


class Resolver:
    """Validates documents, then turns intents into addresses."""

    def __init__(self, docs: list[tuple[int, Any]], overrides: Overrides):
        self.docs = docs
        self.overrides = overrides
        self.problems: list[Problem] = []
        self.reserved: set[str] = set()
        self.service_docs: list[tuple[int, str, ServiceDoc]] = []
        self.deployments: list[tuple[str, str]] = []
        self.cluster_doc_index: Optional[int] = None
        self.namespaces: dict[tuple[str, ...], Namespace] = {}
        self.policies: dict[tuple[str, ...], NetworkPolicy] = {}

    def fail(self, doc: Optional[int], what: str, field: str, message: str) -> None:
        self.problems.append(Problem(doc, what, field, message))

    def resolve(self) -> Cluster:
        cluster_doc, intents = self.read_documents()
        if self.problems:
            raise SpecError(self.problems)
        cluster = self._resolve_cluster(cluster_doc)
        if self.problems:
            raise SpecError(self.problems)
        if self.overrides.pods_per_node is not None:
            intents = self._override_pods(cluster.nodes)
        spec_in = cluster_doc[1].spec
        dns = cluster_doc[1].spec.dns if self.overrides.dns is None else self.overrides.dns
        if dns:
            intents = intents + [self._dns_pod(cluster)]  # last: the workloads keep their places
            self._add_dns_service()
        pods = self._schedule(cluster, intents)
        if self.problems:
            raise SpecError(self.problems)
        node_port_range = self.overrides.node_port_range or parse_port_range(cluster_doc[1].spec.service_node_port_range)
        services = resolve_services(self.service_docs, SERVICE_CIDR, lb_pool=cluster.underlay.lb_pool,
                                    node_port_range=node_port_range)
        for index, what, field, message in services.problems:
            self.fail(index, what, field, message)
        if self.problems:
            raise SpecError(self.problems)
        return cluster.model_copy(update={"pods": pods, "services": tuple(services.services),
                                          "service_cidr": SERVICE_CIDR, "dns": dns,
                                          "namespaces": tuple(self.namespaces.values()),
                                          "policies": tuple(self.policies.values()),
                                          "node_port_range": node_port_range,
                                          "offload": self.overrides.offload or spec_in.datapath.offload,
                                          "datapath_type": self.overrides.datapath_type or spec_in.datapath.type,
                                          "attach": self.overrides.attach or spec_in.datapath.attach,
                                          "access": self._access(spec_in.access),
                                          "node_monitor_grace": spec_in.node_monitor_grace_period})

    # -- documents
    def read_documents(self) -> tuple[tuple[int, ClusterDoc], list[PodIntent]]:
        cluster_doc: Optional[tuple[int, ClusterDoc]] = None
        intents: list[PodIntent] = []
        for position, (index, raw) in enumerate(self.docs):
            if not isinstance(raw, dict):
                self.fail(index, "", "", f"a document must be a mapping with apiVersion and kind, "
                          f"not a {type(raw).__name__}")
                continue
            api, kind = raw.get("apiVersion"), raw.get("kind")
            name = raw.get("metadata", {}).get("name") if isinstance(raw.get("metadata"), dict) else None
            what = (f"{kind} {shown(name)}" if name else kind) if isinstance(kind, str) else ""
            if not kind:
                self.fail(index, what, "kind", f"required field is missing; allowed: {KINDS_HELP}")
                continue
            if not isinstance(kind, str):
                self.fail(index, what, "kind", f"must be a kind name such as Pod (got {shown(kind)}); allowed: "
                          f"{KINDS_HELP}")
                continue
            if not api:
                self.fail(index, what, "apiVersion", "required field is missing")
                continue
            if not isinstance(api, str):
                self.fail(index, what, "apiVersion", f"must be a string such as v1 (got {shown(api)})")
                continue
            if kind in NOT_YET:
                self.fail(index, what, "kind", NOT_YET[kind])
                continue
            known = {k: a for a, k in KNOWN_KINDS}
            if kind not in known:
                self.fail(index, what, "kind", f"unknown kind {kind!r}; allowed: {KINDS_HELP}")
                continue
            if (api, kind) not in KNOWN_KINDS:
                self.fail(index, what, "apiVersion", f"{api!r} is not served for {kind}; "
                          f"use apiVersion: {known[kind]}")
                continue
            if kind == "Cluster":
                if position != 0:
                    self.fail(index, what, "kind", "the Cluster document must be the first "
                              "document, and there can be only one")
                    continue
                parsed = self._validate(index, what, ClusterDoc, raw)
                self.cluster_doc_index = index
                if parsed is not None:
                    cluster_doc = (index, parsed)
            elif kind == "Pod":
                pod = self._validate(index, what, PodDoc, raw)
                if pod is not None:
                    intents.append(PodIntent(index, what, pod.metadata.name, pod.metadata.namespace,
                                              pod.metadata.labels, pod.spec.node_name, None,
                                              "spec.nodeName", container_ports(pod.spec),
                                              ready(pod.metadata.annotations)))
            elif kind == "Service":
                svc = self._validate(index, what, ServiceDoc, raw)
                if svc is not None:
                    self.service_docs.append((index, what, svc))
            elif kind == "Namespace":
                ns = self._validate(index, what, NamespaceDoc, raw)
                if ns is not None:
                    self._add_once(self.namespaces, (ns.metadata.name,), ns.model(), index, what)
            elif kind == "NetworkPolicy":
                policy = self._validate(index, what, NetworkPolicyDoc, raw)
                if policy is not None:
                    model = policy.model()
                    self._add_once(self.policies, (model.namespace, model.name), model, index, what)
            else:
                dep = self._validate(index, what, DeploymentDoc, raw)
                if dep is not None:
                    self.deployments.append((dep.metadata.namespace, dep.metadata.name))
                    intents.extend(self._expand(index, what, dep))
        if cluster_doc is None:
            cluster_doc = (0, ClusterDoc(apiVersion=CLUSTER_API, kind="Cluster"))
        self._check_duplicates(intents)
        return cluster_doc, intents

    def _add_once(self, into: dict, key: tuple[str, ...], value: Any, index: int, what: str) -> None:
        """One object per name (per namespace), as the API server keeps them."""
        if key in into:
            self.fail(index, what, "metadata.name", f"{'/'.join(key)!r} is defined twice in this file")
        into[key] = value

    def _validate(self, index: int, what: str, model: type[_In], raw: dict) -> Any:
        try:
            return model.model_validate(raw)
        except ValidationError as exc:
            self.problems.extend(pydantic_problems(index, what, exc, model, raw))
            return None

    def _expand(self, index: int, what: str, dep: DeploymentDoc) -> list[PodIntent]:
        labels = dep.spec.template.metadata.labels
        selector = dep.spec.selector.match_labels
        if not selector:
            self.fail(index, what, "spec.selector.matchLabels", "required: the labels that select "
                      "this Deployment's pods (they must also be in spec.template.metadata.labels)")
            return []
        missing = {k: v for k, v in selector.items() if labels.get(k) != v}
        if missing:
            self.fail(index, what, "spec.template.metadata.labels", f"selector {missing} does not "
                      "match the template labels; every matchLabels entry must be in the template")
            return []
        name = dep.metadata.name
        return [PodIntent(index, what, f"{name}-{i}", dep.metadata.namespace, dict(labels),
                           dep.spec.template.spec.node_name, name,
                           "spec.template.spec.nodeName" if dep.spec.template.spec.node_name
                           else "spec.replicas", container_ports(dep.spec.template.spec),
                           ready(dep.spec.template.metadata.annotations))
                for i in range(dep.spec.replicas)]

    def _check_duplicates(self, intents: list[PodIntent]) -> None:
        seen: dict[tuple[str, str], PodIntent] = {}
        for intent in intents:
            key = (intent.namespace, intent.name)
            if key in seen:
                first = seen[key]
                self.fail(intent.doc, intent.what, "metadata.name", f"pod name {intent.name!r} in "
                          f"namespace {intent.namespace!r} is already used by document "
                          f"{first.doc} ({first.what}); pod names must be unique per namespace")
            else:
                seen[key] = intent

    # -- cluster
    def _resolve_cluster(self, cluster_doc: tuple[int, ClusterDoc]) -> Cluster:
        index, doc = cluster_doc
        what = f"Cluster {doc.metadata.name!r}"
        spec = doc.spec
        backend = spec.backend_config()
        if self.overrides.backend is not None:
            try:
                backend = backend.model_copy(update={"type": check_backend(self.overrides.backend)})
            except ValueError as exc:
                self.fail(None, "command line", "--backend", str(exc))
        pod_cidr = self._network(index, what, "spec.podCIDR", spec.pod_cidr)
        routed = spec.underlay.type == "routed"
        default_cidr = "192.168.0.0/16" if routed else "192.168.56.0/24"
        under_cidr = self._network(index, what, "spec.underlay.cidr", spec.underlay.cidr or default_cidr)
        if pod_cidr is None or under_cidr is None:
            return Cluster()
        node_ins = self._node_list(spec)
        self._check_cidrs(index, what, pod_cidr, spec.subnet_len, under_cidr, len(node_ins))
        names: dict[str, int] = {}
        for i, node in enumerate(node_ins):
            if node.name in names:
                self.fail(index, what, f"spec.nodes[{i}].name", f"node name {node.name!r} is "
                          f"already used by spec.nodes[{names[node.name]}]; node names must be unique")
            names.setdefault(node.name, i)
        if self.problems:
            return Cluster()
        hint = tuple(dict.fromkeys(n.rack for n in spec.nodes if n.rack)) if isinstance(spec.nodes, list) else ()
        layout = plan_underlay(spec.underlay, under_cidr, node_ins, self.overrides.nodes is not None, hint)
        for field, message in layout.problems:
            self.fail(index, what, field, message)
        if self.problems:
            return Cluster()
        self._check_reserved_names(index, what, layout)
        subnets = pod_cidr.subnets(new_prefix=spec.subnet_len)
        nodes = [Node(name=n.name, index=i, ip=n.ip, mac=mac_from_ip(n.ip, "02:00"), pod_cidr=next(subnets),
                      rack=n.rack, subnet=n.subnet) for i, n in enumerate(layout.nodes)]
        bgp_as = self._bgp_as(index, what, backend, len(layout.racks))
        cluster = Cluster(name=doc.metadata.name, backend=Backend(backend.type), vni=backend.vni,
                          vxlan_port=backend.port, bgp_as=bgp_as, pod_cidr=pod_cidr, subnet_len=spec.subnet_len,
                          underlay=Underlay(type=UnderlayType(spec.underlay.type), cidr=under_cidr,
                                            mtu=spec.underlay.mtu, bandwidth_mbit=spec.underlay.bandwidth,
                                            racks=layout.racks, external=layout.external, lb=layout.lb),
                          nodes=tuple(nodes))
        return self._impair(index, what, spec, cluster)

    def _access(self, spec_access: str) -> str:
        """spec.access, or ``--access`` (checked as the spec's field is)."""
        if self.overrides.access is None:
            return spec_access
        if self.overrides.access not in MODES:
            self.fail(None, "command line", "--access", f"{self.overrides.access!r} is not an access mode; "
                      f"allowed: {', '.join(MODES)}")
            raise SpecError(self.problems)
        return self.overrides.access

    def _bgp_as(self, index: int, what: str, backend: BackendIn, racks: int) -> int:
        """spec.backend.asNumber: only for bgp, and room for the core's and every rack's AS."""
        if backend.as_number is None:
            return DEFAULT_AS
        if backend.type != "bgp":
            self.fail(index, what, "spec.backend.asNumber", f"asNumber is for backend bgp, not {backend.type}; "
                      "remove it or use type: bgp")
            return DEFAULT_AS
        problem = as_problem(backend.as_number, racks)
        if problem:
            self.fail(index, what, "spec.backend.asNumber", problem)
        return backend.as_number

    def _impair(self, index: int, what: str, spec: ClusterSpecIn, cluster: Cluster) -> Cluster:
        """``underlay.loss`` on every link, then ``underlay.impairments`` per link (each
        replaces the global loss for the directions it names; naming a link's direction
        twice is a mistake)."""
        links = underlay_links(cluster)
        losses = {(name, way): spec.underlay.loss for name in links for way in Direction.BOTH.ways()
                  if spec.underlay.loss}
        named: dict[tuple[str, Direction], int] = {}
        for i, item in enumerate(spec.underlay.impairments):
            field = f"spec.underlay.impairments[{i}]"
            if item.link not in links:
                self.fail(index, what, f"{field}.link", unknown_link(cluster, item.link))
                continue
            for way in Direction(item.direction).ways():
                if (item.link, way) in named:
                    self.fail(index, what, f"{field}.direction", f"{item.link}'s {way.value} loss is already set by "
                              f"spec.underlay.impairments[{named[(item.link, way)]}]; give each direction once")
                named.setdefault((item.link, way), i)
                losses[(item.link, way)] = item.loss
        impaired = impairments_of(losses, links)
        if not impaired:
            return cluster
        return cluster.model_copy(update={"underlay": cluster.underlay.model_copy(update={"impairments": impaired})})

    def _check_reserved_names(self, index: int, what: str, layout: UnderlayPlan) -> None:
        infra = {r.host_name for r in layout.racks} | set(layout.infrastructure)
        for i, node in enumerate(layout.nodes):
            if node.name in infra:
                self.fail(index, what, f"spec.nodes[{i}].name", f"{node.name!r} is the name of an "
                          f"underlay host ({', '.join(sorted(infra))}); choose another node name")
        self.reserved = infra

    def _node_list(self, spec: ClusterSpecIn) -> list[NodeIn]:
        if self.overrides.nodes is not None:
            if not 1 <= self.overrides.nodes <= MAX_NODES:
                self.fail(None, "command line", "--nodes", f"must be 1 to {MAX_NODES}")
                return []
            return [NodeIn(name=f"node-{i}") for i in range(self.overrides.nodes)]
        if isinstance(spec.nodes, int):
            return [NodeIn(name=f"node-{i}") for i in range(spec.nodes)]
        return list(spec.nodes)

    def _network(self, index: int, what: str, field: str, text: str) -> Optional[ipaddress.IPv4Network]:
        try:
            net = ipaddress.IPv4Network(text, strict=True)
        except ValueError as exc:
            self.fail(index, what, field, f"{text!r} is not an IPv4 network in CIDR form "
                      f"(e.g. 10.244.0.0/16): {exc}")
            return None
        if net.is_loopback or net.is_multicast or net.is_link_local or net.is_unspecified:
            self.fail(index, what, field, f"{net} is a loopback, multicast or link-local range; "
                      "use a private range such as 10.244.0.0/16 or 192.168.56.0/24")
            return None
        return net

    def _check_cidrs(self, index: int, what: str, pod_cidr: ipaddress.IPv4Network, subnet_len: int,
                     under_cidr: ipaddress.IPv4Network, node_count: int) -> None:
        if subnet_len <= pod_cidr.prefixlen:
            self.fail(index, what, "spec.podCIDR", f"{pod_cidr} is too small to hold per-node "
                      f"/{subnet_len} subnets; use a shorter prefix (e.g. /16) or a longer subnetLen")
            return
        room = 2 ** (subnet_len - pod_cidr.prefixlen)
        if node_count > room:
            self.fail(index, what, "spec.nodes", f"{node_count} nodes need {node_count} /{subnet_len} "
                      f"subnets but podCIDR {pod_cidr} holds only {room}; use fewer nodes or a "
                      "larger podCIDR")
        for name, net in (("spec.podCIDR", pod_cidr), ("spec.underlay.cidr", under_cidr)):
            if net.overlaps(SERVICE_CIDR):
                self.fail(index, what, name, f"{net} overlaps the Service CIDR {SERVICE_CIDR}; "
                          "choose a range outside it")
        if pod_cidr.overlaps(under_cidr):
            self.fail(index, what, "spec.underlay.cidr", f"{under_cidr} overlaps podCIDR {pod_cidr}; "
                      "node and pod addresses must not overlap")

    # -- cluster DNS (kubeadm's CoreDNS, played by unbound: see topos.dns)
    def _dns_pod(self, cluster: Cluster) -> PodIntent:
        return PodIntent(0, "cluster DNS", DNS_NAME, DNS_NAMESPACE, {"k8s-app": DNS_NAME}, None, None, "spec.dns",
                         (ContainerPort(name="dns", port=53, protocol="UDP"),
                          ContainerPort(name="dns-tcp", port=53, protocol="TCP")))

    def _add_dns_service(self) -> None:
        doc = ServiceDoc.model_validate({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": DNS_NAME, "namespace": DNS_NAMESPACE},
            "spec": {"clusterIP": str(DNS_IP), "selector": {"k8s-app": DNS_NAME},
                     "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": "dns"},
                               {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": "dns-tcp"}]}})
        self.service_docs.insert(0, (0, "cluster DNS", doc))

    # -- pods
    def _override_pods(self, nodes: tuple[Node, ...]) -> list[PodIntent]:
        count = self.overrides.pods_per_node or 0
        if not 0 <= count <= MAX_PODS // len(nodes):
            self.fail(None, "command line", "--pods-per-node", f"must be 0 to {MAX_PODS // len(nodes)} "
                      f"(at most {MAX_PODS} pods in all)")
            return []
        labels = {"app": "web"}
        return [PodIntent(0, "command line", f"web-{i}", "default", labels, None, "web",
                           "--pods-per-node") for i in range(count * len(nodes))]

    def _schedule(self, cluster: Cluster, intents: list[PodIntent]) -> tuple[Pod, ...]:
        node_names = {n.name: n for n in cluster.nodes}
        placed: dict[str, list[PodIntent]] = {n.name: [] for n in cluster.nodes}
        for intent in intents:
            if intent.node_name is None:
                continue
            if intent.node_name not in node_names:
                self.fail(intent.doc, intent.what, intent.field, f"node {intent.node_name!r} does not "
                          f"exist; nodes are: {', '.join(node_names)}")
                continue
            placed[intent.node_name].append(intent)
        for intent in intents:
            if intent.node_name is None:
                target = min(cluster.nodes, key=lambda n: (len(placed[n.name]), n.index))
                placed[target.name].append(intent)
        node_names_taken = set(node_names) | self.reserved
        pods = []
        for node in cluster.nodes:
            capacity = node.pod_cidr.num_addresses - 3
            if len(placed[node.name]) > capacity:
                first = placed[node.name][capacity]
                self.fail(first.doc, first.what, first.field, f"node {node.name!r} would get "
                          f"{len(placed[node.name])} pods but its /{cluster.subnet_len} holds "
                          f"{capacity}; use fewer pods or a shorter subnetLen")
                continue
            for k, intent in enumerate(placed[node.name]):
                ip = node.pod_cidr.network_address + 2 + k
                pod = Pod(name=intent.name, namespace=intent.namespace, node=node.name, ip=ip,
                          mac=mac_from_ip(ip), ofport=FIRST_POD_OFPORT + k, labels=intent.labels,
                          owner=intent.owner, ports=intent.ports, ready=intent.ready)
                if pod.host_name in node_names_taken:
                    self.fail(intent.doc, intent.what, "metadata.name", f"{pod.host_name!r} is also "
                              "the name of a node or underlay host; pod and node names must differ")
                pods.append(pod)
        order = {(i.namespace, i.name): n for n, i in enumerate(intents)}
        return tuple(sorted(pods, key=lambda p: order[(p.namespace, p.name)]))
