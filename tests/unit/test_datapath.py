"""Datapath and offload selection (topos/datapath.py), at unit level: this machine has
no OVS kernel module and OVS 3.1, so the other cases are given as capabilities."""

from __future__ import annotations

import pytest

from k8snet.cli import main
from topos.environment import environment
from topos.datapath import Capabilities, DatapathError, DatapathType, has_kernel_module, \
    parse_version, resolve, settle
from k8snet.model.manifests import Overrides, SpecError, load_text
from topos.specs import default_spec_text

OVS31 = Capabilities((3, 1, 0), kernel_module=False)
OVS33 = Capabilities((3, 3, 0), kernel_module=False)
OVS212 = Capabilities((2, 12, 0), kernel_module=False)
KERNEL31 = Capabilities((3, 1, 0), kernel_module=True)


def test_version_parsing():
    assert parse_version("ovs-vswitchd (Open vSwitch) 3.1.0") == (3, 1, 0)
    assert parse_version("ovs-vswitchd (Open vSwitch) 2.17") == (2, 17, 0)
    with pytest.raises(ValueError):
        parse_version("no version here")


@pytest.mark.parametrize("caps, offload, dtype, backends, want", [
    (OVS31, "auto", "auto", ["host-gw"], ("netdev", "tso")),
    (OVS31, "auto", "auto", ["host-gw", "vxlan"], ("netdev", "none")),      # one setting for the whole run
    (OVS31, "auto", "auto", ["directrouting"], ("netdev", "none")),
    (OVS31, "none", "auto", ["host-gw"], ("netdev", "none")),
    (OVS31, "tso", "netdev", ["host-gw"], ("netdev", "tso")),
    (OVS33, "auto", "auto", ["host-gw", "vxlan"], ("netdev", "tso")),        # tunnel TSO from 3.3
    (OVS33, "tso", "auto", ["vxlan"], ("netdev", "tso")),
    (OVS212, "auto", "auto", ["host-gw"], ("netdev", "none")),              # no userspace TSO before 2.13
    (KERNEL31, "auto", "auto", ["host-gw", "vxlan"], ("system", "tso")),    # the kernel segments tunnels
    (KERNEL31, "auto", "netdev", ["host-gw", "vxlan"], ("netdev", "none")),  # forced userspace
    (KERNEL31, "none", "system", ["vxlan"], ("system", "none")),
])
def test_resolution(caps, offload, dtype, backends, want):
    r = resolve(offload, dtype, backends, caps)
    assert (r.type.value, r.offload.value) == want
    assert r.why


def test_auto_says_why_it_chose_none():
    r = resolve("auto", "auto", ["host-gw", "vxlan"], OVS31)
    assert "vxlan" in r.why and "3.3" in r.why and "3.1.0" in r.why and "no OVS kernel module" in r.why


@pytest.mark.parametrize("caps, offload, dtype, backends, field, needles", [
    (OVS31, "tso", "auto", ["vxlan"], "datapath.offload", ["3.3", "3.1.0", "offload none"]),
    (OVS31, "tso", "auto", ["host-gw", "directrouting"], "datapath.offload", ["directrouting", "3.3"]),
    (OVS212, "tso", "auto", ["host-gw"], "datapath.offload", ["2.13", "2.12.0"]),
    (OVS31, "auto", "system", ["host-gw"], "datapath.type", ["kernel module", "netdev or auto"]),
])
def test_refusals_name_the_setting_and_the_fix(caps, offload, dtype, backends, field, needles):
    with pytest.raises(DatapathError) as info:
        resolve(offload, dtype, backends, caps)
    assert info.value.field == field
    for needle in needles:
        assert needle in info.value.message


def test_kernel_module_detection(tmp_path):
    assert has_kernel_module(str(tmp_path))  # "/sys/module/openvswitch" exists: loaded


def test_settle_resolves_a_run_together_and_records_it():
    host_gw = load_text(default_spec_text(), Overrides(nodes=2))
    vxlan = load_text(default_spec_text(), Overrides(nodes=2, backend="vxlan"))
    assert (host_gw.offload, host_gw.datapath_type, host_gw.datapath_note) == ("auto", "auto", "")
    a, b = settle([host_gw, vxlan], OVS31)
    assert (a.offload, b.offload, a.datapath_type) == ("none", "none", "netdev")
    assert a.datapath_note == b.datapath_note and "vxlan" in a.datapath_note
    (alone,) = settle([host_gw], OVS31)
    assert alone.offload == "tso"
    env = environment(alone)
    assert env["offload"] == "tso" and env["datapath_type"] == "netdev" and "userspace TSO on" in \
        env["offload_detail"] and env["datapath_choice"] == alone.datapath_note
    tso = load_text(default_spec_text(), Overrides(nodes=2, offload="tso"))
    with pytest.raises(DatapathError):
        settle([tso, host_gw], OVS31)  # two settings in one run


def test_lossy_links_take_offload_none_under_auto_and_say_what_tso_would_mean():
    text = default_spec_text().replace("    mtu: 1500\n", "    mtu: 1500\n    loss: 1\n", 1)
    (lossy,) = settle([load_text(text, Overrides(nodes=2))], OVS31)
    assert lossy.offload == "none" and "a lossy link drops whole frames" in lossy.datapath_note
    (sweep,) = settle([load_text(default_spec_text(), Overrides(nodes=2))], OVS31, lossy=True)
    assert sweep.offload == "none"
    (asked,) = settle([load_text(text, Overrides(nodes=2, offload="tso"))], OVS31)
    assert asked.offload == "tso" and "loss is per TSO segment" in asked.datapath_note


def test_spec_field_and_its_errors():
    text = default_spec_text().replace("  backend: host-gw\n", "  backend: host-gw\n  datapath: {offload: none, "
                                       "type: netdev}\n")
    cluster = load_text(text)
    assert (cluster.offload, cluster.datapath_type) == ("none", "netdev")
    assert load_text(text, Overrides(offload="tso")).offload == "tso"  # the command line wins
    for bad, field, needle in (("{offload: fast}", "spec.datapath.offload", "allowed: auto, tso, none"),
                               ("{type: kernel}", "spec.datapath.type", "allowed: auto, netdev")):
        with pytest.raises(SpecError) as info:
            load_text(default_spec_text().replace("  backend: host-gw\n", f"  backend: host-gw\n  datapath: {bad}\n"))
        assert any(p.field == field and needle in p.message for p in info.value.problems), info.value.problems


@pytest.mark.parametrize("argv", [["check", "--offload", "tso", "--backend", "vxlan"],
                                  ["run", "throughput", "--offload", "tso", "--backend", "host-gw,vxlan"]])
def test_cli_refuses_tso_with_vxlan_on_this_ovs_and_starts_nothing(argv, tmp_path, capsys):
    from topos.datapath import detect

    if detect().tunnel_tso(DatapathType.NETDEV):
        pytest.skip(f"this OVS ({detect().version_text}) can tunnel TSO: nothing to refuse")
    assert main([*argv, "--out", str(tmp_path / "r")] if argv[0] == "run" else argv) == 2
    err = capsys.readouterr().err.replace("\n", " ")
    assert "--offload" in err and "Open vSwitch 3.3" in err and detect().version_text in err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("caps, attach, want, needle", [
    (OVS31, "auto", "tap", "auto: the userspace datapath"),
    (KERNEL31, "auto", "veth", "auto: the kernel datapath"),
    (OVS31, "veth", "veth", "as asked"),
    (OVS31, "tap", "tap", "as asked"),
])
def test_attachment_resolution(caps, attach, want, needle):
    r = resolve("auto", "auto", ["host-gw"], caps, attach=attach)
    assert r.attach.value == want and needle in r.why


def test_tap_on_the_kernel_datapath_is_refused_naming_the_setting():
    with pytest.raises(DatapathError) as info:
        resolve("auto", "system", ["host-gw"], KERNEL31, attach="tap")
    assert info.value.field == "datapath.attach" and "userspace datapath" in info.value.message \
        and "use veth" in info.value.message


def test_attach_in_the_spec_on_the_command_line_and_in_the_environment():
    text = default_spec_text().replace("  backend: host-gw\n", "  backend: host-gw\n  datapath: {attach: veth}\n")
    assert load_text(text).attach == "veth"
    assert load_text(text, Overrides(attach="tap")).attach == "tap"  # the command line wins
    (cluster,) = settle([load_text(text)], OVS31)
    assert cluster.attach == "veth" and environment(cluster)["attach"] == "veth"
    with pytest.raises(SpecError) as info:
        load_text(text.replace("attach: veth", "attach: macvlan"))
    assert any(p.field == "spec.datapath.attach" and "allowed: auto, veth" in p.message
               for p in info.value.problems), info.value.problems
    with pytest.raises(DatapathError):
        settle([load_text(text), load_text(default_spec_text())], OVS31)  # two attachments in one run


def test_cli_refuses_tap_on_a_kernel_datapath_it_lacks_and_starts_nothing(capsys):
    assert main(["check", "--attach", "tap", "--datapath", "system"]) == 2
    assert "--datapath" in capsys.readouterr().err  # (no kernel module here: the datapath is refused first)


def test_a_jumbo_underlay_without_tso_keeps_veth_and_refuses_tap():
    r = resolve("none", "auto", ["vxlan"], OVS31, mtu=9000)
    assert r.attach.value == "veth" and "1,500 bytes at a time" in r.why
    assert resolve("tso", "auto", ["host-gw"], OVS31, mtu=9000).attach.value == "tap"
    with pytest.raises(DatapathError) as info:
        resolve("none", "auto", ["vxlan"], OVS31, attach="tap", mtu=9000)
    assert info.value.field == "datapath.attach" and "offload tso" in info.value.message
