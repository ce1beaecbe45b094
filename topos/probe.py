"""The reachability matrix: who can ping whom, measured in parallel.

One ``fping`` per source namespace pings all of that source's targets at once, and
all sources run at the same time, so a 16-pod matrix (240 ordered pairs) takes about
as long as one slow ping rather than 240 of them (Mininet's ``pingAll`` is sequential).

Pairs: pod->pod (same node and cross node), node host network->pod, pod->node.
The Kubernetes network model requires every one of them to be reachable.  Each pair
also records what the backend *predicts* (host-gw cannot cross an L3 gateway) and
why, so a failure comes with its reason, and an emulation that disagrees with the
model is caught.
"""

from __future__ import annotations

import json
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Optional

from k8snet.model.cluster import Cluster, to_json
from k8snet.model.reach import Pair, pairs
from k8snet.procs import run
from topos.environment import environment

_FPING_LINE = re.compile(
    r"^(?P<ip>\S+)\s*:\s*xmt/rcv/%loss = (?P<xmt>\d+)/(?P<rcv>\d+)/\d+%"
    r"(?:, min/avg/max = (?P<min>[\d.]+)/(?P<avg>[\d.]+)/(?P<max>[\d.]+))?")


@dataclass(frozen=True)
class Result:
    pair: Pair
    sent: int
    received: int
    rtt_avg_ms: Optional[float]

    @property
    def reachable(self) -> bool:
        return self.received > 0

    @property
    def ok(self) -> bool:
        """Meets the Kubernetes network model: every pair must be reachable, except what
        a NetworkPolicy denies."""
        return self.reachable or not self.pair.required

    @property
    def as_predicted(self) -> bool:
        return self.reachable == self.pair.predicted

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self.pair), "required": self.pair.required, "sent": self.sent, "received": self.received,
                "reachable": self.reachable, "ok": self.ok, "as_predicted": self.as_predicted,
                "rtt_avg_ms": self.rtt_avg_ms}


def fping(pid: int, targets: list[str], count: int, timeout_ms: int) -> dict[str, tuple[int, int, Optional[float]]]:
    args = ["mnexec", "-a", str(pid), "fping", "-q", "-c", str(count), "-p", "20", "-i", "1",
            "-t", str(timeout_ms), *targets]
    out = run(args, timeout=10 + count * timeout_ms / 1000 * 2, check=False)
    stats: dict[str, tuple[int, int, Optional[float]]] = {}
    for line in (out.stderr + out.stdout).splitlines():
        m = _FPING_LINE.match(line.strip())
        if m:
            avg = float(m["avg"]) if m["avg"] else None
            stats[m["ip"]] = (int(m["xmt"]), int(m["rcv"]), avg)
    missing = [t for t in targets if t not in stats]
    if missing:
        raise RuntimeError(f"fping gave no result for {missing}: {out.stderr.strip()[:500]}")
    return stats


def probe(net: Any, cluster: Cluster, count: int = 2, timeout_ms: int = 500,
          retry_unreachable: bool = True) -> list[Result]:
    """Run the matrix on a running cluster (``net`` maps host names to Mininet hosts)."""
    all_pairs = pairs(cluster)
    by_src: dict[str, list[Pair]] = {}
    for pair in all_pairs:
        by_src.setdefault(pair.src, []).append(pair)

    def one(src: str, targets: list[Pair], n: int) -> list[Result]:
        stats = fping(net[src].pid, sorted({p.dst_ip for p in targets}), n, timeout_ms)
        return [Result(p, *stats[p.dst_ip]) for p in targets]

    with ThreadPoolExecutor(max_workers=min(32, len(by_src) or 1)) as pool:
        results = [r for chunk in pool.map(lambda kv: one(kv[0], kv[1], count), by_src.items())
                   for r in chunk]
    if retry_unreachable:
        # A first packet can be lost to ARP resolution; give failures one more chance.
        failed: dict[str, list[Pair]] = {}
        for r in results:
            if not r.reachable and r.pair.predicted:
                failed.setdefault(r.pair.src, []).append(r.pair)
        if failed:
            with ThreadPoolExecutor(max_workers=min(32, len(failed))) as pool:
                retried = {(r.pair.src, r.pair.dst): r for chunk in
                           pool.map(lambda kv: one(kv[0], kv[1], 3), failed.items()) for r in chunk}
            results = [retried.get((r.pair.src, r.pair.dst), r) for r in results]
    return results


def wait_reachable(net: Any, cluster: Cluster, timeout: float = 30.0) -> float:
    """Probe until every pair the backend can carry answers; return the seconds it took."""
    t0 = time.monotonic()
    while True:
        results = probe(net, cluster, count=1, timeout_ms=300, retry_unreachable=False)
        if all(r.reachable for r in results if r.pair.predicted):
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            bad = [f"{r.pair.src}->{r.pair.dst}" for r in results if r.pair.predicted and not r.reachable][:10]
            raise TimeoutError(f"not reachable after {timeout:g}s: {', '.join(bad)}")


@dataclass
class Matrix:
    """One probe of the whole matrix on a running cluster: what ``k8snet check`` prints,
    what its ``--json`` writes (:meth:`document`), what ``ClusterNet.matrix()`` returns."""

    cluster: Cluster
    results: list[Result]
    started: datetime
    finished: datetime
    probe_s: float
    timings: dict[str, float] = field(default_factory=dict)
    #: The controller's framework (os-ken or Ryu), recorded with the environment.
    framework: str = "os-ken"

    @property
    def failed(self) -> list[Result]:
        """Pairs that break the Kubernetes network model (every pair that no policy denies
        must be reachable)."""
        return [r for r in self.results if not r.ok]

    @property
    def surprises(self) -> list[Result]:
        """Pairs where the emulation disagrees with the backend's prediction (a bug)."""
        return [r for r in self.results if not r.as_predicted]

    def summary(self) -> dict[str, dict[str, int]]:
        """Per path kind: pairs, reachable, predicted reachable, as predicted."""
        out: dict[str, dict[str, int]] = {}
        for r in self.results:
            row = out.setdefault(r.pair.kind, {"pairs": 0, "reachable": 0, "predicted": 0, "as_predicted": 0})
            row["pairs"] += 1
            row["reachable"] += r.reachable
            row["predicted"] += r.pair.predicted
            row["as_predicted"] += r.as_predicted
        return out

    def document(self, command: Optional[list[str]] = None) -> dict[str, Any]:
        """The JSON document (``kind: k8snet.check``): environment, the resolved cluster,
        build and probe timings, the summary, and one row per pair."""
        fping = run(["fping", "--version"], check=False).stdout.strip().splitlines()
        return {"kind": "k8snet.check", "command": list(command if command is not None else sys.argv),
                "started": self.started.isoformat(), "finished": self.finished.isoformat(),
                "environment": environment(self.cluster, fping=fping[0] if fping else "not installed",
                                           framework=self.framework),
                "cluster": json.loads(to_json(self.cluster)),
                "timings_s": {**self.timings, "probe": self.probe_s}, "summary": self.summary(),
                "ok": not self.failed, "as_predicted": not self.surprises,
                "results": [r.as_dict() for r in self.results]}


def measure(net: Any, cluster: Cluster, timings: Optional[dict[str, float]] = None,
            framework: str = "os-ken") -> Matrix:
    """Probe the full matrix once (``net`` maps host names to Mininet hosts)."""
    started, t0 = datetime.now(timezone.utc), time.monotonic()
    results = probe(net, cluster)
    return Matrix(cluster, results, started, datetime.now(timezone.utc), time.monotonic() - t0, dict(timings or {}),
                  framework)
