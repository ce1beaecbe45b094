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

import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any, Optional

from k8snet.procs import run
from topos.model import Cluster, RouteKind

_FPING_LINE = re.compile(
    r"^(?P<ip>\S+)\s*:\s*xmt/rcv/%loss = (?P<xmt>\d+)/(?P<rcv>\d+)/\d+%"
    r"(?:, min/avg/max = (?P<min>[\d.]+)/(?P<avg>[\d.]+)/(?P<max>[\d.]+))?")


@dataclass(frozen=True)
class Pair:
    src: str
    dst: str
    dst_ip: str
    kind: str          # pod-pod-same-node | pod-pod-cross-node | node-pod | pod-node
    predicted: bool    # what the backend on this underlay can do
    reason: str = ""   # why not, when predicted is False


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
        """Meets the Kubernetes network model (every pair must be reachable)."""
        return self.reachable

    @property
    def as_predicted(self) -> bool:
        return self.reachable == self.pair.predicted

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self.pair), "required": True, "sent": self.sent, "received": self.received,
                "reachable": self.reachable, "ok": self.ok, "as_predicted": self.as_predicted,
                "rtt_avg_ms": self.rtt_avg_ms}


def round_trip(cluster: Cluster, a: str, b: str) -> tuple[bool, str]:
    """Can traffic between nodes ``a`` and ``b``'s pods make the round trip?  Both
    directions need a route to the other's pod CIDR (:meth:`Cluster.route`)."""
    na, nb = cluster.node(a), cluster.node(b)
    for x, y in ((na, nb), (nb, na)):
        route = cluster.route(x, y)
        if route.kind is RouteKind.NONE:
            return False, route.reason
    return True, ""


def _expect_node(cluster: Cluster, node: str, pod_node: str) -> tuple[bool, str]:
    """A node's host network and a pod: the node needs a route to the pod's CIDR; the
    pod reaches the node IP over the underlay in any case."""
    route = cluster.route(cluster.node(node), cluster.node(pod_node))
    return route.kind is not RouteKind.NONE, route.reason


def pairs(cluster: Cluster) -> list[Pair]:
    """Every ordered pair the matrix probes, with what the network model expects."""
    out = []
    for src in cluster.pods:
        for dst in cluster.pods:
            if src is dst:
                continue
            kind = "pod-pod-same-node" if src.node == dst.node else "pod-pod-cross-node"
            out.append(Pair(src.host_name, dst.host_name, str(dst.ip), kind,
                            *round_trip(cluster, src.node, dst.node)))
    for node in cluster.nodes:
        for pod in cluster.pods:
            out.append(Pair(node.name, pod.host_name, str(pod.ip), "node-pod", *_expect_node(cluster, node.name, pod.node)))
    for pod in cluster.pods:
        for node in cluster.nodes:
            out.append(Pair(pod.host_name, node.name, str(node.ip), "pod-node", *_expect_node(cluster, node.name, pod.node)))
    return out


def _fping(pid: int, targets: list[str], count: int, timeout_ms: int) -> dict[str, tuple[int, int, Optional[float]]]:
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
        stats = _fping(net[src].pid, sorted({p.dst_ip for p in targets}), n, timeout_ms)
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
