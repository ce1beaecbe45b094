"""Results: schema, CSV, figures and report from synthetic scenario results (no root)."""

from __future__ import annotations

import json
import math
import random
import shutil

import matplotlib.pyplot as plt
import pytest

from k8snet import plots, results
from k8snet.cli import main
from k8snet.report import write_report
from k8snet.runner import UsageError, parse_backends, parse_scenarios
from scenarios import discover
from k8snet.scenario import Recorder
from scenarios.services import chi2_p
from tests import results_checks


def test_schema_file_is_generated_from_the_models():
    assert results.SCHEMA_PATH.read_text() == results.schema_text(), \
        "regenerate it: python -c 'from k8snet import results; print(results.schema_text(), end=\"\")' > " \
        "k8snet/schema/scenario-result.schema.json"


@pytest.mark.parametrize("fields", [dict(ok=True, value=None), dict(ok=False, value=None, error=None),
                                    dict(ok=False, value=0.0, error="why"), dict(ok=False, value=None, error="")])
def test_a_failed_measurement_has_a_reason_and_no_value(fields):
    base = dict(id="x", scenario="s", backend="b", underlay="u", path="p", src="a", dst="b", protocol="tcp",
                repeat=0, metric="m", unit="Gbit/s", t=0.0)
    with pytest.raises(ValueError):
        results.Measurement(**base, **fields)


class FakeTarget:
    def __init__(self, backend: str, access: str = "bridge"):
        self.backend, self.underlay, self.access = backend, "flat", access


def synthetic(run_id: str, scale: float = 1.0) -> list[results.ScenarioResult]:
    """A throughput, a reachability, a latency and a services result, as the scenarios record them."""
    rng = random.Random(run_id)
    targets = [FakeTarget("host-gw"), FakeTarget("vxlan")]
    out = []
    rec = Recorder("throughput")
    for r in range(3):
        for proto in ("tcp", "udp"):
            for streams in (1, 4):
                for ref in ("veth", "ovs-normal"):
                    rec.add(None, ref, "throughput", "Gbit/s", src="a", dst="b", protocol=proto, streams=streams,
                            repeat=r, value=scale * rng.uniform(1, 6), raw={"end": {}})
                for t in targets:
                    for path in ("same-node", "cross-node", "clusterip", "nodeport"):
                        if path == "nodeport" and proto == "udp" and t.backend == "vxlan":
                            rec.add(t, path, "throughput", "Gbit/s", src="ext", dst="n0", protocol=proto,
                                    streams=streams, repeat=r, error="iperf3: Connection refused")
                            continue
                        rec.add(t, path, "throughput", "Gbit/s", src="c", dst="s", protocol=proto, streams=streams,
                                repeat=r, value=scale * rng.uniform(0.2, 1))
    out.append(rec)
    rec = Recorder("reachability")
    for t in targets:
        for src in ("p0", "p1", "n0"):
            for dst in ("p0", "p1", "svc/perf"):
                if src != dst:
                    ok = not (t.backend == "host-gw" and src == "n0" and dst == "p1")
                    rec.add(t, "pod-pod", "reachable", "bool", src=src, dst=dst, protocol="icmp", value=float(ok),
                            note="predicted reachable" if ok else "predicted unreachable: no L2")
    out.append(rec)
    rec = Recorder("latency")
    for t in targets:
        for proto, paths in (("icmp", ("same-node", "cross-node")), ("tcp", ("same-node", "clusterip"))):
            for path in paths:
                for i in range(20):
                    rec.add(t, path, "rtt", "ms", src="c", dst="s", protocol=proto, repeat=i,
                            value=scale * rng.lognormvariate(-1, 0.3))
    out.append(rec)
    rec = Recorder("services")
    for t in targets:
        for path in ("spread", "affinity"):
            for ep in ("echo-0", "echo-1", "echo-2"):
                rec.add(t, path, "connections", "count", src="c", dst=ep, protocol="tcp",
                        value=rng.randint(80, 120) if path == "spread" else (300 if ep == "echo-1" else 0))
        for i in range(50):
            rec.add(t, "churn", "served_by", "index", src="c", dst="echo-0", protocol="tcp", repeat=i, t=i * 0.1,
                    value=float(i % 3))
        rec.add(t, "churn", "served_by", "index", src="c", dst="svc/echo", protocol="tcp", repeat=50, t=5.0,
                error="connection failed: timeout")
        rec.add(t, "endpoint-removed", "event", "s", src="c", dst="echo-2", protocol="tcp", value=1.5, t=1.5)
        rec.add(t, "endpoint-added", "event", "s", src="c", dst="echo-2", protocol="tcp", value=3.0, t=3.0)
        rec.add(t, "endpoint-added", "convergence", "ms", src="c", dst="echo-2", protocol="tcp", value=20.0)
    out.append(rec)
    from scenarios.throughput import add_ratios

    docs = []
    for rec in out:
        meta = results.Metadata(command=["k8snet", "run"], started="2026-11-26T00:00:00+00:00", finished=None,
                                environment={"ovs": "3.1.0", "offload": "none"}, options={}, clusters=[])
        docs.append(results.ScenarioResult(scenario=rec.scenario, run_id=run_id, description="synthetic",
                                           status="complete", metadata=meta, measurements=rec.measurements,
                                           summary=add_ratios(results.summarize(rec.measurements)), raw=rec.raw))
    return docs


def write_run(directory, run_id: str, scale: float = 1.0) -> list[results.ScenarioResult]:
    written = []
    for r in synthetic(run_id, scale):
        results.write(r, directory)
        r = r.model_copy(update={"figures": plots.draw(r, directory)})
        results.write(r, directory)
        written.append(r)
    write_report(directory, written, {"run_id": run_id, "command": ["k8snet", "run"], "started": "now",
                                      "scenarios": [r.scenario for r in written], "status": "complete"})
    return written


def test_json_validates_csv_matches_figures_plot_the_json_and_the_report_links_them(tmp_path):
    write_run(tmp_path, "20261126-000000")
    found = results_checks.check_run(tmp_path)
    assert set(found) == {"throughput", "reachability", "latency", "services"}
    tp = found["throughput"]
    row = next(r for r in tp.summary if r.backend == "host-gw" and r.path == "cross-node" and r.protocol == "tcp"
               and r.streams == 1)
    veth = next(r for r in tp.summary if r.path == "veth" and r.protocol == "tcp" and r.streams == 1)
    assert math.isclose(row.ratios["veth"], row.median / veth.median)
    assert row.n == 3 and row.min <= row.median <= row.max
    failed = next(r for r in tp.summary if r.backend == "vxlan" and r.path == "nodeport" and r.protocol == "udp")
    assert failed.median is None and failed.failed == 3 and failed.errors == ["iperf3: Connection refused"]


def test_a_failed_cell_is_drawn_as_a_mark_not_a_zero_bar():
    tp = synthetic("x")[0]
    (fig,) = [d.figure for d in plots.figures(tp)]
    udp1 = next(ax for ax in fig.axes if ax.get_title() == "UDP, 1 stream")
    assert len(plots.bars_of(udp1)["vxlan/flat"]) == 3  # nodeport is missing, not zero
    assert [line.get_label() for line in udp1.get_lines() if line.get_marker() == "x"] == ["vxlan/flat: failed"]
    plt.close(fig)


def test_plot_redraws_one_folder_and_compares_two(tmp_path, capsys):
    a, b = tmp_path / "20261126-000001", tmp_path / "20261126-000002"
    a.mkdir()
    b.mkdir()
    ra, rb = write_run(a, a.name), write_run(b, b.name, scale=2.0)
    for png in a.glob("*.png"):
        png.unlink()
    assert main(["plot", str(a)]) == 0
    assert (a / "throughput.png").exists() and results_checks.check_run(a)
    out = tmp_path / "cmp"
    assert main(["plot", str(a), str(b), "--out", str(out)]) == 0
    doc = json.loads((out / "compare.json").read_text())
    assert doc["runs"] == [a.name, b.name]
    names = {f["name"] for f in doc["figures"]}
    assert {"compare-throughput", "compare-latency", "compare-services", "compare-reachability"} <= names
    for f in doc["figures"]:
        for file in f["files"]:
            assert (out / file).stat().st_size > 1000
    # the comparison plots each run's medians
    drawn = {d.name: d for d in plots.compare({a.name: ra, b.name: rb})}
    bars = plots.bars_of(drawn["compare-throughput"].figure.axes[0])
    for run_id, rs in ((a.name, ra), (b.name, rb)):
        expected = [r.median for r in rs[0].summary if r.median is not None]
        assert sorted(bars[run_id]) == sorted(expected)
    reach = plots.bars_of(drawn["compare-reachability"].figure.axes[0])
    ra_reach = next(r for r in ra if r.scenario == "reachability")
    host_gw = [m.value for m in ra_reach.measurements if m.backend == "host-gw"]
    assert sum(host_gw) / len(host_gw) in reach[a.name] and 1.0 in reach[a.name]  # host-gw misses a pair
    assert "compare-throughput.png" in (out / "report.html").read_text()
    for d in drawn.values():
        plt.close(d.figure)


def test_plot_refuses_a_folder_that_is_not_a_run(tmp_path):
    assert main(["plot", str(tmp_path)]) == 2
    (tmp_path / "x.json").write_text("{}")
    assert main(["plot", str(tmp_path)]) == 2


@pytest.mark.parametrize("argv, needle", [
    (["run", "bogus"], "no scenario 'bogus'"),
    (["run", "all", "--backend", "host-gw,,vxlan"], "distinct backends"),
    (["run", "all", "--backend", "udp"], "'udp' is not a backend"),
    (["run", "all", "--access", "bridge,,macvlan"], "distinct access modes"),
    (["run", "all", "--access", "bridge,sriov"], "'sriov' is not an access mode"),
    (["run", "all", "--repeat", "0"], "--repeat must be at least 1"),
    (["run", "all", "--seconds", "0"], "--seconds must be at least 1"),
    (["run", "all", "--spec", "nope"], "no spec file 'nope'"),
])
def test_bad_run_input_exits_2_and_starts_nothing(argv, needle, tmp_path, capsys):
    assert main([*argv, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.replace("\n", " ")
    assert needle in err, err
    assert not (tmp_path / "r").exists()


def test_out_must_be_a_folder(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert main(["run", "reachability", "--out", str(tmp_path / "file")]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_scenario_and_backend_lists():
    known = list(discover())
    assert parse_scenarios(["all"], known) == ["reachability", "walks", "throughput", "latency", "services", "ingress", "policy",
                                               "faults"]
    assert parse_scenarios(["latency,throughput", "latency"], known) == ["throughput", "latency"]
    with pytest.raises(UsageError, match="no scenario 'nope'"):
        parse_scenarios(["nope"], known)
    assert parse_backends("host-gw,vxlan") == ["host-gw", "vxlan"]
    assert parse_backends(None) == [None]
    with pytest.raises(UsageError):
        parse_backends("vxlan,vxlan")


def test_chi_square_p_values():
    assert chi2_p([100, 100, 100]) == 1.0
    assert math.isclose(chi2_p([90, 100, 110]), math.exp(-2.0 / 2))  # chi2 = 2, df = 2: exact
    assert chi2_p([300, 0, 0]) < 1e-100
    assert 0.9 < chi2_p([50, 50]) <= 1.0 and chi2_p([100, 0]) < 1e-6  # df = 1: Wilson-Hilferty


def test_missing_tools_are_recorded_as_failed_with_the_reason(monkeypatch):
    from scenarios import ingress
    from k8snet.scenario import Options

    class Cluster:
        dns, nodes = True, ("node-0", "node-1")

    class Target(FakeTarget):
        cluster, label = Cluster(), "host-gw/flat"

    monkeypatch.setattr(ingress.shutil, "which", lambda tool: None if tool == "nginx" else "/usr/bin/" + tool)
    rec = Recorder("ingress")
    ingress.Ingress(Options()).run([Target("host-gw")], rec)
    assert rec.measurements and all(not m.ok and m.value is None for m in rec.measurements)
    assert all("nginx (Debian package nginx-light)" in m.error for m in rec.measurements)


@pytest.mark.skipif(shutil.which("nginx") is None or shutil.which("unbound-checkconf") is None,
                    reason="needs nginx and unbound (make setup installs them)")
def test_generated_nginx_and_unbound_configs_are_valid(tmp_path):
    from k8snet.procs import run
    from scenarios.ingress import backend_conf, public_dns_conf

    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp_path / sub).mkdir()
    (tmp_path / "nginx.conf").write_text(backend_conf("shop-web-0", str(tmp_path)))
    out = run(["nginx", "-t", "-p", str(tmp_path), "-e", str(tmp_path / "error.log"), "-c",
               str(tmp_path / "nginx.conf")], check=False, timeout=10)
    assert out.returncode == 0, out.stderr
    (tmp_path / "unbound.conf").write_text(public_dns_conf("127.0.0.1", "198.51.100.10", str(tmp_path)))
    out = run(["unbound-checkconf", str(tmp_path / "unbound.conf")], check=False, timeout=10)
    assert out.returncode == 0, out.stdout + out.stderr


def test_a_missing_iperf3_is_a_failed_cell_with_the_reason(monkeypatch):
    from k8snet.scenario import Options
    from scenarios.throughput import Cell, Throughput
    from topos import iperf as iperf_module

    monkeypatch.setattr(iperf_module.shutil, "which", lambda tool: None)
    rec = Recorder("throughput")
    Throughput(Options()).measure(rec, Cell(None, "veth", "a", "b", None, None, "10.0.0.2", 5201, 5201), "tcp", 1, 0)
    (m,) = rec.measurements
    assert not m.ok and m.value is None and "iperf3 is not installed" in m.error
