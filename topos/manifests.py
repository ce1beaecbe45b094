"""Kubernetes-style YAML in, a resolved :class:`topos.model.Cluster` out, or precise errors.

A cluster spec is one multi-document YAML file:

1. optionally first, ``apiVersion: k8snet.io/v1alpha1, kind: Cluster`` (nodes, pod CIDR,
   backend, underlay); without it the defaults below apply;
2. then ordinary ``v1 Pod`` and ``apps/v1 Deployment`` documents.

Every problem is reported with the document index (1-based, as an editor counts
``---`` sections), the object, the field path and what is allowed, and nothing is
built until the whole file is valid.  The scheduler is deliberately simple and
deterministic: ``nodeName`` pins a pod, every other pod goes to the node with the
fewest pods (ties to the first node), which spreads replicas evenly.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from importlib import resources
from typing import Annotated, Any, Optional, Union

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from topos.model import (
    FIRST_POD_OFPORT, Backend, Cluster, Node, Pod, Underlay, UnderlayType, mac_from_ip,
)

CLUSTER_API = "k8snet.io/v1alpha1"
#: kube-apiserver's default Service CIDR; pods and nodes must stay out of it.
SERVICE_CIDR = ipaddress.IPv4Network("10.96.0.0/12")
#: Node IPs start at this host offset in the underlay CIDR (lower ones are kept
#: for gateways and external hosts).
NODE_IP_OFFSET = 10
KNOWN_KINDS = {("k8snet.io/v1alpha1", "Cluster"), ("v1", "Pod"), ("apps/v1", "Deployment")}
NOT_YET = {
    "Service": "Service documents are not supported yet in this version of k8snet "
               "(ClusterIP/NodePort/LoadBalancer arrive with the Services feature); "
               "remove the document for now",
    "Endpoints": "Endpoints are computed from Pods and Services; do not write them",
}

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input, located precisely."""

    doc: Optional[int]
    what: str
    field: str
    message: str

    def __str__(self) -> str:
        where = f"document {self.doc}" if self.doc is not None else "spec"
        if self.what:
            where += f" ({self.what})"
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class SpecError(Exception):
    """The cluster spec is invalid; ``problems`` says where and why."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


# --------------------------------------------------------------------------- input schema
def dns1123_subdomain(value: str) -> str:
    if len(value) > 253 or not _DNS1123_SUBDOMAIN.match(value):
        raise ValueError(f"{value!r} is not a valid DNS-1123 subdomain: use lowercase letters, "
                         "digits, '-' and '.', starting and ending with a letter or digit, "
                         "at most 253 characters")
    return value


def dns1123_label(value: str) -> str:
    if len(value) > 63 or not _DNS1123_LABEL.match(value):
        raise ValueError(f"{value!r} is not a valid DNS-1123 label: use lowercase letters, "
                         "digits and '-', starting and ending with a letter or digit, "
                         "at most 63 characters")
    return value


def check_labels(labels: dict[str, str]) -> dict[str, str]:
    for key, value in labels.items():
        name = key.rsplit("/", 1)[-1]
        if len(name) > 63 or not _LABEL_NAME.match(name):
            raise ValueError(f"label key {key!r} is invalid: at most 63 characters of "
                             "letters, digits, '-', '_' and '.', starting and ending alphanumeric")
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            raise ValueError(f"label {key!r}: value {value!r} must be a string of at most 63 "
                             "letters, digits, '-', '_' and '.', starting and ending alphanumeric "
                             "(quote numbers and booleans in YAML)")
    return labels


Subdomain = Annotated[str, AfterValidator(dns1123_subdomain)]
Label = Annotated[str, AfterValidator(dns1123_label)]
Labels = Annotated[dict[str, str], AfterValidator(check_labels)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=False,
                              strict=True)


class Metadata(_In):
    name: Subdomain
    namespace: Label = "default"
    labels: Labels = {}
    annotations: dict[str, str] = {}



class TemplateMetadata(_In):
    labels: Labels = {}
    annotations: dict[str, str] = {}


class ContainerPort(_In):
    container_port: int = Field(ge=1, le=65535)
    name: Optional[str] = None
    protocol: str = "TCP"

    @field_validator("protocol")
    @classmethod
    def _proto(cls, v: str) -> str:
        if v not in ("TCP", "UDP"):
            raise ValueError(f"{v!r} is not supported; allowed: TCP, UDP")
        return v


class Container(_In):
    """Containers are not run (a pod is a namespace running what you start in it);
    the fields are accepted so real manifests load, and ports name targetPorts."""

    name: str
    image: Optional[str] = None
    image_pull_policy: Optional[str] = None
    command: list[str] = []
    args: list[str] = []
    working_dir: Optional[str] = None
    ports: list[ContainerPort] = []
    env: list[dict[str, Any]] = []
    resources: dict[str, Any] = {}


class PodSpecIn(_In):
    node_name: Optional[str] = None
    containers: list[Container] = []
    restart_policy: Optional[str] = None
    termination_grace_period_seconds: Optional[int] = None


class PodDoc(_In):
    api_version: str
    kind: str
    metadata: Metadata
    spec: PodSpecIn = PodSpecIn()


class LabelSelector(_In):
    match_labels: dict[str, str] = {}


class PodTemplate(_In):
    metadata: TemplateMetadata = TemplateMetadata()
    spec: PodSpecIn = PodSpecIn()


class DeploymentSpecIn(_In):
    replicas: int = Field(default=1, ge=0)
    selector: LabelSelector = LabelSelector()
    template: PodTemplate = PodTemplate()


class DeploymentDoc(_In):
    api_version: str
    kind: str
    metadata: Metadata
    spec: DeploymentSpecIn = DeploymentSpecIn()


class NodeIn(_In):
    name: Subdomain
    rack: Optional[str] = None


class UnderlayIn(_In):
    type: str = "flat"
    cidr: str = "192.168.56.0/24"
    mtu: int = Field(default=1500, ge=1280, le=9000)

    @field_validator("type")
    @classmethod
    def _type(cls, v: str) -> str:
        if v == "routed":
            raise ValueError("'routed' (racks behind L3 gateways) is not supported yet in this "
                             "version; allowed: flat")
        if v != "flat":
            raise ValueError(f"{v!r} is not an underlay type; allowed: flat")
        return v


class ClusterSpecIn(_In):
    nodes: Union[int, list[NodeIn]] = 3
    pod_cidr: str = Field(default="10.244.0.0/16", alias="podCIDR")
    subnet_len: int = Field(default=24, ge=8, le=30)
    backend: str = "host-gw"
    underlay: UnderlayIn = UnderlayIn()

    @field_validator("backend")
    @classmethod
    def _backend(cls, v: str) -> str:
        allowed = [b.value for b in Backend]
        if v in ("vxlan", "directrouting"):
            raise ValueError(f"backend {v!r} is not supported yet in this version; "
                             f"allowed: {', '.join(allowed)}")
        if v not in allowed:
            raise ValueError(f"{v!r} is not a backend; allowed: {', '.join(allowed)}")
        return v

    @field_validator("nodes")
    @classmethod
    def _nodes(cls, v: Union[int, list[NodeIn]]) -> Union[int, list[NodeIn]]:
        count = v if isinstance(v, int) else len(v)
        if count < 1:
            raise ValueError("a cluster needs at least 1 node")
        return v


class ClusterMetadata(_In):
    name: Label = "k8snet"
    labels: Labels = {}
    annotations: dict[str, str] = {}


class ClusterDoc(_In):
    api_version: str
    kind: str
    metadata: ClusterMetadata = ClusterMetadata()
    spec: ClusterSpecIn = ClusterSpecIn()


# --------------------------------------------------------------------------- loading
@dataclass(frozen=True)
class Overrides:
    """Command-line options that override the spec (``--nodes``, ``--pods-per-node``,
    ``--backend``)."""

    nodes: Optional[int] = None
    pods_per_node: Optional[int] = None
    backend: Optional[str] = None


def default_spec_text() -> str:
    """The embedded default cluster: 3 nodes, 2 pods per node, flat underlay, host-gw."""
    return resources.files("topos").joinpath("specs/default.yaml").read_text()


def load_file(path: str, overrides: Overrides = Overrides()) -> Cluster:
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise SpecError([Problem(None, "", "", f"cannot read {path}: {exc.strerror}")]) from exc
    return load_text(text, overrides)


def load_text(text: str, overrides: Overrides = Overrides()) -> Cluster:
    """Parse, validate and resolve a spec; raise :class:`SpecError` with every problem."""
    docs = _parse_yaml(text)
    return _Resolver(docs, overrides).resolve()


def _parse_yaml(text: str) -> list[tuple[int, Any]]:
    try:
        raw = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError([Problem(None, "", "", f"not valid YAML{where}: {problem}")]) from exc
    docs = [(i + 1, d) for i, d in enumerate(raw) if d is not None]
    if not docs:
        raise SpecError([Problem(None, "", "", "the file holds no documents; start with "
                                 f"'apiVersion: {CLUSTER_API}' and 'kind: Cluster'")])
    return docs


_UNION_TAGS = {"int": int, "list[NodeIn]": list}


def _raw_at(raw: Any, loc: tuple) -> Any:
    for part in loc:
        if isinstance(raw, dict):
            raw = raw.get(part)
        elif isinstance(raw, list) and isinstance(part, int) and part < len(raw):
            raw = raw[part]
        else:
            return None
    return raw


def _pydantic_problems(doc: int, what: str, exc: ValidationError, model: type[_In],
                       raw: Any) -> list[Problem]:
    """Turn pydantic's errors into located problems.

    A ``Union[int, list]`` field reports a failure for each branch; keep only the
    branch the input was meant for (the one whose type matches the raw value)."""
    problems = []
    for err in exc.errors():
        tags = [i for i, p in enumerate(err["loc"]) if isinstance(p, str) and p in _UNION_TAGS]
        if tags:
            i = tags[0]
            value = _raw_at(raw, err["loc"][:i])
            if not any(isinstance(value, t) and not isinstance(value, bool)
                       for t in _UNION_TAGS.values()):
                field = ".".join(str(p) for p in err["loc"][:i])
                problem = Problem(doc, what, field, f"must be a node count (e.g. 3) or a list "
                                  f"of nodes with name and optional rack (got {value!r})")
                if problem not in problems:
                    problems.append(problem)
                continue
            if not isinstance(value, _UNION_TAGS[err["loc"][i]]):
                continue
        loc = [str(p) for p in err["loc"] if not (isinstance(p, str) and p in _UNION_TAGS)]
        field = ".".join(loc)
        kind = err["type"]
        if kind == "extra_forbidden":
            parent = _model_at(model, err["loc"][:-1])
            allowed = ", ".join(sorted(_aliases(parent))) if parent else ""
            message = f"unknown field; allowed here: {allowed}" if allowed else "unknown field"
        elif kind == "missing":
            message = "required field is missing"
        elif kind == "value_error":
            message = str(err["msg"]).removeprefix("Value error, ")
        else:
            message = f"{err['msg']} (got {err.get('input')!r})"
        problems.append(Problem(doc, what, field, message))
    return problems


def _aliases(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


def _model_at(model: type[BaseModel], loc: tuple) -> Optional[type[BaseModel]]:
    """Walk a pydantic error location to the model that holds the offending field."""
    current: Any = model
    for part in loc:
        if isinstance(part, int) or part in _UNION_TAGS:
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = next((f for n, f in current.model_fields.items() if (f.alias or n) == part), None)
        if field is None:
            return None
        current = _inner_model(field.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _inner_model(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


@dataclass
class _PodIntent:
    doc: int
    what: str
    name: str
    namespace: str
    labels: dict[str, str]
    node_name: Optional[str]
    owner: Optional[str]
    field: str


class _Resolver:
    """Validates documents, then turns intents into addresses."""

    def __init__(self, docs: list[tuple[int, Any]], overrides: Overrides):
        self.docs = docs
        self.overrides = overrides
        self.problems: list[Problem] = []

    def fail(self, doc: Optional[int], what: str, field: str, message: str) -> None:
        self.problems.append(Problem(doc, what, field, message))

    def resolve(self) -> Cluster:
        cluster_doc, intents = self._read_documents()
        if self.problems:
            raise SpecError(self.problems)
        cluster = self._resolve_cluster(cluster_doc)
        if self.problems:
            raise SpecError(self.problems)
        if self.overrides.pods_per_node is not None:
            intents = self._override_pods(cluster.nodes)
        pods = self._schedule(cluster, intents)
        if self.problems:
            raise SpecError(self.problems)
        return cluster.model_copy(update={"pods": pods})

    # -- documents
    def _read_documents(self) -> tuple[tuple[int, ClusterDoc], list[_PodIntent]]:
        cluster_doc: Optional[tuple[int, ClusterDoc]] = None
        intents: list[_PodIntent] = []
        for position, (index, raw) in enumerate(self.docs):
            if not isinstance(raw, dict):
                self.fail(index, "", "", f"a document must be a mapping with apiVersion and kind, "
                          f"not a {type(raw).__name__}")
                continue
            api, kind = raw.get("apiVersion"), raw.get("kind")
            name = raw.get("metadata", {}).get("name") if isinstance(raw.get("metadata"), dict) else None
            what = f"{kind} {name!r}" if name else str(kind or "")
            if not kind:
                self.fail(index, what, "kind", "required field is missing; allowed: Cluster, Pod, Deployment")
                continue
            if not api:
                self.fail(index, what, "apiVersion", "required field is missing")
                continue
            if kind in NOT_YET:
                self.fail(index, what, "kind", NOT_YET[kind])
                continue
            known = {k: a for a, k in KNOWN_KINDS}
            if kind not in known:
                self.fail(index, what, "kind", f"unknown kind {kind!r}; allowed: Cluster "
                          f"({CLUSTER_API}), Pod (v1), Deployment (apps/v1)")
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
                if parsed is not None:
                    cluster_doc = (index, parsed)
            elif kind == "Pod":
                pod = self._validate(index, what, PodDoc, raw)
                if pod is not None:
                    intents.append(_PodIntent(index, what, pod.metadata.name, pod.metadata.namespace,
                                              pod.metadata.labels, pod.spec.node_name, None,
                                              "spec.nodeName"))
            else:
                dep = self._validate(index, what, DeploymentDoc, raw)
                if dep is not None:
                    intents.extend(self._expand(index, what, dep))
        if cluster_doc is None:
            cluster_doc = (0, ClusterDoc(apiVersion=CLUSTER_API, kind="Cluster"))
        self._check_duplicates(intents)
        return cluster_doc, intents

    def _validate(self, index: int, what: str, model: type[_In], raw: dict) -> Any:
        try:
            return model.model_validate(raw)
        except ValidationError as exc:
            self.problems.extend(_pydantic_problems(index, what, exc, model, raw))
            return None

    def _expand(self, index: int, what: str, dep: DeploymentDoc) -> list[_PodIntent]:
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
        return [_PodIntent(index, what, f"{name}-{i}", dep.metadata.namespace, dict(labels),
                           dep.spec.template.spec.node_name, name,
                           "spec.template.spec.nodeName" if dep.spec.template.spec.node_name
                           else "spec.replicas")
                for i in range(dep.spec.replicas)]

    def _check_duplicates(self, intents: list[_PodIntent]) -> None:
        seen: dict[tuple[str, str], _PodIntent] = {}
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
        backend = self.overrides.backend or spec.backend
        if self.overrides.backend is not None:
            try:
                ClusterSpecIn._backend(backend)
            except ValueError as exc:
                self.fail(None, "command line", "--backend", str(exc))
        pod_cidr = self._network(index, what, "spec.podCIDR", spec.pod_cidr)
        under_cidr = self._network(index, what, "spec.underlay.cidr", spec.underlay.cidr)
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
        subnets = pod_cidr.subnets(new_prefix=spec.subnet_len)
        nodes = []
        for i, node_in in enumerate(node_ins):
            ip = under_cidr.network_address + NODE_IP_OFFSET + i
            nodes.append(Node(name=node_in.name, index=i, ip=ip, mac=mac_from_ip(ip, "02:00"),
                              pod_cidr=next(subnets), rack=node_in.rack))
        return Cluster(name=doc.metadata.name, backend=Backend(backend), pod_cidr=pod_cidr,
                       subnet_len=spec.subnet_len,
                       underlay=Underlay(type=UnderlayType(spec.underlay.type), cidr=under_cidr,
                                         mtu=spec.underlay.mtu),
                       nodes=tuple(nodes))

    def _node_list(self, spec: ClusterSpecIn) -> list[NodeIn]:
        if self.overrides.nodes is not None:
            if self.overrides.nodes < 1:
                self.fail(None, "command line", "--nodes", "must be at least 1")
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
        last_host = under_cidr.num_addresses - 2
        if NODE_IP_OFFSET + node_count - 1 > last_host:
            fits = max(0, last_host - NODE_IP_OFFSET + 1)
            self.fail(index, what, "spec.underlay.cidr", f"{under_cidr} has room for {fits} node IPs "
                      f"(they start at host .{NODE_IP_OFFSET}), {node_count} needed; use a larger range")

    # -- pods
    def _override_pods(self, nodes: tuple[Node, ...]) -> list[_PodIntent]:
        count = self.overrides.pods_per_node or 0
        if count < 0:
            self.fail(None, "command line", "--pods-per-node", "must be 0 or more")
            return []
        labels = {"app": "web"}
        return [_PodIntent(0, "command line", f"web-{i}", "default", labels, None, "web",
                           "--pods-per-node") for i in range(count * len(nodes))]

    def _schedule(self, cluster: Cluster, intents: list[_PodIntent]) -> tuple[Pod, ...]:
        node_names = {n.name: n for n in cluster.nodes}
        placed: dict[str, list[_PodIntent]] = {n.name: [] for n in cluster.nodes}
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
        node_names_taken = set(node_names)
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
                          owner=intent.owner)
                if pod.host_name in node_names_taken:
                    self.fail(intent.doc, intent.what, "metadata.name", f"{pod.host_name!r} is also "
                              "the name of a node; pod and node names must differ")
                pods.append(pod)
        order = {(i.namespace, i.name): n for n, i in enumerate(intents)}
        return tuple(sorted(pods, key=lambda p: order[(p.namespace, p.name)]))
