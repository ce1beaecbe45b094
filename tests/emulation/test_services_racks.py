r"""Services across rack gateways, each test on a cluster of its own (the ``racks`` spec,
a web pod on every node).

::

    node-0 node-1           node-2 node-3
       \   /                   \   /
      gw-rack-0 ── core ── gw-rack-1
                   /  \
            external    lb          (each on a /30 of its own to the core)
"""

from __future__ import annotations

import pytest

from k8snet.model.manifests import Overrides, load_text
from tests.emulation.conftest import WEB_SERVICE
from topos.cluster import ClusterNet
from topos.specs import embedded_spec_text


def test_clusterip_across_racks_over_vxlan(no_leaks):
    cluster = load_text(embedded_spec_text("racks") + WEB_SERVICE)
    vip = str(cluster.service("web").cluster_ip)
    client = next(p for p in cluster.pods if p.node == "node-0")
    with ClusterNet(cluster) as net:
        for pod in cluster.pods:
            net.serve(pod.host_name, 8080)
        results = net.ask(client.host_name, vip, 80, count=80)
    assert all(r["ok"] and r["from"] == vip for r in results), [r for r in results if not r["ok"]][:3]
    # The client is an endpoint too: its own connections are hairpinned (SNAT to its gateway).
    assert all(r["seen_as"] == str(client.ip) for r in results if r["server"] != client.host_name)
    assert {r["server"] for r in results} == {p.host_name for p in cluster.pods}
    assert {p.node for p in cluster.pods} == {"node-0", "node-1", "node-2", "node-3"}


@pytest.mark.parametrize("backend", ["vxlan", "directrouting"])
def test_node_port_and_load_balancer_across_racks(backend, no_leaks):
    text = embedded_spec_text("racks") + """---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080, nodePort: 30080}]
"""
    cluster = load_text(text, Overrides(backend=backend))
    external = cluster.underlay.external
    vip = str(cluster.service("web").load_balancer_ip)
    with ClusterNet(cluster) as net:
        for pod in cluster.pods:
            net.serve(pod.host_name, 8080)
        for node in cluster.nodes:
            results = net.ask(external.name, str(node.ip), 30080, count=20)
            assert all(r["ok"] and r["seen_as"] == str(node.ip) for r in results), (node.name, results[:3])
        through_lb = net.ask(external.name, vip, 80, count=40)
    assert all(r["ok"] and r["from"] == vip for r in through_lb), through_lb[:3]
    assert {r["seen_as"] for r in through_lb} == {str(n.ip) for n in cluster.nodes}
