"""backend bgp, the pure parts: who peers with whom, BIRD's configuration (parsed by the real
``bird -p``), the AS number's checks, routes -> predictions and flows."""

from __future__ import annotations

import ipaddress
import subprocess
from pathlib import Path

import pytest

from controllers.compiler import compile_node
from controllers.pipeline import Feature
from k8snet.model.bgp import NODE_ROUTE_TABLE, speakers
from k8snet.model.cluster import BgpRoute, RouteKind
from k8snet.model.manifests import load_text
from k8snet.model.resolver import Overrides
from k8snet.model.schema import SpecError
from topos.bgp import expected_routes, parse_table
from topos.bird import config

RACKS = """
apiVersion: k8snet.io/v1alpha1
kind: Cluster
metadata: {name: bgp}
spec:
  nodes: 4
  backend: BACKEND
  underlay: {type: routed, racks: 2}
"""
FLAT = """
apiVersion: k8snet.io/v1alpha1
kind: Cluster
metadata: {name: mesh}
spec:
  nodes: 3
  backend: bgp
"""


@pytest.fixture(scope="module")
def racks():
    return load_text(RACKS.replace("BACKEND", "{type: bgp, asNumber: 65000}"))


def test_an_as_per_rack_with_the_gateway_reflecting_for_its_nodes_and_ebgp_to_the_core(racks):
    by_name = {s.name: s for s in speakers(racks)}
    assert set(by_name) == {"node-0", "node-1", "node-2", "node-3", "gw-rack-0", "gw-rack-1", "core"}
    assert by_name["core"].asn == 65000 and by_name["gw-rack-0"].asn == by_name["node-0"].asn == 65001
    assert by_name["gw-rack-1"].asn == by_name["node-3"].asn == 65002
    node = by_name["node-0"]
    assert [p.name for p in node.peers] == ["gw-rack-0"] and node.originates == (racks.node("node-0").pod_cidr,)
    gw = by_name["gw-rack-0"]
    assert {p.name: p.rr_client for p in gw.peers} == {"node-0": True, "node-1": True, "core": False}
    assert [p.name for p in by_name["core"].peers] == ["gw-rack-0", "gw-rack-1"]
    # Every session is seen from both ends, each end's address the other's neighbour.
    for s in by_name.values():
        for peer in s.peers:
            back = [p for p in by_name[peer.name].peers if p.name == s.name]
            assert len(back) == 1 and back[0].ip == peer.local_ip and back[0].local_ip == peer.ip
            assert back[0].asn == s.asn


def test_a_flat_underlay_is_one_as_in_a_full_ibgp_mesh():
    mesh = load_text(FLAT)
    every = speakers(mesh)
    assert {s.asn for s in every} == {64512} and all(len(s.peers) == 2 for s in every)


def test_birds_own_parser_accepts_every_generated_configuration(racks, tmp_path):
    for s in speakers(racks) + speakers(load_text(FLAT)):
        path = tmp_path / f"{s.name}.conf"
        path.write_text(config(s, tmp_path / f"{s.name}.log"))
        parsed = subprocess.run(["bird", "-p", "-c", str(path)], capture_output=True, text=True, timeout=10)
        assert parsed.returncode == 0, f"{s.name}: {parsed.stderr}\n{path.read_text()}"


def test_nodes_install_into_their_own_table_routers_into_main_and_the_gateway_is_next_hop_for_ebgp_routes(racks):
    node = config(next(s for s in speakers(racks) if s.name == "node-0"), Path("/x.log"))
    gw = config(next(s for s in speakers(racks) if s.name == "gw-rack-0"), Path("/x.log"))
    assert f"kernel table {NODE_ROUTE_TABLE};" in node and "kernel table" not in gw
    assert "route 10.244.0.0/24 blackhole;" in node and "blackhole" not in gw
    assert gw.count("rr client;") == 2 and gw.count("next hop self ebgp;") == 2
    assert "hold time 3;" in node and "direct;" in node  # one hop: next hops on the segment


@pytest.mark.parametrize("backend, message", [
    ("{type: bgp, asNumber: 0}", "AS numbers run from 1 to 4294967294"),
    ("{type: bgp, asNumber: 4294967293}", "leaves no room"),
    ("{type: bgp, asNumber: 23455}", "AS_TRANS"),
    ("{type: vxlan, asNumber: 65000}", "asNumber is for backend bgp"),
    ("{type: bgp, asNumber: '65000'}", "spec.backend"),
])
def test_bad_as_numbers_name_the_field(backend, message):
    with pytest.raises(SpecError) as exc:
        load_text(RACKS.replace("BACKEND", backend))
    assert "spec.backend" in str(exc.value) and message in str(exc.value)


def test_before_routes_are_observed_the_model_is_taken_as_converged(racks):
    n0, n1, n2 = (racks.node(f"node-{i}") for i in range(3))
    assert racks.route(n0, n1).kind is RouteKind.DIRECT and racks.route(n0, n2).kind is RouteKind.ROUTED
    want = expected_routes(racks)
    assert len(want) == 4 * 3
    gw0 = racks.rack("rack-0").gateway_ip
    assert BgpRoute(node="node-0", prefix=n2.pod_cidr, via=gw0) in want
    assert BgpRoute(node="node-0", prefix=n1.pod_cidr, via=n1.ip) in want


def test_forwarding_follows_the_observed_routes_not_the_model(racks):
    n0, n2, n3 = racks.node("node-0"), racks.node("node-2"), racks.node("node-3")
    learned = tuple(r for r in expected_routes(racks) if not (r.node == "node-0" and r.prefix == n2.pod_cidr))
    cluster = racks.model_copy(update={"bgp_routes": learned, "bgp_down": ("gw-rack-0<->core",)})
    route = cluster.route(n0, n2)
    assert route.kind is RouteKind.NONE
    assert route.reason == f"no route to {n2.pod_cidr} on node-0: BGP session gw-rack-0<->core down"
    assert cluster.route(n0, n3).kind is RouteKind.ROUTED
    flows = [f for f in compile_node(cluster, "node-0").flows if f.cookie >> 56 == Feature.BGP]
    dsts = {str(dict(f.match.fields).get("ipv4_dst")) for f in flows}
    assert str(n3.pod_cidr) in dsts and str(n2.pod_cidr) not in dsts
    assert compile_node(racks.model_copy(update={"bgp_routes": ()}), "node-0").flows_by_key()  # none: still valid


def test_the_route_table_is_read_from_ip_json():
    text = ('[{"dst":"10.244.2.0/24","gateway":"192.168.0.1","dev":"br-k8s","protocol":"bird","metric":32,'
            '"flags":[]},{"dst":"10.244.9.0/24","dev":"br-k8s","flags":[]}]')
    assert parse_table("node-0", text) == [BgpRoute(node="node-0", prefix=ipaddress.ip_network("10.244.2.0/24"),
                                                    via=ipaddress.ip_address("192.168.0.1"))]
    assert parse_table("node-0", "") == []


def test_the_backend_override_takes_bgp():
    cluster = load_text(RACKS.replace("BACKEND", "host-gw"), Overrides(backend="bgp"))
    assert cluster.backend.value == "bgp" and cluster.pod_mtu == cluster.underlay.mtu
