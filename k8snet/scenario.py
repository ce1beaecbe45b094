"""What a scenario is written against: the clusters under test, the recorder, the options.

A scenario is one file in the top-level ``scenarios/`` folder holding a subclass of
:class:`Scenario` with a ``name``, a ``description``, ``steps()`` (how many progress
steps it will take, for the time-left estimate) and ``run()``, which measures on every
:class:`Target` and records each observation with :meth:`Recorder.add`.  It never writes
files: the runner writes whatever was recorded, also when the run is interrupted or the
scenario fails half way.  ``scenarios/__init__.py`` finds the classes; nothing else
lists them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from k8snet import results
from k8snet.results import Measurement, SummaryRow
from k8snet.model.apply import apply_text
from topos.cluster import ClusterNet
from k8snet.model.cluster import Cluster, Node
from k8snet.model.access import macvlan_service
from k8snet.model.reach import round_trip


@dataclass
class Options:
    """Knobs shared by all scenarios (``k8snet run --seconds ... --repeat ...``)."""

    seconds: int = 2          # iperf3 -t per throughput cell
    repeat: int = 3           # repetitions of every throughput / ingress cell
    pings: int = 100          # RTT samples per latency path
    connections: int = 300    # connections for the Service spread
    churn: int = 6            # endpoint changes in the Service convergence timeline
    blob_mb: int = 32         # size of the file the ingress throughput downloads
    streams: tuple[int, ...] = (1, 4)
    protocols: tuple[str, ...] = ("tcp", "udp")
    schedule: str = ""        # a fault schedule file for the faults scenario (k8snet/model/schedule.py)
    loss: tuple[float, ...] = ()  # throughput: the underlay losses (%) of the TCP-vs-loss sweep
    congestion: str = ""      # throughput: TCP congestion control for iperf3 (-C); "" = the machine's default

    def as_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


@dataclass
class Target:
    """One running cluster under test, labelled ``backend/underlay[/access]`` in the results."""

    net: ClusterNet
    workloads: list[str] = field(default_factory=list)

    @property
    def cluster(self) -> Cluster:
        return self.net.cluster

    @property
    def backend(self) -> str:
        return self.cluster.backend.value

    @property
    def underlay(self) -> str:
        return self.cluster.underlay.type.value

    @property
    def access(self) -> str:
        return self.cluster.access

    @property
    def label(self) -> str:
        return results.label(self.backend, self.underlay, self.access)

    def apply(self, text: str) -> Cluster:
        """``kubectl apply`` on this cluster, recorded in the results' metadata."""
        self.net.apply(apply_text(self.net.cluster, text))
        if text not in self.workloads:
            self.workloads.append(text)
        return self.net.cluster

    def reachable(self, a: Node, b: Node) -> tuple[bool, str]:
        """Can pods on ``a`` and ``b`` make the round trip (the backend's prediction)?"""
        return round_trip(self.cluster, a.name, b.name)

    def service_reachable(self, client: Node, endpoint: Node, from_pod: bool = True) -> tuple[bool, str]:
        """Can a Service connection reach an endpoint on ``endpoint``: from a pod on ``client``
        (ClusterIP), or through ``client``'s own switch (a NodePort, the load balancer's
        pick)?  As :meth:`reachable`, except where the access mode keeps Services off a
        path (macvlan: :func:`k8snet.model.access.macvlan_service`)."""
        if self.cluster.access == "macvlan":
            return macvlan_service(self.cluster, None if from_pod else client, endpoint)
        return self.reachable(client, endpoint)

    def load_balanced(self, endpoint: Node) -> tuple[bool, str]:
        """Can the load balancer's every pick (any node) reach an endpoint on ``endpoint``?"""
        bad = [why for ok, why in (self.service_reachable(n, endpoint, from_pod=False) for n in self.cluster.nodes)
               if not ok]
        return not bad, bad[0] if bad else ""


Step = Callable[[str], None]


class Recorder:
    """Collects one scenario's measurements and raw tool output, in order."""

    def __init__(self, scenario: str, step: Optional[Step] = None):
        self.scenario = scenario
        self.measurements: list[Measurement] = []
        self.raw: dict[str, Any] = {}
        self.t0 = time.monotonic()
        self._step = step or (lambda what: None)
        self._ids: set[str] = set()

    def step(self, what: str) -> None:
        """Tell the progress display what is being measured now (one step done)."""
        self._step(what)

    def now(self) -> float:
        return round(time.monotonic() - self.t0, 4)

    def add(self, target: Optional[Target], path: str, metric: str, unit: str, *, src: str, dst: str,
            protocol: str = "-", streams: Optional[int] = None, repeat: int = 0, value: Optional[float] = None,
            error: Optional[str] = None, note: str = "", raw: Any = None, t: Optional[float] = None) -> Measurement:
        backend = target.backend if target else "reference"
        underlay = target.underlay if target else "-"
        access = target.access if target else "-"
        cell = (backend, underlay) if access in ("bridge", "-") else (backend, underlay, access)
        base = "/".join(str(x) for x in (self.scenario, *cell, path, src, dst, protocol,
                                         streams or "-", metric, repeat))
        mid, n = base, 1
        while mid in self._ids:
            n += 1
            mid = f"{base}#{n}"
        self._ids.add(mid)
        raw_key = None
        if raw is not None:
            raw_key = mid
            self.raw[mid] = raw
        m = Measurement(id=mid, scenario=self.scenario, backend=backend, underlay=underlay, access=access,
                        path=path, src=src,
                        dst=dst, protocol=protocol, streams=streams, repeat=repeat, metric=metric,
                        value=None if error else value, unit=unit, ok=error is None, error=error, note=note,
                        t=self.now() if t is None else t, raw=raw_key)
        self.measurements.append(m)
        return m


class Scenario:
    """Subclass it in a file of ``scenarios/``; ``name`` is what ``k8snet run`` takes."""

    name = ""
    description = ""
    #: Where ``k8snet run all`` puts it: lower first, then by name.
    order = 100
    #: Turn on cluster DNS (a kube-dns pod) in the clusters this scenario runs on.
    needs_dns = False
    #: NodePorts the scenario's workload asks for by number; the cluster's
    #: ``serviceNodePortRange`` is widened to hold them (kube-apiserver's
    #: ``--service-node-port-range``).
    node_ports: tuple[int, ...] = ()

    def __init__(self, options: Options):
        self.options = options

    def check(self, clusters: list[Cluster]) -> Optional[str]:
        """What is wrong with this scenario's own input for these clusters (a sentence that
        names the option and the fix), before anything starts; None when nothing is."""
        return None

    def steps(self, targets: list[Target]) -> int:
        raise NotImplementedError

    def run(self, targets: list[Target], rec: Recorder) -> None:
        raise NotImplementedError

    def summarize(self, measurements: list[Measurement]) -> list[SummaryRow]:
        """The summary table of the result (median, min, max per group); a scenario
        may add to it (throughput adds its ratios to the references)."""
        return results.summarize(measurements)
