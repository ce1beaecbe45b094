"""Fault requests are checked against the model before anything is touched."""

from __future__ import annotations

import pytest

from k8snet.model.manifests import load_text
from k8snet.model.faults import FaultInputError, check_fault

SPEC = """\
apiVersion: k8snet.io/v1alpha1
kind: Cluster
metadata: {name: t}
spec: {nodes: 4, underlay: {type: routed, racks: 2}}
"""


@pytest.mark.parametrize("args, argument, needle", [
    (("meteor", "down", "node-1"), "KIND", "'meteor' is not a fault; allowed: link, router, node, switch, controller"),
    (("node", "explode", "node-1"), "ACTION", "node faults are down or up, not 'explode'"),
    (("node", "down", "node-9"), "TARGET", "no node 'node-9'; nodes are: node-0, node-1, node-2, node-3"),
    (("switch", "restart", "gw-rack-0"), "TARGET", "no node 'gw-rack-0'"),
    (("router", "down", "node-1"), "TARGET", "no router 'node-1'; routers are: gw-rack-0, gw-rack-1, core"),
    (("link", "down", "gw-rack-7"), "TARGET", "no underlay link 'gw-rack-7'"),
    (("node", "down", "node-1", "meteor"), "--how", "its uplink (cut off) or its switch"),
])
def test_a_fault_that_names_nothing_real_says_which_argument(args, argument, needle):
    with pytest.raises(FaultInputError) as exc:
        check_fault(load_text(SPEC), *args)
    assert exc.value.argument == argument and needle in str(exc.value)


def test_a_flat_underlay_has_no_routers_and_says_so():
    flat = load_text(SPEC.replace("underlay: {type: routed, racks: 2}", "underlay: {type: flat}"))
    with pytest.raises(FaultInputError, match="a flat underlay has none"):
        check_fault(flat, "router", "down", "core")


@pytest.mark.parametrize("args", [("link", "down", "gw-rack-1"), ("router", "up", "core"),
                                  ("node", "down", "node-3", "switch"), ("switch", "restart", "node-0"),
                                  ("controller", "restart")])
def test_good_faults_pass(args):
    check_fault(load_text(SPEC), *args)
