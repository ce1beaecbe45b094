"""Traces on a routed underlay (2 racks x 2 nodes) for each backend.

node-0 and node-1 share rack-0 (192.168.0.0/24); node-2 and node-3 are in rack-1.
"""

from __future__ import annotations

import pytest

from controllers.compiler import compile_node
from tests.helpers import FlowSim
from k8snet.model.manifests import Overrides, load_text

SPEC = """\
apiVersion: k8snet.io/v1alpha1
kind: Cluster
spec:
  nodes: 4
  underlay: {type: routed, racks: 2}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 4
  selector: {matchLabels: {app: web}}
  template: {metadata: {labels: {app: web}}}
"""


def cluster_for(backend: str):
    return load_text(SPEC, Overrides(backend=backend))


@pytest.fixture(scope="module")
def sim():
    with FlowSim() as s:
        yield s


def load(sim, backend: str, cluster=None):
    cluster = cluster or cluster_for(backend)
    sim.load(cluster, "node-0", compile_node(cluster, "node-0"))
    n = cluster.nodes
    pods = {p.name: p for p in cluster.pods}
    return cluster, n, pods


def pod_to(pod, node, dst_ip: str) -> str:
    return (f"in_port={pod.ofport},dl_src={pod.mac},dl_dst={node.gateway_mac},icmp,nw_src={pod.ip},"
            f"nw_dst={dst_ip},nw_ttl=64")


def test_vxlan_sends_every_remote_pod_cidr_into_the_tunnel(sim):
    cluster, n, pods = load(sim, "vxlan")
    for peer, pod in ((n[1], "web-1"), (n[2], "web-2")):
        t = sim.trace(pod_to(pods["web-0"], n[0], str(pods[pod].ip)))
        assert t.outputs == ["output:2"], t
        # ovs prints the VNI in the actions it ran (the final flow leaves tun_id out)
        assert t.final_field("tun_dst") == str(peer.ip) and "set_field:0x1->tun_id" in t.text
        assert t.final_field("dl_dst") == peer.gateway_mac and t.final_field("nw_ttl") == "63"


def test_vxlan_decapsulated_traffic_reaches_the_local_pod(sim):
    cluster, n, pods = load(sim, "vxlan")
    inner = f"icmp,nw_src={pods['web-2'].ip},nw_dst={pods['web-0'].ip},nw_ttl=63"
    tunnel = f"in_port=2,tun_id=1,tun_src={n[2].ip},tun_dst={n[0].ip},dl_src={n[2].gateway_mac},dl_dst={n[0].gateway_mac}"
    t = sim.trace(f"{tunnel},{inner}")
    assert t.outputs == [f"output:{pods['web-0'].ofport}"]
    assert t.final_field("nw_ttl") == "62" and t.final_field("dl_dst") == pods["web-0"].mac
    wrong_vni = sim.trace(f"{tunnel.replace('tun_id=1', 'tun_id=2')},{inner}")
    assert wrong_vni.outputs == []
    elsewhere = sim.trace(f"{tunnel},icmp,nw_src={pods['web-2'].ip},nw_dst={pods['web-1'].ip}")
    assert elsewhere.outputs == [], "a node decapsulates only for its own pod CIDR"


def test_directrouting_is_host_gw_in_the_rack_and_vxlan_across(sim):
    cluster, n, pods = load(sim, "directrouting")
    same = sim.trace(pod_to(pods["web-0"], n[0], str(pods["web-1"].ip)))
    assert same.outputs == ["output:1"] and same.final_field("dl_dst") == n[1].mac
    assert same.final_field("tun_dst") is None
    cross = sim.trace(pod_to(pods["web-0"], n[0], str(pods["web-2"].ip)))
    assert cross.outputs == ["output:2"] and cross.final_field("tun_dst") == str(n[2].ip)


def test_host_gw_has_no_route_across_racks(sim):
    cluster, n, pods = load(sim, "host-gw")
    assert sim.trace(pod_to(pods["web-0"], n[0], str(pods["web-1"].ip))).outputs == ["output:1"]
    assert sim.trace(pod_to(pods["web-0"], n[0], str(pods["web-2"].ip))).outputs == []


def test_bgp_sends_within_the_rack_to_the_peer_and_across_to_the_gateway_unencapsulated(sim):
    cluster, n, pods = load(sim, "bgp")
    gw = cluster.underlay.racks[0]
    same = sim.trace(pod_to(pods["web-0"], n[0], str(pods["web-1"].ip)))
    assert same.outputs == ["output:1"] and same.final_field("dl_dst") == n[1].mac
    cross = sim.trace(pod_to(pods["web-0"], n[0], str(pods["web-2"].ip)))
    assert cross.outputs == ["output:1"] and cross.final_field("dl_dst") == gw.gateway_mac
    assert cross.final_field("nw_ttl") == "63" and cross.final_field("tun_dst") is None


def test_bgp_drops_what_no_route_was_learned_for(sim):
    from topos.bgp import expected_routes

    full = cluster_for("bgp")
    n2 = full.node("node-2")
    learned = tuple(r for r in expected_routes(full) if r.prefix != n2.pod_cidr)
    cluster, n, pods = load(sim, "bgp", full.model_copy(update={"bgp_routes": learned}))
    assert sim.trace(pod_to(pods["web-0"], n[0], str(pods["web-2"].ip))).outputs == []
    assert sim.trace(pod_to(pods["web-0"], n[0], str(pods["web-3"].ip))).outputs == ["output:1"]


@pytest.mark.parametrize("backend", ["host-gw", "vxlan", "directrouting", "bgp"])
def test_pod_to_a_node_in_another_rack_goes_to_the_rack_gateway(sim, backend):
    cluster, n, pods = load(sim, backend)
    gw = cluster.underlay.racks[0]
    t = sim.trace(pod_to(pods["web-0"], n[0], str(n[3].ip)))
    assert t.outputs == ["output:1"] and t.final_field("dl_dst") == gw.gateway_mac
    t = sim.trace(pod_to(pods["web-0"], n[0], str(n[1].ip)))
    assert t.outputs == ["output:1"] and t.final_field("dl_dst") == n[1].mac
