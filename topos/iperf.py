"""One iperf3 measurement between two of our hosts, for tests, benchmarks and scenarios."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from typing import Any, Optional

from k8snet.procs import CommandError, deferred_signals, run

#: UDP datagram payload: fits a VXLAN pod MTU (1450) with room to spare, so no test
#: measures IP fragmentation by accident.
UDP_LENGTH = 1400


def iperf(client: Any, server: Any, ip: str, port: int, seconds: int, listen: Optional[int] = None,
          protocol: str = "tcp", streams: int = 1, udp_bitrate: str = "0") -> dict[str, Any]:
    """iperf3 -J from host ``client`` to ``ip:port``, the server in host ``server`` listening
    on ``listen`` (default ``port``; differs when ``ip:port`` is a Service frontend).

    ``protocol`` ``udp`` sends ``UDP_LENGTH``-byte datagrams at ``udp_bitrate`` (``0``:
    as fast as the sender can); the figure is what the receiver got.

    Returns ``{"ok": True, "bits_per_second", "retransmits", "lost_percent", "bytes",
    "iperf3_end", "doc"}`` (``doc``: iperf3's whole JSON, as it came) or ``{"ok": False,
    "error": why}`` -- a failure keeps its reason and is never reported as a zero."""
    if shutil.which("iperf3") is None:
        return {"ok": False, "error": "iperf3 is not installed (Debian package iperf3; `make setup` installs it)"}
    args = ["mnexec", "-a", str(client.pid), "iperf3", "-c", ip, "-p", str(port), "-t", str(seconds), "-J",
            "-P", str(streams)]
    if protocol == "udp":
        args += ["-u", "-b", udp_bitrate, "-l", str(UDP_LENGTH)]
    srv = None
    try:
        # Started and remembered as one step: a Ctrl-C in between would leave the server
        # running in its namespace (and the namespace with it).
        with deferred_signals():
            srv = server.popen(["iperf3", "-s", "-1", "-p", str(listen or port)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        time.sleep(0.3)
        out = run(args, timeout=seconds + 30, check=False)
    except CommandError as exc:
        return {"ok": False, "error": str(exc)}
    finally:
        if srv is not None:
            srv.kill()
            srv.wait(timeout=5)
    try:
        doc = json.loads(out.stdout)
    except ValueError:
        return {"ok": False, "error": f"iperf3 printed no JSON: {out.stderr.strip()[:300]}"}
    if "error" in doc:
        return {"ok": False, "error": f"iperf3: {doc['error']}", "doc": doc}
    end = doc.get("end", {})
    received = end.get("sum_received")
    if not received or not received.get("bytes"):
        return {"ok": False, "error": "iperf3 finished but the receiver got no data", "doc": doc}
    return {"ok": True, "bits_per_second": received["bits_per_second"],
            "retransmits": end.get("sum_sent", {}).get("retransmits"),
            "lost_percent": received.get("lost_percent"), "bytes": received["bytes"],
            "iperf3_end": end, "doc": doc}
