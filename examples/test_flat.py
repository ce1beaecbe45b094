"""A user's reachability tests for a flat cluster (``pytest examples/test_flat.py``, as root).

::

    web-0 web-3      web-1 web-4      web-2 web-5
       node-0           node-1           node-2        host-gw, one L2 segment
          └───────────────┴────────────────┘           192.168.56.0/24

The ``k8snet_cluster`` fixture comes with k8snet (its pytest plugin); the ``k8snet``
marker says which cluster.  Every test in this module shares one cluster (the default
scope, ``module``), built before the first test and torn down after the last.
"""

import pytest

pytestmark = pytest.mark.k8snet(spec="default")


def test_every_pod_reaches_every_pod_and_node(k8snet_cluster):
    # The Kubernetes network model: every pair, no NAT.
    k8snet_cluster.assert_matrix("all")


def test_pods_talk_tcp_and_udp_across_nodes(k8snet_cluster):
    assert k8snet_cluster.reachable("web-0", "web-1", port=80, proto="tcp")
    assert k8snet_cluster.reachable("web-0", "web-5", port=53, proto="udp")


def test_a_node_reaches_a_pod_on_another_node(k8snet_cluster):
    assert k8snet_cluster.reachable("node-0", "web-2")


@pytest.mark.k8snet(spec="default", backend="vxlan")
def test_the_same_cluster_over_vxlan(k8snet_cluster):
    assert k8snet_cluster.cluster.backend.value == "vxlan"
    k8snet_cluster.assert_matrix("all")
