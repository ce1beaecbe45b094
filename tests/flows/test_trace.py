"""The compiled flows of one node, loaded into a throwaway OVS and traced packet by packet.

OVS's own ``ofproto/trace`` is the simulator: it follows goto_table, set_field, move
and dec_ttl exactly as the switch will.  The bridge uses dummy netdevs, so nothing here
touches the kernel; the tests only need the OVS binaries.
"""

from __future__ import annotations

import pytest

from controllers.compiler import compile_node
from tests.helpers import FlowSim
from k8snet.model.manifests import load_text
from topos.specs import default_spec_text

CLUSTER = load_text(default_spec_text())
N0, N1 = CLUSTER.node("node-0"), CLUSTER.node("node-1")
WEB0, WEB3 = (next(p for p in CLUSTER.pods if p.name == n) for n in ("web-0", "web-3"))
WEB1 = next(p for p in CLUSTER.pods if p.name == "web-1")
assert WEB0.node == WEB3.node == "node-0" and WEB1.node == "node-1"


@pytest.fixture(scope="module")
def node0():
    with FlowSim() as sim:
        sim.load(CLUSTER, "node-0", compile_node(CLUSTER, "node-0"))
        yield sim


def from_pod(pod, dl_dst: str, nw_dst: str, ttl: int = 64, nw_src: str | None = None,
             dl_src: str | None = None) -> str:
    return (f"in_port={pod.ofport},dl_src={dl_src or pod.mac},dl_dst={dl_dst},icmp,"
            f"nw_src={nw_src or pod.ip},nw_dst={nw_dst},nw_ttl={ttl}")


def arp_request(in_port: str, sha: str, spa: str, tpa: str) -> str:
    return (f"in_port={in_port},dl_src={sha},dl_dst=ff:ff:ff:ff:ff:ff,arp,arp_op=1,"
            f"arp_sha={sha},arp_spa={spa},arp_tpa={tpa}")


# ------------------------------------------------------------------------------ ARP
def test_pod_arp_for_gateway_is_answered_by_the_switch(node0):
    t = node0.trace(arp_request(WEB0.ofport, WEB0.mac, WEB0.ip, N0.gateway_ip))
    assert t.outputs == ["IN_PORT"]
    assert t.final_field("arp_op") == "2"
    assert t.final_field("arp_sha") == N0.gateway_mac and t.final_field("arp_spa") == str(N0.gateway_ip)
    assert t.final_field("arp_tha") == WEB0.mac and t.final_field("arp_tpa") == str(WEB0.ip)
    assert t.final_field("dl_dst") == WEB0.mac and t.final_field("dl_src") == N0.gateway_mac


def test_pod_arp_for_a_same_node_pod_gets_that_pods_mac(node0):
    t = node0.trace(arp_request(WEB0.ofport, WEB0.mac, WEB0.ip, WEB3.ip))
    assert t.outputs == ["IN_PORT"] and t.final_field("arp_sha") == WEB3.mac


def test_node_kernel_arp_for_gateway_is_answered(node0):
    t = node0.trace(arp_request("LOCAL", N0.mac, N0.ip, N0.gateway_ip))
    assert t.outputs == ["IN_PORT"] and t.final_field("arp_sha") == N0.gateway_mac


def test_underlay_arp_passes_between_uplink_and_node(node0):
    assert node0.trace(arp_request("1", N1.mac, N1.ip, N0.ip)).outputs == ["LOCAL"]
    assert node0.trace(arp_request("LOCAL", N0.mac, N0.ip, N1.ip)).outputs == ["output:1"]


def test_arp_with_spoofed_sender_ip_is_dropped(node0):
    t = node0.trace(arp_request(WEB0.ofport, WEB0.mac, WEB3.ip, N0.gateway_ip))
    assert t.outputs == []


# ------------------------------------------------------------------------------ IP from pods
def test_same_node_pod_to_pod_is_bridged_without_ttl_change(node0):
    t = node0.trace(from_pod(WEB0, WEB3.mac, WEB3.ip))
    assert t.outputs == [f"output:{WEB3.ofport}"] and t.final_field("nw_ttl") == "64"


def test_same_node_pod_to_pod_via_gateway_is_routed(node0):
    t = node0.trace(from_pod(WEB0, N0.gateway_mac, WEB3.ip))
    assert t.outputs == [f"output:{WEB3.ofport}"]
    assert t.final_field("nw_ttl") == "63" and t.final_field("dl_src") == N0.gateway_mac
    assert t.final_field("dl_dst") == WEB3.mac


def test_remote_pod_goes_host_gw_to_the_peer_nodes_mac(node0):
    t = node0.trace(from_pod(WEB0, N0.gateway_mac, WEB1.ip))
    assert t.outputs == ["output:1"]
    assert t.final_field("dl_dst") == N1.mac and t.final_field("dl_src") == N0.mac
    assert t.final_field("nw_ttl") == "63" and t.final_field("nw_dst") == str(WEB1.ip)


def test_pod_to_own_node_reaches_the_node_stack(node0):
    t = node0.trace(from_pod(WEB0, N0.gateway_mac, N0.ip))
    assert t.outputs == ["LOCAL"] and t.final_field("dl_dst") == N0.mac


def test_pod_to_peer_node_goes_to_the_peer(node0):
    t = node0.trace(from_pod(WEB0, N0.gateway_mac, N1.ip))
    assert t.outputs == ["output:1"] and t.final_field("dl_dst") == N1.mac


def test_ttl_expiring_at_the_gateway_is_not_forwarded(node0):
    t = node0.trace(from_pod(WEB0, N0.gateway_mac, WEB1.ip, ttl=1))
    assert t.outputs == [] and "decrement TTL exception" in t.text


def test_spoofed_source_ip_or_mac_is_dropped(node0):
    assert node0.trace(from_pod(WEB0, N0.gateway_mac, WEB1.ip, nw_src="10.244.0.99")).outputs == []
    assert node0.trace(from_pod(WEB0, N0.gateway_mac, WEB1.ip, dl_src=WEB3.mac)).outputs == []


def test_traffic_outside_the_cluster_goes_to_the_way_out_and_cluster_ranges_never_do(node0):
    out = node0.trace(from_pod(WEB0, N0.gateway_mac, "203.0.113.7"))
    assert out.outputs == ["output:1"] and out.final_field("dl_dst") == CLUSTER.underlay.external.mac
    # An unassigned pod address or Service address has no route: dropped, not sent outside.
    assert node0.trace(from_pod(WEB0, N0.gateway_mac, "10.244.99.9")).outputs == []
    assert node0.trace(from_pod(WEB0, N0.gateway_mac, "10.96.7.7")).outputs == []


# ------------------------------------------------------------------------------ IP from uplink / node
def test_peer_traffic_to_a_local_pod_is_routed_in(node0):
    t = node0.trace(f"in_port=1,dl_src={N1.mac},dl_dst={N0.mac},icmp,nw_src={WEB1.ip},"
                    f"nw_dst={WEB0.ip},nw_ttl=63")
    assert t.outputs == [f"output:{WEB0.ofport}"]
    assert t.final_field("nw_ttl") == "62" and t.final_field("dl_src") == N0.gateway_mac


def test_underlay_traffic_to_the_node_ip_is_delivered_untouched(node0):
    t = node0.trace(f"in_port=1,dl_src={N1.mac},dl_dst={N0.mac},icmp,nw_src={N1.ip},nw_dst={N0.ip},nw_ttl=64")
    assert t.outputs == ["LOCAL"] and t.final_field("nw_ttl") == "64"


def test_uplink_traffic_for_another_nodes_pods_is_dropped(node0):
    t = node0.trace(f"in_port=1,dl_src={N1.mac},dl_dst={N0.mac},icmp,nw_src={N1.ip},nw_dst={WEB1.ip}")
    assert t.outputs == []


def test_node_stack_to_local_pod_and_to_the_underlay(node0):
    t = node0.trace(f"in_port=LOCAL,dl_src={N0.mac},dl_dst={N0.gateway_mac},icmp,nw_src={N0.ip},"
                    f"nw_dst={WEB0.ip},nw_ttl=64")
    assert t.outputs == [f"output:{WEB0.ofport}"] and t.final_field("dl_dst") == WEB0.mac
    t = node0.trace(f"in_port=LOCAL,dl_src={N0.mac},dl_dst={N1.mac},icmp,nw_src={N0.ip},nw_dst={N1.ip}")
    assert t.outputs == ["output:1"] and t.final_field("dl_dst") == N1.mac


def test_node_stack_to_remote_pod_uses_host_gw(node0):
    t = node0.trace(f"in_port=LOCAL,dl_src={N0.mac},dl_dst={N0.gateway_mac},icmp,nw_src={N0.ip},"
                    f"nw_dst={WEB1.ip},nw_ttl=64")
    assert t.outputs == ["output:1"] and t.final_field("dl_dst") == N1.mac


def test_loaded_flows_match_the_compiled_text(node0):
    desired = compile_node(CLUSTER, "node-0")
    assert len(node0.dump()) == len(desired.flows)


# ------------------------------------------------------------------------------ access: routed-veth
def test_routed_veth_pods_get_their_link_local_gateway_and_every_packet_is_routed():
    from k8snet.model.manifests import Overrides

    routed = load_text(default_spec_text(), Overrides(access="routed-veth"))
    web0, web3 = routed.pod("web-0"), routed.pod("web-3")
    with FlowSim() as sim:
        sim.load(routed, "node-0", compile_node(routed, "node-0"))
        t = sim.trace(arp_request(web0.ofport, web0.mac, web0.ip, "169.254.1.1"))
        assert t.outputs == ["IN_PORT"] and t.final_field("arp_sha") == N0.gateway_mac
        assert t.final_field("arp_spa") == "169.254.1.1"
        # The pod sends everything to that MAC: a pod on the same node is routed, TTL - 1.
        t = sim.trace(from_pod(web0, N0.gateway_mac, web3.ip))
        assert t.outputs == [f"output:{web3.ofport}"] and t.final_field("nw_ttl") == "63"
        assert t.final_field("dl_src") == N0.gateway_mac and t.final_field("dl_dst") == web3.mac
    # With the bridge, nobody answers for 169.254.1.1.
    with FlowSim() as sim:
        sim.load(CLUSTER, "node-0", compile_node(CLUSTER, "node-0"))
        assert sim.trace(arp_request(web0.ofport, web0.mac, web0.ip, "169.254.1.1")).outputs == []


# ------------------------------------------------------------------------------ access: macvlan
def test_macvlan_pods_are_neighbours_on_the_wire_and_never_the_own_nodes():
    from k8snet.model.manifests import Overrides

    mv = load_text(default_spec_text(), Overrides(access="macvlan"))
    web0, web1 = mv.pod("web-0"), mv.pod("web-1")  # on node-0 and node-1
    n0, n1 = mv.node("node-0"), mv.node("node-1")
    with FlowSim() as sim:
        sim.load(mv, "node-0", compile_node(mv, "node-0"))
        # The node's stack (or a Service's DNAT) to another node's pod: its MAC, out of
        # the uplink, no router on the way (TTL kept).
        t = sim.trace(f"in_port=LOCAL,dl_src={n0.mac},dl_dst={n0.gateway_mac},icmp,nw_src={n0.ip},"
                      f"nw_dst={web1.ip},nw_ttl=64")
        assert t.outputs == ["output:1"] and t.final_field("dl_dst") == web1.mac
        assert t.final_field("dl_src") == n0.mac and t.final_field("nw_ttl") == "64"
        # ...to its own pod: nowhere (the frame would leave by the parent, which the child never hears).
        t = sim.trace(f"in_port=LOCAL,dl_src={n0.mac},dl_dst={n0.gateway_mac},icmp,nw_src={n0.ip},"
                      f"nw_dst={web0.ip},nw_ttl=64")
        assert t.outputs == []
        # The switch's copy of a frame for its own pod (the macvlan child takes the real one): dropped.
        t = sim.trace(f"in_port=1,dl_src={web1.mac},dl_dst={web0.mac},icmp,nw_src={web1.ip},nw_dst={web0.ip}")
        assert t.outputs == []
        # A macvlan pod of another node asking this node: delivered to the node's stack.
        t = sim.trace(f"in_port=1,dl_src={web1.mac},dl_dst={n0.mac},icmp,nw_src={web1.ip},nw_dst={n0.ip},"
                      "nw_ttl=64")
        assert t.outputs == ["LOCAL"] and t.final_field("nw_ttl") == "64"
    assert n1.subnet == n0.subnet
