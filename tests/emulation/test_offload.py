"""Each offload mode this machine allows carries TCP end to end -- pod to pod across
nodes, through a ClusterIP, from outside through a NodePort -- on host-gw and VXLAN;
the combination this OVS cannot carry (TSO over a userspace tunnel before OVS 3.3) is
refused up front with the version needed, instead of stalling."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.emulation.conftest import K8SNET, k8snet_env
from topos.cluster import ClusterNet
from topos.datapath import DatapathType, detect, settle
from topos.iperf import iperf
from k8snet.model.manifests import Overrides, load_text
from tests import patient

SPEC = """\
apiVersion: k8snet.io/v1alpha1
kind: Cluster
spec: {nodes: 2}
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec: {nodeName: node-0}
---
apiVersion: v1
kind: Pod
metadata: {name: server, labels: {app: server}}
spec:
  nodeName: node-1
  containers: [{name: iperf3, ports: [{name: iperf, containerPort: 5201}]}]
---
apiVersion: v1
kind: Service
metadata: {name: server}
spec:
  type: NodePort
  selector: {app: server}
  ports: [{port: 5201, targetPort: iperf, nodePort: 30201}]
"""

TUNNEL_TSO = detect().tunnel_tso(DatapathType.NETDEV)
MODES = [("host-gw", "tso"), ("host-gw", "none"), ("vxlan", "none")] + ([("vxlan", "tso")] if TUNNEL_TSO else [])


@pytest.mark.parametrize("backend, offload", MODES)
def test_tcp_end_to_end_in_every_allowed_mode(backend, offload, no_leaks):
    cluster = settle([load_text(SPEC, Overrides(backend=backend, offload=offload))])[0]
    assert cluster.offload == offload and cluster.datapath_type == "netdev"
    with ClusterNet(cluster, progress=lambda m: None) as net:
        client, server = net.pod("client"), net.pod("server")
        features = client.ns("ethtool", "-k", "eth0")
        assert ("tx-checksumming: on" in features) == (offload == "tso"), features[:300]
        other = net.node("node-0").ovs.vsctl("get", "Open_vSwitch", ".", "other_config")
        assert ('userspace-tso-enable="true"' in other) == (offload == "tso"), other
        server_ip, vip = str(cluster.pod("server").ip), str(cluster.service("server").cluster_ip)
        for what, src, ip, port in (("pod to pod", client, server_ip, 5201),
                                    ("ClusterIP", client, vip, 5201),
                                    ("NodePort from outside", net.net["external"], str(cluster.nodes[0].ip), 30201)):
            result = iperf(src, server, ip, port, 1, listen=5201)
            assert result["ok"], (what, result.get("error"))
            # A stalled connection moves a few segments, then nothing: demand real volume.
            assert result["bytes"] > 20_000_000, (what, result["bytes"])


@pytest.mark.skipif(TUNNEL_TSO, reason=f"OVS {detect().version_text} tunnels TSO: nothing to refuse")
@pytest.mark.parametrize("backend", ["vxlan", "directrouting"])
def test_tso_over_a_userspace_tunnel_is_refused_with_the_version_needed(backend, no_leaks):
    proc = patient.run([*K8SNET, "check", "--offload", "tso", "--backend", backend], capture_output=True,
                          text=True, timeout=60, env=k8snet_env(), stdin=subprocess.DEVNULL)
    assert proc.returncode == 2
    err = proc.stderr.replace("\n", " ")
    assert f"backend {backend} tunnels TSO" in err and "Open vSwitch 3.3" in err and detect().version_text in err
    assert "run directory" not in err


def test_run_metadata_records_the_offload_chosen_for_all_backends(tmp_path, no_leaks):
    proc = patient.run([*K8SNET, "run", "reachability", "--backend", "host-gw,vxlan", "--nodes", "2",
                           "--pods-per-node", "1", "--out", str(tmp_path)], capture_output=True, text=True,
                          timeout=300, env=k8snet_env(), stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (directory,) = tmp_path.glob("2*")
    doc = json.loads((directory / "reachability.json").read_text())
    env = doc["metadata"]["environment"]
    want = "tso" if TUNNEL_TSO else "none"
    assert env["offload"] == want and env["datapath_type"] == "netdev"
    assert "auto" in env["datapath_choice"] and ("vxlan" in env["datapath_choice"] or TUNNEL_TSO)
    assert {c["spec"]["offload"] for c in doc["metadata"]["clusters"]} == {want}
    assert f"offload {want}" in proc.stderr.replace("\n", " ")
