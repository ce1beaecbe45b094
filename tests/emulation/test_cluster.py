"""The default cluster for real: namespaces, per-node OVS, the controller, traffic."""

from __future__ import annotations

import re
import subprocess
import time

import pytest

from controllers.compiler import compile_node
from tests.helpers import FlowSim, normalized_dump, cookies
from topos.cluster import ClusterNet
from topos.iperf import iperf
from k8snet.model.manifests import load_text
from topos.specs import default_spec_text
from k8snet.model.cluster import BRIDGE_NAME
from topos.probe import probe

CLUSTER = load_text(default_spec_text())


@pytest.fixture(scope="module")
def net():
    with ClusterNet(CLUSTER) as running:
        yield running


def pod_named(name: str):
    return next(p for p in CLUSTER.pods if p.name == name)


def test_full_reachability_matrix(net):
    results = probe(net.net, CLUSTER)
    bad = [f"{r.pair.src}->{r.pair.dst}" for r in results if not r.ok]
    assert not bad
    kinds = {}
    for r in results:
        kinds[r.pair.kind] = kinds.get(r.pair.kind, 0) + 1
    # 6 pods: 6 same-node and 24 cross-node ordered pairs; 3 nodes x 6 pods each way.
    assert kinds == {"pod-pod-same-node": 6, "pod-pod-cross-node": 24, "node-pod": 18, "pod-node": 18}
    assert all(r.received == r.sent for r in results), "every probe packet should come back"


def test_ttl_shows_two_routing_hops_cross_node_and_none_on_the_same_node(net):
    web0, web1, web3 = pod_named("web-0"), pod_named("web-1"), pod_named("web-3")
    cross = net.pod("web-0").ns("ping", "-c", "1", "-W", "2", str(web1.ip))
    same = net.pod("web-0").ns("ping", "-c", "1", "-W", "2", str(web3.ip))
    # The reply left web-1 with TTL 64 and was routed by node-1's and node-0's switch.
    assert re.search(r"ttl=62\b", cross), cross
    assert re.search(r"ttl=64\b", same), same
    assert web0.node == web3.node != web1.node


def test_tcp_works_across_nodes(net):
    """TCP needs TX checksum offload off in pods (ping alone would hide the bug)."""
    run = iperf(net.pod("web-0"), net.pod("web-1"), str(pod_named("web-1").ip), 5201, 1)
    assert run["ok"], run
    assert run["doc"]["end"]["sum_received"]["bytes"] > 1_000_000


def test_node_bridges_use_the_userspace_datapath_with_the_controller(net):
    for node in CLUSTER.nodes:
        ovs = net.node(node.name).ovs
        assert ovs.vsctl("get", "bridge", BRIDGE_NAME, "datapath_type").strip() == "netdev"
        assert ovs.vsctl("get", "bridge", BRIDGE_NAME, "fail_mode").strip() == "secure"
        # The bridge listens for the controller, which dials it (controllers/dialer.py):
        # OVS counts a passive target as a service controller, so its is_connected stays
        # false; the controller says which switches it holds.
        assert ovs.vsctl("get", "controller", ".", "target").strip() == f'"punix:{net.switch_socket(node)}"'
    status = net.api.status()["switches"]
    assert {name for name, s in status.items() if s["connected"] and s["synced"]} == {n.name for n in CLUSTER.nodes}


def switch_flows(net, node: str) -> str:
    return net.node(node).ovs.ofctl("dump-flows", BRIDGE_NAME, "--no-stats")


def test_installed_flows_equal_the_compiled_ones(net):
    with FlowSim() as sim:
        for node in CLUSTER.nodes:
            sim.load(CLUSTER, node.name, compile_node(CLUSTER, node.name))
            assert normalized_dump(switch_flows(net, node.name)) == sim.dump()


def test_controller_restart_keeps_traffic_and_leaves_exact_desired_state(net):
    web0, web1 = net.pod("web-0"), pod_named("web-1")
    generation_before = net.api.status()["generation"]
    # 0.05 s interval pings for ~4 s straddle the kill and the restart.
    pinger = web0.popen(["ping", "-i", "0.05", "-c", "80", "-W", "1", str(web1.ip)],
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(0.5)
        net.stop_controller()
        time.sleep(1.5)
        assert net.controller is None
        net.start_controller()
        status = net.api.wait_synced([n.name for n in CLUSTER.nodes], 30)
        out, _ = pinger.communicate(timeout=30)
    finally:
        if pinger.poll() is None:
            pinger.kill()
            pinger.wait()
    received = int(re.search(r"(\d+) received", out).group(1))
    assert received >= 78, f"traffic stalled while the controller was away or restarting:\n{out}"
    generation = status["generation"]
    assert generation != generation_before
    with FlowSim() as sim:
        for node in CLUSTER.nodes:
            sim.load(CLUSTER, node.name, compile_node(CLUSTER, node.name))
            text = switch_flows(net, node.name)
            flows = normalized_dump(text)
            assert len(flows) == len(set(flows)), "duplicate flows after restart"
            assert flows == sim.dump()
            assert {(c >> 32) & 0xFFFF for c in cookies(text)} == {generation}


def test_stale_flows_from_an_older_run_are_purged_on_reconnect(net):
    ovs = net.node("node-0").ovs
    ovs.ofctl("add-flow", BRIDGE_NAME, "cookie=0x100beef00000000,table=2,priority=5,ip,nw_dst=10.9.9.9 actions=drop")
    net.stop_controller()
    net.start_controller()
    net.api.wait_synced([n.name for n in CLUSTER.nodes], 30)
    assert "10.9.9.9" not in switch_flows(net, "node-0")
