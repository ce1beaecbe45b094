"""The scenarios ``k8snet run`` knows, in the order ``all`` runs them."""

from __future__ import annotations

from k8snet.scenarios.base import Options, Recorder, Scenario, Target
from k8snet.scenarios.ingress import Ingress
from k8snet.scenarios.latency import Latency
from k8snet.scenarios.reachability import Reachability
from k8snet.scenarios.services import Services
from k8snet.scenarios.throughput import Throughput

SCENARIOS: dict[str, type[Scenario]] = {s.name: s for s in (Reachability, Throughput, Latency, Services, Ingress)}
ORDER = list(SCENARIOS)

__all__ = ["SCENARIOS", "ORDER", "Options", "Recorder", "Scenario", "Target"]
