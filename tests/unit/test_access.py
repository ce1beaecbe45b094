"""spec.access (k8snet/model/access.py): the field, --access, and what this machine refuses."""

from __future__ import annotations

import pytest

from k8snet.cli import main
from k8snet.model.access import pod_routes
from k8snet.model.manifests import Overrides, SpecError, load_text
from topos.datapath import Capabilities, DatapathError, access_problem, settle
from topos.specs import default_spec_text

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
