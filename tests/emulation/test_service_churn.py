"""100 endpoint changes under load, and not one connection lost.

Clients on every node open back-to-back TCP connections to the ClusterIP, and the
external host to a NodePort and to the load balancer's VIP (about 200 a second in all),
while the Service's endpoints are changed 100 times: marked not ready and ready, scaled
up (a new pod starts serving before it becomes an endpoint, as a readiness probe would
have it) and down (a pod is taken out of the endpoints first and deleted after
a grace period as long as a connection attempt can last, as Kubernetes terminates it),
and a lone pod with the Service's labels added and removed the same way.
Every connection must succeed, and connections held open to endpoints that stay must
run through all of it (kube-proxy users do not lose connections to endpoints that stay).

::

    c0 (node-0)  c1 (node-1)  c2 (node-2)  -> ClusterIP web:80
    external -> node-1:NodePort, external -> LB VIP:80          web-0 .. web-N : 8080
"""

from __future__ import annotations

import json
import subprocess
import time

from k8snet.model.apply import apply_text
from k8snet.model.manifests import load_text
from topos.agent import SCRIPT as AGENT
from topos.cluster import ClusterNet

SPEC = """\
apiVersion: k8snet.io/v1alpha1
kind: Cluster
metadata: {name: churn}
spec: {nodes: 3}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 4
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, ports: [{name: http, containerPort: 8080}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
""" + "".join(f"---\napiVersion: v1\nkind: Pod\nmetadata: {{name: c{i}}}\nspec: {{nodeName: node-{i}}}\n"
              for i in range(3))
CHANGES = 100
#: A connection attempt gives up after this long; a deleted pod gets this long to finish
#: what it started (its termination grace period).
ATTEMPT_S = 1.0
#: web-0 .. web-2 are never touched: connections held to them must survive everything.
UNTOUCHED = {"web-0", "web-1", "web-2"}


def readiness(name: str, ready: bool) -> str:
    return (f"apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n"
            f"  annotations: {{k8snet.io/ready: '{str(ready).lower()}'}}\n")


def scaled(replicas: int) -> str:
    return SPEC.split("---\n")[1].replace("replicas: 4", f"replicas: {replicas}")


EXTRA = ("apiVersion: v1\nkind: Pod\nspec: {containers: [{name: web, ports: [{name: http, containerPort: 8080}]}]}\n"
         "metadata:\n  name: extra\n  labels: {app: web}\n")


class Churn:
    """Counts the changes it makes; every change is one apply of Kubernetes YAML."""

    def __init__(self, net: ClusterNet):
        self.net = net
        self.count = 0

    def apply(self, text: str, delete: bool = False) -> None:
        self.net.apply(apply_text(self.net.cluster, text, delete=delete))
        self.count += 1

    def flip(self, name: str) -> None:
        """Not ready, then ready again (two changes)."""
        self.apply(readiness(name, False))
        time.sleep(0.05)
        self.apply(readiness(name, True))

    def serve(self, pod) -> None:
        self.net.serve(pod.host_name, 8080)

    def scale_up_and_down(self) -> None:
        """One more replica, serving before it is an endpoint (as a readiness probe would
        have it), then gracefully away: out of the endpoints, a grace period, gone."""
        replicas = len([p for p in self.net.cluster.pods if p.owner == "web"])
        self.net.apply(apply_text(self.net.cluster, scaled(replicas + 1)), started=self.serve)
        self.count += 1
        self.apply(readiness(f"web-{replicas}", False))   # terminating: no longer an endpoint
        time.sleep(ATTEMPT_S)                            # its grace period
        self.apply(scaled(replicas))                     # deleted

    def add_and_remove(self) -> None:
        """A lone Pod with the Service's labels: created (serving first), then deleted the same way."""
        self.net.apply(apply_text(self.net.cluster, EXTRA), started=self.serve)
        self.count += 1
        self.apply(EXTRA + "  annotations: {k8snet.io/ready: 'false'}\n")
        time.sleep(ATTEMPT_S)
        self.apply(EXTRA, delete=True)


def test_a_hundred_endpoint_changes_under_load_lose_no_connection(no_leaks):
    with ClusterNet(load_text(SPEC)) as net:
        for pod in net.cluster.pods:
            if pod.owner == "web":
                net.serve(pod.host_name, 8080)
        svc = net.cluster.service("web")
        targets = {f"c{i}": (str(svc.cluster_ip), 80) for i in range(3)}
        # Held connections first, each established (the agent says so) before any change;
        # more until two stand on endpoints the churn never touches.
        holders = []
        while sum(h.server in UNTOUCHED for h in holders) < 2 and len(holders) < 30:
            holder = net.hold("c0", str(svc.cluster_ip), 80, seconds=300)
            holder.established()
            holders.append(holder)
        duration = 300.0  # an upper bound: the streams are stopped (SIGTERM) when the churn is over
        streams = {host: net.net[host].popen(
            ["/usr/bin/python3", AGENT, "ask", "--ip", ip, "--port", str(port), "--duration", str(duration),
             "--interval", "0.012", "--timeout", str(ATTEMPT_S)], stdout=subprocess.PIPE, text=True)
            for host, (ip, port) in targets.items()}
        for name, (ip, port) in (("nodeport", (str(net.cluster.node("node-1").ip), svc.ports[0].node_port)),
                                 ("loadbalancer", (str(svc.load_balancer_ip), 80))):
            streams[name] = net.net["external"].popen(
                ["/usr/bin/python3", AGENT, "ask", "--ip", ip, "--port", str(port), "--duration", str(duration),
                 "--interval", "0.03", "--timeout", str(ATTEMPT_S)], stdout=subprocess.PIPE, text=True)
        time.sleep(1.0)
        churn, started, first_change = Churn(net), time.monotonic(), time.time()
        while churn.count < CHANGES:
            churn.flip("web-3")
            churn.scale_up_and_down()
            churn.add_and_remove()
        churn_s, last_change = time.monotonic() - started, time.time()
        time.sleep(ATTEMPT_S)  # the load outlasts the last change by one attempt
        for proc in streams.values():
            proc.terminate()
        samples = {name: json.loads(proc.communicate(timeout=60)[0]) for name, proc in streams.items()}
        held = [(h.server, h.result(timeout=60, stop=True)) for h in holders]
    total = sum(len(s) for s in samples.values())
    failed = {name: [r for r in s if not r["ok"]] for name, s in samples.items()}
    assert churn.count >= CHANGES
    # The load ran across the whole churn on every path (its rate is the machine's to give).
    for name, rows in samples.items():
        assert rows[0]["t"] < first_change and rows[-1]["t"] > last_change, (name, len(rows))
    assert not any(failed.values()), ({name: (len(f), f[:3]) for name, f in failed.items() if f},
                                      f"{total} connections in {churn_s:.0f}s")
    served = {r["server"] for s in samples.values() for r in s}
    assert UNTOUCHED | {"web-3", "web-4", "extra"} <= served, served
    for server, result in held:
        if server in UNTOUCHED:
            # ...and it was busy all along (an exchange every ~50 ms), not just still open.
            assert result["ok"] and result["server"] == server and result["exchanges"] > 10 * churn_s, result
