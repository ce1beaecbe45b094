"""The full reachability matrix per backend, Services included, drawn as a heatmap.

* pod -> pod, node -> pod, pod -> node: ``fping`` from every source in parallel
  (:mod:`topos.probe`), each pair with the backend's prediction and its reason;
* pod -> Service: every pod opens a TCP connection to the ``perf`` ClusterIP;
* external -> NodePort: the external host connects to ``perf``'s NodePort on every node;
* external -> LoadBalancer: to ``perf-lb``'s VIP through the emulated cloud LB.

``value`` is 1 (reachable) or 0; ``note`` says what the backend predicts, and why not.
The Kubernetes model requires every pair; ``predicted`` tells a broken emulation
(reachability differs from the prediction) from a backend doing what it must
(host-gw across an L3 gateway).
"""

from __future__ import annotations

from k8snet.procs import CommandError
from k8snet.scenario import Recorder, Scenario, Target
from k8snet.workloads import ECHO_PORT, ensure_perf
from topos.probe import probe


def note(predicted: bool, reason: str) -> str:
    return "predicted reachable" if predicted else f"predicted unreachable: {reason}"


class Reachability(Scenario):
    name = "reachability"
    order = 10
    description = ("the full matrix: pod<->pod, node<->pod, pod->ClusterIP, external->NodePort on every node, "
                   "external->LoadBalancer VIP; reachable or not, against what the backend predicts")

    def steps(self, targets: list[Target]) -> int:
        return 3 * len(targets)

    def run(self, targets: list[Target], rec: Recorder) -> None:
        for target in targets:
            perf = ensure_perf(target)
            cluster = target.cluster
            rec.step(f"{target.label}: ping matrix")
            for r in probe(target.net.net, cluster, count=2):  # (two echoes: an RTT of two samples)
                rec.add(target, r.pair.kind, "reachable", "bool", src=r.pair.src, dst=r.pair.dst, protocol="icmp",
                        value=float(r.reachable), note=note(r.pair.predicted, r.pair.reason))
            rec.step(f"{target.label}: pods -> ClusterIP {perf.service.cluster_ip}:{ECHO_PORT}")
            server_node = cluster.node(perf.server.node)
            for pod in cluster.pods:
                predicted, why = target.service_reachable(cluster.node(pod.node), server_node)
                self.connect(target, rec, "pod-clusterip", pod.host_name, f"svc/{perf.service.name}",
                             str(perf.service.cluster_ip), ECHO_PORT, predicted, why)
            rec.step(f"{target.label}: external -> NodePorts and LoadBalancer")
            ext = cluster.underlay.external
            assert ext is not None
            node_port = perf.node_port(ECHO_PORT)
            for node in cluster.nodes:
                predicted, why = target.service_reachable(node, server_node, from_pod=False)
                self.connect(target, rec, "external-nodeport", ext.name, f"{node.name}:{node_port}", str(node.ip),
                             node_port, predicted, why)
            predicted, why = target.load_balanced(server_node)
            self.connect(target, rec, "external-loadbalancer", ext.name, f"lb/{perf.lb.name}",
                         str(perf.lb.load_balancer_ip), ECHO_PORT, predicted, why)

    @staticmethod
    def connect(target: Target, rec: Recorder, path: str, src: str, dst: str, ip: str, port: int,
                predicted: bool, why: str) -> None:
        where = dict(src=src, dst=dst, protocol="tcp")
        try:
            # Two tries: the first connection may wait for ARP on a cold path.
            answers = target.net.ask(src, ip, port, count=2, timeout=1.0)
        except (CommandError, ValueError) as exc:
            rec.add(target, path, "reachable", "bool", **where, error=f"probe failed: {exc}")
            return
        reachable = any(a.get("ok") for a in answers)
        served = next((a["server"] for a in answers if a.get("ok")), None)
        rec.add(target, path, "reachable", "bool", **where, value=float(reachable),
                note=note(predicted, why) + (f"; served by {served}" if served else ""))
