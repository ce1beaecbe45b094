"""The pod MTU on VXLAN clusters: what is too large for a pod or the tunnel is fragmented.

Flannel's VXLAN gives pods the underlay MTU minus 50 and routes them through ``flannel.1``
with that MTU, so a packet from outside the cluster that arrives at the underlay's full
size (the external host, the load balancer, on their way to a NodePort) is fragmented by
the node's kernel on its way into the tunnel or into a pod.  Open vSwitch's userspace
datapath cannot fragment, and a frame larger than the pod MTU is dropped by the tunnel's
underlay link or the pod's veth.  So on VXLAN and directrouting clusters every packet
for a pod port or the tunnel leaves through two tables:

* ``egress``: ``check_pkt_larger(pod MTU + 14)`` sets a bit when the frame is larger;
* ``egress_out``: too large -> the controller, which cuts it to the pod MTU
  (:mod:`controllers.fragment`) and sends the pieces out of the same port, with the same
  tunnel destination; otherwise out of the port the routing flow chose (``REG_OUT_PORT``).

A packet with Don't Fragment set is refused as a Linux router refuses it: with ICMP
"fragmentation needed" and the pod MTU (:func:`refuse`), so the sender's path MTU
discovery works (TCP rarely gets here: its MSS already fits).  The answer must reach the
client with the addresses it sent to, which NodePort, Service and masquerade NAT have
changed by now; so it is written as the reply direction of the packet's connection and
sent back into the switch where that reply would enter -- the pod's port, or the tunnel
from the pod's node -- and conntrack, seeing an ICMP error related to a connection,
undoes every NAT in the outer and the quoted header (as Linux's conntrack does for the
kernel's own ICMP errors).  With offload ``tso`` (not possible with VXLAN on OVS 3.1)
the check is left out: its segments are larger by design.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import Any, Iterator

from controllers.flows import OFPP_CONTROLLER, Flow, Match, Output, SetField
from controllers.pipeline import (
    EGRESS, EGRESS_OUT, OVERSIZE_BIT, REG_OUT_PORT, REG_SOURCE, Feature, Priority, cookie,
)
from k8snet.model.cluster import Cluster, Node

ETH_HEADER = 14
NX_VENDOR_ID = 0x00002320
NXAST_CHECK_PKT_LARGER = 49


def checked(cluster: Cluster) -> bool:
    """Does this cluster need the egress check (a pod MTU below the underlay's)?"""
    return cluster.pod_mtu < cluster.underlay.mtu and cluster.offload != "tso"


def out(cluster: Cluster, port: int) -> tuple[tuple[Any, ...], int | None]:
    """(actions, goto) that send a routed packet out of ``port``: directly, or through the
    egress check on clusters that need it."""
    if checked(cluster):
        return (SetField(REG_OUT_PORT, port),), EGRESS
    return (Output(port),), None


def _reg_header(reg: str) -> int:
    """The NXM header of ``regN`` (class 0x0001, field N, 4 bytes)."""
    return (0x0001 << 16) | (int(reg.removeprefix("reg")) << 9) | 4


@dataclass(frozen=True)
class CheckPktLarger:
    """``check_pkt_larger(length)->dst[bit]``: sets the bit when the frame is longer than
    ``length`` bytes (OVS 2.12; neither os-ken nor Ryu has the action, so its bytes are
    written here, as OVS's ``nx_action_check_pkt_larger`` lays them out)."""

    length: int
    dst: str
    bit: int

    def ofctl(self) -> str:
        return f"check_pkt_larger({self.length})->{self.dst}[{self.bit}]"

    def osken(self, parser: Any, ofp: Any) -> Any:
        body = struct.pack("!HHI6x", self.length, self.bit, _reg_header(self.dst))
        return parser.NXActionUnknown(NXAST_CHECK_PKT_LARGER, body)


@dataclass(frozen=True)
class OutputReg:
    """``output:regN[]``: out of the port whose number the register holds."""

    src: str

    def ofctl(self) -> str:
        return f"output:{self.src}[]"

    def osken(self, parser: Any, ofp: Any) -> Any:
        return parser.NXActionOutputReg(ofs_nbits=31, src=self.src, max_len=0xFFFF)


def node_flows(cluster: Cluster, node: Node) -> Iterator[Flow]:
    if not checked(cluster):
        return
    c = cookie(Feature.MTU)
    frame = cluster.pod_mtu + ETH_HEADER
    yield Flow(EGRESS, Priority.FALLBACK, Match(), (CheckPktLarger(frame, REG_SOURCE, OVERSIZE_BIT),),
               goto=EGRESS_OUT, cookie=c)
    bit = 1 << OVERSIZE_BIT
    yield Flow(EGRESS_OUT, Priority.SPECIFIC, Match.of(**{REG_SOURCE: f"{bit:#x}/{bit:#x}"}),
               (Output(OFPP_CONTROLLER),), cookie=c)
    yield Flow(EGRESS_OUT, Priority.FALLBACK, Match(), (OutputReg(REG_OUT_PORT),), cookie=c)


def reply_port(cluster: Cluster, node: Node, out_port: int, reply_dst: str) -> int:
    """Where the reply of a packet sent out of ``out_port`` enters ``node``'s switch: a local
    pod's port; from a pod on another node (``out_port`` the tunnel), the tunnel when it is
    addressed into this node's pod CIDR (the hairpin gateway address), else the uplink --
    pods reach a node's own IP (a NodePort's masquerade address) over the underlay."""
    from k8snet.model.cluster import TUNNEL_OFPORT, UPLINK_OFPORT

    if out_port != TUNNEL_OFPORT:
        return out_port
    return TUNNEL_OFPORT if ipaddress.ip_address(reply_dst) in node.pod_cidr else UPLINK_OFPORT


def refuse(datapath: Any, frame: bytes, match: Any, cluster: Cluster, node: Node) -> list[Any]:
    """For an oversize frame with Don't Fragment: the packet-out that puts its ICMP
    "fragmentation needed" into the switch as the connection's reply would arrive (see the
    module's docstring), or nothing for what is not IPv4."""
    from controllers.fragment import frag_needed
    from k8snet.model.cluster import TUNNEL_OFPORT

    if len(frame) < ETH_HEADER + 28 or frame[12:14] != b"\x08\x00":
        return []
    parser, ofp = datapath.ofproto_parser, datapath.ofproto
    answer = frag_needed(frame, cluster.pod_mtu)
    port = reply_port(cluster, node, match.get(REG_OUT_PORT), str(ipaddress.IPv4Address(frame[26:30])))
    actions = []
    if port == TUNNEL_OFPORT:  # as decapsulated from the pod's node: the tunnel's far end, same VNI
        actions += [parser.OFPActionSetField(tun_ipv4_src=match.get("tun_ipv4_dst")),
                    parser.OFPActionSetField(tunnel_id=match.get("tunnel_id"))]
    actions.append(parser.OFPActionOutput(ofp.OFPP_TABLE, 0))
    return [parser.OFPPacketOut(datapath=datapath, buffer_id=ofp.OFP_NO_BUFFER, in_port=port, actions=actions,
                                data=answer)]


def resend(datapath: Any, frame: bytes, match: Any, pod_mtu: int) -> list[Any]:
    """For an oversize frame the switch sent up (its packet-in ``match`` holds the registers
    and tunnel metadata): packet-outs of its fragments, out of the port the routing flow
    chose, into the tunnel with the same destination and VNI.  Empty when it may not be
    fragmented (Don't Fragment) -- dropped, as the caller counts."""
    from controllers.fragment import fragment
    from k8snet.model.cluster import TUNNEL_OFPORT

    try:
        pieces = fragment(frame, pod_mtu)
    except ValueError:
        return []
    parser, ofp = datapath.ofproto_parser, datapath.ofproto
    port = match.get(REG_OUT_PORT)
    actions = []
    if port == TUNNEL_OFPORT:
        actions += [parser.OFPActionSetField(tun_ipv4_dst=match.get("tun_ipv4_dst")),
                    parser.OFPActionSetField(tunnel_id=match.get("tunnel_id"))]
    actions.append(parser.OFPActionOutput(port, 0xFFFF))
    return [parser.OFPPacketOut(datapath=datapath, buffer_id=ofp.OFP_NO_BUFFER, in_port=ofp.OFPP_CONTROLLER,
                                actions=actions, data=piece) for piece in pieces]
