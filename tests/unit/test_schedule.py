"""Fault schedules: parsed, checked against the cluster, turned into timed actions."""

from __future__ import annotations

import pytest

from k8snet.model.manifests import load_text
from k8snet.model.schedule import ScheduleError, default_schedule, parse_schedule

ROUTED = load_text("apiVersion: k8snet.io/v1alpha1\nkind: Cluster\nmetadata: {name: t}\n"
                   "spec: {nodes: 4, underlay: {type: routed, racks: 2}}\n")
FLAT = load_text("apiVersion: k8snet.io/v1alpha1\nkind: Cluster\nmetadata: {name: t}\nspec: {nodes: 3}\n")


def test_each_entry_becomes_its_fault_and_its_undoing_in_time_order():
    plan = parse_schedule("- {at: 5, fault: switch, target: node-1}\n"
                          "- {at: 1, for: 3, fault: node, target: node-2, how: switch}\n"
                          "- {at: 2, for: 1, fault: loss, target: gw-rack-0, loss: 2.5, direction: egress}\n"
                          "- {at: 7, for: 2, fault: controller}\n", ROUTED)
    assert [(e.at, e.kind) for e in plan] == [(1, "node"), (2, "loss"), (5, "switch"), (7, "controller")]
    assert plan[0].actions() == [(1, {"op": "fault", "kind": "node", "action": "down", "target": "node-2",
                                      "how": "switch"}),
                                 (4, {"op": "fault", "kind": "node", "action": "up", "target": "node-2"})]
    assert plan[1].actions()[1] == (3, {"op": "loss", "link": "gw-rack-0", "loss": 0, "direction": "egress"})
    assert len(plan[2].actions()) == 1 and plan[3].actions()[1][1]["action"] == "start"
    assert plan[1].label == "2.5 % loss on gw-rack-0 (egress)"
    assert plan[0].to_json()["how"] == "switch"


@pytest.mark.parametrize("text, field, needle", [
    ("- {at: 1, for: 2, fault: meteor}\n", "schedule[0].fault", "'meteor' is not a fault"),
    ("- {at: 1, for: 2, fault: node, target: node-9}\n", "schedule[0].target", "no node 'node-9'"),
    ("- {at: 1, for: 2, fault: router, target: node-1}\n", "schedule[0].target", "no router 'node-1'"),
    ("- {at: 1, for: 2, fault: node, target: node-1, how: fire}\n", "schedule[0].how", "its uplink"),
    ("- {at: -1, for: 2, fault: controller}\n", "schedule[0].at", "0 to 600"),
    ("- {at: 1, fault: controller}\n", "schedule[0].for", "how long the controller fault lasts"),
    ("- {at: 1, for: 2, fault: switch, target: node-1}\n", "schedule[0].for", "has no duration"),
    ("- {at: 1, for: 2, fault: loss, target: node-1, loss: 100}\n", "schedule[0].loss", "below 100"),
    ("- {at: 1, for: 2, fault: loss, target: node-7, loss: 1}\n", "schedule[0].target", "no underlay link"),
    ("- {at: 1, for: 2, fault: loss, target: node-1, loss: 1, direction: up}\n", "schedule[0].direction", "both"),
    ("- {at: 1, for: 2, fault: node, target: node-1, when: now}\n", "schedule[0].when", "unknown field"),
    ("- {at: 1, for: 4, fault: node, target: node-1}\n- {at: 3, fault: switch, target: node-1}\n", "schedule[1]",
     "overlaps schedule[0] on node-1 (1-5 s and 3-3 s)"),
    ("- {at: 1, for: 4, fault: controller}\n- {at: 5, for: 1, fault: controller}\n", "schedule[1]",
     "overlaps schedule[0] on the controller"),
    ("{at: 1}\n", "schedule", "a YAML list of faults"),
    ("- [1, 2]\n", "schedule[0]", "each entry is a mapping"),
    ("- {at: 1, for: 2, fault: node, target: [node-1\n", "schedule", "not valid YAML"),
])
def test_every_mistake_is_named_before_anything_starts(text, field, needle):
    with pytest.raises(ScheduleError) as exc:
        parse_schedule(text, ROUTED)
    assert any(f == field and needle in m for f, m in exc.value.problems), exc.value.problems


def test_the_default_schedule_uses_every_kind_the_underlay_has_and_never_overlaps():
    flat, routed = default_schedule(FLAT), default_schedule(ROUTED)
    assert [e.kind for e in flat] == ["node", "controller", "switch", "loss"]
    assert [e.kind for e in routed] == ["node", "controller", "switch", "loss", "router"]
    assert routed[0].target == "node-3" and routed[-1].target == "gw-rack-1"
    assert all(a.end < b.at for a, b in zip(routed, routed[1:]))


def test_the_readmes_schedule_is_a_valid_one_for_two_nodes():
    from tests import readme

    (block,) = [b for b in readme.blocks() if b.file == "schedule.yaml"]
    two = load_text("apiVersion: k8snet.io/v1alpha1\nkind: Cluster\nmetadata: {name: t}\nspec: {nodes: 2}\n")
    assert [e.kind for e in parse_schedule(block.text, two)] == ["node", "controller", "switch", "loss"]
