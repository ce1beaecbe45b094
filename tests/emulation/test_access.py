"""Access modes on real clusters (k8snet/model/access.py): bridge and Calico's routed veth."""

from __future__ import annotations

import re

import pytest

from k8snet.model.manifests import Overrides, load_text
from topos.cluster import ClusterNet
from tests.emulation.conftest import WEB_SERVICE
from topos.probe import probe
from topos.specs import default_spec_text

@pytest.fixture(scope="module")
def routed():
    cluster = load_text(default_spec_text() + WEB_SERVICE, Overrides(access="routed-veth"))
    with ClusterNet(cluster) as net:
        yield net


def ttl(net, src: str, ip: str) -> int:
    out = net.pod(src).ns("ping", "-c", "1", "-W", "2", ip)
    m = re.search(r"ttl=(\d+)", out)
    assert m, out
    return int(m.group(1))


def test_routed_veth_pods_hold_a_slash_32_behind_the_link_local_gateway(routed):
    web0 = routed.cluster.pod("web-0")
    addr = routed.pod("web-0").ns("ip", "-o", "-4", "addr", "show", "dev", "eth0")
    assert f"{web0.ip}/32" in addr, addr
    assert "default via 169.254.1.1 dev eth0" in routed.pod("web-0").ns("ip", "route")
    results = probe(routed.net, routed.cluster)
    assert results and all(r.reachable for r in results), [r.pair.id for r in results if not r.reachable]


def test_every_packet_is_routed_even_to_a_pod_on_the_same_node(routed, no_leaks):
    c = routed.cluster
    web0 = c.pod("web-0")
    same = next(p for p in c.pods if p.node == web0.node and p.name != "web-0")
    other = next(p for p in c.pods if p.node != web0.node)
    assert ttl(routed, "web-0", str(same.ip)) == 63  # the node routed it (bridge: 64)
    assert ttl(routed, "web-0", str(other.ip)) == 62  # both nodes routed it (bridge: 62 too)
    with ClusterNet(load_text(default_spec_text())) as bridged:
        assert ttl(bridged, "web-0", str(same.ip)) == 64
        assert ttl(bridged, "web-0", str(other.ip)) == 62


def test_services_work_with_routed_veth(routed):
    svc = routed.cluster.service("web")
    for pod in routed.cluster.pods:
        if pod.labels.get("app") == "web":
            routed.serve(pod.host_name, 8080)
    served = routed.ask("web-0", str(svc.cluster_ip), 80, count=8)
    assert all(r["ok"] for r in served), served
