"""Send the traced packet for real and see it on every interface of the predicted path.

A capture (``tcpdump -w -``, read as pcap: :mod:`topos.trace.frames`) is started on each
interface the prediction names -- each in its own namespace, started before and stopped
after -- then one packet leaves the source: an ICMP echo request with its own id, a TCP
SYN or a UDP datagram from the traced source port, each carrying a token.  The frames that
are that packet are compared, hop by hop, with the headers the prediction expected there;
a hop where they differ, or where the packet was expected and never seen, is marked.
"""

from __future__ import annotations

import random
import re
import signal
import subprocess
import threading
import time
from typing import Any, Optional

from k8snet.model.trace_ends import Question
from k8snet.procs import deferred_signals
from topos.attach import tapped_links
from topos.trace.frames import Frame, read_pcap
from topos.trace.hops import Headers, Trace

#: The capture is over once no interface has seen a byte for this long (after the send).
QUIET = 0.3
#: A TCP SYN waits this long for an answer before the socket is dropped (one SYN only:
#: Linux retransmits after 1 s).
TCP_WAIT = 0.5

SENDER = r'''
import socket, struct, sys
proto, dst, dport, sport, ttl, ident, token = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), \
    int(sys.argv[5]), int(sys.argv[6]), sys.argv[7].encode()
size = int(sys.argv[9])
if size:
    token = token.ljust(size - 28, b".")          # IP + ICMP/UDP headers: 28 bytes

def dont_fragment(s):
    s.setsockopt(socket.IPPROTO_IP, 10, 2)        # IP_MTU_DISCOVER = IP_PMTUDISC_DO: DF, never fragment

if proto == "icmp":
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    dont_fragment(s)
    body = struct.pack("!BBHHH", 8, 0, 0, ident, 1) + token
    total = sum(struct.unpack("!%dH" % (len(body) // 2), body[:len(body) // 2 * 2])) + (body[-1] << 8 if len(body) % 2 else 0)
    total = (total >> 16) + (total & 0xFFFF); total += total >> 16
    body = body[:2] + struct.pack("!H", ~total & 0xFFFF) + body[4:]
    s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
    try:
        s.sendto(body, (dst, 0))
    except OSError as exc:
        print(exc)
elif proto == "udp":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dont_fragment(s)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
    s.bind(("", sport))
    try:
        s.sendto(token, (dst, dport))
    except OSError as exc:
        print(exc)
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
    s.bind(("", sport))
    s.settimeout(float(sys.argv[8]))
    try:
        s.connect((dst, dport))
    except OSError:
        pass
    s.close()
'''


class Capture:
    """``tcpdump`` on one interface of one namespace, its pcap bytes collected."""

    def __init__(self, host: Any, ifname: str, point: Optional[tuple[str, str]] = None):
        """``point``: the (host, interface) of the trace this capture stands for (a tap's
        OVS port, captured on the tap's device), else where it is taken."""
        self.host, self.ifname = host, ifname
        self.point = point or (host.name, ifname)
        self.blob = bytearray()
        self.stderr = ""
        self.last = time.monotonic()
        with deferred_signals():
            # `timeout` ends it even if this process dies before stopping it.
            self.proc = subprocess.Popen(["mnexec", "-a", str(host.pid), "timeout", "30", "tcpdump", "-i", ifname,
                                          "-U", "-w", "-", "-s", "262", "--immediate-mode", "ip"],
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.reader = threading.Thread(target=self._read, daemon=True)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        while chunk := self.proc.stdout.read1(65536):  # type: ignore[attr-defined]
            self.blob += chunk
            self.last = time.monotonic()

    def wait_listening(self, deadline: float) -> None:
        assert self.proc.stderr is not None
        line = b""
        while b"listening on" not in line:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"tcpdump on {self.host.name} {self.ifname} did not start: {line.decode()}")
            line = self.proc.stderr.readline()
        self.reader.start()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.stderr = (self.proc.stderr.read() or b"").decode(errors="replace") if self.proc.stderr else ""
            self.proc.wait(timeout=10)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self.reader.ident is not None:
            self.reader.join(10)


def _ours(frame: Frame, q: Question, sport: Optional[int], ident: int, token: bytes) -> bool:
    h = frame.headers
    if h.protocol != q.protocol:
        return False
    if q.protocol == "icmp":
        return frame.icmp_type == 8 and frame.icmp_id == ident and frame.payload.startswith(token)
    if q.protocol == "udp":
        return frame.payload.startswith(token)
    return frame.tcp_flags is not None and frame.tcp_flags & 0x12 == 0x02 and h.sport == sport


def _answer(frame: Frame, q: Question, ident: int) -> str:
    """What ``frame`` is if it answers the traced packet at the source ("" if it does not)."""
    h = frame.headers
    if h.protocol != q.protocol or h.ip_dst != str(q.src.ip):
        return ""
    if q.protocol == "icmp":
        return "echo reply" if frame.icmp_type == 0 and frame.icmp_id == ident else ""
    if h.dport != q.sport:
        return ""
    if q.protocol == "udp":
        return "datagram"
    flags = frame.tcp_flags or 0
    return "SYN-ACK" if flags & 0x12 == 0x12 else "reset" if flags & 0x04 else ""


def differences(expected: Headers, seen: Headers) -> list[str]:
    fields = ["eth_src", "eth_dst", "ip_src", "ip_dst", "ttl", "sport", "dport"]
    out = [f"{f}: predicted {getattr(expected, f)}, seen {getattr(seen, f)}" for f in fields
           if getattr(expected, f) != getattr(seen, f)]
    if (expected.outer is None) != (seen.outer is None):
        out.append(f"VXLAN: predicted {'yes' if expected.outer else 'no'}, seen {'yes' if seen.outer else 'no'}")
    elif expected.outer is not None and seen.outer is not None:
        for f in ("eth_src", "eth_dst", "ip_src", "ip_dst", "ttl", "vni", "udp_dst"):
            if getattr(expected.outer, f) != getattr(seen.outer, f):
                out.append(f"outer {f}: predicted {getattr(expected.outer, f)}, seen {getattr(seen.outer, f)}")
    return out


def observe(net: Any, q: Question, predicted: Trace) -> Trace:
    """``predicted``, with each hop's captured headers and differences filled in."""
    points = []
    for hop in predicted.hops:
        for ifname in (hop.in_if, hop.out_if):
            if ifname and (hop.host, ifname) not in points:
                points.append((hop.host, ifname))
    ident = random.randrange(1, 0xFFFF)
    token = f"k8snet-trace-{ident:04x}".encode()
    captures: list[Capture] = []
    # A tap's OVS port has no device in its node: the frames are seen on the tap itself.
    device_of = dict(tapped_links(net.cluster))
    try:
        for point in points:
            host, ifname = device_of.get(point, point)
            captures.append(Capture(net.net[host], ifname, point))
        deadline = time.monotonic() + 15       # all of them, on a loaded machine
        for capture in captures:
            capture.wait_listening(deadline)
        assert q.src.host is not None
        sender = net.net[q.src.host]
        subprocess.run(["mnexec", "-a", str(sender.pid), "/usr/bin/python3", "-c", SENDER, q.protocol,
                        str(q.dst.ip), str(q.dport or 0), str(q.sport or 0), str(q.ttl), str(ident),
                        token.decode(), str(TCP_WAIT), str(q.size or 0)], check=True, timeout=10,
                       capture_output=True)
        sent = time.monotonic()
        while time.monotonic() - max([sent] + [c.last for c in captures]) < QUIET and \
                time.monotonic() - sent < 3:
            time.sleep(0.02)
    finally:
        for capture in captures:
            capture.stop()
    seen: dict[tuple[str, str], list[Frame]] = {}
    for capture in captures:
        dropped = re.search(r"(\d+) packets? dropped by kernel", capture.stderr)
        if dropped and int(dropped.group(1)):
            predicted.notes.append(f"tcpdump on {capture.host.name} {capture.ifname}: {dropped.group(0)} "
                                   "(the comparison there may miss the packet)")
        decoded = read_pcap(bytes(capture.blob), net.cluster.vxlan_port)
        frames = [f for f in decoded if _ours(f, q, q.sport, ident, token)]
        if frames:
            seen[capture.point] = frames
        first = predicted.hops[0] if predicted.hops else None
        if first is not None and capture.point == (first.host, first.out_if):
            answer = next(((f, kind) for f in decoded if (kind := _answer(f, q, ident))), None)
            if answer is not None:
                predicted.reply, predicted.reply_kind = answer[0].headers, answer[1]
    return compare(predicted, seen)


def compare(predicted: Trace, seen: dict[tuple[str, str], list[Frame]]) -> Trace:
    """Mark each hop with what was captured at its interfaces (pure).  An interface can see
    the packet more than once -- in and out by one leg (a load balancer, a NodePort sent on
    to another node), or a copy a Linux bridge floods before it has learned a MAC -- so each
    expected sighting is compared with the frame there that is closest to it."""
    agrees = True
    for index, hop in enumerate(predicted.hops):
        last = index == len(predicted.hops) - 1
        for ifname, expected, attr in ((hop.in_if, hop.arrived, "seen_in"), (hop.out_if, hop.left, "seen_out")):
            if not ifname:
                continue
            frames = seen.get((hop.host, ifname), [])
            order = frames[::-1] if attr == "seen_out" else frames
            got = min(order, key=lambda f: len(differences(expected, f.headers)) if expected else 0).headers \
                if frames else None
            setattr(hop, attr, got)
            if expected is None:
                if got is not None:
                    hop.mismatch.append(f"{ifname}: predicted to end here, but it left")
            elif got is None:
                hop.mismatch.append(f"{ifname}: predicted, never seen")
            else:
                hop.mismatch += [f"{ifname} {d}" for d in differences(expected, got)]
        if last and predicted.verdict != "delivered" and hop.out_if and seen.get((hop.host, hop.out_if)):
            hop.mismatch.append(f"predicted {predicted.verdict} here, but it was seen leaving by {hop.out_if}")
        agrees = agrees and not hop.mismatch
    if seen:
        host, ifname = max(seen, key=lambda k: seen[k][-1].time)
        predicted.seen_last = f"{host} {ifname}"
    predicted.kind, predicted.agrees = "observed", agrees
    return predicted
