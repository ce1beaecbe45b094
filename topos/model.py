"""The resolved cluster model: every address, MAC and port decided, nothing left to chance.

The manifests (``topos.manifests``) say what the user wants; this module holds what
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

#: OpenFlow port numbers on every node bridge, declared once.
UPLINK_OFPORT = 1
FIRST_POD_OFPORT = 100
#: The name of the per-node OVS bridge (node IP lives on its LOCAL port).
BRIDGE_NAME = "br-k8s"
UPLINK_IFNAME = "uplink"


class Backend(str, Enum):
    """Pod network backends, named as Flannel names its ``Backend.Type``."""

    HOST_GW = "host-gw"


class UnderlayType(str, Enum):
    FLAT = "flat"


def mac_from_ip(ip: ipaddress.IPv4Address, prefix: str = "0a:58") -> str:
    """The CNI bridge plugin's convention: a fixed 2-byte prefix + the IPv4 bytes."""
    tail = ":".join(f"{b:02x}" for b in ip.packed)
    return f"{prefix}:{tail}"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Underlay(_Frozen):
    """The network the nodes' own IPs live on."""

    type: UnderlayType = UnderlayType.FLAT
    cidr: ipaddress.IPv4Network = ipaddress.IPv4Network("192.168.56.0/24")
    mtu: int = 1500


class Node(_Frozen):
    """A Kubernetes node: a network namespace with its own OVS bridge."""

    name: str
    index: int
    ip: ipaddress.IPv4Address
    mac: str
    pod_cidr: ipaddress.IPv4Network
    rack: Optional[str] = None

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

    @property
    def host_name(self) -> str:
        """The Mininet host name (what you type in the CLI): the pod name, plus
        ``.namespace`` outside ``default`` so names stay unique."""
        return self.name if self.namespace == "default" else f"{self.name}.{self.namespace}"

    @property
    def port_name(self) -> str:
        """The node-side veth name (kernel names are at most 15 bytes)."""
        return f"pod{self.ofport - FIRST_POD_OFPORT}"


class Cluster(_Frozen):
    """A fully resolved cluster."""

    name: str = "k8snet"
    backend: Backend = Backend.HOST_GW
    pod_cidr: ipaddress.IPv4Network = ipaddress.IPv4Network("10.244.0.0/16")
    subnet_len: int = 24
    underlay: Underlay = Underlay()
    nodes: tuple[Node, ...] = ()
    pods: tuple[Pod, ...] = ()

    @property
    def pod_mtu(self) -> int:
        """host-gw carries pod packets unencapsulated: the underlay MTU."""
        return self.underlay.mtu

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

    def pods_on(self, node: str) -> tuple[Pod, ...]:
        return tuple(p for p in self.pods if p.node == node)

    def peers_of(self, node: str) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.name != node)

    def summary(self) -> str:
        return (f"{len(self.nodes)} nodes, {len(self.pods)} pods, backend {self.backend.value}, "
                f"underlay {self.underlay.type.value} {self.underlay.cidr}, pod CIDR {self.pod_cidr}")
