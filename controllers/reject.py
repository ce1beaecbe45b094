"""What kube-proxy's REJECT does for a Service with no endpoints: answer a TCP SYN with
a reset, a UDP datagram with ICMP port unreachable, from the VIP, so the client fails at
once instead of waiting for a timeout.  OpenFlow cannot build either (a reset's
acknowledgement number, an ICMP error's quoted header), so the switch sends the first
packet to the controller and this pure function writes the answer.
"""

from __future__ import annotations

from typing import Any, Optional

from controllers.framework import packet_lib

ethernet, ipv4, tcp, udp, icmp = (packet_lib.ethernet, packet_lib.ipv4, packet_lib.tcp, packet_lib.udp,
                                  packet_lib.icmp)


def reject(data: bytes) -> Optional[bytes]:
    """The reply that refuses ``data`` (an Ethernet frame), or None if nothing should be sent."""
    pkt = packet_lib.packet.Packet(data)
    eth, ip = pkt.get_protocol(ethernet.ethernet), pkt.get_protocol(ipv4.ipv4)
    if eth is None or ip is None:
        return None
    out = packet_lib.packet.Packet()
    out.add_protocol(ethernet.ethernet(dst=eth.src, src=eth.dst, ethertype=eth.ethertype))
    seg = pkt.get_protocol(tcp.tcp)
    if seg is not None:
        if seg.bits & tcp.TCP_RST:
            return None  # never answer a reset
        payload = len(pkt.protocols[-1]) if isinstance(pkt.protocols[-1], (bytes, bytearray)) else 0
        syn_fin = 1 if seg.bits & (tcp.TCP_SYN | tcp.TCP_FIN) else 0
        out.add_protocol(ipv4.ipv4(src=ip.dst, dst=ip.src, proto=ip.proto, ttl=64))
        out.add_protocol(tcp.tcp(src_port=seg.dst_port, dst_port=seg.src_port, seq=0,
                                 ack=(seg.seq + payload + syn_fin) & 0xFFFFFFFF,
                                 bits=tcp.TCP_RST | tcp.TCP_ACK, window_size=0))
    elif pkt.get_protocol(udp.udp) is not None:
        quoted = data[14:14 + ip.header_length * 4 + 8]
        out.add_protocol(ipv4.ipv4(src=ip.dst, dst=ip.src, proto=1, ttl=64))
        out.add_protocol(icmp.icmp(type_=icmp.ICMP_DEST_UNREACH, code=icmp.ICMP_PORT_UNREACH_CODE,
                                   data=icmp.dest_unreach(data=quoted)))
    else:
        return None
    out.serialize()
    return bytes(out.data)


def packet_out(datapath: Any, in_port: int, data: bytes) -> Any:
    parser, ofp = datapath.ofproto_parser, datapath.ofproto
    return parser.OFPPacketOut(datapath=datapath, buffer_id=ofp.OFP_NO_BUFFER, in_port=ofp.OFPP_CONTROLLER,
                               actions=[parser.OFPActionOutput(in_port)], data=data)
