"""What every benchmark records and where it writes it."""

from __future__ import annotations

import json
import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

from k8snet.environment import environment  # noqa: F401  (benchmarks import it from here)

RESULTS = Path(__file__).resolve().parent.parent / "results"


def write(name: str, doc: dict[str, Any], out: Optional[str]) -> Path:
    """Write ``doc`` to ``out`` or ``results/bench-<name>-<time>.json`` and say where."""
    path = Path(out) if out else RESULTS / f"bench-{name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1))
    print(f"\nwrote {path}")
    return path


def iperf(client: Any, server: Any, ip: str, port: int, seconds: int, listen: Optional[int] = None) -> dict[str, Any]:
    """One iperf3 TCP run from host ``client`` to ``ip:port``, the server in host ``server``
    listening on ``listen`` (default ``port``).  A failure is recorded with its reason,
    never as a zero."""
    from k8snet.procs import CommandError, run

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
            "iperf3_end": end}
