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


def _wait_listening(host: Any, proc: subprocess.Popen, port: int, timeout: float = 10.0) -> None:
    """Until the iperf3 server's socket listens (its control connection is TCP for UDP
    tests too); a server that exits or never listens is an error, not a sleep too short."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if run(["mnexec", "-a", str(host.pid), "ss", "-Htln", f"sport = :{port}"], timeout=5).stdout.strip():
            return
        if proc.poll() is not None:
            raise CommandError(f"iperf3 -s on port {port} exited with status {proc.returncode}")
        time.sleep(0.02)
    raise CommandError(f"iperf3 -s did not listen on port {port} within {timeout:g}s")


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
        _wait_listening(server, srv, listen or port)
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
