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
* :class:`RackGateway` -- one rack of a routed underlay: the rack's L2 segment (a Linux
  bridge) with the gateway address on it, routing to the core; it knows node subnets
  and nothing about pod CIDRs, like a real top-of-rack router.
* :class:`CoreRouter` -- joins the rack gateways with point-to-point links.

Commands run in a host's namespace through ``mnexec -a <pid>`` with a timeout and an
error check (Mininet's ``cmd()`` has neither).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from mininet.link import Intf
from mininet.node import Host

from k8snet.procs import CommandError, run
from k8snet.model.cluster import (
    BRIDGE_NAME, TUNNEL_IFNAME, TUNNEL_OFPORT, UPLINK_IFNAME, UPLINK_OFPORT, Cluster, ExternalHost, Node, Pod,
    Rack,
)
from k8snet.model.links import EXTERNAL_CORE_IFNAME, LB_CORE_IFNAME
from k8snet.model.access import pod_routes
from topos.ovs import OvsInstance
from topos.attach import on_switch, pods_tapped, port_type, uplinks_tapped


class NsHost(Host):
    """A Mininet host with checked, time-limited command execution."""

    def ns(self, *args: str, timeout: float = 15, check: bool = True, input: str | None = None) -> str:
        return run(["mnexec", "-a", str(self.pid), *args], timeout=timeout, check=check,
                   input=input).stdout

    def ip_batch(self, commands: Sequence[str]) -> None:
        """Several ``ip`` commands in one process (``ip -batch``): fast and atomic-ish."""
        self.ns("ip", "-batch", "-", input="\n".join(commands) + "\n")

    def enslaving(self, ports: Sequence[str], mtu: int, up: bool = True) -> list[str]:
        """The ``ip -batch`` lines that put ``ports`` on this host's bridge (``BRIDGE``): an
        uplink tap handed over after the bridge was built (topos/attach.py)."""
        bridge = getattr(self, "BRIDGE")
        return [f"link set {p} mtu {mtu} master {bridge}{' up' if up else ''}" for p in ports]

    def sysctl(self, **settings: str | int) -> None:
        args = [f"{k.replace('__', '.')}={v}" for k, v in settings.items()]
        self.ns("sysctl", "-q", "-w", *args)

    def shape(self, iface: str, mbit: float) -> None:
        """Limit what ``iface`` sends to ``mbit`` Mbit/s with an htb class (what Mininet's
        TCLink does, minus its r2q warnings: the quantum is set to one full frame)."""
        rate = f"{mbit:g}mbit"
        self.ns("tc", "qdisc", "replace", "dev", iface, "root", "handle", "1:", "htb", "default", "1")
        self.ns("tc", "class", "replace", "dev", iface, "parent", "1:", "classid", "1:1", "htb",
                "rate", rate, "ceil", rate, "burst", "64k", "cburst", "64k", "quantum", "9100")


class Underlay(NsHost):
    """One L2 segment for every node's uplink: a Linux bridge named ``fabric``."""

    BRIDGE = "fabric"

    def build(self, ports: Sequence[str], mtu: int, bandwidth: float | None = None) -> None:
        """``ports``: node uplinks (shaped when ``bandwidth`` is set) and the external client."""
        cmds = [f"link add {self.BRIDGE} type bridge stp_state 0 forward_delay 0",
                f"link set {self.BRIDGE} mtu {mtu} up", "link set lo up"]
        for port in ports:
            cmds += [f"link set {port} mtu {mtu} master {self.BRIDGE} up"]
        self.ip_batch(cmds)
        if bandwidth:
            for port in ports:
                self.shape(port, bandwidth)
        # No IPv6 autoconfiguration chatter on the segment: we measure what we send.
        self.sysctl(net__ipv6__conf__all__disable_ipv6=1)


class RackGateway(NsHost):
    """A rack's top-of-rack router: segment bridge + gateway IP, default route to the core."""

    BRIDGE = "segment"
    CORE_IFNAME = "core"

    def build(self, rack: Rack, ports: Sequence[str], mtu: int, bandwidth: float | None = None) -> None:
        assert rack.gateway_ip and rack.transit_ip and rack.core_ip
        cmds = ["link set lo up",
                f"link add {self.BRIDGE} address {rack.gateway_mac} type bridge stp_state 0 forward_delay 0",
                f"link set {self.BRIDGE} mtu {mtu} up",
                f"addr add {rack.gateway_ip}/{rack.cidr.prefixlen} dev {self.BRIDGE}",
                f"link set {self.CORE_IFNAME} mtu {mtu} up",
                f"addr add {rack.transit_ip}/30 dev {self.CORE_IFNAME}",
                f"route add default via {rack.core_ip} dev {self.CORE_IFNAME}"]
        cmds += [f"link set {port} mtu {mtu} master {self.BRIDGE} up" for port in ports]
        self.ip_batch(cmds)
        self.sysctl(net__ipv4__ip_forward=1, net__ipv4__conf__all__rp_filter=0,
                    net__ipv4__conf__default__rp_filter=0, net__ipv4__conf__all__send_redirects=0,
                    net__ipv6__conf__all__disable_ipv6=1)
        if bandwidth:
            for port in [*ports, self.CORE_IFNAME]:
                self.shape(port, bandwidth)


class CoreRouter(NsHost):
    """The core: a /30 to each rack gateway and a route to each rack subnet through it."""

    EXTERNAL_IFNAME = EXTERNAL_CORE_IFNAME
    LB_IFNAME = LB_CORE_IFNAME

    @classmethod
    def routes(cls, racks: Sequence[Rack], lb: ExternalHost | None = None, lb_pool: str | None = None) -> list[str]:
        """Its static routes (``ip -batch`` lines): each rack's subnet via its gateway, and
        the load balancer's pool via the load balancer.  Also what a link brought back up
        needs again (:mod:`topos.faults`): the kernel drops a route with its interface."""
        out = [f"route replace {rack.cidr} via {rack.transit_ip} dev r{rack.index}" for rack in racks]
        if lb is not None and lb_pool:
            out.append(f"route replace {lb_pool} via {lb.ip} dev {cls.LB_IFNAME}")
        return out

    def build(self, racks: Sequence[Rack], mtu: int, bandwidth: float | None = None,
              external: ExternalHost | None = None, lb: ExternalHost | None = None,
              lb_pool: str | None = None) -> None:
        cmds = ["link set lo up"]
        for host, ifname in ((external, self.EXTERNAL_IFNAME), (lb, self.LB_IFNAME)):
            if host is not None and host.gateway_ip:
                cmds += [f"link set {ifname} mtu {mtu} up",
                         f"addr add {host.gateway_ip}/{host.cidr.prefixlen} dev {ifname}"]
        for rack in racks:
            cmds += [f"link set r{rack.index} mtu {mtu} up", f"addr add {rack.core_ip}/30 dev r{rack.index}"]
        self.ip_batch(cmds + self.routes(racks, lb, lb_pool))
        self.sysctl(net__ipv4__ip_forward=1, net__ipv4__conf__all__rp_filter=0,
                    net__ipv4__conf__default__rp_filter=0, net__ipv6__conf__all__disable_ipv6=1)
        if bandwidth:
            for rack in racks:
                self.shape(f"r{rack.index}", bandwidth)


class ExternalClient(NsHost):
    """A host outside the cluster on the underlay (see :class:`k8snet.model.cluster.ExternalHost`)."""

    def build(self, host: ExternalHost, mtu: int, offload: str = "none") -> None:
        cmds = ["link set lo up", f"link set eth0 address {host.mac} mtu {mtu} up",
                f"addr add {host.ip}/{host.cidr.prefixlen} dev eth0"]
        if host.gateway_ip:
            cmds.append(f"route add default via {host.gateway_ip} dev eth0")
        self.ip_batch(cmds)
        self.sysctl(net__ipv6__conf__all__disable_ipv6=1)
        if offload != "tso":
            # Its TCP reaches the nodes' userspace conntrack, which rejects partial checksums
            # unless OVS reads them as such (userspace TSO: see topos/datapath.py).
            self.ns("ethtool", "-K", "eth0", "tx", "off")


class LoadBalancerHost(ExternalClient):
    """The emulated cloud load balancer: kernel nftables, not a Python proxy.

    Each LoadBalancer Service's VIP (from ``underlay.lb_pool``) is routed to this host;
    ``prerouting`` DNATs a new connection to a random node's IP:nodePort (``numgen
    random``), ``postrouting`` masquerades it so the reply comes back here to be
    un-NATed.  With externalTrafficPolicy Local only nodes that have an endpoint are
    targets, as a cloud load balancer's health check would leave them."""

    TABLE = "k8snet_lb"

    def build(self, host: ExternalHost, mtu: int, offload: str = "none") -> None:
        super().build(host, mtu, offload)
        self.sysctl(net__ipv4__ip_forward=1, net__ipv4__conf__all__rp_filter=0,
                    net__ipv4__conf__default__rp_filter=0)

    @staticmethod
    def ruleset(targets: dict[tuple[str, int, str], tuple[list[str], int]]) -> str:
        """``targets``: (VIP, port, tcp|udp) -> (node IPs, nodePort)."""
        rules = []
        for (vip, port, proto), (nodes, node_port) in sorted(targets.items()):
            if not nodes:
                rules.append(f"    ip daddr {vip} {proto} dport {port} drop")
            elif len(nodes) == 1:
                rules.append(f"    ip daddr {vip} {proto} dport {port} dnat to {nodes[0]}:{node_port}")
            else:
                pick = ", ".join(f"{i} : {ip}" for i, ip in enumerate(nodes))
                rules.append(f"    ip daddr {vip} {proto} dport {port} dnat to numgen random mod {len(nodes)} "
                             f"map {{ {pick} }} : {node_port}")
        body = "\n".join(rules)
        return (f"table ip {LoadBalancerHost.TABLE}\ndelete table ip {LoadBalancerHost.TABLE}\n"
                f"table ip {LoadBalancerHost.TABLE} {{\n  chain prerouting {{\n"
                f"    type nat hook prerouting priority dstnat;\n{body}\n  }}\n"
                f"  chain postrouting {{\n    type nat hook postrouting priority srcnat;\n"
                f"    ct status dnat masquerade\n  }}\n}}\n")

    def program(self, targets: dict[tuple[str, int, str], tuple[list[str], int]]) -> None:
        """Replace the whole table in one transaction (``nft -f``), then forget the UDP
        flows that went to a node that is no longer a target (its health check failed:
        externalTrafficPolicy Local and its last endpoint gone), so their next datagram
        is balanced afresh instead of following the kernel's conntrack entry to it.  TCP
        connections are left to end on their own, as the nodes' kube-proxy leaves them."""
        self.ns("nft", "-f", "-", input=self.ruleset(targets))
        before, self.targets = getattr(self, "targets", {}), dict(targets)
        for (vip, port, proto), (nodes, _) in sorted(before.items()):
            if proto != "udp":
                continue
            kept = set(targets.get((vip, port, proto), ([], 0))[0])
            for node_ip in sorted(set(nodes) - kept):
                args = ["mnexec", "-a", str(self.pid), "conntrack", "-D", "-p", "udp", "--orig-dst", vip,
                        "--orig-port-dst", str(port), "--reply-src", node_ip]
                result = run(args, check=False, timeout=10)
                if result.returncode not in (0, 1):  # 1: "0 flow entries have been deleted"
                    raise CommandError(f"exit {result.returncode}: {' '.join(args)}\n{result.stderr.strip()}")


def lb_targets(cluster: Cluster) -> dict[tuple[str, int, str], tuple[list[str], int]]:
    """What the load balancer forwards where, from the model."""
    out = {}
    for service in cluster.services:
        if service.load_balancer_ip is None:
            continue
        for port in service.ports:
            if port.node_port is None:
                continue
            # A node lost to the control plane fails the load balancer's health check too
            # (kube-proxy's healthz; k8s >= 1.27 leaves NotReady nodes to those checks).
            nodes = [n for n in cluster.nodes if n.ready]
            if service.external_traffic_policy == "Local":
                with_endpoints = {e.node for e in cluster.endpoints(service, port)}
                nodes = [n for n in nodes if n.name in with_endpoints]
            out[(str(service.load_balancer_ip), port.port, port.protocol.lower())] = \
                ([str(n.ip) for n in nodes], port.node_port)
    return out


#: Policy routing for a node's connections to its own NodePorts (see K8sNode.build).
#: The passive OpenFlow socket each node's bridge listens on for the controller (vswitchd
#: only creates ``punix:`` sockets named ``RUNDIR/BRIDGE.*``).
SWITCH_SOCKET = f"{BRIDGE_NAME}.controller"
NODEPORT_TABLE = 100
NODEPORT_RULE_PREF = 50
LOCAL_RULE_PREF = 100


class K8sNode(NsHost):
    """A Kubernetes node with its own Open vSwitch."""

    def __init__(self, name: str, **params):
        super().__init__(name, **params)
        self.ovs: OvsInstance | None = None
        self.model: Node | None = None

    def start_ovs(self, rundir: Path, cluster: Cluster) -> OvsInstance:
        """This node's OVS; userspace TSO on when the run's offload setting is tso."""
        self.ovs = OvsInstance(rundir, ["mnexec", "-a", str(self.pid)])
        tso = cluster.offload == "tso" and cluster.datapath_type == "netdev"
        self.ovs.start(OvsInstance.TSO if tso else None)
        return self.ovs

    def build(self, cluster: Cluster, node: Node) -> None:
        """Bridge, ports, controller and addresses; the OVS must be running.  The bridge
        listens for its controller on ``SWITCH_SOCKET`` in the OVS rundir (where vswitchd
        allows Unix sockets); the controller dials it (controllers/dialer.py says why)."""
        assert self.ovs is not None, "start_ovs() first"
        self.model = node
        mtu = cluster.underlay.mtu
        self.sysctl(net__ipv4__conf__all__arp_ignore=1, net__ipv4__conf__all__arp_announce=2,
                    net__ipv4__ip_forward=0, net__ipv6__conf__all__disable_ipv6=1,
                    net__ipv6__conf__default__disable_ipv6=1)
        pods = cluster.pods_on(node.name) if on_switch(cluster) else []  # (macvlan: no pod ports)
        # Veth ends are here already; taps are made by vswitchd below and handed over.
        tap_pods, tap_uplink = pods_tapped(cluster), uplinks_tapped(cluster)
        self.ip_batch(["link set lo up"] + ([] if tap_uplink else [f"link set {UPLINK_IFNAME} mtu {mtu} up"])
                      + ([] if tap_pods else [f"link set {p.port_name} mtu {cluster.pod_mtu} up" for p in pods]))
        args = ["add-br", BRIDGE_NAME, "--", "set", "bridge", BRIDGE_NAME, f"datapath_type={cluster.datapath_type}",
                "fail-mode=secure", "protocols=OpenFlow13", f"other-config:hwaddr={node.mac}",
                f"other-config:datapath-id={node.dpid:016x}", "other-config:disable-in-band=true",
                "--", "add-port", BRIDGE_NAME, UPLINK_IFNAME,
                "--", "set", "interface", UPLINK_IFNAME, f"ofport_request={UPLINK_OFPORT}", *port_type(tap_uplink)]
        if cluster.encapsulates:
            # One flow-based VXLAN port: the controller picks the remote end per flow.
            args += ["--", "add-port", BRIDGE_NAME, TUNNEL_IFNAME, "--", "set", "interface", TUNNEL_IFNAME,
                     "type=vxlan", "options:remote_ip=flow", "options:key=flow",
                     f"options:dst_port={cluster.vxlan_port}", f"ofport_request={TUNNEL_OFPORT}"]
        for pod in pods:
            args += ["--", "add-port", BRIDGE_NAME, pod.port_name,
                     "--", "set", "interface", pod.port_name, f"ofport_request={pod.ofport}", *port_type(tap_pods)]
        args += ["--", "set-controller", BRIDGE_NAME, f"punix:{self.ovs.dir / SWITCH_SOCKET}"]
        if cluster.underlay.bandwidth_mbit:
            # OVS replaces the qdisc of ports it manages unless told to leave it alone.
            args += ["--", "set", "port", UPLINK_IFNAME, "qos=@noop",
                     "--", "--id=@noop", "create", "qos", "type=linux-noop"]
        self.ovs.vsctl(*args, timeout=30)
        # The node's own connections to its own NodePorts: the kernel would deliver them
        # locally (kube-proxy catches them in iptables' OUTPUT chain); policy routing sends
        # them through the bridge instead, where the NodePort flows take them.
        self.ip_batch([f"rule add pref {NODEPORT_RULE_PREF} iif lo to {node.ip}/32 ipproto {proto} "
                       f"dport {cluster.node_port_range[0]}-{cluster.node_port_range[1]} lookup {NODEPORT_TABLE}"
                       for proto in ("tcp", "udp")]
                      + [f"rule add pref {LOCAL_RULE_PREF} lookup local", "rule del pref 0 lookup local"])
        self.plumb(cluster, node)
        if cluster.underlay.bandwidth_mbit:
            self.shape(UPLINK_IFNAME, cluster.underlay.bandwidth_mbit)
        self.publish_subnet_env(cluster, node)
        Intf(BRIDGE_NAME, node=self, port=0, moveIntfFn=lambda *a, **k: True).ip = str(node.ip)

    def plumb(self, cluster: Cluster, node: Node) -> None:
        """What lives on the bridge's LOCAL port -- a tap device the userspace datapath's
        ``ovs-vswitchd`` creates, and takes with it when it exits: the node IP, its
        routes, and the switch's runtime settings.  Run at build, and again when a
        vswitchd comes back after a crash (:mod:`topos.faults`): hence ``replace``, as
        whatever of it survived the crash may still be there."""
        assert self.ovs is not None
        mtu = cluster.underlay.mtu
        if cluster.datapath_type == "netdev":
            # The userspace reassembler takes a fragment other than the last as invalid below
            # 1,200 bytes by default; a router (or k8snet's controller, on VXLAN) may make
            # smaller ones, which a Linux node would take.  400 is OVS's lowest setting.
            self.ovs.appctl("dpctl/ipf-set-min-frag", "v4", "400")
        # With VXLAN the pod network's MTU is the underlay's minus 50, as on flannel.1: the
        # node's kernel fragments (or answers "fragmentation needed") for it, as Flannel's would.
        route_mtu = f" mtu {cluster.pod_mtu}" if cluster.pod_mtu < mtu else ""
        cmds = [f"link set {BRIDGE_NAME} mtu {mtu} up",
                f"addr replace {node.ip}/{node.subnet.prefixlen} dev {BRIDGE_NAME}",
                # Like flannel's routes: the pod network is behind the pod gateway.
                f"route replace {cluster.pod_cidr} via {node.gateway_ip} dev {BRIDGE_NAME} onlink{route_mtu}",
                # ClusterIPs are reached through the node's OVS too, as through kube-proxy's rules.
                f"route replace {cluster.service_cidr} via {node.gateway_ip} dev {BRIDGE_NAME} onlink{route_mtu}"]
        if node.rack and cluster.underlay.racks:
            cmds.append(f"route replace default via {cluster.rack(node.rack).gateway_ip} dev {BRIDGE_NAME}")
        # (The NodePort policy route, see build.)
        cmds += [f"route replace {node.ip}/32 via {node.gateway_ip} dev {BRIDGE_NAME} onlink table {NODEPORT_TABLE}"]
        self.ip_batch(cmds)
        # ...and the replies, which come back with the node's own IP as source.
        self.ns("sysctl", "-q", "-w", f"net.ipv4.conf.{BRIDGE_NAME}.accept_local=1")
        if cluster.encapsulates:
            self.seed_tunnel_neighbours(cluster, node)
        # Frames from the node's own stack cross the userspace datapath too.
        self.ns("ethtool", "-K", BRIDGE_NAME, "tx", "off")

    def seed_tunnel_neighbours(self, cluster: Cluster, node: Node) -> None:
        """Tell OVS the MAC of every underlay next hop a tunnel will use.

        OVS's userspace tunnelling drops the first packet to a next hop it has not
        resolved yet (it sends an ARP and forgets the packet); the kernel path Flannel
        uses queues it instead.  The MACs are known from the model, so seed them, as
        Flannel seeds its permanent neighbour entries.  Entries age like learned ones
        and are refreshed by ARP snooping."""
        assert self.ovs is not None
        hops: dict[str, str] = {}
        for peer in cluster.peers_of(node.name):
            if cluster.route(node, peer).kind.value != "vxlan":
                continue
            if peer.subnet == node.subnet:
                hops[str(peer.ip)] = peer.mac
            else:
                rack = cluster.rack(node.rack)
                hops[str(rack.gateway_ip)] = rack.gateway_mac
        for ip, mac in hops.items():
            self.ovs.appctl("tnl/neigh/set", BRIDGE_NAME, ip, mac)

    def publish_subnet_env(self, cluster: Cluster, node: Node) -> None:
        """Write ``/run/flannel/subnet.env`` inside the node, as flanneld does; the CNI
        plugin reads the pod MTU from it.  The node gets its own tmpfs on ``/run`` (its
        shell already has a private mount namespace), so nothing appears on the host;
        a copy stays in the node's run directory for reading from outside."""
        text = (f"FLANNEL_NETWORK={cluster.pod_cidr}\nFLANNEL_SUBNET={node.gateway_ip}/{node.pod_cidr.prefixlen}\n"
                f"FLANNEL_MTU={cluster.pod_mtu}\nFLANNEL_IPMASQ=false\n")
        assert self.ovs is not None
        (self.ovs.dir / "subnet.env").write_text(text)
        self.ns("mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "k8snet-run", "/run")
        self.ns("mkdir", "-p", "/run/flannel")
        self.ns("tee", "/run/flannel/subnet.env", input=text)

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
        """Addresses, route, MAC and MTU of ``eth0``: a veth end, or the tap its node's
        vswitchd made and handed over (topos/attach.py) -- again after that vswitchd was
        restarted, hence ``replace``."""
        self.model = pod
        node = cluster.node(pod.node)
        self.sysctl(net__ipv6__conf__all__disable_ipv6=1, net__ipv6__conf__default__disable_ipv6=1)
        self.ip_batch(["link set lo up", f"link set eth0 address {pod.mac} mtu {cluster.pod_mtu} up",
                       *pod_routes(cluster.access, str(pod.ip), node.pod_cidr.prefixlen, str(node.gateway_ip),
                                   str(cluster.pod_cidr), str(node.subnet))])
        if cluster.offload != "tso":
            # offload none: the userspace datapath's conntrack rejects the partial checksums
            # of TX checksum offload; with userspace TSO OVS reads the virtio-net header and
            # knows they are partial, so pods keep their offloads (topos/datapath.py).
            self.ns("ethtool", "-K", "eth0", "tx", "off")
        intf = self.nameToIntf.get("eth0") or Intf("eth0", node=self, port=0, moveIntfFn=lambda *a, **k: True)
        intf.ip, intf.prefixLen, intf.mac = str(pod.ip), node.pod_cidr.prefixlen, pod.mac

    def IP(self, intf=None):  # noqa: N802
        return str(self.model.ip) if self.model and intf is None else super().IP(intf)
