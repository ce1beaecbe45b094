"""Underlay links and their loss rules, as pure functions of the model."""

from __future__ import annotations

import pytest

from k8snet.model.faults import FaultInputError, check_loss
from k8snet.model.impairment import Direction, Impairment
from k8snet.model.links import impairments_of, loss_map, nft_scripts, read_counters, underlay_links
from k8snet.model.manifests import load_text

FLAT = """\
apiVersion: k8snet.io/v1alpha1
kind: Cluster
metadata: {name: t}
spec:
  nodes: 2
  underlay:
"""


def cluster(extra: str = "    loss: 0\n"):
    return load_text(FLAT + extra)


def test_every_underlay_link_is_named_by_its_outer_host_with_its_rule_on_the_segment_side():
    flat = underlay_links(cluster())
    assert {n: (l.host, l.device, l.kind) for n, l in flat.items()} == {
        "node-0": ("underlay", "n0", "node uplink"), "node-1": ("underlay", "n1", "node uplink"),
        "external": ("underlay", "ext", "external"), "lb": ("underlay", "lbx", "load balancer")}
    routed = underlay_links(cluster("    type: routed\n"))
    assert {n: (l.host, l.device) for n, l in routed.items()} == {
        "node-0": ("gw-rack-0", "n0"), "node-1": ("gw-rack-1", "n1"), "gw-rack-0": ("core", "r0"),
        "gw-rack-1": ("core", "r1"), "external": ("core", "ext"), "lb": ("core", "lb")}


def test_the_global_loss_covers_every_link_and_a_named_direction_replaces_it():
    c = cluster("    loss: 1\n    impairments: [{link: node-1, loss: 5, direction: egress}, {link: lb, loss: 0}]\n")
    assert [(i.link, i.loss, i.direction.value) for i in c.underlay.impairments] == [
        ("node-0", 1.0, "both"), ("node-1", 5.0, "egress"), ("node-1", 1.0, "ingress"), ("external", 1.0, "both")]
    assert "loss on 3 links" in c.summary()
    assert cluster().underlay.impairments == () and "loss" not in cluster().summary()


def test_impairments_round_trip_through_one_way_losses():
    items = (Impairment(link="a", loss=2, direction=Direction.BOTH),
             Impairment(link="b", loss=1, direction=Direction.INGRESS))
    assert impairments_of(loss_map(items), ["a", "b"]) == items
    assert impairments_of({("a", Direction.EGRESS): 0.0}, ["a"]) == ()


def test_the_rule_drops_the_share_asked_for_at_the_hook_that_sees_that_direction():
    c = cluster("    impairments: [{link: node-1, loss: 0.25, direction: egress}, {link: node-0, loss: 0}]\n")
    scripts = nft_scripts(c, {("node-1", Direction.EGRESS): 0.25, ("node-0", Direction.INGRESS): 0.0})
    assert list(scripts) == ["underlay"]
    text = scripts["underlay"]
    # What node-1 sends arrives at the bridge port's ingress hook; what node-0 receives leaves by n0's egress.
    assert 'add chain netdev k8snet n1_egress { type filter hook ingress device "n1" priority -500;' in text
    assert 'add chain netdev k8snet n0_ingress { type filter hook egress device "n0" priority -500;' in text
    assert 'numgen random mod 1000000 < 2500 counter name "n1_egress_dropped" drop' in text
    assert "n0_ingress_dropped\" drop" not in text  # a loss of 0 only counts
    # Rules are replaced and counters restarted, in that order, in one file (one transaction).
    lines = text.splitlines()
    flush, delete = lines.index("flush chain netdev k8snet n1_egress"), lines.index(
        "delete counter netdev k8snet n1_egress_seen")
    assert lines[0] == "add table netdev k8snet" and flush < delete


def test_counters_are_read_back_per_link_and_way():
    c = cluster()
    listed = {"underlay": {"nftables": [
        {"metainfo": {}},
        {"counter": {"family": "netdev", "table": "k8snet", "name": "n1_egress_seen", "packets": 10_000}},
        {"counter": {"family": "netdev", "table": "k8snet", "name": "n1_egress_dropped", "packets": 512}},
        {"counter": {"family": "netdev", "table": "other", "name": "n0_ingress_seen", "packets": 9}}]}}
    counts = read_counters(c, {("node-1", Direction.EGRESS): 5.0, ("node-0", Direction.INGRESS): 0.0}, listed)
    assert [(x.link, x.direction.value, x.seen, x.dropped, x.achieved) for x in counts] == [
        ("node-0", "ingress", 0, 0, None), ("node-1", "egress", 10_000, 512, 5.12)]
    assert counts[1].to_json() == {"link": "node-1", "direction": "egress", "configured_percent": 5.0,
                                   "frames": 10_000, "dropped": 512, "achieved_percent": 5.12}


@pytest.mark.parametrize("link, loss, direction, argument, needle", [
    ("node-9", 1, "both", "LINK", "no underlay link 'node-9'"),
    ("node-1", "lots", "both", "PERCENT", "not a number"),
    ("node-1", 100, "both", "PERCENT", "outside [0, 100)"),
    ("node-1", -0.1, "both", "PERCENT", "outside [0, 100)"),
    ("node-1", 1, "up", "--direction", "allowed: both, egress, ingress"),
])
def test_a_run_time_change_names_the_bad_argument(link, loss, direction, argument, needle):
    with pytest.raises(FaultInputError) as exc:
        check_loss(cluster(), link, loss, direction)
    assert exc.value.argument == argument and needle in str(exc.value)


def test_a_good_run_time_change_is_accepted():
    assert check_loss(cluster(), "lb", "2.5", "ingress") == (2.5, Direction.INGRESS)
