"""What Flannel and kube-proxy really program, in the kernel, as a throughput reference.

Built in namespaces of the benchmark's own and torn down after (``stop()``, also on
any error half way)::

    kpod-0 ─eth0══veth─┐                                         ┌─veth══eth0─ kpod-1
       10.250.0.2      cni0 (Linux bridge, 10.250.0.1)   cni0 (10.250.1.1)      10.250.1.2
    kpod-2 ─eth0══veth2┘                                               (pod-0 and pod-2: same node)
       10.250.0.3       knode-0 ──eth0══ [kunder: Linux bridge] ══eth0── knode-1
                        192.168.77.1                                  192.168.77.2
                                   (routed: kunder is a router, knode-1 is 192.168.78.2)

* ``host-gw``: each node routes the other's pod subnet via the other node's IP
  (``ip route 10.250.1.0/24 via 192.168.77.2``), exactly Flannel's host-gw routes;
* ``vxlan``: a ``flannel.1`` VXLAN device (VNI 1, port 8472, nolearning) holding
  ``10.250.N.0/32``, a route ``10.250.1.0/24 via 10.250.1.0 dev flannel.1 onlink``, a
  permanent neighbour entry for the peer's VTEP address and an FDB entry sending its
  MAC to the peer node's IP -- what flanneld writes for each peer;
* ``clusterip`` (host-gw mode): kube-proxy's nftables mode in its simplest form, a
  ``dnat`` in the client node's prerouting hook from VIP:port to the server pod;
* ``same-node`` (host-gw mode): two pods on one node's ``cni0`` bridge;
* ``routed=True`` (vxlan): the nodes in two subnets behind a router namespace, as two racks;
* :class:`KernelRouted`: what Calico's BGP leaves in the kernels of two nodes in two racks
  and of the routers between them (rack gateway, core, rack gateway): plain routes.

Offloads are left as the kernel sets them (on), as on a real node.
"""

from __future__ import annotations

from topos.references import Namespaces, ReferencePath

UNDERLAY = "192.168.77"
PODS = "10.250"
VIP = "10.97.0.10"
VXLAN_PORT = 8472


class KernelCluster(Namespaces):
    """Two nodes and a pod on each, in ``mode`` host-gw or vxlan."""

    kind = "kernel reference"

    def __init__(self, mode: str, prefix: str, routed: bool = False):
        if mode not in ("host-gw", "vxlan") or (routed and mode != "vxlan"):
            raise ValueError(f"mode {mode!r}: host-gw or vxlan (routed only with vxlan)")
        super().__init__(prefix)
        self.mode = mode
        self.routed = routed

    def node_ip(self, i: int) -> str:
        return f"{UNDERLAY}.{i + 1}" if not self.routed else f"192.168.{77 + i}.{i + 1}"

    def _build(self) -> list[ReferencePath]:
        under = self._host("under")
        nodes = [self._host(f"node{i}") for i in range(2)]
        pods = [self._host(f"pod{i}") for i in range(2)]
        for i, (node, pod) in enumerate(zip(nodes, pods)):
            self.net.addLink(node, under, intfName1="eth0", intfName2=f"n{i}")
            self.net.addLink(pod, node, intfName1="eth0", intfName2="veth0")
        if self.routed:
            under.sysctl(net__ipv4__ip_forward=1)
            under.ip_batch(["link set lo up", *[f"link set n{i} up" for i in range(2)],
                            *[f"addr add 192.168.{77 + i}.254/24 dev n{i}" for i in range(2)]])
        else:
            under.ip_batch(["link set lo up", "link add fabric type bridge", "link set fabric up",
                            *[f"link set n{i} master fabric up" for i in range(2)]])
        mtu = 1450 if self.mode == "vxlan" else 1500
        vtep_macs = [f"02:fa:00:00:00:0{i + 1}" for i in range(2)]
        for i, (node, pod) in enumerate(zip(nodes, pods)):
            node.sysctl(net__ipv4__ip_forward=1, net__ipv4__conf__all__rp_filter=0)
            cmds = ["link set lo up", f"addr add {self.node_ip(i)}/24 dev eth0", "link set eth0 up",
                    "link add cni0 type bridge", f"link set cni0 mtu {mtu} up",
                    f"addr add {PODS}.{i}.1/24 dev cni0", f"link set veth0 mtu {mtu} master cni0 up"]
            peer = 1 - i
            if self.routed:
                cmds.append(f"route add default via 192.168.{77 + i}.254 dev eth0")
            if self.mode == "host-gw":
                cmds.append(f"route add {PODS}.{peer}.0/24 via {UNDERLAY}.{peer + 1} dev eth0")
            else:
                cmds += [f"link add flannel.1 type vxlan id 1 local {self.node_ip(i)} dev eth0 "
                         f"dstport {VXLAN_PORT} nolearning",
                         f"link set flannel.1 address {vtep_macs[i]} mtu {mtu} up",
                         f"addr add {PODS}.{i}.0/32 dev flannel.1",
                         f"route add {PODS}.{peer}.0/24 via {PODS}.{peer}.0 dev flannel.1 onlink",
                         f"neigh add {PODS}.{peer}.0 lladdr {vtep_macs[peer]} dev flannel.1 nud permanent"]
            node.ip_batch(cmds)
            if self.mode == "vxlan":
                node.ns("bridge", "fdb", "append", vtep_macs[peer], "dev", "flannel.1", "dst", self.node_ip(peer))
            pod.ip_batch(["link set lo up", f"link set eth0 mtu {mtu} up", f"addr add {PODS}.{i}.2/24 dev eth0",
                          f"route add default via {PODS}.{i}.1"])
        name = f"kernel-{self.mode}" + ("-routed" if self.routed else "")
        across = " across a router" if self.routed else ""
        paths = [ReferencePath(name, f"the kernel configuration Flannel {self.mode} programs{across}",
                               pods[0], pods[1], f"{PODS}.1.2")]
        if self.mode == "host-gw":
            local = self._host("pod2")
            self.net.addLink(local, nodes[0], intfName1="eth0", intfName2="veth2")
            nodes[0].ip_batch([f"link set veth2 mtu {mtu} master cni0 up"])
            local.ip_batch(["link set lo up", f"link set eth0 mtu {mtu} up", f"addr add {PODS}.0.3/24 dev eth0",
                            f"route add default via {PODS}.0.1"])
            paths.append(ReferencePath("kernel-same-node", "two pods on one node's cni0 bridge", pods[0], local,
                                       f"{PODS}.0.3"))
            rules = (f"table ip k8snet_kube_proxy {{\n  chain prerouting {{\n"
                     f"    type nat hook prerouting priority dstnat;\n"
                     f"    ip daddr {VIP} tcp dport 5201 dnat to {PODS}.1.2:5201\n"
                     f"    ip daddr {VIP} udp dport 5201 dnat to {PODS}.1.2:5201\n  }}\n}}\n")
            nodes[0].ns("nft", "-f", "-", input=rules)
            paths.append(ReferencePath("kernel-clusterip", "kube-proxy's nftables DNAT to the pod on the other node",
                                       pods[0], pods[1], VIP))
        return paths


def _segment(port: str) -> list[str]:
    """A rack gateway's segment bridge with the node's link as its port (``ip -batch``)."""
    return ["link add segment type bridge stp_state 0 forward_delay 0", "link set segment up",
            f"link set {port} master segment up"]


class KernelRouted(Namespaces):
    """Pod to pod across racks by kernel routing alone, through the same three routers as a
    k8snet ``racks`` cluster (the reference for ``backend: bgp``)::

        kpod0 ─ knode0 ─ [segment] kgw0 ─ kcore ─ kgw1 [segment] ─ knode1 ─ kpod1

    Every hop holds the routes BIRD would have installed there (pod CIDR via the next
    router, or via the node on the gateway's own segment); nothing is encapsulated.  Each
    gateway holds its address on a Linux bridge with the node's link as a port, as a
    ``racks`` gateway does (:class:`topos.nodes.RackGateway`): without the two bridges
    the reference was ~4 % faster than the same routers with them (measured, 5 rounds),
    a cost the BGP cell pays and the reference did not."""

    kind = "kernel reference"

    def _build(self) -> list[ReferencePath]:
        n0, g0, core, g1, n1 = (self._host(n) for n in ("node0", "gw0", "core", "gw1", "node1"))
        pods = [self._host(f"pod{i}") for i in range(2)]
        for a, b, ia, ib in ((n0, g0, "eth0", "n0"), (g0, core, "core", "r0"), (core, g1, "r1", "core"),
                             (g1, n1, "n1", "eth0")):
            self.net.addLink(a, b, intfName1=ia, intfName2=ib)
        for pod, node in zip(pods, (n0, n1)):
            self.net.addLink(pod, node, intfName1="eth0", intfName2="veth0")
        r0, r1 = f"{PODS}.0.0/24", f"{PODS}.1.0/24"
        plan = {n0: ["addr add 192.168.80.1/24 dev eth0", f"route add {r1} via 192.168.80.254"],
                g0: [*_segment("n0"), "addr add 192.168.80.254/24 dev segment", "addr add 192.168.90.2/30 dev core",
                     f"route add {r0} via 192.168.80.1", f"route add {r1} via 192.168.90.1"],
                core: ["addr add 192.168.90.1/30 dev r0", "addr add 192.168.90.5/30 dev r1",
                       f"route add {r0} via 192.168.90.2", f"route add {r1} via 192.168.90.6"],
                g1: [*_segment("n1"), "addr add 192.168.81.254/24 dev segment", "addr add 192.168.90.6/30 dev core",
                     f"route add {r1} via 192.168.81.2", f"route add {r0} via 192.168.90.5"],
                n1: ["addr add 192.168.81.2/24 dev eth0", f"route add {r0} via 192.168.81.254"]}
        for host, cmds in plan.items():
            host.sysctl(net__ipv4__ip_forward=1, net__ipv4__conf__all__rp_filter=0)
            links = [f"link set {i} up" for i in host.intfNames() if i != "lo"]
            bridge = ["link add cni0 type bridge", "link set cni0 up", "link set veth0 master cni0"] \
                if host in (n0, n1) else []
            host.ip_batch(["link set lo up", *links, *bridge, *cmds])
        for i, (pod, node) in enumerate(zip(pods, (n0, n1))):
            node.ip_batch([f"addr add {PODS}.{i}.1/24 dev cni0"])
            pod.ip_batch(["link set lo up", "link set eth0 up", f"addr add {PODS}.{i}.2/24 dev eth0",
                          f"route add default via {PODS}.{i}.1"])
        return [ReferencePath("kernel-routed", "kernel routes across rack gateway, core and rack gateway "
                              "(what Calico's BGP installs)", pods[0], pods[1], f"{PODS}.1.2")]
