"""Reading ``ofproto/trace``: traces recorded from a running 4-node VXLAN cluster on two
racks (``tests/unit/data/ofproto_trace``), read back as steps, NAT, tunnel and exits."""

from __future__ import annotations

from pathlib import Path

import pytest

from topos.trace.ofproto import fields, parse

DATA = Path(__file__).parent / "data" / "ofproto_trace"


def trace(name: str):
    return parse((DATA / f"{name}.txt").read_text())


def test_fields_keeps_bare_words_and_values():
    assert fields("tcp,nw_src=10.0.0.1,tp_dst=80") == {"tcp": "", "nw_src": "10.0.0.1", "tp_dst": "80"}


def test_a_pod_to_a_pod_on_another_rack_is_tunnelled_out_of_the_uplink():
    t = trace("pod_remote_pod")
    assert t.outputs == ["output:1"] and not t.dropped and not t.decapsulates
    assert (t.tunnel.src_ip, t.tunnel.dst_ip) == ("192.168.0.10", "192.168.0.1")    # next hop: the rack gateway
    assert t.final["tun_dst"] == "192.168.1.10" and t.final["nw_ttl"] == "63"
    # The outer packet walks the bridge again from LOCAL; the oversize branch is not the packet's path.
    assert [s.outer for s in t.steps][-1] is True
    assert any(s.depth == 1 and s.actions == ["CONTROLLER:65535"] for s in t.steps)
    assert t.deciding_step().table == 15


def test_a_service_pick_is_read_as_a_nat_of_the_destination():
    t = trace("pod_svc")
    assert t.nats == [({"nw_src": "10.244.0.2", "tp_src": "40000", "nw_dst": "10.96.0.100", "tp_dst": "80"},
                       {"nw_src": "10.244.0.2", "tp_src": "40000", "nw_dst": "10.244.2.2", "tp_dst": "80"})]
    assert t.final["nw_dst"] == "10.244.2.2"
    assert [s.table for s in t.steps if s.depth == 0 and not s.outer][:6] == [0, 2, 3, 4, 6, 7]


def test_a_node_port_from_outside_is_dnated_then_snated_to_the_node():
    t = trace("nodeport_from_outside")
    assert [after["nw_dst"] for _, after in t.nats] == ["10.244.3.2", "10.244.3.2"]
    assert [after["nw_src"] for _, after in t.nats] == ["192.168.255.254", "192.168.0.10"]
    assert t.final["nw_src"] == "192.168.0.10" and t.final["tp_dst"] == "80"


def test_a_service_without_endpoints_goes_to_the_controller_from_its_own_rule():
    t = trace("pod_empty_svc")
    assert t.outputs == ["CONTROLLER:65535"]
    assert t.deciding_step().cookie == 0x50093ad3f327f8a


def test_ttl_one_is_an_exception_and_a_drop():
    t = trace("ttl_1")
    assert t.ttl_exception and t.dropped and t.outputs == []


def test_a_vxlan_packet_for_the_node_is_decapsulated():
    t = trace("vxlan_arriving")
    assert t.decapsulates and t.outputs == ["LOCAL"] and not t.dropped


@pytest.mark.parametrize("name", ["from_tunnel", "node_own_pod"])
def test_delivery_to_a_pod_port_resolves_the_register_output(name):
    assert trace(name).outputs == ["output:100"]


def test_icmp_keeps_no_ports():
    t = trace("icmp")
    assert "tp_dst" not in t.final and t.final["nw_dst"] == "10.244.2.2"
