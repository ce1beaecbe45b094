"""One iperf3 TCP measurement between two of our hosts, for tests and benchmarks alike."""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any, Optional

from k8snet.procs import CommandError, run


def iperf(client: Any, server: Any, ip: str, port: int, seconds: int, listen: Optional[int] = None) -> dict[str, Any]:
    """iperf3 -J from host ``client`` to ``ip:port``, the server in host ``server`` listening
    on ``listen`` (default ``port``; differs when ``ip:port`` is a Service frontend).

    Returns ``{"ok": True, "bits_per_second", "retransmits", "bytes", "iperf3_end", "doc"}``
    (``doc``: iperf3's whole JSON) or ``{"ok": False, "error": why}`` -- a failure keeps its
    reason and is never reported as a zero."""
    srv = server.popen(["iperf3", "-s", "-1", "-p", str(listen or port)], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        out = run(["mnexec", "-a", str(client.pid), "iperf3", "-c", ip, "-p", str(port), "-t", str(seconds), "-J"],
                  timeout=seconds + 30, check=False)
    except CommandError as exc:
        return {"ok": False, "error": str(exc)}
    finally:
        srv.kill()
        srv.wait(timeout=5)
    try:
        doc = json.loads(out.stdout)
    except ValueError:
        return {"ok": False, "error": f"iperf3 printed no JSON: {out.stderr.strip()[:300]}"}
    if "error" in doc:
        return {"ok": False, "error": doc["error"]}
    end = doc["end"]
    return {"ok": True, "bits_per_second": end["sum_received"]["bits_per_second"],
            "retransmits": end["sum_sent"].get("retransmits"), "bytes": end["sum_received"]["bytes"],
            "iperf3_end": end, "doc": doc}
