"""What every benchmark records and where it writes it."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

from topos.agent import SCRIPT as AGENT
from topos.environment import environment  # noqa: F401  (benchmarks import it from here)

RESULTS = Path(__file__).resolve().parent.parent / "results"
#: The client's ephemeral ports in :func:`ask_through_changes` (see there).
EPHEMERAL_PORTS = "1024 65535"


def write(name: str, doc: dict[str, Any], out: Optional[str]) -> Path:
    """Write ``doc`` to ``out`` or ``results/bench-<name>-<time>.json`` and say where."""
    path = Path(out) if out else RESULTS / f"bench-{name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1))
    print(f"\nwrote {path}")
    return path



def ask_through_changes(net: Any, host: str, ip: str, port: int, timeout: float, plan: list[tuple[str, Any]],
                        gap: float) -> tuple[list[dict[str, Any]], list[tuple[str, float]]]:
    """A client in ``host`` connects to ``ip:port`` back to back (``timeout`` each) while
    ``net.apply`` goes through ``plan`` (a label and a cluster per change), ``gap``
    seconds apart; returns every connection the client made (``agent.py ask``: ok, server,
    t) and each change's label with the time its apply call started.  The client is
    stopped (SIGTERM: it reports what it saw) a second after the last change.

    The client closes first, so each connection holds its port for 60 s of TIME_WAIT:
    the kernel's default range (32768-60999, 28,232 ports) runs out after 28,232
    connections in a minute, about 470 a second, and every connect() then fails at once
    with EADDRNOTAVAIL -- the client's limit, not the dataplane's (seen at 545 a second:
    5,179 of 33,529 failed).  The client's namespace gets the whole unprivileged range
    (64,512 ports: about 1,075 a second for a minute)."""
    net.net[host].ns("sysctl", "-q", "-w", f"net.ipv4.ip_local_port_range={EPHEMERAL_PORTS}")
    asker = net.net[host].popen(["/usr/bin/python3", AGENT, "ask", "--ip", ip, "--port", str(port),
                                 "--duration", "86400", "--timeout", str(timeout)],
                                stdout=subprocess.PIPE, text=True)
    events = []
    try:
        time.sleep(0.5)
        for label, cluster in plan:
            t = time.time()
            net.apply(cluster)
            events.append((label, t))
            time.sleep(gap)
        time.sleep(1.0)
    finally:
        asker.send_signal(signal.SIGTERM)
        out, _ = asker.communicate(timeout=60)
    return json.loads(out or "[]"), events
