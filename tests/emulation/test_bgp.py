"""backend bgp on real daemons: BIRD on every node, rack gateway and the core (racks: 2 racks
x 2 nodes, see tests/emulation/test_backends.py), on a flat underlay too."""

from __future__ import annotations

import json
import re
import subprocess
import time

import pytest

from k8snet.model.apply import apply_text
from k8snet.model.manifests import Overrides, load_text
from tests.emulation.capture import capture
from tests.emulation.conftest import K8SNET, WEB_SERVICE, k8snet_env
from topos.bgp import expected_routes
from topos.cluster import ClusterNet
from topos.ovs import wait_for
from topos.probe import probe
from topos.specs import embedded_spec_text


@pytest.fixture(scope="module")
def bgp_net():
    cluster = load_text(embedded_spec_text("racks") + WEB_SERVICE, Overrides(backend="bgp"))
    with ClusterNet(cluster) as net:
        yield net


def unreachable(results):
    return [f"{r.pair.src}->{r.pair.dst}" for r in results if not r.reachable]


def test_bgp_converges_and_every_pair_is_reachable_across_racks(bgp_net):
    net = bgp_net
    assert net.bgp.converged_s is not None and net.timings["bgp"] >= net.timings["synced"]
    assert net.cluster.bgp_routes == expected_routes(net.cluster) and net.cluster.bgp_down == ()
    results = probe(net.net, net.cluster)
    assert len(results) == 4 * 3 + 2 * 4 * 4 and not unreachable(results), unreachable(results)
    # What the gateways' kernels hold was learned over BGP (proto bird), not configured.
    routes = net.net["gw-rack-0"].ns("ip", "route", "show", "proto", "bird")
    for node in net.cluster.nodes:
        assert str(node.pod_cidr) in routes, routes


def test_pod_packets_cross_the_gateways_bare_and_every_router_counts_in_the_ttl(bgp_net):
    net = bgp_net
    pods = {p.node: p for p in net.cluster.pods}
    a, same, far = pods["node-0"], pods["node-1"], pods["node-2"]
    gw = net.net["gw-rack-0"]

    def ping(dst):
        return lambda: net.pod(a.host_name).ns("ping", "-c", "2", "-i", "0.2", "-W", "2", str(dst.ip))

    across = capture(gw, "core", "icmp or udp port 8472", ping(far))
    assert any(f"{a.ip} > {far.ip}: ICMP echo request" in line for line in across), across
    assert not any(".8472" in line for line in across), across
    # ttl 64 - node-0 - gw-rack-0 - core - gw-rack-1 - node-2 = 59 on arrival, and the same back.
    out = net.pod(a.host_name).ns("ping", "-c", "1", "-W", "2", str(far.ip))
    assert re.search(r"ttl=59\b", out), out
    out = net.pod(a.host_name).ns("ping", "-c", "1", "-W", "2", str(same.ip))
    assert re.search(r"ttl=62\b", out), out  # node-0, node-1: no router in the rack


def test_a_session_brought_down_withdraws_its_prefixes_and_says_why_then_recovers(bgp_net):
    net = bgp_net
    pods = {p.node: p for p in net.cluster.pods}
    n0 = net.cluster.node("node-0")
    t0 = time.monotonic()
    net.bgp.set_session("gw-rack-0", "node-0", up=False)
    try:
        wait_for(lambda: not any(r.node == "node-0" for r in net.cluster.bgp_routes or ())
                 and not any(r.prefix == n0.pod_cidr for r in net.cluster.bgp_routes or ()), 10,
                 "node-0's routes withdrawn")
        withdrawn = time.monotonic() - t0
        assert "node-0<->gw-rack-0" in net.cluster.bgp_down or "gw-rack-0<->node-0" in net.cluster.bgp_down
        far = net.cluster.node("node-2")
        route = net.cluster.route(n0, far)
        assert route.reason.startswith(f"no route to {far.pod_cidr} on node-0: BGP session") and "down" in route.reason
        # Its pods lost the others, and the others lost them; the rest of the fabric is whole.
        assert not net.reachable(pods["node-0"].host_name, pods["node-2"].host_name)
        assert not net.reachable(pods["node-3"].host_name, pods["node-0"].host_name)
        assert net.reachable(pods["node-1"].host_name, pods["node-3"].host_name)
        flows = net.node("node-0").ovs.ofctl("dump-flows", "br-k8s", "cookie=0x0800000000000000/0xff00000000000000")
        assert "nw_dst=10.244" not in flows, flows
        # The matrix predicts it and says why (what `k8snet check` prints for a pair).
        doc = net.matrix()
        a, b = pods["node-0"].host_name, pods["node-2"].host_name
        cut = [r for r in doc["results"] if r["src"] == a and r["dst"] == b]
        assert cut and not cut[0]["reachable"] and cut[0]["as_predicted"], cut
        assert "BGP session" in cut[0]["reason"] and "down" in cut[0]["reason"], cut
    finally:
        net.bgp.set_session("gw-rack-0", "node-0", up=True)
    t1 = time.monotonic()
    wait_for(lambda: net.cluster.bgp_routes == expected_routes(net.cluster), 15, "BGP to converge again")
    back = time.monotonic() - t1
    results = probe(net.net, net.cluster)
    assert not unreachable(results), unreachable(results)
    assert withdrawn < 10 and back < 15


def test_services_work_on_bgp_across_racks(bgp_net):
    net = bgp_net
    svc = net.cluster.service("web")
    for pod in net.cluster.pods:
        net.serve(pod.host_name, 8080)
    client = next(p for p in net.cluster.pods if p.node == "node-3")
    served = net.ask(client.host_name, str(svc.cluster_ip), 80, count=12)
    assert all(r["ok"] for r in served), served
    # Endpoints in both racks answered (kube-proxy's random pick over 4 endpoints, 12 tries).
    assert len({r["server"] for r in served}) >= 2, served


def test_network_policy_holds_on_bgp_across_racks(bgp_net):
    net = bgp_net
    before = net.cluster
    deny = ("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: only-rack-1}\n"
            "spec:\n  podSelector: {matchLabels: {app: web}}\n  ingress:\n"
            "  - from: [{ipBlock: {cidr: 10.244.2.0/23}}]\n")
    net.apply(apply_text(net.cluster, deny))
    try:
        results = probe(net.net, net.cluster)
        assert all(r.as_predicted for r in results), [r.pair.id for r in results if not r.as_predicted]
        denied = [r for r in results if r.pair.denied_by]
        assert denied and not any(r.reachable for r in denied)
        assert any(r.reachable for r in results if r.pair.kind.startswith("pod-pod") and not r.pair.denied_by)
    finally:
        net.apply(before)


def test_a_flat_underlay_peers_in_a_full_mesh(no_leaks):
    cluster = load_text(embedded_spec_text("default"), Overrides(backend="bgp"))
    with ClusterNet(cluster) as net:
        sessions = net.bgp.sessions()
        assert all(len(peers) == len(cluster.nodes) - 1 and set(peers.values()) == {"Established"}
                   for peers in sessions.values()), sessions
        results = probe(net.net, cluster)
    assert not unreachable(results), unreachable(results)


def test_check_racks_with_bgp_from_the_command_line_then_clean_after_sigkill(tmp_path, no_leaks):
    from tests.emulation.test_cli import _wait_for_run_dir, k8snet
    from k8snet.rundir import leftover_runs

    out = tmp_path / "check.json"
    result = k8snet("check", "racks", "--backend", "bgp", "--json", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"BGP converged in \d+\.\d\ds", result.stderr + result.stdout)
    doc = json.loads(out.read_text())
    assert doc["ok"] and doc["timings_s"]["bgp"] >= doc["timings_s"]["synced"]
    # Killed once every daemon runs: `k8snet clean` stops the BIRDs by the PIDs it recorded.
    known = {str(p) for p in leftover_runs()}
    proc = subprocess.Popen([*K8SNET, "up", "racks", "--backend", "bgp"], env=k8snet_env(), stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run_dir = _wait_for_run_dir(proc, known)
    wait_for(lambda: len(list(run_dir.glob("bgp/*.pid"))) == 7 or proc.poll() is not None, 60, "7 BIRDs")
    proc.kill()
    proc.wait()
    result = k8snet("clean")
    assert result.returncode == 0 and f"{run_dir}: removed" in result.stdout, result.stdout
    assert not run_dir.exists()
