"""spec.access (k8snet/model/access.py): the field, --access, and what this machine refuses."""

from __future__ import annotations

import pytest

from k8snet.cli import main
from controllers.compiler import compile_node
from k8snet.model.access import pod_routes
from k8snet.model.manifests import Overrides, SpecError, load_text
from k8snet.model.reach import pairs
from topos.datapath import Capabilities, DatapathError, access_problem, settle
from topos.specs import default_spec_text, embedded_spec_text

OVS31 = Capabilities((3, 1, 0), kernel_module=False, ipvlan=False)
WITH_IPVLAN = Capabilities((3, 1, 0), kernel_module=False, ipvlan=True)
SPEC = default_spec_text().replace("  backend: host-gw\n", "  backend: host-gw\n  access: ACCESS\n", 1)


def test_the_spec_field_and_the_command_line_choose_the_access_mode():
    assert "  access: ACCESS\n" in SPEC
    assert load_text(default_spec_text()).access == "bridge"
    assert load_text(SPEC.replace("ACCESS", "routed-veth")).access == "routed-veth"
    assert load_text(SPEC.replace("ACCESS", "bridge"), Overrides(access="routed-veth")).access == "routed-veth"


def test_an_unknown_access_mode_names_the_field_and_the_choices():
    with pytest.raises(SpecError) as exc:
        load_text(SPEC.replace("ACCESS", "sriov"))
    text = str(exc.value)
    assert "spec.access" in text and "'sriov' is not an access mode" in text and "routed-veth (Calico's" in text
    with pytest.raises(SpecError) as exc:
        load_text(default_spec_text(), Overrides(access="sriov"))
    assert "--access" in str(exc.value) and "bridge, routed-veth, macvlan, ipvlan" in str(exc.value)


def test_ipvlan_is_refused_where_the_kernel_has_no_driver_and_says_why():
    problem = access_problem("ipvlan", OVS31)
    assert problem and "CONFIG_IPVLAN is not set" in problem and problem.endswith("use bridge, routed-veth or macvlan")
    with pytest.raises(DatapathError) as exc:
        settle([load_text(SPEC.replace("ACCESS", "ipvlan"))], OVS31)
    assert exc.value.field == "access" and "Unknown device type" in exc.value.message
    assert access_problem("ipvlan", WITH_IPVLAN) and "not built yet" in access_problem("ipvlan", WITH_IPVLAN)
    assert access_problem("bridge", OVS31) is None and access_problem("routed-veth", OVS31) is None


def test_the_command_line_exits_2_on_a_refused_access_mode(capsys):
    assert main(["check", "--access", "ipvlan"]) == 2
    out = capsys.readouterr().err.replace("\n", " ")
    assert "spec.access" in out and "--access" in out and "ipvlan" in out


def test_routed_veth_pods_hold_a_slash_32_and_route_via_the_link_local_gateway():
    assert pod_routes("routed-veth", "10.244.0.2", 24, "10.244.0.1") == [
        "addr replace 10.244.0.2/32 dev eth0", "route replace 169.254.1.1 dev eth0 scope link",
        "route replace default via 169.254.1.1 dev eth0"]
    assert pod_routes("bridge", "10.244.0.2", 24, "10.244.0.1") == [
        "addr replace 10.244.0.2/24 dev eth0", "route replace default via 10.244.0.1 dev eth0"]


def test_macvlan_pods_hold_the_pod_cidr_and_their_segment_on_link():
    assert pod_routes("macvlan", "10.244.0.2", 24, "10.244.0.1", "10.244.0.0/16", "192.168.0.0/24") == [
        "addr replace 10.244.0.2/16 dev eth0", "route replace 192.168.0.0/24 dev eth0 scope link"]


def test_macvlan_predictions_one_segment_and_never_the_own_node():
    flat = load_text(SPEC.replace("ACCESS", "macvlan"))
    by_id = {p.id: p for p in pairs(flat)}
    web0 = flat.pod("web-0")
    assert all(p.predicted for p in by_id.values() if p.kind.startswith("pod-pod"))
    own = [p for p in by_id.values() if not p.predicted]
    assert {p.id for p in own} == ({f"{p.host_name}->{p.node}" for p in flat.pods}
                                   | {f"{p.node}->{p.host_name}" for p in flat.pods})
    assert "parent" in by_id[f"{web0.node}->web-0"].reason
    racks = load_text(embedded_spec_text("racks"), Overrides(access="macvlan"))
    across = [p for p in pairs(racks) if p.kind == "pod-pod-cross-node" and not p.predicted]
    assert across and all("no router there knows pod addresses" in p.reason for p in across)


def test_macvlan_needs_the_driver_a_veth_uplink_and_the_userspace_datapath():
    no_macvlan = Capabilities((3, 1, 0), kernel_module=True, ipvlan=False, macvlan=False)
    assert "Unknown device type" in access_problem("macvlan", no_macvlan)
    assert access_problem("macvlan", OVS31) is None
    spec = SPEC.replace("ACCESS", "macvlan")
    for field, text in (("type", "system"), ("attach", "tap")):
        with pytest.raises(DatapathError) as exc:
            settle([load_text(spec.replace("  access: macvlan\n", f"  access: macvlan\n  datapath: {{{field}: {text}}}\n"))],
                   Capabilities((3, 1, 0), kernel_module=True, ipvlan=False))
        assert exc.value.field == f"datapath.{field}" and "children of the node's uplink" in exc.value.message
    settled = settle([load_text(spec)], OVS31)[0]
    assert settled.attach == "veth" and "macvlan: uplinks are veth" in settled.datapath_note


def test_macvlan_pods_are_not_ports_and_other_nodes_pods_are_neighbours():
    mv = load_text(SPEC.replace("ACCESS", "macvlan"))
    text = "\n".join(compile_node(mv, "node-0").ofctl_lines())
    # The switch's copy of what the kernel hands node-0's own macvlan pods is dropped...
    assert "priority=200,eth_type=0x0800,in_port=1,nw_dst=10.244.0.0/24 actions=drop" in text
    for pod in mv.pods:
        mine = pod.node == "node-0"
        # ...no flow delivers to a pod port, and other nodes' pods are reached by their MACs.
        assert not mine or f"output:{pod.ofport}" not in text, pod.name
        assert (f"set_field:{pod.mac}->eth_dst" in text) is (not mine), pod.name


def test_the_command_line_exits_2_on_macvlan_over_a_tap_uplink(capsys):
    assert main(["check", "--access", "macvlan", "--attach", "tap"]) == 2
    out = capsys.readouterr().err.replace("\n", " ")
    assert "--attach" in out and "children of the node's uplink" in out, out
