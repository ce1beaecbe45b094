"""A UDP client that never changes its source port follows its Service's endpoints.

kube-proxy deletes the conntrack entries of a UDP endpoint that goes away; without that
the client's entry keeps DNATing it to the gone pod for as long as it keeps sending.
The e2e suite checks it by replacing the server pod under a running client
(test/e2e/network/conntrack.go: "should be able to preserve UDP traffic when server pod
cycles for a ClusterIP service" and "... for a NodePort service"); here on every path a
client can take: ClusterIP from a pod, NodePort and the load balancer from outside.

::

    client (node-0) ─┐                      udp-a (node-1)  -> replaced by ->  udp-b (node-2)
    external ────────┼─ ClusterIP / NodePort (node-0) / LB VIP  ->  Service udp 5353/UDP
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from k8snet.model.apply import apply_text
from k8snet.model.manifests import load_text
from topos.agent import SCRIPT as AGENT
from topos.cluster import ClusterNet

SPEC = """\
apiVersion: k8snet.io/v1alpha1
kind: Cluster
metadata: {name: udp}
spec: {nodes: 3, backend: BACKEND}
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec: {nodeName: node-0}
---
apiVersion: v1
kind: Pod
metadata: {name: udp-a, labels: {app: udp}}
spec: {nodeName: node-1}
---
apiVersion: v1
kind: Service
metadata: {name: udp}
spec:
  type: LoadBalancer
  selector: {app: udp}
  ports: [{port: 5353, protocol: UDP}]
"""
POD_B = ("apiVersion: v1\nkind: Pod\nmetadata:\n  name: udp-b\n  labels: {app: udp}\n"
         "  annotations: {k8snet.io/ready: 'READY'}\nspec: {nodeName: node-2}\n")
NOT_READY = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: NAME\n  annotations: {k8snet.io/ready: 'READY'}\n"
#: How soon after the change the client must be answered by the new pod (the issue's bound).
FOLLOW_S = 1.0


def streams(net: ClusterNet, seconds: float,
            only: tuple[str, ...] = ("clusterip", "nodeport", "loadbalancer")) -> dict[str, subprocess.Popen]:
    """One client per path, each sending a datagram every 200 ms from a fixed source port."""
    cluster = net.cluster
    svc = cluster.service("udp")
    node_port = svc.ports[0].node_port
    paths = {"clusterip": ("client", str(svc.cluster_ip), 5353, 40000),
             "nodeport": ("external", str(cluster.node("node-0").ip), node_port, 40001),
             "loadbalancer": ("external", str(svc.load_balancer_ip), 5353, 40002)}
    return {path: net.net[host].popen(
        ["/usr/bin/python3", AGENT, "ask", "--proto", "udp", "--ip", ip, "--port", str(port), "--sport",
         str(sport), "--interval", "0.2", "--timeout", "0.2", "--duration", str(seconds)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for path, (host, ip, port, sport) in paths.items() if path in only}


def collect(procs: dict[str, subprocess.Popen]) -> dict[str, list[dict]]:
    out = {}
    for path, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 0, stderr
        out[path] = json.loads(stdout)
    return out


def check_followed(samples: dict[str, list[dict]], changed: float, old: str, new: str) -> None:
    for path, rows in samples.items():
        before = [r for r in rows if r["t"] < changed]
        after = [r for r in rows if r["t"] >= changed]
        assert any(r.get("server") == old for r in before), f"{path}: {old} never answered before the change"
        first_new = next((r["t"] for r in after if r.get("server") == new), None)
        assert first_new is not None, f"{path}: {new} never answered after the change: {after[-5:]}"
        assert first_new - changed <= FOLLOW_S, f"{path}: {new} answered {first_new - changed:.2f}s after the change"
        late_old = [r for r in after if r.get("server") == old and r["t"] > changed + 0.3]
        assert not late_old, f"{path}: {old} still answered {late_old[-1]['t'] - changed:.2f}s after it left"
        # From the first answer of the new pod on, every datagram is answered by it.
        settled = [r for r in after if r["t"] >= first_new]
        assert all(r.get("server") == new for r in settled), f"{path}: {[r for r in settled if not r.get('ok')]}"


@pytest.mark.parametrize("backend", ["host-gw", "vxlan"])
def test_udp_client_follows_a_replaced_server_pod(backend, no_leaks):
    with ClusterNet(load_text(SPEC.replace("BACKEND", backend))) as net:
        net.serve("udp-a", 5353, "udp")
        procs = streams(net, seconds=5.0)
        time.sleep(1.5)
        net.apply(apply_text(net.cluster, POD_B.replace("READY", "true")))  # the replacement comes up
        net.serve("udp-b", 5353, "udp")
        # ...and the old pod goes: `kubectl delete pod udp-a`.
        changed = time.time()
        net.apply(apply_text(net.cluster, "apiVersion: v1\nkind: Pod\nmetadata: {name: udp-a}\n", delete=True))
        samples = collect(procs)
        flushed = sum(s["ct_flushes"] for s in net.api.status()["switches"].values())
    check_followed(samples, changed, "udp-a", "udp-b")
    assert flushed > 0


def test_udp_through_a_local_policy_load_balancer_follows_the_pod_to_its_new_node(no_leaks):
    """externalTrafficPolicy Local: the load balancer only targets nodes with an endpoint;
    when the pod moves, the node it left stops being a target and the load balancer's own
    UDP flows to it are forgotten (as a cloud LB's failed health check would)."""
    spec = SPEC.replace("BACKEND", "host-gw").replace("type: LoadBalancer", "type: LoadBalancer\n"
                                                       "  externalTrafficPolicy: Local")
    with ClusterNet(load_text(spec)) as net:
        net.serve("udp-a", 5353, "udp")
        procs = streams(net, seconds=4.0, only=("loadbalancer",))
        time.sleep(1.5)
        net.apply(apply_text(net.cluster, POD_B.replace("READY", "true")))
        net.serve("udp-b", 5353, "udp")
        changed = time.time()
        net.apply(apply_text(net.cluster, "apiVersion: v1\nkind: Pod\nmetadata: {name: udp-a}\n", delete=True))
        samples = collect(procs)
    check_followed(samples, changed, "udp-a", "udp-b")


def test_udp_client_follows_readiness(no_leaks):
    """udp-a ready and udp-b not; then the other way round in one change."""
    with ClusterNet(load_text(SPEC.replace("BACKEND", "host-gw") + "---\n" + POD_B.replace("READY", "false"))) as net:
        net.serve("udp-a", 5353, "udp")
        net.serve("udp-b", 5353, "udp")
        procs = streams(net, seconds=4.0)
        time.sleep(1.5)
        changed = time.time()
        net.apply(apply_text(net.cluster, NOT_READY.replace("NAME", "udp-a").replace("READY", "false") + "---\n" +
                             NOT_READY.replace("NAME", "udp-b").replace("READY", "true")))
        samples = collect(procs)
    check_followed(samples, changed, "udp-a", "udp-b")
