"""tcpdump inside one of our namespaces, around an action -- without guessing how long to wait.

tcpdump runs in immediate mode, so every packet that crosses the interface is handed to
its socket as it passes (synchronously, by the kernel's packet tap).  When the action has
finished (a ping returns only after its replies arrived, so everything it caused has
passed), tcpdump is given until its output has been quiet for ``QUIET`` seconds to read
what is still in its ring (an interrupt does not drain the ring), then interrupted, and
its own statistics are checked: none dropped, every packet it captured printed.
``expect`` waits, in addition, for that many packets to be printed (for traffic that may
still be on its way when the action returns).

"received by filter" is only an upper bound: libpcap opens its socket accepting
everything and attaches the filter afterwards, and what arrives in between is counted by
the kernel (PACKET_STATISTICS) though libpcap then filters it out in userland.  Measured
here: tcpdump "udp port 8472" for 0.5 s on a veth carrying only UDP to port 6443 every
millisecond reported "0 captured, 1 (or 2) received by filter" in 3 of 12 runs; on a
cluster, the node leases (UDP 6443 every few hundred ms) do the same (CI: 6 captured,
9 received by filter, on a gateway's core link).
"""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import time
from typing import Callable, Optional


def _join(lines: list[str]) -> list[str]:
    """tcpdump prints an encapsulated packet on a second line: join it to its outer packet."""
    packets: list[str] = []
    for line in lines:
        if not line.strip():
            continue
        if packets and not re.match(r"^\d\d:\d\d:\d\d\.\d+ ", line):
            packets[-1] += " | " + line.strip()
        else:
            packets.append(line)
    return packets


QUIET = 0.3


def _settle(lines: list[str], deadline: float) -> None:
    """Wait until no line has been added for ``QUIET`` seconds (or the deadline)."""
    seen, since = len(lines), time.monotonic()
    while time.monotonic() - since < QUIET and time.monotonic() < deadline:
        time.sleep(0.02)
        if len(lines) != seen:
            seen, since = len(lines), time.monotonic()


def capture(host, iface: str, bpf: str, action: Callable[[], None], extra: tuple[str, ...] = (),
            expect: Optional[int] = None, timeout: float = 10.0) -> list[str]:
    """Packets seen on ``iface`` of ``host`` matching ``bpf`` while ``action`` runs."""
    proc = subprocess.Popen(["mnexec", "-a", str(host.pid), "timeout", "60", "tcpdump", "-l", "-n",
                             "--immediate-mode", "-i", iface, *extra, bpf],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    try:
        deadline = time.monotonic() + timeout
        line = ""
        while "listening on" not in line and time.monotonic() < deadline:
            line = proc.stderr.readline()
            assert line or proc.poll() is None, "tcpdump exited before listening"
        reader.start()
        action()
        while expect is not None and len(_join(list(lines))) < expect and time.monotonic() < deadline:
            time.sleep(0.01)
        _settle(lines, time.monotonic() + 3.0)
    finally:
        proc.send_signal(signal.SIGINT)
        err = proc.stderr.read()          # to its end: tcpdump's statistics, as it exits
        proc.wait(timeout=10)
        if reader.is_alive() or reader.ident is not None:
            reader.join(10)               # the reader alone reads stdout, to its end
    stats = {k: int(v) for v, k in re.findall(r"(\d+) packets? (captured|received by filter|dropped by kernel)", err)}
    packets = _join(lines)
    assert stats.get("dropped by kernel", 0) == 0, err
    assert stats.get("captured") == len(packets) <= stats.get("received by filter", 0), (stats, packets, err)
    return packets
