"""Mininet host classes for what a cluster is made of: nodes, pods and the underlay.

* :class:`K8sNode` -- a Kubernetes node: a network namespace that runs its own
  ovsdb-server + ovs-vswitchd (userspace datapath).  Its bridge ``br-k8s`` holds the
  uplink to the underlay and one port per pod; the node IP lives on the bridge's LOCAL
  port, so the node's own kernel sits behind OVS exactly as a node's host network sits
  behind ``cni0`` and the routing table in Flannel.
* :class:`PodHost` -- a pod: ``eth0`` with the pod IP, default route via the node's pod
  gateway, TX checksum offload off (the userspace datapath does not fill in partial
  checksums: without this, ping works and TCP silently fails).
* :class:`Underlay` -- the flat L2 segment: a Linux bridge in a namespace of ours.

Commands run in a host's namespace through ``mnexec -a <pid>`` with a timeout and an
error check (Mininet's ``cmd()`` has neither).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from mininet.link import Intf
from mininet.node import Host

from k8snet.procs import run
from topos.model import BRIDGE_NAME, UPLINK_IFNAME, UPLINK_OFPORT, Cluster, Node, Pod
from topos.ovs import OvsInstance


class NsHost(Host):
    """A Mininet host with checked, time-limited command execution."""

    def ns(self, *args: str, timeout: float = 15, check: bool = True, input: str | None = None) -> str:
        return run(["mnexec", "-a", str(self.pid), *args], timeout=timeout, check=check,
                   input=input).stdout

    def ip_batch(self, commands: Sequence[str]) -> None:
        """Several ``ip`` commands in one process (``ip -batch``): fast and atomic-ish."""
        self.ns("ip", "-batch", "-", input="\n".join(commands) + "\n")

    def sysctl(self, **settings: str | int) -> None:
        args = [f"{k.replace('__', '.')}={v}" for k, v in settings.items()]
        self.ns("sysctl", "-q", "-w", *args)


class Underlay(NsHost):
    """One L2 segment for every node's uplink: a Linux bridge named ``fabric``."""

    BRIDGE = "fabric"

    def build(self, ports: Sequence[str], mtu: int) -> None:
        cmds = [f"link add {self.BRIDGE} type bridge stp_state 0 forward_delay 0",
                f"link set {self.BRIDGE} mtu {mtu} up", "link set lo up"]
        for port in ports:
            cmds += [f"link set {port} mtu {mtu} master {self.BRIDGE} up"]
        self.ip_batch(cmds)
        # No IPv6 autoconfiguration chatter on the segment: we measure what we send.
        self.sysctl(net__ipv6__conf__all__disable_ipv6=1)


class K8sNode(NsHost):
    """A Kubernetes node with its own Open vSwitch."""

    def __init__(self, name: str, **params):
        super().__init__(name, **params)
        self.ovs: OvsInstance | None = None
        self.model: Node | None = None

    def start_ovs(self, rundir: Path) -> OvsInstance:
        self.ovs = OvsInstance(rundir, ["mnexec", "-a", str(self.pid)])
        self.ovs.start()
        return self.ovs

    def build(self, cluster: Cluster, node: Node, controller_socket: str) -> None:
        """Bridge, ports, controller and addresses; the OVS must be running."""
        assert self.ovs is not None, "start_ovs() first"
        self.model = node
        mtu = cluster.underlay.mtu
        self.sysctl(net__ipv4__conf__all__arp_ignore=1, net__ipv4__conf__all__arp_announce=2,
                    net__ipv4__ip_forward=0, net__ipv6__conf__all__disable_ipv6=1,
                    net__ipv6__conf__default__disable_ipv6=1)
        pods = cluster.pods_on(node.name)
        self.ip_batch(["link set lo up", f"link set {UPLINK_IFNAME} mtu {mtu} up"]
                      + [f"link set {p.port_name} mtu {cluster.pod_mtu} up" for p in pods])
        # The controller socket must be inside the OVS rundir (vswitchd refuses others).
        link = self.ovs.dir / "controller.sock"
        if not link.exists():
            os.symlink(controller_socket, link)
        args = ["add-br", BRIDGE_NAME, "--", "set", "bridge", BRIDGE_NAME, "datapath_type=netdev",
                "fail-mode=secure", "protocols=OpenFlow13", f"other-config:hwaddr={node.mac}",
                f"other-config:datapath-id={node.dpid:016x}", "other-config:disable-in-band=true",
                "--", "add-port", BRIDGE_NAME, UPLINK_IFNAME,
                "--", "set", "interface", UPLINK_IFNAME, f"ofport_request={UPLINK_OFPORT}"]
        for pod in pods:
            args += ["--", "add-port", BRIDGE_NAME, pod.port_name,
                     "--", "set", "interface", pod.port_name, f"ofport_request={pod.ofport}"]
        args += ["--", "set-controller", BRIDGE_NAME, f"unix:{link}"]
        self.ovs.vsctl(*args, timeout=30)
        prefix = cluster.underlay.cidr.prefixlen
        self.ip_batch([f"link set {BRIDGE_NAME} mtu {mtu} up",
                       f"addr add {node.ip}/{prefix} dev {BRIDGE_NAME}",
                       # Like flannel's routes: the pod network is behind the pod gateway.
                       f"route add {cluster.pod_cidr} via {node.gateway_ip} dev {BRIDGE_NAME} onlink"])
        # Frames from the node's own stack cross the userspace datapath too.
        self.ns("ethtool", "-K", BRIDGE_NAME, "tx", "off")
        Intf(BRIDGE_NAME, node=self, port=0, moveIntfFn=lambda *a, **k: True).ip = str(node.ip)

    def IP(self, intf=None):  # noqa: N802 - Mininet's name; the CLI substitutes it
        return str(self.model.ip) if self.model and intf is None else super().IP(intf)

    def stop_ovs(self) -> None:
        if self.ovs is not None:
            self.ovs.stop()

    def terminate(self) -> None:
        self.stop_ovs()
        super().terminate()


class PodHost(NsHost):
    """A pod: one interface, ``eth0``, behind its node's OVS."""

    def __init__(self, name: str, **params):
        super().__init__(name, **params)
        self.model: Pod | None = None

    def build(self, cluster: Cluster, pod: Pod) -> None:
        self.model = pod
        node = cluster.node(pod.node)
        self.sysctl(net__ipv6__conf__all__disable_ipv6=1, net__ipv6__conf__default__disable_ipv6=1)
        self.ip_batch(["link set lo up",
                       f"link set eth0 address {pod.mac} mtu {cluster.pod_mtu} up",
                       f"addr add {pod.ip}/{node.pod_cidr.prefixlen} dev eth0",
                       f"route add default via {node.gateway_ip} dev eth0"])
        self.ns("ethtool", "-K", "eth0", "tx", "off")
        intf = self.intf("eth0")
        intf.ip, intf.prefixLen, intf.mac = str(pod.ip), node.pod_cidr.prefixlen, pod.mac

    def IP(self, intf=None):  # noqa: N802
        return str(self.model.ip) if self.model and intf is None else super().IP(intf)
