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
import random
import re
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Optional

from k8snet.model.cluster import Cluster, to_json
from k8snet.model.reach import Pair, PortPair, pairs, port_pairs, verdict
from k8snet.model.sampling import Sample
from k8snet.procs import CommandError, run
from topos.agent import SCRIPT as AGENT
from topos.environment import environment
from topos.neighbours import table_fulls

_FPING_LINE = re.compile(
    r"^(?P<ip>\S+)\s*:\s*xmt/rcv/%loss = (?P<xmt>\d+)/(?P<rcv>\d+)/\d+%"
    r"(?:, min/avg/max = (?P<min>[\d.]+)/(?P<avg>[\d.]+)/(?P<max>[\d.]+))?")


class Judged:
    """What a ping of a pair and a probe of a port share: the expectation they are judged
    against (``required``: the Kubernetes model needs it; ``predicted``: the backend and the
    policies say it is reachable), and how they fared."""

    reachable: bool

    @property
    def expected(self) -> "Pair | PortPair":
        raise NotImplementedError

    @property
    def name(self) -> str:
        """``src->dst`` for a pair, ``src->dst:80/tcp`` for a port."""
        return self.expected.id

    @property
    def ok(self) -> bool:
        """Meets the Kubernetes network model: everything must be reachable, except what a
        NetworkPolicy denies."""
        return self.reachable or not self.expected.required

    @property
    def as_predicted(self) -> bool:
        return self.reachable == self.expected.predicted


def tally(results: "list[Result] | list[PortResult]", key: Any, counted: str) -> dict[str, dict[str, int]]:
    """Per ``key(result)``: how many, reachable, predicted reachable, as predicted."""
    out: dict[str, dict[str, int]] = {}
    for r in results:
        row = out.setdefault(key(r), {counted: 0, "reachable": 0, "predicted": 0, "as_predicted": 0})
        row[counted] += 1
        row["reachable"] += r.reachable
        row["predicted"] += r.expected.predicted
        row["as_predicted"] += r.as_predicted
    return out


@dataclass(frozen=True)
class Result(Judged):
    pair: Pair
    sent: int
    received: int
    rtt_avg_ms: Optional[float]

    @property
    def expected(self) -> Pair:
        return self.pair

    @property
    def reachable(self) -> bool:  # type: ignore[override]
        return self.received > 0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self.pair), "required": self.pair.required, "sent": self.sent, "received": self.received,
                "reachable": self.reachable, "ok": self.ok, "as_predicted": self.as_predicted,
                "rtt_avg_ms": self.rtt_avg_ms}


@dataclass(frozen=True)
class PortResult(Judged):
    """One L4 probe: a new TCP connection (or a UDP datagram) to a port the destination
    pod declares, answered or not."""

    probe: PortPair
    reachable: bool
    error: str = ""
    ms: Optional[float] = None

    @property
    def expected(self) -> PortPair:
        return self.probe

    def as_dict(self) -> dict[str, Any]:
        p = self.probe
        return {"port": p.port, "protocol": p.protocol, "name": p.name, "predicted": p.predicted,
                "reason": p.reason, "denied_by": p.denied_by, "required": p.required,
                "reachable": self.reachable, "ok": self.ok, "as_predicted": self.as_predicted,
                "error": self.error, "ms": self.ms}


#: UDP probes are sent from ports of this range, below Linux's ephemeral range (32768 up)
#: and the NodePort range (30000 up), taken in turn (:func:`fresh_ports`) so that no probe
#: repeats a recent one's 5-tuple.
PROBE_PORTS = (10000, 30000)
_next_port = [random.randrange(*PROBE_PORTS)]
_port_lock = threading.Lock()


def fresh_ports(count: int) -> int:
    """The first of ``count`` consecutive UDP source ports no recent probe used.  A UDP
    "connection" is its 5-tuple: a datagram that repeats one a NetworkPolicy allowed
    earlier is let through as established after the policy changed (measured: the same
    source port got through a new deny-egress, a new one did not), which made a probe
    report a denied pair reachable when the kernel happened to pick the same port."""
    with _port_lock:
        if _next_port[0] + count > PROBE_PORTS[1]:
            _next_port[0] = PROBE_PORTS[0]
        first = _next_port[0]
        _next_port[0] += count
    return first


def sweep(pid: int, targets: list[str], timeout: float, tries: int) -> list[dict[str, Any]]:
    """``agent.py sweep`` in a namespace: every ``IP:PORT/proto`` target at once, each UDP
    try from a fresh source port."""
    args = ["mnexec", "-a", str(pid), "/usr/bin/python3", AGENT, "sweep", "--timeout", str(timeout),
            "--tries", str(tries), "--sport-base", str(fresh_ports(len(targets) * tries))]
    for target in targets:
        args += ["--target", target]
    out = run(args, timeout=15 + tries * (timeout + 0.2) * 2)
    return json.loads(out.stdout)


def probe_ports(net: Any, cluster: Cluster, timeout: float = 0.6,
                only: Optional[set[str]] = None, matrix_pairs: Optional[list[Pair]] = None) -> list[PortResult]:
    """The L4 half of the matrix (:func:`k8snet.model.reach.port_pairs`): from each source,
    every declared port of every destination pod at once.  Something must answer on those
    ports (:func:`topos.checks.declared_servers`).  A predicted-reachable probe that fails
    is tried again with a longer timeout, as the ICMP matrix retries (a first packet can
    wait on ARP or a cold datapath).  ``only``: the pairs whose both ends (pod host names,
    node names) are in it, when not all; ``matrix_pairs``: those pairs' ports only (a sample)."""
    by_src: dict[str, list[PortPair]] = {}
    for probe_ in port_pairs(cluster, matrix_pairs):
        if only is not None and not {probe_.pair.src, probe_.pair.dst} <= only:
            continue
        by_src.setdefault(probe_.pair.src, []).append(probe_)

    def one(src: str, probes: list[PortPair], wait: float, tries: int) -> list[PortResult]:
        targets = [f"{p.pair.dst_ip}:{p.port}/{p.protocol.lower()}" for p in probes]
        try:
            answers = sweep(net[src].pid, targets, wait, tries)
        except (CommandError, ValueError) as exc:
            raise RuntimeError(f"L4 probe from {src} failed: {exc}") from exc
        return [PortResult(p, bool(a["ok"]), a.get("error", ""), a.get("ms")) for p, a in zip(probes, answers)]

    with ThreadPoolExecutor(max_workers=min(32, len(by_src) or 1)) as pool:
        results = [r for chunk in pool.map(lambda kv: one(kv[0], kv[1], timeout, 1), by_src.items())
                   for r in chunk]
    again: dict[str, list[PortPair]] = {}
    for r in results:
        if not r.reachable and r.probe.predicted:
            again.setdefault(r.probe.pair.src, []).append(r.probe)
    if again:
        with ThreadPoolExecutor(max_workers=min(32, len(again))) as pool:
            retried = {r.probe.id: r for chunk in pool.map(lambda kv: one(kv[0], kv[1], 1.5, 2), again.items())
                       for r in chunk}
        results = [retried.get(r.probe.id, r) for r in results]
    return results


#: How long the matrix waits before it probes its misses again (s).
RETRY_PAUSE_S = 1.0


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


def probe(net: Any, cluster: Cluster, count: int = 1, timeout_ms: int = 500,
          retry_unreachable: bool = True, only: Optional[list[Pair]] = None) -> list[Result]:
    """Run the matrix on a running cluster (``net`` maps host names to Mininet hosts);
    ``only``: these pairs of it (a sample), not all.  One echo per pair (``count``): a pair
    that misses it -- predicted reachable or not -- gets three more (``retry_unreachable``),
    so one lost echo never decides a pair either way, and a healthy matrix takes half the
    time of two echoes each (32 x 4, 24,448 pairs: 2.6 s against 4.5 s, the echoes of 32
    fpings at once competing with 32 vswitchds for 2 cores).  A pair's counts are those
    of both passes ("0 of 4 answered")."""
    all_pairs = pairs(cluster) if only is None else only
    by_src: dict[str, list[Pair]] = {}
    for pair in all_pairs:
        by_src.setdefault(pair.src, []).append(pair)

    def one(src: str, targets: list[Pair], n: int, wait_ms: int) -> list[Result]:
        stats = fping(net[src].pid, sorted({p.dst_ip for p in targets}), n, wait_ms)
        return [Result(p, *stats[p.dst_ip]) for p in targets]

    with ThreadPoolExecutor(max_workers=min(32, len(by_src) or 1)) as pool:
        results = [r for chunk in pool.map(lambda kv: one(kv[0], kv[1], count, timeout_ms), by_src.items())
                   for r in chunk]
    if retry_unreachable:
        # A first packet can be lost to ARP resolution or to a probe that loads the
        # datapath it measures (32 sources at once); failures get one more chance once the
        # switches have drained (1 s), at a quarter of the pace and twice the patience.
        # (The misses once seen at 512 pods were the kernel's one ARP table overflowing,
        # not the dataplane: topos/neighbours.py.)
        failed: dict[str, list[Pair]] = {}
        for r in results:
            if not r.reachable:
                failed.setdefault(r.pair.src, []).append(r.pair)
        if failed:
            time.sleep(RETRY_PAUSE_S)
            with ThreadPoolExecutor(max_workers=min(8, len(failed))) as pool:
                retried = {(r.pair.src, r.pair.dst): r for chunk in
                           pool.map(lambda kv: one(kv[0], kv[1], 3, 2 * timeout_ms), failed.items()) for r in chunk}
            results = [_both(r, retried.get((r.pair.src, r.pair.dst))) for r in results]
    return results


def _both(first: Result, again: Optional[Result]) -> Result:
    """A pair's first pass and its retry as one result (the retry's RTT, if it answered)."""
    if again is None:
        return first
    return Result(first.pair, first.sent + again.sent, first.received + again.received, again.rtt_avg_ms)


def wait_reachable(net: Any, cluster: Cluster, timeout: float = 30.0, only: Optional[list[Pair]] = None) -> float:
    """Probe until every pair the backend can carry has answered (``only``: these
    pairs); return the seconds it took.  Each round probes the pairs that have not
    answered yet: one lost echo (an ARP resolution under way) must not send every pair
    round again."""
    t0 = time.monotonic()
    pending = [p for p in (pairs(cluster) if only is None else only) if p.predicted]
    while pending:
        results = probe(net, cluster, count=1, timeout_ms=300, retry_unreachable=False, only=pending)
        pending = [r.pair for r in results if not r.reachable]
        if pending and time.monotonic() - t0 > timeout:
            bad = [p.id for p in pending][:10]
            raise TimeoutError(f"not reachable after {timeout:g}s ({len(pending)} pairs): {', '.join(bad)}")
    return time.monotonic() - t0


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
    #: The L4 probes (declared container ports), empty when none was asked for.
    ports: list[PortResult] = field(default_factory=list)
    #: When a sample was probed, not the whole matrix: its size, seed and path types
    #: (:func:`k8snet.model.sampling.summary`); None for the full matrix.
    sample: Optional[dict[str, Any]] = None
    #: How often the kernel found its one ARP table full while probing (topos/neighbours.py):
    #: a lost echo then says nothing about the dataplane.  None where it cannot be read.
    arp_table_fulls: Optional[int] = None

    @property
    def port_failed(self) -> list[PortResult]:
        """Declared ports no policy denies that did not answer."""
        return [r for r in self.ports if not r.ok]

    @property
    def port_surprises(self) -> list[PortResult]:
        """Declared ports that did other than the backend and the policies predict."""
        return [r for r in self.ports if not r.as_predicted]

    def port_summary(self) -> dict[str, dict[str, int]]:
        """Per declared port and protocol (``80/TCP``): probes, reachable, predicted, as predicted."""
        ordered = sorted(self.ports, key=lambda r: (r.probe.protocol, r.probe.port))
        return tally(ordered, lambda r: f"{r.probe.port}/{r.probe.protocol}", "probes")

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
        return tally(self.results, lambda r: r.pair.kind, "pairs")

    def document(self, command: Optional[list[str]] = None) -> dict[str, Any]:
        """The JSON document (``kind: k8snet.check``): environment, the resolved cluster,
        build and probe timings, the summary, and one row per pair; with policies each row
        carries the evaluator's verdict (deciding policy and rule), and each declared port
        of the destination its own probe and verdict."""
        fping = run(["fping", "--version"], check=False).stdout.strip().splitlines()
        by_pair: dict[str, list[PortResult]] = {}
        for p in self.ports:
            by_pair.setdefault(p.probe.pair.id, []).append(p)
        return {"kind": "k8snet.check", "command": list(command if command is not None else sys.argv),
                "started": self.started.isoformat(), "finished": self.finished.isoformat(),
                "environment": environment(self.cluster, fping=fping[0] if fping else "not installed",
                                           framework=self.framework),
                "cluster": json.loads(to_json(self.cluster)),
                "timings_s": {**self.timings, "probe": self.probe_s}, "summary": self.summary(),
                "sample": self.sample, "arp_table_fulls": self.arp_table_fulls,
                "port_summary": self.port_summary(),
                "ok": not self.failed and not self.port_failed,
                "as_predicted": not self.surprises and not self.port_surprises,
                "results": [self._row(r, by_pair.get(r.pair.id, [])) for r in self.results]}

    def _row(self, result: Result, ports: list[PortResult]) -> dict[str, Any]:
        row = result.as_dict()
        policies = bool(self.cluster.policies)
        if policies:
            row["verdict"] = verdict(self.cluster, result.pair).as_dict()
        row["ports"] = []
        for p in ports:
            port_row = p.as_dict()
            if policies:
                port_row["verdict"] = verdict(self.cluster, result.pair, p.probe.port, p.probe.protocol).as_dict()
            row["ports"].append(port_row)
        return row


def measure(net: Any, cluster: Cluster, timings: Optional[dict[str, float]] = None,
            framework: str = "os-ken", ports: bool = False, sample: Optional[Sample] = None) -> Matrix:
    """Probe the full matrix once (``net`` maps host names to Mininet hosts); ``ports``:
    also every port the destination pods declare (L4, :func:`probe_ports`); ``sample``:
    only its pairs (:func:`k8snet.model.sampling.draw`, stratified by path type)."""
    sample = sample or Sample.full(cluster)
    chosen, about = sample.pairs, sample.document() if sample.partial else None
    started, t0, fulls = datetime.now(timezone.utc), time.monotonic(), table_fulls()
    results = probe(net, cluster, only=chosen)
    l4 = probe_ports(net, cluster, matrix_pairs=chosen) if ports else []
    after = table_fulls()
    return Matrix(cluster, results, started, datetime.now(timezone.utc), time.monotonic() - t0, dict(timings or {}),
                  framework, l4, about, None if fulls is None or after is None else after - fulls)
