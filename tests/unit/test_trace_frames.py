"""Captured frames decoded from pcap bytes: the fields a trace compares, VXLAN unwrapped."""

from __future__ import annotations

import ipaddress
import struct

from topos.trace.frames import decode, read_pcap


def mac(text: str) -> bytes:
    return bytes(int(x, 16) for x in text.split(":"))


def ipv4(src: str, dst: str, proto: int, payload: bytes, ttl: int = 64) -> bytes:
    head = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0x4000, ttl, proto, 0,
                       ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed)
    return head + payload


def eth(src: str, dst: str, payload: bytes) -> bytes:
    return mac(dst) + mac(src) + b"\x08\x00" + payload


def tcp_syn(sport: int, dport: int) -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, 0x02, 64240, 0, 0)


def pcap(*frames: bytes) -> bytes:
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)
    for i, frame in enumerate(frames):
        out += struct.pack("<IIII", 100 + i, 500, len(frame), len(frame)) + frame
    return out


INNER = eth("0a:58:0a:f4:00:01", "0a:58:0a:f4:02:01", ipv4("10.244.0.2", "10.244.2.2", 6, tcp_syn(41000, 80), 63))
VXLAN = eth("02:00:c0:a8:00:0a", "02:00:c0:a8:00:01", ipv4(
    "192.168.0.10", "192.168.1.10", 17,
    struct.pack("!HHHH", 51234, 8472, 8 + 8 + len(INNER), 0) + struct.pack("!II", 0x08000000, 1 << 8) + INNER))
ECHO = eth("0a:58:0a:f4:00:02", "0a:58:0a:f4:00:01",
           ipv4("10.244.0.2", "10.244.2.2", 1, struct.pack("!BBHHH", 8, 0, 0, 0x4b38, 1) + b"k8snet"))


def test_a_vxlan_frame_is_read_as_its_inner_packet_with_the_outer_header():
    frame = decode(VXLAN)
    h = frame.headers
    assert (h.ip_src, h.ip_dst, h.ttl, h.sport, h.dport, frame.tcp_flags) == ("10.244.0.2", "10.244.2.2", 63,
                                                                               41000, 80, 0x02)
    assert (h.eth_src, h.eth_dst) == ("0a:58:0a:f4:00:01", "0a:58:0a:f4:02:01")
    o = h.outer
    assert (o.ip_src, o.ip_dst, o.vni, o.udp_dst, o.eth_dst, o.ttl) == ("192.168.0.10", "192.168.1.10", 1, 8472,
                                                                        "02:00:c0:a8:00:01", 64)


def test_an_echo_request_keeps_its_id_and_payload():
    frame = decode(ECHO)
    assert frame.icmp_type == 8 and frame.icmp_id == 0x4B38 and frame.payload == b"k8snet"
    assert frame.headers.sport is None and frame.headers.protocol == "icmp"


def test_a_pcap_stream_in_order_with_times_and_a_cut_last_record_ignored():
    blob = pcap(ECHO, VXLAN, b"\x00" * 30)          # the last: not IPv4
    frames = read_pcap(blob + b"\x01\x02")           # and a record cut short
    assert [f.time for f in frames] == [100.0005, 101.0005]
    assert [f.headers.protocol for f in frames] == ["icmp", "tcp"]


def test_later_fragments_and_arp_are_skipped():
    fragment = bytearray(ECHO)
    fragment[14 + 6:14 + 8] = struct.pack("!H", 0x0010)      # offset 16 x 8 bytes
    assert decode(bytes(fragment)) is None
    assert decode(mac("ff:ff:ff:ff:ff:ff") + mac("02:00:00:00:00:01") + b"\x08\x06" + b"\x00" * 28) is None
