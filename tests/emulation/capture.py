"""tcpdump inside one of our namespaces, around an action."""

from __future__ import annotations

import re
import subprocess
import time
from typing import Callable


def capture(host, iface: str, bpf: str, action: Callable[[], None], extra: tuple[str, ...] = ()) -> list[str]:
    """Packets seen on ``iface`` of ``host`` matching ``bpf`` while ``action`` runs."""
    proc = subprocess.Popen(["mnexec", "-a", str(host.pid), "timeout", "30", "tcpdump", "-l", "-n",
                             "-i", iface, *extra, bpf],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10
        line = ""
        while "listening on" not in line and time.monotonic() < deadline:
            line = proc.stderr.readline()
            assert line or proc.poll() is None, "tcpdump exited before listening"
        action()
        time.sleep(0.3)
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    # tcpdump prints an encapsulated packet on a second line: join it to its outer packet.
    packets: list[str] = []
    for line in out.splitlines():
        if not line.strip():
            continue
        if packets and not re.match(r"^\d\d:\d\d:\d\d\.\d+ ", line):
            packets[-1] += " | " + line.strip()
        else:
            packets.append(line)
    return packets
