"""Two racks behind L3 gateways: host-gw must fail across them, VXLAN must not.

::

    web-0 web-1                   web-2 web-3
    node-0 node-1                 node-2 node-3
         \\   /                       \\   /
       gw-rack-0 ──── core ──── gw-rack-1       192.168.0.0/24 | 192.168.1.0/24

Flannel's host-gw routes a peer's pod subnet via the peer's node IP, which needs the
peer on the same L2 segment; the gateways know nothing of pod subnets, so every pair
that crosses them is lost.  VXLAN wraps pod packets in node-to-node UDP and crosses.
"""

import pytest

# In rack-0: node-0, node-1 and their pods web-0, web-1; in rack-1: node-2, node-3, web-2, web-3.
ACROSS_THE_GATEWAYS = {"*-[01]->*-[23]": False, "*-[23]->*-[01]": False}


@pytest.mark.k8snet(spec="racks", backend="host-gw")
def test_host_gw_reaches_only_within_a_rack(k8snet_cluster):
    k8snet_cluster.assert_matrix(ACROSS_THE_GATEWAYS)  # every other pair: reachable


@pytest.mark.k8snet(spec="racks", backend="host-gw")
def test_host_gw_failures_are_the_ones_it_predicts(k8snet_cluster):
    k8snet_cluster.assert_matrix("predicted")
    reach = k8snet_cluster.reachable("web-0", "web-2")
    assert not reach and "L2 segment" in reach.reason


@pytest.mark.k8snet(spec="racks", backend="vxlan")
def test_vxlan_reaches_across_the_gateways(k8snet_cluster):
    k8snet_cluster.assert_matrix("all")
    assert k8snet_cluster.reachable("web-0", "web-3", port=8080, proto="tcp")
