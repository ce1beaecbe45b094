"""The resolved cluster model: every address, MAC and port decided, nothing left to chance.

The manifests (:mod:`k8snet.model.manifests`) say what the user wants; this module holds what
the cluster *is* once that has been resolved: which node each pod landed on, which
IP and MAC it got, which OpenFlow port it plugs into.  The emulation builds exactly
this, and the controller compiles flows from exactly this (it receives it as JSON),
so both sides can never disagree about an address.

Everything is immutable (frozen pydantic models) so a model can be shared between
threads and compared for equality; a change at run time is a new model.

Addressing follows Flannel and kubeadm defaults:

* pod CIDR 10.244.0.0/16, one /24 (``subnetLen``) per node in node order,
  the node's pod gateway is the first address (``10.244.N.1``), pods get ``.2`` on;
* MACs are derived from IPs the way the CNI bridge plugin does (``0a:58`` + the
  four IPv4 bytes), so a MAC in a capture tells you the IP it belongs to;
* node (underlay) MACs are ``02:00`` + the node IP, locally administered.
"""

from __future__ import annotations

import ipaddress
from enum import Enum
from typing import Optional

from pydantic import BaseModel, ConfigDict
from pydantic_core import PydanticSerializationError

from k8snet.model.impairment import Impairment
from k8snet.model.policy import Namespace, NetworkPolicy

#: kube-apiserver's default Service CIDR; pods and nodes must stay out of it.
SERVICE_CIDR = ipaddress.IPv4Network("10.96.0.0/12")
#: OpenFlow port numbers on every node bridge, declared once.
UPLINK_OFPORT = 1
TUNNEL_OFPORT = 2
FIRST_POD_OFPORT = 100
TUNNEL_IFNAME = "vxlan0"
#: VXLAN adds 50 bytes (outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8): Flannel sets
#: the pod MTU to the underlay MTU minus this.
VXLAN_OVERHEAD = 50
#: The name of the per-node OVS bridge (node IP lives on its LOCAL port).
BRIDGE_NAME = "br-k8s"
UPLINK_IFNAME = "uplink"


class Backend(str, Enum):
    """Pod network backends, named as Flannel names its ``Backend.Type``
    (``directrouting`` is Flannel's VXLAN backend with ``DirectRouting: true``)."""

    HOST_GW = "host-gw"
    VXLAN = "vxlan"
    DIRECTROUTING = "directrouting"
    #: Calico-style routing: BGP daemons on nodes and rack gateways (k8snet/model/bgp.py).
    BGP = "bgp"


class UnderlayType(str, Enum):
    FLAT = "flat"
    ROUTED = "routed"


class RouteKind(str, Enum):
    """How one node reaches another node's pods."""

    LOCAL = "local"          # the same node
    DIRECT = "direct"        # host-gw: unencapsulated to the peer's MAC on a shared segment
    VXLAN = "vxlan"          # encapsulated to the peer's node IP
    ROUTED = "routed"        # bgp: unencapsulated to the rack gateway, which routes it on
    NONE = "none"            # no route: the backend cannot reach that node


class BgpRoute(BaseModel):
    """A route a node's BGP daemon installed (k8snet/model/bgp.py): ``prefix via via``."""

    model_config = ConfigDict(frozen=True)

    node: str
    prefix: ipaddress.IPv4Network
    via: ipaddress.IPv4Address


class Route(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: RouteKind
    reason: str = ""


def mac_from_ip(ip: ipaddress.IPv4Address, prefix: str = "0a:58") -> str:
    """The CNI bridge plugin's convention: a fixed 2-byte prefix + the IPv4 bytes."""
    tail = ":".join(f"{b:02x}" for b in ip.packed)
    return f"{prefix}:{tail}"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Rack(_Frozen):
    """One L2 segment of the underlay.  On a routed underlay each rack has its own
    subnet and an L3 gateway (a Linux router namespace) at ``gateway_ip``; a flat
    underlay is one segment, and rack names are only labels."""

    name: str
    index: int
    cidr: ipaddress.IPv4Network
    gateway_ip: Optional[ipaddress.IPv4Address] = None
    #: The gateway's address on its point-to-point link to the core router, and the core's.
    transit_ip: Optional[ipaddress.IPv4Address] = None
    core_ip: Optional[ipaddress.IPv4Address] = None

    @property
    def gateway_mac(self) -> Optional[str]:
        return mac_from_ip(self.gateway_ip, "02:00") if self.gateway_ip else None

    @property
    def host_name(self) -> str:
        return f"gw-{self.name}"


class ExternalHost(_Frozen):
    """A client outside the cluster, on the underlay: on a flat underlay it sits on the
    segment (and is the segment's way out); on a routed one it hangs off the core
    router.  It is what reaches NodePorts "from outside"."""

    name: str = "external"
    ip: ipaddress.IPv4Address
    cidr: ipaddress.IPv4Network
    #: routed: the core router's address on the external host's link (its default route)
    gateway_ip: Optional[ipaddress.IPv4Address] = None

    @property
    def mac(self) -> str:
        return mac_from_ip(self.ip, "02:00")


class Underlay(_Frozen):
    """The network the nodes' own IPs live on."""

    type: UnderlayType = UnderlayType.FLAT
    cidr: ipaddress.IPv4Network = ipaddress.IPv4Network("192.168.56.0/24")
    mtu: int = 1500
    #: Optional rate of every underlay link, Mbit/s (htb through Mininet's TCLink).
    bandwidth_mbit: Optional[float] = None
    #: Lossy links (k8snet.model.links): spec.underlay.loss and .impairments, or set at run time.
    impairments: tuple[Impairment, ...] = ()
    racks: tuple[Rack, ...] = ()
    external: Optional[ExternalHost] = None
    #: The emulated cloud load balancer, and the pool its Service VIPs come from.
    lb: Optional[ExternalHost] = None
    lb_pool: ipaddress.IPv4Network = ipaddress.IPv4Network("198.51.100.0/24")

    def outside_hosts(self) -> tuple[ExternalHost, ...]:
        return tuple(h for h in (self.external, self.lb) if h is not None)


class Node(_Frozen):
    """A Kubernetes node: a network namespace with its own OVS bridge."""

    name: str
    index: int
    ip: ipaddress.IPv4Address
    mac: str
    pod_cidr: ipaddress.IPv4Network
    rack: Optional[str] = None
    #: The underlay segment the node IP is on (its rack's subnet; the whole underlay if flat).
    subnet: ipaddress.IPv4Network = ipaddress.IPv4Network("192.168.56.0/24")
    #: False once its lease went unrenewed for the grace period (topos/lifecycle.py): its
    #: pods stop being endpoints, as the node lifecycle controller marks them NotReady.
    ready: bool = True

    @property
    def gateway_ip(self) -> ipaddress.IPv4Address:
        """The pod default gateway, like flannel's ``cni0`` address."""
        return self.pod_cidr.network_address + 1

    @property
    def gateway_mac(self) -> str:
        return mac_from_ip(self.gateway_ip)

    @property
    def dpid(self) -> int:
        """OpenFlow datapath id; index + 1 so that no bridge has dpid 0."""
        return self.index + 1


class ContainerPort(_Frozen):
    name: Optional[str] = None
    port: int
    protocol: str = "TCP"


class Pod(_Frozen):
    """A pod: one network namespace with one interface (``eth0``) on its node."""

    name: str
    namespace: str = "default"
    node: str
    ip: ipaddress.IPv4Address
    mac: str
    ofport: int
    labels: dict[str, str] = {}
    owner: Optional[str] = None
    #: Container ports, for Services whose targetPort is a name.
    ports: tuple[ContainerPort, ...] = ()
    #: Ready pods are Service endpoints; a pod can be marked not ready at run time.
    ready: bool = True

    def matches(self, selector: dict[str, str]) -> bool:
        return all(self.labels.get(k) == v for k, v in selector.items())

    def resolve_port(self, target: "int | str", protocol: str) -> Optional[int]:
        """A Service's targetPort on this pod (a named port the pod lacks: not an endpoint)."""
        if isinstance(target, int):
            return target
        for port in self.ports:
            if port.name == target and port.protocol == protocol:
                return port.port
        return None

    @property
    def host_name(self) -> str:
        """The Mininet host name (what you type in the CLI): the pod name, plus
        ``.namespace`` outside ``default`` so names stay unique."""
        return self.name if self.namespace == "default" else f"{self.name}.{self.namespace}"

    @property
    def port_name(self) -> str:
        """The node-side veth name (kernel names are at most 15 bytes)."""
        return f"pod{self.ofport - FIRST_POD_OFPORT}"


class ServicePort(_Frozen):
    name: Optional[str] = None
    protocol: str = "TCP"
    port: int
    target_port: "int | str"
    node_port: Optional[int] = None


class ServiceType(str, Enum):
    CLUSTER_IP = "ClusterIP"
    NODE_PORT = "NodePort"
    LOAD_BALANCER = "LoadBalancer"
    EXTERNAL_NAME = "ExternalName"


class Endpoint(_Frozen):
    pod: str
    node: str
    ip: ipaddress.IPv4Address
    port: int


class Service(_Frozen):
    """A Service as kube-proxy sees it.  ``cluster_ip`` is None for headless and
    ExternalName Services, which kube-proxy does not program."""

    name: str
    namespace: str = "default"
    type: ServiceType = ServiceType.CLUSTER_IP
    cluster_ip: Optional[ipaddress.IPv4Address] = None
    ports: tuple[ServicePort, ...] = ()
    selector: Optional[dict[str, str]] = None
    session_affinity: str = "None"
    affinity_timeout: int = 10800
    external_traffic_policy: str = "Cluster"
    internal_traffic_policy: str = "Cluster"
    external_name: Optional[str] = None
    #: type LoadBalancer: the external VIP the emulated cloud load balancer serves it on
    #: (what ``status.loadBalancer.ingress[0].ip`` would say).
    load_balancer_ip: Optional[ipaddress.IPv4Address] = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def proxied(self) -> bool:
        """kube-proxy programs a virtual IP for this Service."""
        return self.cluster_ip is not None


class Cluster(_Frozen):
    """A fully resolved cluster."""

    name: str = "k8snet"
    backend: Backend = Backend.HOST_GW
    #: Flannel's VXLAN defaults: VNI 1, UDP port 8472 (the kernel's historical port;
    #: 4789 is the IANA one).
    vni: int = 1
    vxlan_port: int = 8472
    #: backend bgp: the core's AS; rack i's is this + 1 + i (k8snet/model/bgp.py).
    bgp_as: int = 64512
    #: backend bgp: the routes the nodes' daemons installed, as their route watcher last
    #: saw them; None until observed (then BGP is taken as converged: ``k8snet flows``).
    bgp_routes: Optional[tuple[BgpRoute, ...]] = None
    #: backend bgp: the sessions not Established when the routes last changed ("a<->b").
    bgp_down: tuple[str, ...] = ()
    pod_cidr: ipaddress.IPv4Network = ipaddress.IPv4Network("10.244.0.0/16")
    subnet_len: int = 24
    underlay: Underlay = Underlay()
    nodes: tuple[Node, ...] = ()
    pods: tuple[Pod, ...] = ()
    services: tuple[Service, ...] = ()
    service_cidr: ipaddress.IPv4Network = SERVICE_CIDR
    #: Cluster DNS (topos.dns): the kube-dns pod and Service are in pods/services.
    dns: bool = False
    #: Namespaces declared by ``v1 Namespace`` documents (with their labels); one that
    #: only pods name exists too, with the automatic label alone (:meth:`namespace`).
    namespaces: tuple[Namespace, ...] = ()
    #: ``networking.k8s.io/v1`` NetworkPolicies, defaulted (:mod:`k8snet.model.policy`).
    policies: tuple[NetworkPolicy, ...] = ()
    #: kube-apiserver's --service-node-port-range (spec.serviceNodePortRange).
    node_port_range: tuple[int, int] = (30000, 32767)
    #: spec.datapath (topos.datapath): asked for (auto|tso|none, auto|netdev|system), then
    #: resolved for this machine before the cluster is built; the note says how.
    offload: str = "auto"
    datapath_type: str = "auto"
    #: spec.datapath.attach (topos.datapath): how pods and node uplinks meet their node's
    #: OVS, auto|veth|tap, resolved with the rest.
    attach: str = "auto"
    datapath_note: str = ""
    #: spec.access (k8snet/model/access.py): bridge, routed-veth, macvlan or ipvlan.
    access: str = "bridge"
    #: spec.nodeMonitorGracePeriod, seconds (kube-controller-manager's flag).
    node_monitor_grace: float = 2.0

    @property
    def encapsulates(self) -> bool:
        return self.backend in (Backend.VXLAN, Backend.DIRECTROUTING)

    @property
    def pod_mtu(self) -> int:
        """host-gw carries pod packets as they are: the underlay MTU.  With VXLAN
        (directrouting included, as in Flannel) pods get the underlay MTU minus 50."""
        return self.underlay.mtu - VXLAN_OVERHEAD if self.encapsulates else self.underlay.mtu

    def rack(self, name: str) -> Rack:
        for rack in self.underlay.racks:
            if rack.name == name:
                return rack
        raise KeyError(name)

    def route(self, src: "Node", dst: "Node") -> Route:
        """How ``src`` forwards to ``dst``'s pod CIDR under this backend.

        The one decision the flow compiler and the reachability checker share."""
        if src.name == dst.name:
            return Route(kind=RouteKind.LOCAL)
        same_segment = src.subnet == dst.subnet
        if self.backend is Backend.BGP:
            via = self.bgp_next_hop(src, dst.pod_cidr)
            if via is None:
                down = (f"BGP session{'s' if len(self.bgp_down) > 1 else ''} {', '.join(self.bgp_down)} down"
                        if self.bgp_down else "not learned, though every BGP session is up")
                return Route(kind=RouteKind.NONE, reason=f"no route to {dst.pod_cidr} on {src.name}: {down}")
            return Route(kind=RouteKind.DIRECT if via == dst.ip else RouteKind.ROUTED)
        if self.backend is Backend.VXLAN:
            return Route(kind=RouteKind.VXLAN)
        if same_segment:
            return Route(kind=RouteKind.DIRECT)
        if self.backend is Backend.DIRECTROUTING:
            return Route(kind=RouteKind.VXLAN)
        return Route(kind=RouteKind.NONE, reason=(
            f"host-gw needs {src.name} and {dst.name} on one L2 segment: {dst.name} ({dst.ip}) is "
            f"not on {src.name}'s subnet {src.subnet}, so there is no L2 next hop for {dst.pod_cidr}"))

    def bgp_next_hop(self, node: "Node", prefix: ipaddress.IPv4Network) -> Optional[ipaddress.IPv4Address]:
        """Where ``node`` sends ``prefix`` under BGP: what its daemon installed, or before any
        was observed, what BGP converges to -- the owner itself on a shared segment, else
        the rack gateway (k8snet/model/bgp.py)."""
        if self.bgp_routes is not None:
            return next((r.via for r in self.bgp_routes if r.node == node.name and r.prefix == prefix), None)
        owner = next((n for n in self.nodes if n.pod_cidr == prefix), None)
        if owner is None:
            return None
        if owner.subnet == node.subnet:
            return owner.ip
        return self.rack(node.rack).gateway_ip if node.rack and self.underlay.racks else None

    def underlay_mac(self, ip: ipaddress.IPv4Address) -> Optional[str]:
        """The MAC of a node or rack gateway by its underlay IP (a BGP next hop)."""
        return next((n.mac for n in self.nodes if n.ip == ip), None) or \
            next((r.gateway_mac for r in self.underlay.racks if r.gateway_ip == ip), None)

    def default_next_hop(self, node: "Node") -> Optional[str]:
        """Where a node sends what is for outside the cluster: its rack gateway on a
        routed underlay; the external host (the segment's way out) on a flat one."""
        if node.rack and self.underlay.racks:
            return self.rack(node.rack).gateway_mac
        return self.underlay.external.mac if self.underlay.external else None

    def underlay_next_hop(self, src: "Node", dst: "Node") -> str:
        """The MAC a packet from ``src`` to ``dst``'s node IP is sent to: the peer itself on
        a shared segment, else ``src``'s rack gateway."""
        if src.subnet == dst.subnet:
            return dst.mac
        gateway = self.rack(src.rack).gateway_mac if src.rack else None
        if gateway is None:
            raise ValueError(f"{src.name} and {dst.name} share no segment and there is no gateway")
        return gateway

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def node_by_dpid(self, dpid: int) -> Node:
        for node in self.nodes:
            if node.dpid == dpid:
                return node
        raise KeyError(dpid)

    def endpoints(self, service: Service, port: ServicePort) -> tuple[Endpoint, ...]:
        """Ready pods on Ready nodes in the Service's namespace matching its selector, with
        the targetPort resolved (kube's EndpointSlice controller, in one line)."""
        if service.selector is None:
            return ()
        out = []
        lost = {n.name for n in self.nodes if not n.ready}
        for pod in self.pods:
            if pod.namespace != service.namespace or not pod.ready or pod.node in lost \
                    or not pod.matches(service.selector):
                continue
            target = pod.resolve_port(port.target_port, port.protocol)
            if target is not None:
                out.append(Endpoint(pod=pod.host_name, node=pod.node, ip=pod.ip, port=target))
        return tuple(out)

    def service(self, name: str, namespace: str = "default") -> Service:
        for svc in self.services:
            if svc.name == name and svc.namespace == namespace:
                return svc
        raise KeyError(f"{namespace}/{name}")

    def namespace(self, name: str) -> Namespace:
        """A namespace as policies see it: declared, or implicit with its name label."""
        return next((n for n in self.namespaces if n.name == name), None) or Namespace.of(name)

    def all_namespaces(self) -> tuple[Namespace, ...]:
        """Declared namespaces, then those only pods (or ``default``) name, by name."""
        names = {"default"} | {p.namespace for p in self.pods} | {n.name for n in self.namespaces}
        return tuple(self.namespace(n) for n in sorted(names))

    def pod(self, name: str, namespace: str = "default") -> Pod:
        for pod in self.pods:
            if pod.name == name and pod.namespace == namespace:
                return pod
        raise KeyError(f"{namespace}/{name}")

    def with_pods(self, pods: "tuple[Pod, ...]") -> "Cluster":
        return self.model_copy(update={"pods": pods})

    def pods_on(self, node: str) -> tuple[Pod, ...]:
        return tuple(p for p in self.pods if p.node == node)

    def peers_of(self, node: str) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.name != node)

    def summary(self) -> str:
        racks = f" ({len(self.underlay.racks)} racks)" if self.underlay.type is UnderlayType.ROUTED else ""
        access = f", access {self.access}" if self.access != "bridge" else ""
        return (f"{len(self.nodes)} nodes, {len(self.pods)} pods, backend {self.backend.value}{access}, "
                f"underlay {self.underlay.type.value}{racks} {self.underlay.cidr}, pod CIDR {self.pod_cidr}"
                + (f", loss on {len({i.link for i in self.underlay.impairments})} links"
                   if self.underlay.impairments else ""))


def to_json(model: BaseModel, **kwargs: object) -> str:
    """``model.model_dump_json(**kwargs)``, with a Ctrl-C that lands during it raised as
    the KeyboardInterrupt it is: pydantic's serializer wraps any exception raised inside
    it, a signal handler's included, in PydanticSerializationError (CI saw ``k8snet check``
    end in that traceback instead of exit 130)."""
    try:
        return model.model_dump_json(**kwargs)  # type: ignore[arg-type]
    except PydanticSerializationError as exc:
        if "KeyboardInterrupt" in str(exc):
            raise KeyboardInterrupt(str(exc)) from None
        raise
