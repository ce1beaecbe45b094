"""IPv4 fragmentation as a router does it (controllers/fragment.py): the pieces fit, follow
RFC 791's rules and reassemble to the packet."""
from __future__ import annotations

import struct

import pytest

from controllers.fragment import DF, MF, OFFSET_MASK, checksum, dont_fragment, fragment

ETH = bytes(6) + bytes(6) + b"\x08\x00"


def ipv4(payload: bytes, flags_offset: int = 0, ident: int = 0x1234) -> bytes:
    header = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, flags_offset, 64, 17, 0,
                                   bytes([192, 168, 56, 5]), bytes([10, 244, 2, 2])))
    struct.pack_into("!H", header, 10, checksum(bytes(header)))
    return ETH + bytes(header) + payload


def fields(frame: bytes) -> tuple[int, int, bool, bytes]:
    ip = frame[14:]
    total, flags_offset = struct.unpack_from("!HH", ip, 2)[0], struct.unpack_from("!H", ip, 6)[0]
    assert checksum(ip[:20]) == 0, "bad header checksum"
    return total, (flags_offset & OFFSET_MASK) * 8, bool(flags_offset & MF), ip[20:total]


def reassemble(frames: list[bytes]) -> bytes:
    parts = sorted((offset, data) for _, offset, _, data in map(fields, frames))
    out = b""
    for offset, data in parts:
        assert offset == len(out), "a gap or an overlap"
        out += data
    return out


@pytest.mark.parametrize("size", [1480, 1481, 2000, 8000, 40000])
def test_pieces_fit_the_mtu_and_reassemble_to_the_packet(size):
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    frames = fragment(ipv4(payload), 1450)
    assert reassemble(frames) == payload
    infos = [fields(f) for f in frames]
    assert all(total <= 1450 for total, *_ in infos)
    assert all(offset % 8 == 0 for _, offset, _, _ in infos)
    assert [more for *_, more, _ in infos] == [True] * (len(frames) - 1) + [False]
    assert len(frames) == (1 if size + 20 <= 1450 else -(-size // 1424))
    # nearly equal pieces: none but the last is small (a receiving OVS drops small ones)
    assert all(total >= min(1450, size) // 2 for total, *_ in infos[:-1])


def test_a_packet_that_fits_is_left_as_it_is():
    frame = ipv4(bytes(1000))
    assert fragment(frame, 1450) == [frame]


def test_a_fragment_is_cut_into_fragments_of_the_same_datagram():
    """A 1,500-byte first fragment (offset 0, MF) and a later one (offset 1480, no MF) from
    a 1,500-MTU host, cut again for a 1,450 MTU: offsets continue, MF only at the very end."""
    first = fragment(ipv4(bytes(1480), flags_offset=MF), 1450)
    last = fragment(ipv4(bytes(520), flags_offset=1480 // 8), 1450)
    infos = [fields(f) for f in first + last]
    assert [(offset, more) for _, offset, more, _ in infos] == [(0, True), (744, True), (1480, False)]
    assert reassemble(first + last) == bytes(2000)


def test_dont_fragment_is_refused():
    frame = ipv4(bytes(1480), flags_offset=DF)
    assert dont_fragment(frame)
    with pytest.raises(ValueError, match="Don't Fragment"):
        fragment(frame, 1450)
    with pytest.raises(ValueError, match="not an IPv4 frame"):
        fragment(bytes(6) + bytes(6) + b"\x86\xdd" + bytes(40), 1450)


def test_fragmentation_needed_answers_from_the_destination_quoting_the_header_and_8_bytes():
    from controllers.fragment import frag_needed

    udp = struct.pack("!HHHH", 40000, 30080, 8 + 1464, 0) + bytes(1464)
    frame = ipv4(udp, flags_offset=DF)
    frame = bytes.fromhex("0a580af40202") + bytes.fromhex("0a580af40201") + frame[12:]  # gateway -> pod
    reply = frag_needed(frame, 1450)
    assert reply[:6] == bytes.fromhex("0a580af40201") and reply[6:12] == bytes.fromhex("0a580af40202")
    ip = reply[14:34]
    assert checksum(ip) == 0 and ip[9] == 1 and ip[12:16] == bytes([10, 244, 2, 2]) and \
        ip[16:20] == bytes([192, 168, 56, 5])                     # the destination answers the source
    icmp = reply[34:]
    assert checksum(icmp) == 0 and icmp[:2] == b"\x03\x04" and struct.unpack_from("!H", icmp, 6)[0] == 1450
    assert icmp[8:] == frame[14:14 + 28]                           # RFC 792: the header and 8 bytes


def test_the_refusal_enters_where_the_connections_reply_would():
    from controllers.egress import reply_port
    from k8snet.model.cluster import TUNNEL_OFPORT, UPLINK_OFPORT
    from k8snet.model.manifests import Overrides, load_text
    from topos.specs import default_spec_text

    cluster = load_text(default_spec_text(), Overrides(backend="vxlan"))
    node = cluster.node("node-0")
    pod = cluster.pods_on("node-0")[0]
    assert reply_port(cluster, node, pod.ofport, "192.168.56.5") == pod.ofport     # a local pod answers itself
    assert reply_port(cluster, node, TUNNEL_OFPORT, str(node.ip)) == UPLINK_OFPORT  # masqueraded: pod -> node IP
    assert reply_port(cluster, node, TUNNEL_OFPORT, str(node.gateway_ip)) == TUNNEL_OFPORT  # hairpin address
