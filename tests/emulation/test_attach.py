"""Both attachments (spec.datapath.attach, topos/attach.py) carry real TCP on every path:
pod to pod on one node and across nodes, through a ClusterIP, and from outside through a
NodePort; and each really is what it says (an OVS tap whose device is the pod's eth0, or
a veth pair)."""

from __future__ import annotations

import pytest

from tests.emulation.test_offload import SPEC
from topos.cluster import ClusterNet
from topos.datapath import settle
from topos.iperf import iperf
from k8snet.model.cluster import UPLINK_IFNAME
from k8snet.model.manifests import Overrides, load_text

SAME_NODE = "---\napiVersion: v1\nkind: Pod\nmetadata: {name: neighbour}\nspec: {nodeName: node-1}\n"


@pytest.mark.parametrize("attach", ["tap", "veth"])
@pytest.mark.parametrize("backend, offload", [("host-gw", "tso"), ("vxlan", "none")])
def test_each_attachment_carries_tcp_on_every_path(attach, backend, offload, no_leaks):
    cluster = settle([load_text(SPEC + SAME_NODE, Overrides(backend=backend, offload=offload, attach=attach))])[0]
    assert cluster.attach == attach and f"attach {attach} as asked" in cluster.datapath_note
    with ClusterNet(cluster, progress=lambda m: None) as net:
        node = net.node("node-1")
        port = cluster.pod("server").port_name
        types = {name: node.ovs.vsctl("get", "interface", name, "type").strip() for name in (port, UPLINK_IFNAME)}
        assert types == ({port: "tap", UPLINK_IFNAME: "tap"} if attach == "tap" else {port: '""', UPLINK_IFNAME: '""'})
        driver = net.pod("server").ns("ethtool", "-i", "eth0").split("\n")[0]
        assert driver == ("driver: tun" if attach == "tap" else "driver: veth"), driver
        # The pod's side has what the pod needs, whichever device it is.
        link = net.pod("server").ns("ip", "-o", "link", "show", "eth0")
        assert f"mtu {cluster.pod_mtu} " in link and cluster.pod("server").mac in link, link
        server = net.pod("server")
        server_ip, vip = str(cluster.pod("server").ip), str(cluster.service("server").cluster_ip)
        for what, src, ip, port_number in (("same node", net.pod("neighbour"), server_ip, 5201),
                                           ("across nodes", net.pod("client"), server_ip, 5201),
                                           ("ClusterIP", net.pod("client"), vip, 5201),
                                           ("NodePort from outside", net.net["external"], str(cluster.nodes[0].ip),
                                            30201)):
            result = iperf(src, server, ip, port_number, 1, listen=5201)
            assert result["ok"], (what, result.get("error"))
            assert result["bytes"] > 20_000_000, (what, result["bytes"])
