"""The same controller app under Ryu 4.34, for users who know ryu-manager."""

from __future__ import annotations

from k8snet.procs import cmdline
from topos.cluster import ClusterNet
from k8snet.model.manifests import Overrides, load_text
from topos.specs import default_spec_text
from topos.probe import probe


def test_full_reachability_under_ryu(no_leaks):
    cluster = load_text(default_spec_text(), Overrides(nodes=2, pods_per_node=2))
    with ClusterNet(cluster, framework="ryu") as net:
        status = net.api.status()
        assert status["framework"] == "ryu"
        assert "controllers.ryu_launcher" in cmdline(status["pid"])
        results = probe(net.net, cluster)
        assert results and all(r.ok and r.reachable for r in results)
