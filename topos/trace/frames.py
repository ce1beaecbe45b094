"""Captured frames decoded (pure): Ethernet, IPv4, ICMP/TCP/UDP, and VXLAN with its inner frame.

``tcpdump -w -`` writes the classic pcap format; reading its bytes here, instead of
tcpdump's text, gives the exact fields a trace compares with its prediction (MACs, TTL,
ports, the outer header and VNI of a tunnelled packet), whatever tcpdump's printing
version does.  Only what a trace needs is decoded; anything else is skipped.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import Optional

from topos.trace.hops import Headers, Outer

PCAP_MAGIC = {b"\xd4\xc3\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">",      # microseconds
              b"\x4d\x3c\xb2\xa1": "<", b"\xa1\xb2\x3c\x4d": ">"}      # nanoseconds
LINKTYPE_ETHERNET = 1
PROTOCOLS = {1: "icmp", 6: "tcp", 17: "udp"}


@dataclass(frozen=True)
class Frame:
    time: float
    headers: Headers
    icmp_type: Optional[int] = None
    icmp_id: Optional[int] = None
    tcp_flags: Optional[int] = None
    payload: bytes = b""


def _mac(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def _ip_packet(data: bytes) -> Optional[tuple[str, str, int, str, bytes]]:
    """(src, dst, ttl, protocol, L4 bytes) of an unfragmented (or first-fragment) IPv4 packet."""
    if len(data) < 20 or data[0] >> 4 != 4:
        return None
    ihl = (data[0] & 0x0F) * 4
    proto = PROTOCOLS.get(data[9])
    if proto is None or struct.unpack("!H", data[6:8])[0] & 0x1FFF:
        return None
    return (str(ipaddress.IPv4Address(data[12:16])), str(ipaddress.IPv4Address(data[16:20])), data[8], proto,
            data[ihl:])


def decode(data: bytes, when: float = 0.0, vxlan_port: int = 8472, outer: Optional[Outer] = None) -> Optional[Frame]:
    """One Ethernet frame, its VXLAN payload decoded as the inner packet."""
    if len(data) < 14 or data[12:14] != b"\x08\x00":
        return None
    ip = _ip_packet(data[14:])
    if ip is None:
        return None
    src, dst, ttl, proto, l4 = ip
    eth_dst, eth_src = _mac(data[0:6]), _mac(data[6:12])
    if proto == "icmp" and len(l4) >= 8:
        ident = struct.unpack("!H", l4[4:6])[0]
        return Frame(when, Headers(eth_src, eth_dst, src, dst, ttl, proto, outer=outer), icmp_type=l4[0],
                     icmp_id=ident, payload=l4[8:])
    if len(l4) < 8:
        return None
    sport, dport = struct.unpack("!HH", l4[0:4])
    if proto == "udp" and dport == vxlan_port and outer is None and len(l4) >= 16:
        vni = int.from_bytes(l4[12:15], "big")
        wrapper = Outer(eth_src, eth_dst, src, dst, ttl, dport, vni)
        return decode(l4[16:], when, vxlan_port, wrapper)
    headers = Headers(eth_src, eth_dst, src, dst, ttl, proto, sport, dport, outer=outer)
    if proto == "tcp" and len(l4) >= 20:
        offset = (l4[12] >> 4) * 4
        return Frame(when, headers, tcp_flags=l4[13], payload=l4[offset:])
    return Frame(when, headers, payload=l4[8:])


def read_pcap(blob: bytes, vxlan_port: int = 8472) -> list[Frame]:
    """Every decodable frame of a pcap stream (an unfinished last record is ignored)."""
    if len(blob) < 24:
        return []
    order = PCAP_MAGIC.get(blob[:4])
    if order is None:
        raise ValueError("not a pcap stream")
    nano = blob[:4] in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    if struct.unpack(order + "I", blob[20:24])[0] != LINKTYPE_ETHERNET:
        raise ValueError("not an Ethernet capture")
    frames, pos = [], 24
    while pos + 16 <= len(blob):
        sec, frac, caplen, _ = struct.unpack(order + "IIII", blob[pos:pos + 16])
        pos += 16
        if pos + caplen > len(blob):
            break
        frame = decode(blob[pos:pos + caplen], sec + frac / (1e9 if nano else 1e6), vxlan_port)
        if frame is not None:
            frames.append(frame)
        pos += caplen
    return frames
