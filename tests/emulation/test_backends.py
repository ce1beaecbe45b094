"""Backends on real clusters: host-gw, VXLAN and directrouting, on flat and routed underlays.

The routed underlay is 2 racks x 2 nodes: node-0, node-1 in rack-0 (192.168.0.0/24),
node-2, node-3 in rack-1 (192.168.1.0/24), gateways gw-rack-0/1 joined by a core router.
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from tests.emulation.capture import capture
from topos.cluster import ClusterNet
from topos.iperf import iperf
from topos.ovs import wait_for
from k8snet.model.manifests import Overrides, load_text
from topos.specs import embedded_spec_text
from topos.probe import probe
from tests import patient

RACKS = embedded_spec_text("racks")


def routed(backend: str):
    return load_text(RACKS, Overrides(backend=backend))


def pods_by_node(cluster):
    return {p.node: p for p in cluster.pods}


@pytest.mark.parametrize("backend", ["host-gw", "vxlan", "directrouting"])
def test_full_matrix_on_a_flat_underlay(backend, no_leaks):
    cluster = load_text(embedded_spec_text("default"), Overrides(backend=backend))
    with ClusterNet(cluster) as net:
        results = probe(net.net, cluster)
    assert results and all(r.reachable for r in results), [f"{r.pair.src}->{r.pair.dst}" for r in results
                                                           if not r.reachable]


@pytest.mark.parametrize("backend", ["vxlan", "directrouting"])
def test_full_matrix_across_racks(backend, no_leaks):
    cluster = routed(backend)
    with ClusterNet(cluster) as net:
        results = probe(net.net, cluster)
    assert len(results) == 4 * 3 + 2 * 4 * 4
    assert all(r.reachable for r in results), [f"{r.pair.src}->{r.pair.dst}" for r in results if not r.reachable]


def test_host_gw_breaks_across_racks_and_works_within_them(no_leaks):
    cluster = routed("host-gw")
    rack = {n.name: n.rack for n in cluster.nodes}
    host_rack = {**rack, **{p.host_name: rack[p.node] for p in cluster.pods}}
    with ClusterNet(cluster) as net:
        results = probe(net.net, cluster)
    same = [r for r in results if host_rack[r.pair.src] == host_rack[r.pair.dst]]
    cross = [r for r in results if host_rack[r.pair.src] != host_rack[r.pair.dst]]
    assert same and cross
    assert all(r.reachable for r in same), [f"{r.pair.src}->{r.pair.dst}" for r in same if not r.reachable]
    assert not any(r.reachable for r in cross), [f"{r.pair.src}->{r.pair.dst}" for r in cross if r.reachable]
    assert all("no L2 next hop" in r.pair.reason for r in cross)


def test_check_exits_1_and_says_why_for_host_gw_across_racks(tmp_path, no_leaks):
    from tests.emulation.conftest import K8SNET, k8snet_env

    out = tmp_path / "check.json"
    result = patient.run([*K8SNET, "check", "racks", "--backend", "host-gw", "--json", str(out)],
                            capture_output=True, text=True, timeout=120, env=k8snet_env(), stdin=subprocess.DEVNULL)
    assert result.returncode == 1, result.stderr
    assert "no L2 next hop" in result.stdout and "unreachable" in result.stdout
    doc = json.loads(out.read_text())
    assert doc["ok"] is False and doc["as_predicted"] is True


@pytest.fixture(scope="module")
def vxlan_net():
    cluster = routed("vxlan")
    with ClusterNet(cluster) as net:
        yield net


def test_vxlan_crosses_the_gateway_as_udp_8472_with_vni_1_and_no_bare_pod_ips(vxlan_net):
    cluster = vxlan_net.cluster
    by_node = pods_by_node(cluster)
    src, dst = by_node["node-0"], by_node["node-2"]
    gw = vxlan_net.net[cluster.underlay.racks[0].host_name]

    def ping():
        vxlan_net.pod(src.host_name).ns("ping", "-c", "3", "-i", "0.2", "-W", "2", str(dst.ip))

    tunnel = capture(gw, "core", "udp port 8472", ping, extra=("-T", "vxlan"))
    # 3 requests + 3 replies, each "outer | inner"; none lost to tunnel next-hop resolution
    # (the first ping of this cluster is among them: the neighbour cache is seeded).
    assert len(tunnel) == 6, tunnel
    assert all("VXLAN" in l and "vni 1" in l for l in tunnel), tunnel
    assert any(f"{src.ip} > {dst.ip}: ICMP echo request" in l for l in tunnel), tunnel
    assert any(f"{cluster.node('node-0').ip}." in l and f"> {cluster.node('node-2').ip}.8472" in l for l in tunnel)
    bare = capture(gw, "core", "ip net 10.244.0.0/16", ping)
    assert bare == [], bare


def test_pods_get_the_overlay_mtu_published_in_subnet_env(vxlan_net):
    pod = vxlan_net.cluster.pods[0]
    assert "mtu 1450" in vxlan_net.pod(pod.host_name).ns("ip", "link", "show", "eth0")
    env = vxlan_net.node("node-0").ns("cat", "/run/flannel/subnet.env")
    assert "FLANNEL_MTU=1450" in env and "FLANNEL_SUBNET=10.244.0.1/24" in env
    assert "FLANNEL_NETWORK=10.244.0.0/16" in env
    assert not __import__("os").path.exists("/run/flannel/subnet.env"), "subnet.env leaked to the host"
    # ...and the copy the README points at, in the node's run directory.
    assert (vxlan_net.run.path / "n0" / "subnet.env").read_text() == env


def test_large_ping_and_udp_datagram_cross_the_tunnel(vxlan_net):
    by_node = pods_by_node(vxlan_net.cluster)
    src, dst = vxlan_net.pod(by_node["node-0"].host_name), by_node["node-3"]
    out = src.ns("ping", "-c", "2", "-s", "8000", "-W", "3", str(dst.ip))
    assert "2 received" in out and "8008 bytes from" in out
    receiver = vxlan_net.pod(dst.host_name).popen(
        ["python3", "-c", "import socket;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);"
         "s.bind(('0.0.0.0',9999));s.settimeout(10);d,a=s.recvfrom(65535);print(len(d),a[0])"],
        stdout=subprocess.PIPE, text=True)
    wait_for(lambda: bool(vxlan_net.pod(dst.host_name).ns("ss", "-Huln", "sport = :9999").strip()), 10,
             "the receiver to bind 9999/udp")
    src.ns("python3", "-c", f"import socket;socket.socket(socket.AF_INET,socket.SOCK_DGRAM)"
                            f".sendto(b'x'*2000,('{dst.ip}',9999))")
    got, _ = receiver.communicate(timeout=15)
    assert got.split() == ["2000", str(by_node["node-0"].ip)]


def test_tcp_over_vxlan_at_the_overlay_mtu(vxlan_net):
    by_node = pods_by_node(vxlan_net.cluster)
    run = iperf(vxlan_net.pod(by_node["node-0"].host_name), vxlan_net.pod(by_node["node-3"].host_name),
                str(by_node["node-3"].ip), 5201, 1)
    assert run["ok"], run
    result = run["doc"]
    assert result["end"]["sum_received"]["bytes"] > 1_000_000
    # The MSS follows the pod MTU of 1450 (1450 - 40 header bytes, timestamps take 12 more).
    assert result["start"]["tcp_mss_default"] <= 1410


def test_directrouting_encapsulates_only_across_racks(no_leaks):
    cluster = routed("directrouting")
    by_node = pods_by_node(cluster)
    a, same, far = by_node["node-0"], by_node["node-1"], by_node["node-2"]
    with ClusterNet(cluster) as net:
        gw = net.net[cluster.underlay.racks[0].host_name]
        ping = lambda dst: lambda: net.pod(a.host_name).ns("ping", "-c", "2", "-i", "0.2", "-W", "2", str(dst.ip))
        # In the rack: bare pod IPs on the rack segment, nothing tunnelled.
        in_rack = capture(gw, "segment", "icmp or udp port 8472", ping(same))
        assert any(f"{a.ip} > {same.ip}: ICMP echo request" in l for l in in_rack), in_rack
        assert not any(".8472" in l for l in in_rack), in_rack
        # Across racks: VXLAN on the core link, no bare pod IPs.
        across = capture(gw, "core", "udp port 8472 or icmp", ping(far), extra=("-T", "vxlan"))
        assert any("vni 1" in l and f"{a.ip} > {far.ip}: ICMP echo request" in l for l in across), across
        assert not any(re.match(rf"^\S+ IP {re.escape(str(a.ip))} > ", l) for l in across), across


def test_underlay_bandwidth_shapes_node_links(no_leaks):
    text = RACKS.replace("    cidr: 192.168.0.0/16\n", "    cidr: 192.168.0.0/16\n    bandwidth: 20\n")
    cluster = load_text(text)
    assert cluster.underlay.bandwidth_mbit == 20
    by_node = pods_by_node(cluster)
    with ClusterNet(cluster) as net:
        assert "rate 20Mbit" in net.node("node-0").ns("tc", "class", "show", "dev", "uplink")
        run = iperf(net.pod(by_node["node-0"].host_name), net.pod(by_node["node-2"].host_name),
                    str(by_node["node-2"].ip), 5202, 2)
    assert run["ok"], run
    rate = run["bits_per_second"] / 1e6
    assert 0 < rate < 25, f"{rate:.1f} Mbit/s through a 20 Mbit/s underlay"


def test_iana_port_other_vni_and_jumbo_underlay(no_leaks):
    """backend {type: vxlan, vni: 7, port: 4789} on a 9000-byte underlay: pods get 8950 and
    an 8900-byte ping crosses unfragmented (DF set) as UDP 4789 with VNI 7."""
    text = embedded_spec_text("default").replace("  backend: host-gw\n", "  backend: {type: vxlan, vni: 7, port: 4789}\n") \
        .replace("    mtu: 1500\n", "    mtu: 9000\n")
    cluster = load_text(text, Overrides(nodes=2, pods_per_node=1))
    assert (cluster.vni, cluster.vxlan_port, cluster.pod_mtu) == (7, 4789, 8950)
    a, b = cluster.pods
    with ClusterNet(cluster) as net:
        fabric = net.net["underlay"]
        ping = lambda: net.pod(a.host_name).ns("ping", "-c", "2", "-i", "0.2", "-M", "do", "-s", "8900", "-W", "2",
                                               str(b.ip))
        seen = capture(fabric, "fabric", "udp port 4789", ping)
        assert "mtu 8950" in net.pod(a.host_name).ns("ip", "link", "show", "eth0")
    assert len(seen) == 4, seen
    assert all("VXLAN" in l and "vni 7" in l and "length 8908" in l for l in seen), seen
