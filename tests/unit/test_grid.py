"""The access x channel grid (k8snet/grid.py): cells, ratios, the figure and the report's table."""

from __future__ import annotations

from k8snet import grid, plots, results
from k8snet.plot_base import bars_of
from k8snet.report import write_report
from k8snet.scenario import Recorder
from scenarios.latency import Latency
from scenarios.throughput import add_ratios
from k8snet.scenario import Options
from tests.unit.test_results import FakeTarget

CHANNELS = ("host-gw", "vxlan")
ACCESSES = ("bridge", "routed-veth", "macvlan")
#: throughput (Gbit/s) per cell; None: the access mode cannot carry the path.
GBITS = {("host-gw", "bridge"): 2.0, ("host-gw", "routed-veth"): 1.8, ("host-gw", "macvlan"): 3.0,
         ("vxlan", "bridge"): 1.0, ("vxlan", "routed-veth"): 0.9, ("vxlan", "macvlan"): None}


def clusters() -> list[results.ClusterInfo]:
    return [results.ClusterInfo(label=results.label(b, "flat", a), backend=b, underlay="flat", access=a, spec={})
            for b in CHANNELS for a in ACCESSES]


def result(rec: Recorder, summary: list[results.SummaryRow], infos: list[results.ClusterInfo]) -> results.ScenarioResult:
    meta = results.Metadata(command=["k8snet", "run"], started="now", finished=None, environment={}, options={},
                            clusters=infos)
    return results.ScenarioResult(scenario=rec.scenario, run_id="grid", description="synthetic", status="complete",
                                  metadata=meta, measurements=rec.measurements, summary=summary, raw={})


def throughput() -> results.ScenarioResult:
    rec = Recorder("throughput")
    for r in range(3):
        rec.add(None, "veth", "throughput", "Gbit/s", src="a", dst="b", protocol="tcp", streams=1, repeat=r,
                value=4.0)
        for (b, a), value in GBITS.items():
            t = FakeTarget(b, a)
            if value is None:
                rec.add(t, "cross-node", "throughput", "Gbit/s", src="c", dst="s", protocol="tcp", streams=1,
                        repeat=r, error="not attempted: the backend cannot carry this path (macvlan: ...)")
            else:
                rec.add(t, "cross-node", "throughput", "Gbit/s", src="c", dst="s", protocol="tcp", streams=1,
                        repeat=r, value=value + 0.1 * (r - 1))
    return result(rec, add_ratios(results.summarize(rec.measurements)), clusters())


def latency() -> results.ScenarioResult:
    rec = Recorder("latency")
    for i in range(10):
        rec.add(None, "veth", "rtt", "ms", src="a", dst="b", protocol="tcp", repeat=i, value=0.05)
        for b in CHANNELS:
            for a in ACCESSES:
                rec.add(FakeTarget(b, a), "cross-node", "rtt", "ms", src="c", dst="s", protocol="tcp", repeat=i,
                        value=0.1 if a != "macvlan" else 0.075)
    return result(rec, Latency(Options()).summarize(rec.measurements), clusters())


def test_each_cell_is_its_clusters_cross_node_median_over_the_veth_reference():
    g = grid.grid(throughput())
    assert g is not None and g.channels == ["host-gw/flat", "vxlan/flat"] and g.accesses == list(ACCESSES)
    row = g.row("host-gw/flat", "routed-veth")
    assert row is not None and row.median == 1.8 and row.n == 3 and abs(row.ratios["veth"] - 0.45) < 1e-9
    assert grid.cell_text(g, "host-gw/flat", "routed-veth") == "1.8 Gbit/s (0.45× veth, n=3)"
    assert grid.cell_text(g, "vxlan/flat", "macvlan") == "not carried"
    lat = grid.grid(latency())
    assert lat is not None and grid.cell_text(lat, "vxlan/flat", "macvlan") == "0.075 ms (1.50× veth, n=10)"


def test_no_grid_for_one_access_mode_or_another_scenario():
    one = throughput()
    single = one.model_copy(update={"metadata": one.metadata.model_copy(update={"clusters": clusters()[:1]})})
    assert grid.grid(single) is None and grid.figure(single) == []
    assert grid.grid(one.model_copy(update={"scenario": "services"})) is None
    assert grid.table_html([single]) == ""


def test_the_figure_has_a_bar_per_carried_cell_and_the_report_a_table(tmp_path):
    doc = throughput()
    drawn = grid.figure(doc)
    assert [d.name for d in drawn] == ["throughput-grid"]
    bars = bars_of(drawn[0].figure.axes[0])
    assert bars["bridge"] == [2.0, 1.0] and bars["routed-veth"] == [1.8, 0.9] and bars["macvlan"] == [3.0]
    texts = [t.get_text() for t in drawn[0].figure.axes[0].texts]
    assert "0.50×" in texts and "0.75×" in texts  # host-gw bridge 2.0 / 4.0, host-gw macvlan 3.0 / 4.0
    written = []
    for r in (doc, latency()):
        written.append(r.model_copy(update={"figures": plots.draw(r, tmp_path)}))
    assert (tmp_path / "throughput-grid.png").exists() and (tmp_path / "latency-grid.svg").exists()
    page = write_report(tmp_path, written, {"run_id": "grid", "command": ["k8snet"], "started": "now",
                                            "scenarios": ["throughput", "latency"], "status": "complete"})
    text = page.read_text()
    assert "Access mode × channel" in text and "throughput: 1.8 Gbit/s (0.45× veth, n=3)" in text
    assert "latency: 0.075 ms (1.50× veth, n=10)" in text and "throughput: not carried" in text
