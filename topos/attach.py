"""Pods and node uplinks attached as OVS tap ports (``spec.datapath.attach: tap``).

::

    node namespace (ovs-vswitchd)            pod namespace         segment namespace
    br-k8s ── pod0 (type=tap) ─ ─ fd ─ ─ ─▶  eth0 (was pod0)
           └─ uplink (type=tap) ─ ─ fd ─ ─ ─────────────────────▶  n0 (was uplink) ── bridge

On the userspace datapath a veth port is read through a packet socket, and its receive
buffer drops segments under TCP load (a namespace cannot raise ``rmem_max``).  A tap port
is a file descriptor ovs-vswitchd reads and writes; its kernel end is a network device
that works in any namespace, so it is moved where the veth's far end was: into the pod
(renamed ``eth0``) or into the segment's namespace (renamed ``n<i>``, on the bridge).
Measured on the real pipeline, host-gw with TSO, 2 nodes: 9.6 Gbit/s and 0 retransmits
against 7.2 Gbit/s and ~340,000 retransmits per 4 s with veth pods (topos/datapath.py).

OVS makes its taps persistent (TUNSETPERSIST), so a crashed ovs-vswitchd leaves them where
they are, carrier down; the restarted one looks for its ports by name in its own namespace,
finds none, and makes new taps there.  :func:`reattach` deletes the orphans, moves the new
taps in and gives the pod its MAC, address, route and MTU again (``topos/faults.py``).
``k8snet clean`` has nothing more to find: a tap goes with the namespace it is in, and every
namespace with its shell.  The links between routers stay veth pairs: no OVS reads them.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Tuple

from k8snet.model.access import MACVLAN_MODE
from k8snet.model.cluster import UPLINK_IFNAME, Cluster, Node
from k8snet.model.links import underlay_links
from topos.ovs import wait_for


#: Packets a tap's ring holds (its ``txqueuelen``; the kernel's default is 1,000).  A tap
#: frees what it queues at once (``skb_orphan``), so TCP Small Queues cannot hold a sender
#: back and the ring overflows whenever the ovs-vswitchd reading it is off the CPU for a few
#: milliseconds -- two vswitchds and iperf3 share 2 cores here.  Measured (2026-12-01, VXLAN,
#: offload none, 2 nodes, 3 x 3 s): 1,000 -> 2.47-2.58 Gbit/s with 13,600-15,800 retransmits,
#: the drops on the client pod's tap and the receiving node's uplink tap; 3,000 -> 2.64-2.71
#: Gbit/s, 0 retransmits, mean RTT 3.4-4.6 ms (was 2.6-4.2); 10,000 -> no faster, RTT 5-6 ms.
TAP_RING = 3000


def pods_tapped(cluster: Cluster) -> bool:
    return cluster.attach == "tap"


def uplinks_tapped(cluster: Cluster) -> bool:
    """Uplinks too, unless the underlay has a bandwidth limit: the node's side of it is
    the uplink's egress qdisc (``K8sNode.build``), which a moved tap does not have."""
    return cluster.attach == "tap" and not cluster.underlay.bandwidth_mbit


def port_type(tapped: bool) -> list[str]:
    """The ``set interface`` argument that makes an OVS port a tap (none for a veth's end).
    (Its MTU is set where it lands; ovs-vswitchd cannot see it there, see
    ``topos.datapath.JUMBO``.)"""
    return ["type=tap"] if tapped else []


def _links(host: Any) -> set[str]:
    """The names of the links in ``host``'s namespace (one ``ip`` for all of them)."""
    return {link["ifname"] for link in json.loads(host.ns("ip", "-j", "link", "show") or "[]")}


Side = tuple[str, str]  # (host name, interface name)


def tapped_links(cluster: Cluster) -> list[tuple[Side, Side]]:
    """Each tap as a link: the OVS port's name in its node (no device there any more) and
    the device in the pod or segment namespace, as Mininet lists a veth's two ends (for
    ``k8snet trace``, which follows links and captures where the frames are)."""
    out: list[tuple[Side, Side]] = []
    if pods_tapped(cluster):
        out += [((p.node, p.port_name), (p.host_name, "eth0")) for p in cluster.pods]
    if uplinks_tapped(cluster):
        links = underlay_links(cluster)
        out += [((n.name, UPLINK_IFNAME), (links[n.name].host, links[n.name].device)) for n in cluster.nodes]
    return out


def hand_over(node_host: Any, devices: Iterable[tuple[str, int, str]]) -> None:
    """Move each (device, pid, name): the tap ovs-vswitchd made in the node's namespace, into
    the namespace of process ``pid``, renamed ``name`` as it enters (one netlink request, so
    every node's ``uplink`` can go to one segment at once), once it is there (vswitchd makes
    it as it reconfigures), its ring made :data:`TAP_RING` deep."""
    moves = list(devices)
    if not moves:
        return
    wanted = {device for device, _, _ in moves}
    wait_for(lambda: wanted <= _links(node_host), 15, f"the taps {', '.join(sorted(wanted))} in {node_host.name}")
    node_host.ip_batch([f"link set dev {device} netns {pid} name {name} txqueuelen {TAP_RING}"
                        for device, pid, name in moves])


def on_switch(cluster: Cluster) -> bool:
    """Are pods ports of their node's switch?  Not with macvlan (:func:`macvlan_children`)."""
    return cluster.access != "macvlan"


def macvlan_children(host: Any, pods: Iterable[Tuple[str, int]]) -> None:
    """``spec.access: macvlan``: each (port name, pod shell pid) becomes a macvlan child of
    the node's uplink (a veth then, topos/datapath.py), made in the node's namespace where
    its parent is and moved into the pod as ``eth0`` in the same request.  The child keeps
    its parent's ifindex link across namespaces, as the macvlan CNI plugin's do."""
    host.ip_batch([f"link add {name} link {UPLINK_IFNAME} type macvlan mode {MACVLAN_MODE}\n"
                   f"link set dev {name} netns {pid} name eth0" for name, pid in pods])


def attach_node(net: Any, cluster: Cluster, node: Node) -> None:
    """Right after ``K8sNode.build`` (or a vswitchd restart): the node's pod taps into their
    pods, its uplink tap onto its segment's bridge (under the uplink's link name); or
    with macvlan, the pods' children of the uplink."""
    host = net.node(node.name)
    if not on_switch(cluster):
        if cluster.offload != "tso":
            # A macvlan child keeps TX checksum offload and TSO whatever it is told ("on [requested
            # off]"); its parent need not: with them off, the kernel completes checksums and cuts
            # segments as the frame leaves the parent, before a userspace switch without TSO reads
            # it (the checksum-offload trap: ../shared/DESIGN.md).
            host.ns("ethtool", "-K", UPLINK_IFNAME, "tx", "off", "tso", "off")
        macvlan_children(host, [(p.port_name, net.pod(p.host_name).pid) for p in cluster.pods_on(node.name)])
        return
    pods = cluster.pods_on(node.name) if pods_tapped(cluster) else []
    moves = [(p.port_name, net.pod(p.host_name).pid, "eth0") for p in pods]
    link = underlay_links(cluster)[node.name] if uplinks_tapped(cluster) else None
    if link is not None:
        moves.append((UPLINK_IFNAME, net.net[link.host].pid, link.device))
    hand_over(host, moves)
    if link is not None:
        segment = net.net[link.host]
        segment.ip_batch(segment.enslaving([link.device], cluster.underlay.mtu,
                                           up=node.name not in net.faults.links_down))


def attach_all(net: Any, cluster: Cluster) -> None:
    """:func:`attach_node` for every node.  What it costs is the kernel's: moving a device
    to another namespace takes ~22 ms here, under a lock every namespace shares (16 nodes x
    4 pods: 1.7 s for 80 taps, one node after another or 8 at a time alike), where Mininet
    creates a veth's ends in their namespaces directly."""
    for node in cluster.nodes:
        attach_node(net, cluster, node)


def reattach(net: Any, node_name: str) -> None:
    """After ``node_name``'s ovs-vswitchd came back: its taps are new devices in its own
    namespace; put them back and configure them as at build (loss rules on the uplink too)."""
    cluster = net.cluster
    if not pods_tapped(cluster):
        return
    pods = cluster.pods_on(node_name)
    for pod in pods:
        net.pod(pod.host_name).ns("ip", "link", "del", "dev", "eth0", check=False)
    if uplinks_tapped(cluster):
        link = underlay_links(cluster)[node_name]
        net.net[link.host].ns("ip", "link", "del", "dev", link.device, check=False)
    attach_node(net, cluster, cluster.node(node_name))
    for pod in pods:
        net.pod(pod.host_name).build(cluster, pod)
    if uplinks_tapped(cluster):
        net.impairments.reload(node_name)
