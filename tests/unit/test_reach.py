"""The matrix a backend predicts, and the expectations a test can state about it (pure)."""

from __future__ import annotations

import pytest

from k8snet.model.manifests import Overrides
from k8snet.model.reach import Pair, expectation, mismatch_line, pairs
from topos.specs import load_file


def racks(backend: str):
    return load_file("racks", Overrides(backend=backend))


def test_pairs_and_predictions_follow_the_backend():
    hostgw, vxlan = pairs(racks("host-gw")), pairs(racks("vxlan"))
    assert len(hostgw) == len(vxlan) == 4 * 3 + 2 * 4 * 4
    assert all(p.predicted for p in vxlan)
    lost = {p.id for p in hostgw if not p.predicted}
    assert "web-0->web-2" in lost and "web-0->web-1" not in lost and "node-3->web-0" in lost
    assert len(lost) == 24
    assert next(p for p in hostgw if p.id == "web-0->web-2").reason.startswith("host-gw needs node-0 and node-2")


@pytest.mark.parametrize("expected, same_rack, across", [
    ("all", True, True), (True, True, True), (False, False, False), ("predicted", True, False),
    ({"*-[01]->*-[23]": False, "*-[23]->*-[01]": False}, True, False),
    ({("web-0", "web-2"): False}, True, False),
    (lambda pair: pair.src == "web-0", True, True),
])
def test_expectations(expected, same_rack, across):
    by_id = {p.id: p for p in pairs(racks("host-gw"))}
    wanted = expectation(expected)
    assert wanted(by_id["web-0->web-1"]) is same_rack
    assert wanted(by_id["web-0->web-2"]) is across


def test_the_last_matching_rule_wins_and_unnamed_pairs_take_the_default():
    pair = Pair("web-0", "web-2", "10.244.2.2", "pod-pod-cross-node", True)
    assert expectation({"web-*->*": False, "*->web-2": True})(pair) is True
    assert expectation({"*->web-2": True, "web-*->*": False})(pair) is False
    assert expectation({"node-*->*": False}, default=False)(pair) is False


@pytest.mark.parametrize("bad", ["everything", {"web-0": True}, {"a->b": "yes"}, 3])
def test_unusable_expectations_are_refused_with_the_choices(bad):
    with pytest.raises(ValueError, match="expected"):
        expectation(bad)


def test_a_mismatch_says_what_was_expected_what_happened_and_why():
    pair = Pair("web-0", "web-2", "10.244.2.2", "pod-pod-cross-node", False, "host-gw needs one segment")
    assert mismatch_line(pair, True, False, "0 of 2 answered") == (
        "web-0 -> web-2 [pod-pod-cross-node, 10.244.2.2]: expected reachable, was unreachable (0 of 2 answered); "
        "predicted unreachable: host-gw needs one segment")
