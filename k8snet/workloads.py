"""The measurement workload the reachability, throughput and latency scenarios share.

Plain Kubernetes YAML, applied to the running cluster like ``kubectl apply``::

    node A (the first node)             node B (the last node: another rack when there are racks)
    ┌──────────────────────────┐        ┌──────────────────────────┐
    │ perf-client  perf-local  │        │ perf-server              │
    └──────────────────────────┘        └──────────────────────────┘
    Service perf      (NodePort)     -> perf-server: 5201/TCP+UDP (iperf3, one NodePort for both), 8080/TCP (echo)
    Service perf-lb   (LoadBalancer) -> perf-server: 8080/TCP

The paths measured are then: same-node (client -> local), cross-node (client ->
server), clusterip (client -> perf's ClusterIP), nodeport (the external host -> node
A's IP:nodePort, forwarded to node B) and loadbalancer (external -> the LB's VIP).
"""

from __future__ import annotations

from dataclasses import dataclass

from k8snet.scenario import Target
from k8snet.model.cluster import Cluster, Node, Pod, Service

ECHO_PORT = 8080
IPERF_PORT = 5201


def perf_yaml(node_a: str, node_b: str, node_port: int) -> str:
    return f"""\
apiVersion: v1
kind: Pod
metadata: {{name: perf-client, labels: {{app: perf-client}}}}
spec: {{nodeName: {node_a}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: perf-local, labels: {{app: perf-local}}}}
spec:
  nodeName: {node_a}
  containers: [{{name: iperf3, ports: [{{containerPort: {IPERF_PORT}}}]}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: perf-server, labels: {{app: perf-server}}}}
spec:
  nodeName: {node_b}
  containers:
    - name: iperf3
      ports:
        - {{name: iperf, containerPort: {IPERF_PORT}}}
        - {{name: iperf-udp, containerPort: {IPERF_PORT}, protocol: UDP}}
        - {{name: echo, containerPort: {ECHO_PORT}}}
---
apiVersion: v1
kind: Service
metadata: {{name: perf}}
spec:
  type: NodePort
  selector: {{app: perf-server}}
  ports:
    - {{name: iperf, port: {IPERF_PORT}, targetPort: iperf, nodePort: {node_port}}}
    - {{name: iperf-udp, port: {IPERF_PORT}, protocol: UDP, targetPort: iperf-udp, nodePort: {node_port}}}
    - {{name: echo, port: {ECHO_PORT}, targetPort: echo}}
---
apiVersion: v1
kind: Service
metadata: {{name: perf-lb}}
spec:
  type: LoadBalancer
  selector: {{app: perf-server}}
  ports:
    - {{name: echo, port: {ECHO_PORT}, targetPort: echo}}
"""


@dataclass(frozen=True)
class Perf:
    """The applied workload, resolved against the running cluster."""

    node_a: Node
    node_b: Node
    client: Pod
    local: Pod
    server: Pod
    service: Service
    lb: Service

    def node_port(self, port: int, protocol: str = "TCP") -> int:
        found = next(p.node_port for p in self.service.ports if p.port == port and p.protocol == protocol)
        assert found is not None
        return found


def free_node_port(cluster: Cluster) -> int:
    """The highest NodePort no Service uses: iperf3 sends its UDP data to the port of its
    TCP control connection, so the perf Service asks for one number for both protocols
    (Kubernetes allows that only when the number is given)."""
    used = {p.node_port for s in cluster.services for p in s.ports if p.node_port}
    low, high = cluster.node_port_range
    return next(port for port in range(high, low - 1, -1) if port not in used)


def ensure_perf(target: Target) -> Perf:
    """Apply the workload and start the echo server, the first time; later, the workload
    as it runs."""
    nodes = target.cluster.nodes
    node_a, node_b = nodes[0], nodes[-1]
    first = not any(p.name == "perf-server" for p in target.cluster.pods)
    cluster = target.apply(perf_yaml(node_a.name, node_b.name, free_node_port(target.cluster))) if first \
        else target.cluster
    perf = Perf(node_a, node_b, cluster.pod("perf-client"), cluster.pod("perf-local"), cluster.pod("perf-server"),
                cluster.service("perf"), cluster.service("perf-lb"))
    if first:
        target.net.serve(perf.server.host_name, ECHO_PORT)
    return perf
