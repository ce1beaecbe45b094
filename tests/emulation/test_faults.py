"""Faults on a running cluster, and what the cluster does about them, on real traffic.

::

                         external (control plane: lease watcher)
                            │
    node-0 ─┐            ┌─ core ─┐            ┌─ node-2
    node-1 ─┴ gw-rack-0 ═╛        ╘═ gw-rack-1 ┴─ node-3        VXLAN; one web pod per node,
    (client on node-0)                                            Service web 80 -> 8080

Every test leaves the cluster as it found it (all up, all Ready), so they share one.
"""

from __future__ import annotations

import json
import re
import subprocess
import time

import pytest

from k8snet.model.manifests import load_text
from topos.cluster import ClusterNet
from k8snet.model.faults import FaultInputError
from topos.ovs import wait_for

SPEC = """\
apiVersion: k8snet.io/v1alpha1
kind: Cluster
metadata: {name: faults}
spec:
  nodes: 4
  backend: vxlan
  underlay: {type: routed, racks: 2}
  nodeMonitorGracePeriod: 2
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 4
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, ports: [{containerPort: 8080}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec: {nodeName: node-0}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}
"""
CLUSTER = load_text(SPEC)
VIP = str(CLUSTER.service("web").cluster_ip)


@pytest.fixture(scope="module")
def net():
    with ClusterNet(CLUSTER) as running:
        for pod in running.cluster.pods:
            if pod.name.startswith("web-"):
                running.serve(pod.host_name, 8080)
        yield running


@pytest.fixture(autouse=True)
def all_up_after(net):
    yield
    assert net.faults.status()["links_down"] == [] and not net.faults.routers_down and not net.faults.switches_down
    wait_for(lambda: all(n.ready for n in net.cluster.nodes), 15, "every node Ready again")


def web_on(node: str):
    """The web pod the scheduler put on ``node`` (one per node)."""
    return next(p for p in CLUSTER.pods if p.node == node and p.name.startswith("web-"))


def served(net, count: int = 12) -> list[dict]:
    return net.ask("client", VIP, 80, count=count, timeout=1.0)


def endpoint_nodes(net) -> set[str]:
    service = net.cluster.service("web")
    return {e.node for e in net.cluster.endpoints(service, service.ports[0])}


def test_with_the_controller_killed_the_switches_keep_forwarding_then_resynchronise(net):
    held = net.hold("client", str(web_on("node-2").ip), 8080, 5)
    pinger = net.pod(web_on("node-1").host_name).popen(["ping", "-i", "0.05", "-c", "80", "-W", "1",
                                                        str(web_on("node-3").ip)],
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        held.established()
        time.sleep(0.5)
        net.faults.do("controller", "kill")
        assert net.controller is None and net.faults.status()["controller"] is False
        time.sleep(1.5)
        net.faults.do("controller", "start")
        out, _ = pinger.communicate(timeout=30)
    finally:
        if pinger.poll() is None:
            pinger.kill()
            pinger.wait()
    assert re.search(r"80 packets transmitted, 80 received", out), out
    assert held.result()["ok"] is True
    assert all(r["ok"] for r in served(net))


def pod_side(net, node: str) -> dict:
    """What each pod of ``node`` has on its side of the attachment: eth0's MAC, MTU, carrier,
    addresses, and the default route."""
    out = {}
    for pod in net.cluster.pods_on(node):
        host = net.pod(pod.host_name)
        (link,) = json.loads(host.ns("ip", "-j", "link", "show", "eth0"))
        (addr,) = json.loads(host.ns("ip", "-j", "-4", "addr", "show", "eth0"))
        out[pod.name] = (link["address"], link["mtu"], "LOWER_UP" in link["flags"],
                         [(a["local"], a["prefixlen"]) for a in addr["addr_info"]],
                         host.ns("ip", "route", "show", "default").strip())
    return out


def test_a_crashed_vswitchd_comes_back_with_its_node_ip_routes_and_flows(net):
    assert net.cluster.attach == "tap"  # (the default here: a restart must re-plumb the pod side)
    before_pods = pod_side(net, "node-1")
    before = net.node("node-1").ovs.vswitchd()
    net.faults.do("switch", "restart", "node-1")
    # Its pods have their eth0 again (the new taps), with the same MAC, MTU, address and route.
    assert pod_side(net, "node-1") == before_pods and all(side[2] for side in before_pods.values())
    after = net.node("node-1").ovs.vswitchd()
    assert before is not None and after is not None and after.pid != before.pid
    entry = net.faults.log[-1]
    assert entry["kind"] == "switch" and entry["took_s"] > 0
    # Everything reaches everything again: pods on node-1, node-1's own IP (re-plumbed), Services.
    net.assert_matrix("all")
    assert all(r["ok"] for r in served(net))


def test_a_node_cut_off_goes_notready_its_pods_leave_the_endpoints_and_come_back(net):
    grace = net.cluster.node_monitor_grace
    assert endpoint_nodes(net) == {"node-0", "node-1", "node-2", "node-3"}
    events = len(net.monitor.events)
    net.faults.do("node", "down", "node-3")
    cut = net.faults.log[-1]["t"]
    wait_for(lambda: len(net.monitor.events) > events, grace + 10, "node-3 to go NotReady")
    assert "node-3" not in endpoint_nodes(net)
    lost = [e for e in net.monitor.events[events:] if e["node"] == "node-3" and not e["ready"]]
    assert len(lost) == 1 and lost[0]["silent_s"] >= grace
    # Kubernetes' deadline: the grace period (plus our check period and the update).
    assert lost[0]["applied_t"] - cut <= grace + 1.0, (lost, cut)
    assert [n.name for n in net.cluster.nodes if not n.ready] == ["node-3"]
    answers = served(net, 20)
    assert all(r["ok"] for r in answers) and web_on("node-3").name not in {r["server"] for r in answers}
    net.faults.do("node", "up", "node-3")
    wait_for(lambda: len(net.monitor.events) > events + 1, grace + 10, "node-3 to be Ready again")
    assert "node-3" in endpoint_nodes(net)
    assert [e["ready"] for e in net.monitor.events[events:] if e["node"] == "node-3"] == [False, True]


def test_a_node_whose_switch_died_goes_notready_and_returns_when_it_is_started(net):
    net.faults.do("node", "down", "node-2", how="switch")
    assert net.faults.switches_down == {"node-2"}
    wait_for(lambda: "node-2" not in endpoint_nodes(net), net.cluster.node_monitor_grace + 10, "node-2 NotReady")
    assert all(r["ok"] for r in served(net))
    net.faults.do("node", "up", "node-2")
    wait_for(lambda: "node-2" in endpoint_nodes(net), net.cluster.node_monitor_grace + 10, "node-2 Ready")
    net.assert_matrix("all")


def test_a_failed_rack_gateway_cuts_cross_rack_pairs_only(net):
    net.faults.do("router", "down", "gw-rack-1")
    try:
        same = net.reachable(web_on("node-0").name, web_on("node-1").name)
        cross = net.reachable(web_on("node-0").name, web_on("node-2").name)
        assert same and not cross, (same, cross)
        # Its rack's nodes cannot renew their leases through it either.
        wait_for(lambda: not {"node-2", "node-3"} & endpoint_nodes(net), net.cluster.node_monitor_grace + 10,
                 "rack-1's nodes NotReady")
        assert endpoint_nodes(net) == {"node-0", "node-1"}
    finally:
        net.faults.do("router", "up", "gw-rack-1")
    wait_for(lambda: endpoint_nodes(net) == {"node-0", "node-1", "node-2", "node-3"}, 15, "rack-1 Ready")
    net.assert_matrix("all")


def test_a_link_down_and_up_restores_the_routes_it_took(net):
    net.faults.do("link", "down", "gw-rack-0")
    a, b = web_on("node-0").name, web_on("node-3").name
    assert not net.reachable(a, b)
    net.faults.do("link", "up", "gw-rack-0")
    wait_for(lambda: bool(net.reachable(a, b)), 10, f"{a} to reach {b} again")
    net.assert_matrix("all")


def test_a_fault_that_names_nothing_real_is_refused_before_anything_changes(net):
    before = net.faults.status()
    with pytest.raises(FaultInputError) as exc:
        net.faults.do("node", "down", "node-9")
    assert exc.value.argument == "TARGET" and "no node 'node-9'" in str(exc.value)
    assert net.faults.status() == before
