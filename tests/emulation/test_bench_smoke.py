"""The benchmarks still run end to end and write well-formed JSON (no timing asserted)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.emulation.conftest import ROOT, k8snet_env
from tests import patient


def bench(script: str, *args: str, tmp_path) -> dict:
    out = tmp_path / f"{script}.json"
    result = patient.run([sys.executable, str(ROOT / "bench" / f"{script}.py"), *args, "--out", str(out)],
                            capture_output=True, text=True, timeout=300, env=k8snet_env(), stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(out.read_text())


def test_bringup_bench_runs(tmp_path, no_leaks):
    doc = bench("bringup", "--sizes", "2x1,2x2", "--sample", "20", tmp_path=tmp_path)
    full, sampled = doc["rows"]
    assert full["size"] == "2x1" and full["all_reachable"] and full["up_s"] > 0 and full["cluster_rss_mib"] > 0
    assert not full["sampled"] and full["pairs"] == full["matrix_pairs"] == 2 * 1 + 2 * 2 * 2
    assert sampled["sampled"] and sampled["pairs"] == 20 < sampled["matrix_pairs"] and sampled["all_reachable"]
    for row in doc["rows"]:
        phases = row["phases_s"]
        assert list(phases) == ["hosts", "nodes", "pods", "synced", "reachable"]
        assert 0 < phases["hosts"] <= phases["nodes"] <= phases["pods"] <= phases["synced"] <= phases["reachable"]
        assert row["rss_per_node_mib"] > 0 and row["rss_per_pod_mib"] > 0 and row["controller_rss_mib"] > 0


def test_throughput_bench_runs(tmp_path, no_leaks):
    doc = bench("throughput", "--seconds", "1", "--repeat", "1", tmp_path=tmp_path)
    expected = {"veth", "ovs-normal", "kernel-same-node", "kernel-host-gw", "kernel-vxlan", "kernel-vxlan-routed",
                "kernel-clusterip", "same-node", "host-gw", "clusterip", "vxlan-flat", "vxlan-routed",
                "directrouting-same-rack", "directrouting-cross-rack", "vxlan-flat-veth", "kernel-routed",
                "bgp-cross-rack"}
    if doc["tso_possible"]:
        expected |= {"tso-same-node", "tso-host-gw", "tso-clusterip", "veth-tso", "ovs-normal-tso", "tso-host-gw-veth"}
    assert set(doc["cells"]) == expected
    counterparts = {"same-node": "kernel-same-node", "vxlan-routed": "kernel-vxlan-routed",
                    "directrouting-cross-rack": "kernel-vxlan-routed", "host-gw": "kernel-host-gw"}
    for name, row in doc["cells"].items():
        assert not row["failures"] and row["median_gbps"] > 0 and row["n"] == 1, (name, row)
        if name in counterparts:
            assert row["kernel_counterpart"] == counterparts[name] and row["ratio_to_kernel"] > 0
        if row["offload"] == "tso" and not name.startswith(("veth", "ovs-normal")):  # by references of its offloads
            assert row["ratios"]["ovs-normal"]["to"] == "ovs-normal-tso", row
        elif not name.startswith(("veth", "ovs-normal", "kernel-")):
            assert row["ratios"]["ovs-normal"]["to"] == "ovs-normal", row
    assert doc["goals"]["vxlan / host-gw, both none"]["measured"] > 0
    assert doc["cells"]["bgp-cross-rack"]["kernel_counterpart"] == "kernel-routed"
    relative = doc["goals"]["bgp / kernel routing >= host-gw (tso) / kernel host-gw"]
    assert relative["measured"] > 0 and (relative["goal"] is None) == (not doc["tso_possible"])
    # Attachment and CPU in every k8snet cell: tap by default here (userspace), veth where asked.
    assert doc["cells"]["vxlan-flat"]["attach"] == "tap" and doc["cells"]["vxlan-flat-veth"]["attach"] == "veth"
    assert doc["cells"]["host-gw"]["cpu_ovs_percent"] > 0 and doc["cells"]["veth"]["attach"] is None
    assert doc["cells"]["host-gw"]["cpu_client_percent"] > 0
    assert doc["goals"]["vxlan: tap / veth"]["measured"] > 0
    assert doc["clusters"]["flat-vxlan"]["offload"] == "none"
    if doc["tso_possible"]:
        assert doc["clusters"]["flat-host-gw-tso"]["offload"] == "tso"


def test_services_bench_runs(tmp_path, no_leaks):
    doc = bench("services", "--seconds", "1", "--repeat", "1", "--changes", "4", "--services", "20",
                "--connections", "60", tmp_path=tmp_path)
    assert doc["throughput"]["ratio"] > 0
    conv = doc["convergence"]
    assert len(conv["add_ms"]) == 2 and conv["failed"] == 0 and conv["add_unobserved"] == conv["remove_unobserved"] == 0
    assert doc["programming"]["services"] == 20 and all(v > 20 * 7 for v in doc["programming"]["flows_per_node"].values())
    assert doc["spread"]["served"] == 60 and 0 <= doc["spread"]["p_value"] <= 1


def test_policy_bench_runs(tmp_path, no_leaks):
    doc = bench("policy", "--seconds", "1", "--repeat", "1", "--rules", "10", "--policies", "20", "--changes", "4",
                tmp_path=tmp_path)
    tp = doc["throughput"]
    assert tp["ratio"] > 0 and len(tp["ratio_rounds"]) == 1 and tp["rules_per_direction"] == 10
    prog = doc["programming"]
    assert prog["policies"] == 20 and prog["pods"] == 64
    assert sum(prog["flows_per_node"].values()) > sum(prog["flows_per_node_before"].values()) + 20
    enf = doc["enforcement"]
    assert enf["deny_unobserved"] == enf["allow_unobserved"] == 0 and enf["deny_p95_ms"] is not None
    assert len(enf["delays_ms"]["deny"]) == len(enf["delays_ms"]["allow"]) == 2
    assert tp["ratio_to_one_rule"] > 0


def test_trace_bench_runs(tmp_path, no_leaks):
    doc = bench("trace", "--repeat", "2", tmp_path=tmp_path)
    assert doc["kind"] == "k8snet.bench.trace" and len(doc["traces"]) == 6
    for row in doc["traces"]:
        assert len(row["samples_s"]) == 2 and row["verdicts"] == ["delivered"]
        assert row["agreed"] in (None, 2), row


def test_faults_bench_runs(tmp_path, no_leaks):
    doc = bench("faults", "--repeat", "1", "--nodes", "3", "--pods-per-node", "2", "--services", "10",
                tmp_path=tmp_path)
    assert doc["kind"] == "k8snet.bench.faults" and doc["cluster"]["services"] == 11
    results = doc["results"]
    assert set(results) == {"controller_restart", "vswitchd_restart", "node_lost"}
    for r in results.values():
        assert len(r["samples"]) == 1 and r["p50"] == r["max"] > 0 and r["goal_s"] > 0
    lost = results["node_lost"]["samples"][0]
    # The connections that failed were the ones sent to the lost node's endpoint, before NotReady,
    # which came once the node had been silent for the grace period (its last renewal was a
    # little before the cut, so that is up to one renewal interval less after the cut).
    assert lost["failed"] > 0 and lost["silent_before_not_ready_s"] >= lost["grace_s"]
    assert lost["not_ready_after_s"] >= lost["grace_s"] * 0.9 - 0.05


def test_bgp_bench_runs(tmp_path, no_leaks):
    doc = bench("bgp", "--repeat", "1", tmp_path=tmp_path)
    assert doc["kind"] == "k8snet.bench.bgp" and doc["goal_s"] == 3.0
    rows = doc["measurements"]
    assert set(rows) == {"start", "gateway-core session withdrawn", "gateway-core session back",
                         "node session withdrawn", "node session back", "router failure withdrawn",
                         "router failure back"}
    for row in rows.values():
        assert len(row["samples_s"]) == 1 and row["p50_s"] == row["max_s"] > 0
