"""The input schema of a cluster spec: what each document may say, and the errors.

Pydantic models mirror the Kubernetes field names (camelCase aliases), forbid unknown
fields and carry the validators whose messages end up in front of the user, so they
say what is allowed.  Resolution into addresses is :mod:`k8snet.model.manifests`' job.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Optional, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from k8snet.model.cluster import Backend

#: Upper bounds that keep a typo (``replicas: 10000000``) from filling the machine.
MAX_NODES = 4096
MAX_PODS = 10_000

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
    replicas: int = Field(default=1, ge=0, le=MAX_PODS)
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


NO_DELAY = ("link delay needs the kernel's netem qdisc (or fq/ETF with timestamps), and this machine's "
            "kernel has none of them (CONFIG_NET_SCH_NETEM, _FQ and _ETF are not set); remove the field "
            "(loss and bandwidth are available)")


def one_of(what: str, *choices: str) -> AfterValidator:
    """A validator for a field that takes one of ``choices`` (each a name, maybe followed by
    `` (what it means)``); the message names them all, with their meanings."""
    names = {choice.split(" (")[0] for choice in choices}

    def check(v: str) -> str:
        if v not in names:
            raise ValueError(f"{v!r} is not {what}; allowed: {', '.join(choices)}")
        return v
    return AfterValidator(check)


class ImpairmentIn(_In):
    """``spec.underlay.impairments[]``: one lossy link (see k8snet/model/impairment.py)."""

    link: str
    loss: float = Field(ge=0, lt=100, description="percent of the frames dropped")
    direction: Annotated[str, one_of("a direction", "both", "egress (what the named host sends)",
                                     "ingress (what it receives)")] = "both"


class UnderlayIn(_In):
    """``flat``: one L2 segment for every node.  ``routed``: each rack its own subnet
    (a ``rackSubnetLen`` slice of ``cidr``) behind an L3 gateway, gateways joined by a
    core router.  ``loss`` (percent, every link, both directions) and ``impairments``
    (per link) are nftables drops (k8snet/model/links.py); delay is refused clearly."""

    type: Annotated[str, one_of("an underlay type", "flat", "routed")] = "flat"
    cidr: Optional[str] = None
    mtu: int = Field(default=1500, ge=1280, le=9000)
    racks: Optional[int] = Field(default=None, ge=1, le=63)
    rack_subnet_len: int = Field(default=24, ge=16, le=28)
    bandwidth: Optional[float] = Field(default=None, gt=0, le=100_000,
                                       description="Mbit/s on every underlay link")
    delay: Any = None
    loss: Optional[float] = Field(default=None, ge=0, lt=100,
                                  description="percent of the frames dropped on every underlay link, each way")
    impairments: list[ImpairmentIn] = []

    @field_validator("delay")
    @classmethod
    def _delay(cls, v: Any) -> Any:
        if v is not None:
            raise ValueError(NO_DELAY)
        return v


BACKENDS = [b.value for b in Backend]


def check_backend(v: str) -> str:
    if v not in BACKENDS:
        raise ValueError(f"{v!r} is not a backend; allowed: {', '.join(BACKENDS)}")
    return v


class BackendIn(_In):
    """Flannel's backend block: ``{Type, VNI, Port, DirectRouting}`` in k8s spelling."""

    type: Annotated[str, AfterValidator(check_backend)]
    vni: int = Field(default=1, ge=1, le=16_777_215, alias="vni")
    port: int = Field(default=8472, ge=1, le=65535)
    direct_routing: bool = False
    #: backend bgp: the core's AS number (racks take the next ones; k8snet/model/bgp.py).
    as_number: Optional[int] = None


class DatapathIn(_In):
    """``spec.datapath``: see topos/datapath.py."""

    offload: Annotated[str, one_of("an offload setting", "auto", "tso", "none")] = "auto"
    type: Annotated[str, one_of("a datapath type", "auto", "netdev (userspace)", "system (kernel module)")] = "auto"
    attach: Annotated[str, one_of("an attachment", "auto", "veth (a veth pair, its node end an OVS port)",
                                  "tap (an OVS tap port moved into the pod's or the underlay's namespace)")] = "auto"


class ClusterSpecIn(_In):
    nodes: Union[int, list[NodeIn]] = 3
    pod_cidr: str = Field(default="10.244.0.0/16", alias="podCIDR")
    subnet_len: int = Field(default=24, ge=8, le=30)
    backend: Union[Annotated[str, AfterValidator(check_backend)], BackendIn] = "host-gw"
    underlay: UnderlayIn = UnderlayIn()
    #: Cluster DNS: a kube-dns pod on 10.96.0.10 and every pod's resolv.conf pointing at it.
    dns: bool = False
    #: kube-apiserver's --service-node-port-range, e.g. "30000-32767" (the default).
    service_node_port_range: str = Field(default="30000-32767", alias="serviceNodePortRange")
    datapath: DatapathIn = DatapathIn()
    #: How pods meet their node (k8snet/model/access.py).
    access: Annotated[str, one_of("an access mode", "bridge (a veth into the node's switch, as Flannel's cni0)",
                                  "routed-veth (Calico's: a /32 and a link-local gateway, every packet routed)",
                                  "macvlan (children of the node's uplink)",
                                  "ipvlan (children of the node's uplink, one MAC)")] = "bridge"
    #: kube-controller-manager's --node-monitor-grace-period, in seconds: a node whose
    #: lease is not renewed for this long is NotReady (topos/lifecycle.py).  Kubernetes'
    #: default is 40 s (50 s from 1.32); 2 s here, so that an experiment sees it happen.
    node_monitor_grace_period: float = Field(default=2.0, ge=0.2, le=600, alias="nodeMonitorGracePeriod")

    @field_validator("service_node_port_range")
    @classmethod
    def _port_range(cls, v: str) -> str:
        parse_port_range(v)
        return v

    @field_validator("nodes")
    @classmethod
    def _nodes(cls, v: Union[int, list[NodeIn]]) -> Union[int, list[NodeIn]]:
        count = v if isinstance(v, int) else len(v)
        if count < 1:
            raise ValueError("a cluster needs at least 1 node")
        if count > MAX_NODES:
            raise ValueError(f"{count} nodes: k8snet emulates at most {MAX_NODES} (each is a namespace with its "
                             "own Open vSwitch)")
        return v

    def backend_config(self) -> BackendIn:
        if isinstance(self.backend, str):
            return BackendIn(type=self.backend)
        if self.backend.direct_routing and self.backend.type == "vxlan":
            return self.backend.model_copy(update={"type": "directrouting"})
        return self.backend


class ClusterMetadata(_In):
    name: Label = "k8snet"
    labels: Labels = {}
    annotations: dict[str, str] = {}


class ClusterDoc(_In):
    api_version: str
    kind: str
    metadata: ClusterMetadata = ClusterMetadata()
    spec: ClusterSpecIn = ClusterSpecIn()




# --------------------------------------------------------------------------- Services
SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")
NODE_PORT_RANGE = (30000, 32767)


def parse_port_range(text: str) -> tuple[int, int]:
    """``"30000-32767"`` -> (30000, 32767), as kube-apiserver's --service-node-port-range."""
    try:
        low, high = (int(x) for x in str(text).split("-"))
    except ValueError:
        raise ValueError(f"{text!r} is not a port range; write it as LOW-HIGH, e.g. 30000-32767") from None
    if not 1 <= low < high <= 65535:
        raise ValueError(f"{text!r}: need 1 <= LOW < HIGH <= 65535, e.g. 30000-32767")
    return low, high
MAX_AFFINITY_SECONDS = 86400


def _one_of(allowed: tuple[str, ...]):
    def check(v: str) -> str:
        if v not in allowed:
            raise ValueError(f"{v!r} is not allowed; allowed: {', '.join(allowed)}")
        return v
    return AfterValidator(check)


class ServicePortIn(_In):
    name: Optional[Annotated[str, AfterValidator(dns1123_label)]] = None
    protocol: Annotated[str, _one_of(("TCP", "UDP"))] = "TCP"
    port: int = Field(ge=1, le=65535)
    target_port: Optional[Union[int, str]] = None
    node_port: Optional[int] = None

    @field_validator("target_port")
    @classmethod
    def _target(cls, v: Union[int, str, None]) -> Union[int, str, None]:
        if isinstance(v, int) and not 1 <= v <= 65535:
            raise ValueError(f"{v} is not a port; use 1-65535 or the name of a container port")
        if isinstance(v, str):
            dns1123_label(v)
        return v

    @field_validator("node_port")
    @classmethod
    def _node_port(cls, v: Optional[int]) -> Optional[int]:
        # The range itself is the cluster's (spec.serviceNodePortRange), checked with it.
        if v is not None and not 1 <= v <= 65535:
            raise ValueError(f"{v} is not a port (1-65535)")
        return v


class ClientIPConfig(_In):
    timeout_seconds: int = Field(default=10800, ge=1, le=MAX_AFFINITY_SECONDS)


class AffinityConfigIn(_In):
    client_ip: ClientIPConfig = Field(default=ClientIPConfig(), alias="clientIP")


class ServiceSpecIn(_In):
    type: Annotated[str, _one_of(SERVICE_TYPES)] = "ClusterIP"
    cluster_ip: Optional[str] = Field(default=None, alias="clusterIP")
    ports: list[ServicePortIn] = []
    selector: Optional[dict[str, str]] = None
    session_affinity: Annotated[str, _one_of(("None", "ClientIP"))] = "None"
    session_affinity_config: Optional[AffinityConfigIn] = None
    external_traffic_policy: Optional[Annotated[str, _one_of(("Cluster", "Local"))]] = None
    internal_traffic_policy: Annotated[str, _one_of(("Cluster", "Local"))] = "Cluster"
    external_name: Optional[str] = None


class ServiceDoc(_In):
    api_version: str
    kind: str
    metadata: Metadata
    spec: ServiceSpecIn = ServiceSpecIn()
