"""Access modes on real clusters (k8snet/model/access.py): bridge and Calico's routed veth."""

from __future__ import annotations

import re
import subprocess

import pytest

from k8snet.model.manifests import Overrides, load_text
from topos.cluster import ClusterNet
from k8snet.rundir import leftover_runs
from tests.emulation.conftest import K8SNET, WEB_SERVICE, k8snet_env
from topos.probe import probe
from topos.specs import default_spec_text, embedded_spec_text

@pytest.fixture(scope="module")
def routed():
    cluster = load_text(default_spec_text() + WEB_SERVICE, Overrides(access="routed-veth"))
    with ClusterNet(cluster) as net:
        yield net


def ttl(net, src: str, ip: str) -> int:
    out = net.pod(src).ns("ping", "-c", "1", "-W", "2", ip)
    m = re.search(r"ttl=(\d+)", out)
    assert m, out
    return int(m.group(1))


def test_routed_veth_pods_hold_a_slash_32_behind_the_link_local_gateway(routed):
    web0 = routed.cluster.pod("web-0")
    addr = routed.pod("web-0").ns("ip", "-o", "-4", "addr", "show", "dev", "eth0")
    assert f"{web0.ip}/32" in addr, addr
    assert "default via 169.254.1.1 dev eth0" in routed.pod("web-0").ns("ip", "route")
    results = probe(routed.net, routed.cluster)
    assert results and all(r.reachable for r in results), [r.pair.id for r in results if not r.reachable]


def test_every_packet_is_routed_even_to_a_pod_on_the_same_node(routed, no_leaks):
    c = routed.cluster
    web0 = c.pod("web-0")
    same = next(p for p in c.pods if p.node == web0.node and p.name != "web-0")
    other = next(p for p in c.pods if p.node != web0.node)
    assert ttl(routed, "web-0", str(same.ip)) == 63  # the node routed it (bridge: 64)
    assert ttl(routed, "web-0", str(other.ip)) == 62  # both nodes routed it (bridge: 62 too)
    with ClusterNet(load_text(default_spec_text())) as bridged:
        assert ttl(bridged, "web-0", str(same.ip)) == 64
        assert ttl(bridged, "web-0", str(other.ip)) == 62


def test_services_work_with_routed_veth(routed):
    svc = routed.cluster.service("web")
    for pod in routed.cluster.pods:
        if pod.labels.get("app") == "web":
            routed.serve(pod.host_name, 8080)
    served = routed.ask("web-0", str(svc.cluster_ip), 80, count=8)
    assert all(r["ok"] for r in served), served


DENY_ALL = """
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all}
spec: {podSelector: {}, policyTypes: [Ingress, Egress]}
"""


@pytest.fixture(scope="module")
def macvlan():
    """The default cluster with pods as macvlan children of their nodes' uplinks, a web
    Service, and a policy that would deny every pod everything (were it enforced)."""
    cluster = load_text(default_spec_text() + WEB_SERVICE + DENY_ALL, Overrides(access="macvlan"))
    with ClusterNet(cluster) as net:
        yield net


def test_macvlan_pods_are_children_of_the_uplink_and_miss_only_their_own_node(macvlan):
    link = macvlan.pod("web-0").ns("ip", "-d", "link", "show", "dev", "eth0")
    assert "macvlan mode bridge" in link, link
    macvlan.assert_matrix("predicted")
    c = macvlan.cluster
    own = {f"{p.host_name}->{p.node}" for p in c.pods} | {f"{p.node}->{p.host_name}" for p in c.pods}
    # Every pod reaches every pod, the deny-all policy notwithstanding: no switch sees them.
    results = probe(macvlan.net, c)
    pod_pairs = [r for r in results if r.pair.kind.startswith("pod-pod")]
    assert pod_pairs and all(r.reachable for r in pod_pairs), [r.pair.id for r in pod_pairs if not r.reachable]
    assert {r.pair.id for r in results if not r.reachable} == own


def test_macvlan_pods_meet_on_the_wire_with_no_router(macvlan):
    c = macvlan.cluster
    web0 = c.pod("web-0")
    same = next(p for p in c.pods if p.node == web0.node and p.name != "web-0")
    other = next(p for p in c.pods if p.node != web0.node)
    assert ttl(macvlan, "web-0", str(same.ip)) == 64   # inside the kernel (macvlan bridge mode)
    assert ttl(macvlan, "web-0", str(other.ip)) == 64  # across the segment (bridge: 62, two nodes routed it)
    out = macvlan.node(other.node).ns("ping", "-c", "1", "-W", "2", str(web0.ip))
    assert "ttl=64" in out, out


def test_services_do_not_apply_on_the_macvlan_path(macvlan):
    c = macvlan.cluster
    vip = str(c.service("web").cluster_ip)
    web = [p for p in c.pods if p.labels.get("app") == "web"]
    for pod in web:
        macvlan.serve(pod.host_name, 8080)
    # The pod has no route to the ClusterIP: nothing on its path would translate it.
    route = macvlan.pod("web-0").ns("ip", "route", "get", vip, check=False)
    assert "unreachable" in route.lower() or not route.strip(), route
    asked = macvlan.ask("web-0", vip, 80, count=3, timeout=1)
    assert not any(r["ok"] for r in asked), asked
    other = next(p for p in web if p.node != c.pod("web-0").node)
    direct = macvlan.ask("web-0", str(other.ip), 8080, count=3)
    assert all(r["ok"] for r in direct), direct
    # A node's own switch still balances the ClusterIP, onto the endpoints it can reach on
    # the wire: those of other nodes, never its own (12 tries all landing on node-0's two
    # of six endpoints: (1/3)^12, about 2 in a million).
    from_node = macvlan.ask("node-0", vip, 80, count=12, timeout=1)
    served = {r["server"] for r in from_node if r["ok"]}
    mine = {p.name for p in web if p.node == "node-0"}
    assert served and not served & mine, from_node
    assert not any(r["ok"] for r in from_node if r.get("server") in mine)


def test_macvlan_pods_reach_their_own_rack_only(no_leaks):
    """Across a rack gateway: the gateway routes node subnets, and a macvlan pod's address
    is on no subnet a router knows (whatever the backend: here VXLAN, which carries bridge
    pods across racks)."""
    cluster = load_text(embedded_spec_text("racks"), Overrides(access="macvlan", backend="vxlan"))
    with ClusterNet(cluster) as net:
        net.assert_matrix("predicted")
        results = probe(net.net, net.cluster)
        rack = {n.name: n.rack for n in cluster.nodes}
        host_rack = {**rack, **{p.host_name: rack[p.node] for p in cluster.pods}}
        across = [r for r in results if host_rack[r.pair.src] != host_rack[r.pair.dst]]
        assert across and not [r.pair.id for r in across if r.reachable]
        # ...while pods of different nodes in one rack meet on its segment.
        assert any(r.reachable for r in results if r.pair.kind == "pod-pod-cross-node")


@pytest.mark.parametrize("access", ["bridge", "routed-veth", "macvlan"])
def test_a_sigkilled_cluster_of_each_access_mode_is_cleaned_up(access, no_leaks):
    """``k8snet up`` killed with SIGKILL once its cluster stands: ``k8snet clean`` removes
    what it left (pods' namespaces with their veths, taps or macvlan children, OVS
    daemons, the controller, the run directory); ``no_leaks`` checks that nothing stays."""
    known = {str(p) for p in leftover_runs()}
    up = subprocess.Popen([*K8SNET, "up", "--access", access, "--nodes", "2", "--pods-per-node", "2"],
                          env=k8snet_env(), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    try:
        assert up.stderr is not None
        lines = []
        for line in up.stderr:
            lines.append(line)
            if "cluster up in" in line:
                break
        assert any("cluster up in" in line for line in lines), "".join(lines)
        run_dir = next(p for p in leftover_runs() if str(p) not in known)
        up.kill()  # SIGKILL: no chance to clean up
        up.wait(timeout=30)
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
    assert run_dir.exists()
    clean = subprocess.run([*K8SNET, "clean"], env=k8snet_env(), capture_output=True, text=True, timeout=120)
    assert clean.returncode == 0 and f"{run_dir}: removed" in clean.stdout, clean.stdout + clean.stderr
    assert not run_dir.exists()


def test_macvlan_pods_answer_tcp_through_a_switch_without_tso(no_leaks):
    """Offload none: a macvlan child keeps TX checksum offload whatever it is told, so its
    parent's is turned off and the kernel completes the checksum as the frame leaves; a node's
    userspace switch without TSO then takes the pod's TCP answers (topos/attach.py)."""
    cluster = load_text(default_spec_text(), Overrides(access="macvlan", offload="none"))
    with ClusterNet(cluster) as net:
        web0 = net.cluster.pod("web-0")
        assert "tx-checksumming: on" in net.pod("web-0").ns("ethtool", "-k", "eth0")  # (what it cannot change)
        assert "tx-checksumming: off" in net.node(web0.node).ns("ethtool", "-k", "uplink")
        net.serve("web-0", 8080)
        other = next(n for n in net.cluster.nodes if n.name != web0.node)
        answers = net.ask(other.name, str(web0.ip), 8080, count=3, timeout=2)
        assert all(a["ok"] and a["server"] == "web-0" for a in answers), answers
