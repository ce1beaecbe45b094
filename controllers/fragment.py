"""IPv4 fragmentation, as a router does it at a link with a smaller MTU (pure).

With VXLAN the pod network's MTU is the underlay's minus 50.  A packet from outside the
cluster (the external host, the load balancer) can be as large as the underlay allows,
and a Linux node forwarding it into ``flannel.1`` or into a pod would fragment it to the
smaller MTU (or, with Don't Fragment set, drop it and say so).  Open vSwitch's userspace
datapath cannot fragment, so such a packet goes to the controller, which cuts it with
:func:`fragment` and sends the pieces on where the switch would have sent the packet
(RFC 791: offsets in 8-byte units, More Fragments on all but the last, an existing
fragment's offset and flag carried over, the header checksum recomputed).  The pieces are
of nearly equal size, so that none but the last is small.
"""

from __future__ import annotations

import struct

ETH_HEADER = 14
ETH_TYPE_IP = 0x0800
DF, MF = 0x4000, 0x2000
OFFSET_MASK = 0x1FFF


def checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def dont_fragment(frame: bytes) -> bool:
    """The frame's IPv4 header has Don't Fragment set."""
    return bool(struct.unpack_from("!H", frame, ETH_HEADER + 6)[0] & DF)


def fragment(frame: bytes, mtu: int) -> list[bytes]:
    """An Ethernet frame carrying IPv4 -> frames whose IP packets fit ``mtu`` (the frame
    itself when it fits).  ValueError for what cannot be fragmented: not IPv4, Don't
    Fragment set, or an MTU that leaves no room for 8 bytes of payload."""
    if len(frame) < ETH_HEADER + 20 or struct.unpack_from("!H", frame, 12)[0] != ETH_TYPE_IP:
        raise ValueError("not an IPv4 frame")
    ip = frame[ETH_HEADER:]
    ihl = (ip[0] & 0x0F) * 4
    total = struct.unpack_from("!H", ip, 2)[0]
    if total <= mtu:
        return [frame]
    flags_offset = struct.unpack_from("!H", ip, 6)[0]
    if flags_offset & DF:
        raise ValueError("Don't Fragment is set")
    room = (mtu - ihl) // 8 * 8
    if room < 8:
        raise ValueError(f"MTU {mtu} leaves no room for a fragment")
    header, payload = bytearray(ip[:ihl]), ip[ihl:total]
    # As few pieces as fit, of (nearly) equal size rather than full ones and a small rest:
    # a receiving OVS takes a fragment other than the last as invalid when it is small
    # (dpctl/ipf-set-min-frag, 1,200 bytes by default; k8snet's nodes set 400).
    pieces = -(-len(payload) // room)
    chunk = -(-len(payload) // pieces // 8) * 8
    base, last_mf = flags_offset & OFFSET_MASK, flags_offset & MF
    out = []
    for start in range(0, len(payload), chunk):
        piece = payload[start:start + chunk]
        more = MF if start + chunk < len(payload) else last_mf
        struct.pack_into("!H", header, 2, ihl + len(piece))
        struct.pack_into("!H", header, 6, more | (base + start // 8))
        struct.pack_into("!H", header, 10, 0)
        struct.pack_into("!H", header, 10, checksum(bytes(header)))
        out.append(frame[:ETH_HEADER] + bytes(header) + piece)
    return out


ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED = 3, 4


def frag_needed(frame: bytes, mtu: int) -> bytes:
    """The ICMP "fragmentation needed" (type 3, code 4, RFC 1191's next-hop MTU ``mtu``) that
    refuses ``frame`` (IPv4 with Don't Fragment), written as the reply direction of its
    connection: from the packet's destination to its source (MACs and addresses swapped),
    quoting its IP header and the first 8 bytes of its payload (RFC 792).
    Sent back through the switch as if the destination had answered, conntrack treats it
    as related to the connection and undoes every NAT in the outer and the quoted header,
    so the client reads the MTU for the address it sent to, as from a Linux router."""
    ip = frame[ETH_HEADER:]
    ihl = (ip[0] & 0x0F) * 4
    quoted = bytes(ip[:ihl + 8])
    icmp = bytearray(struct.pack("!BBHHH", ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, 0, 0, mtu) + quoted)
    struct.pack_into("!H", icmp, 2, checksum(bytes(icmp) + (b"\0" if len(icmp) % 2 else b"")))
    header = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0xC0, 20 + len(icmp), 0, 0, 64, 1, 0,
                                   ip[16:20], ip[12:16]))
    struct.pack_into("!H", header, 10, checksum(bytes(header)))
    return frame[6:12] + frame[:6] + struct.pack("!H", ETH_TYPE_IP) + bytes(header) + bytes(icmp)
