"""Conntrack hygiene as kube-proxy does it: UDP entries that point at a gone endpoint are deleted.

A UDP client that keeps sending from one source port keeps hitting its conntrack entry,
and the entry keeps its DNAT to the endpoint it was first given, however long ago that
endpoint went away (UDP has no end of connection to wait for).  kube-proxy therefore
deletes, for every UDP Service port that has serving endpoints, the entries to its
frontends (ClusterIP:port, NodePort) whose reply source is not one of them
(``pkg/proxy/conntrack/cleanup.go``, ``CleanStaleEntries``, in kube-proxy 1.30+); that also
clears entries made while the port had no endpoint (their reply source is the VIP itself).
TCP is left alone: a TCP connection ends, and its endpoint answers it with a reset.

OpenFlow cannot list conntrack entries, so the same rule is applied to what changed
(:func:`udp_flushes`, pure): for a frontend whose endpoint set lost IPs, delete the entries
whose reply source is one of those IPs (or the VIP, when the port had none before); for a
UDP Service port or Service that is gone, every entry of its frontend (in the zone that
holds its DNAT: ``ZONE_NODEPORT_DNAT`` for a masqueraded NodePort).  Each is one
OVS ``NXT_CT_FLUSH`` with a partial tuple (OVS 3.1: ``ovs-ofctl ct-flush``), built by
:func:`encode` and sent on every node right after the flow bundle that made the change.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import Optional

from controllers.pipeline import ZONE_NODEPORT_DNAT, ZONE_SERVICE
from k8snet.model.cluster import Cluster, Node, Service, ServicePort

#: Nicira's OpenFlow experimenter id and the CT_FLUSH message type (OVS 3.1).
NX_VENDOR_ID = 0x00002320
NXT_CT_FLUSH = 32
IPPROTO_UDP = 17
# TLVs of NXT_CT_FLUSH: the tuples and the zone at the top level; inside a tuple, its fields.
_ORIG_TUPLE, _REPLY_TUPLE, _ZONE = 0, 1, 2
_SRC, _DST, _SRC_PORT, _DST_PORT = 0, 1, 2, 3


@dataclass(frozen=True, order=True)
class CtFlush:
    """Delete the conntrack entries of ``zone`` that match every field given (a partial tuple)."""

    zone: int
    orig_dst: Optional[str] = None
    orig_dst_port: Optional[int] = None
    reply_src: Optional[str] = None
    nw_proto: int = IPPROTO_UDP

    def ofctl_args(self) -> list[str]:
        """The same flush as ``ovs-ofctl ct-flush`` arguments (for logs and tests)."""
        orig = [f"ct_nw_proto={self.nw_proto}"] + ([f"ct_nw_dst={self.orig_dst}"] if self.orig_dst else []) + \
            ([f"ct_tp_dst={self.orig_dst_port}"] if self.orig_dst_port is not None else [])
        reply = [f"ct_nw_src={self.reply_src}"] if self.reply_src else []
        return [f"zone={self.zone}", ",".join(orig)] + ([",".join(reply)] if reply else [])


def _frontends(service: Service, port: ServicePort, node: Node) -> list[tuple[int, str, int]]:
    """The (zone of its DNAT, IP, port) a client of this node addresses the Service port
    at: its ClusterIP, and its NodePort on this node's IP (the load balancer forwards to
    NodePorts), whose DNAT has a zone of its own when it is masqueraded (Cluster policy)."""
    out = [(ZONE_SERVICE, str(service.cluster_ip), port.port)]
    if port.node_port is not None:
        masqueraded = service.external_traffic_policy != "Local"
        out.append((ZONE_NODEPORT_DNAT if masqueraded else ZONE_SERVICE, str(node.ip), port.node_port))
    return out


def _udp_ports(cluster: Cluster) -> dict[tuple[str, int], tuple[Service, ServicePort]]:
    return {(s.key, p.port): (s, p) for s in cluster.services if s.proxied for p in s.ports if p.protocol == "UDP"}


def udp_flushes(before: Cluster, after: Cluster, node: Node) -> list[CtFlush]:
    """The conntrack flushes ``node`` needs when the model goes from ``before`` to ``after``."""
    old, new = _udp_ports(before), _udp_ports(after)
    flushes: set[CtFlush] = set()
    for key, (service, port) in old.items():
        was = {str(e.ip) for e in before.endpoints(service, port)}
        if key not in new or new[key][0].cluster_ip != service.cluster_ip or \
                new[key][1].node_port != port.node_port:
            # The frontend is gone (or moved): none of its entries may keep forwarding
            # (those that got no DNAT are in the Service zone).
            for zone, ip, number in _frontends(service, port, node):
                flushes.update({CtFlush(zone, ip, number), CtFlush(ZONE_SERVICE, ip, number)})
            continue
        now = {str(e.ip) for e in after.endpoints(*new[key])}
        if not now:
            continue  # kube-proxy leaves a port without endpoints alone: nothing serves it
        for zone, ip, number in _frontends(service, port, node):
            # Entries to a gone endpoint; with none before, the entries that got no DNAT at all.
            flushes.update(CtFlush(zone, ip, number, reply) for reply in was - now)
            if not was:
                flushes.add(CtFlush(ZONE_SERVICE, ip, number, ip))
    return sorted(flushes)


# --------------------------------------------------------------------------- the wire format
def _tlv(kind: int, payload: bytes) -> bytes:
    """A TLV padded to 8 bytes (the length field counts the header and the payload only)."""
    raw = struct.pack("!HH", kind, 4 + len(payload)) + payload
    return raw + b"\0" * (-len(raw) % 8)


def _u16(value: int) -> bytes:
    """A 16-bit field (a port, the zone) travels in 4 bytes, its length counting them."""
    return struct.pack("!H2x", value)


def _address(ip: str) -> bytes:
    return ipaddress.IPv6Address(f"::ffff:{ipaddress.IPv4Address(ip)}").packed


def _tuple(kind: int, src: Optional[str] = None, dst: Optional[str] = None,
           dst_port: Optional[int] = None) -> bytes:
    fields = b""
    if src is not None:
        fields += _tlv(_SRC, _address(src))
    if dst is not None:
        fields += _tlv(_DST, _address(dst))
    if dst_port is not None:
        fields += _tlv(_DST_PORT, _u16(dst_port))
    body = struct.pack("!HH", kind, 8 + len(fields)) + b"\0" * 4 + fields
    return body


def encode(flush: CtFlush) -> bytes:
    """The body of an ``NXT_CT_FLUSH`` message (after the experimenter header), as OVS 3.1's
    ``ovs-ofctl ct-flush`` sends it: protocol, then the original tuple, the reply tuple and
    the zone as TLVs (addresses as IPv4-mapped IPv6)."""
    body = struct.pack("!B7x", flush.nw_proto)
    if flush.orig_dst is not None or flush.orig_dst_port is not None:
        body += _tuple(_ORIG_TUPLE, dst=flush.orig_dst, dst_port=flush.orig_dst_port)
    if flush.reply_src is not None:
        body += _tuple(_REPLY_TUPLE, src=flush.reply_src)
    return body + _tlv(_ZONE, _u16(flush.zone))


def message(datapath: object, flush: CtFlush) -> object:
    """The OpenFlow message (os-ken or Ryu), an experimenter message both frameworks have."""
    parser = datapath.ofproto_parser  # type: ignore[attr-defined]
    return parser.OFPExperimenter(datapath, NX_VENDOR_ID, NXT_CT_FLUSH, encode(flush))
