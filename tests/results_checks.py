"""Checks of a results folder shared by the unit tests (synthetic results) and the
emulation smoke tests (real runs): schema, CSV = JSON, figure data = JSON, report links."""

from __future__ import annotations

import csv
import html
import json
import math
import re
from pathlib import Path

import jsonschema
import matplotlib.pyplot as plt
import numpy as np

from k8snet import plots, results


def validate_json(path: Path) -> results.ScenarioResult:
    schema = json.loads(results.SCHEMA_PATH.read_text())
    doc = json.loads(path.read_text())
    jsonschema.validate(doc, schema)
    return results.ScenarioResult.model_validate(doc)


def check_csv(path: Path, result: results.ScenarioResult) -> None:
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(result.measurements)
    for row, m in zip(rows, result.measurements):
        assert list(row) == results.CSV_COLUMNS
        assert row["id"] == m.id and row["path"] == m.path and row["metric"] == m.metric
        assert row["ok"] == str(m.ok)
        if m.ok:
            assert math.isclose(float(row["value"]), m.value, rel_tol=1e-12, abs_tol=1e-12)
        else:
            assert row["value"] == "" and row["error"] == m.error and m.error


def _axes(fig):
    return [ax for ax in fig.axes if ax.get_visible()]


def check_figures(directory: Path, result: results.ScenarioResult) -> int:
    """Every listed figure exists as PNG and SVG, and the figure drawn from the JSON plots
    exactly the JSON's numbers.  Returns how many values were compared."""
    compared = 0
    for f in result.figures:
        for name in f.files:
            assert (directory / name).stat().st_size > 1000, name
        assert {Path(n).suffix for n in f.files} == {".png", ".svg"}
    drawn = {d.name: d for d in plots.figures(result)}
    assert set(drawn) == {f.name for f in result.figures}
    for name, d in drawn.items():
        if name == "throughput":
            compared += _check_throughput(d.figure, result)
        elif name == "reachability":
            compared += _check_reachability(d.figure, result)
        elif name == "latency-cdf":
            compared += _check_latency(d.figure, result)
        elif name == "services-spread":
            compared += _check_spread(d.figure, result)
        elif name == "services-churn":
            compared += _check_churn(d.figure, result)
        elif name == "ingress-hops":
            compared += _check_ingress(d.figure, result)
        elif name.startswith("policy-cases-") or name == "policy-three-tier":
            compared += _check_policy_tables(d.figure, result, three_tier=name == "policy-three-tier")
        elif name == "policy-cost":
            compared += _check_policy_cost(d.figure, result)
        elif name.startswith("walk-"):
            compared += _check_walk(d.figure, result, name)
        elif name.startswith("faults-timeline-"):
            compared += _check_faults_timeline(d.figure, result)
        elif name.startswith("faults-outages-"):
            compared += _check_outages(d.figure, result)
        elif name == "throughput-loss":
            compared += _check_loss_sweep(d.figure, result)
        elif name.endswith("-grid"):
            compared += _check_grid(d.figure, result)
        for ax in _axes(d.figure):
            if ax.images or not ax.axison:          # a heatmap, or a diagram (no axes drawn)
                continue
            assert ax.get_ylabel(), f"{name}: a y axis without a label"
            assert ax.get_xlabel() or ax.get_xticklabels(), f"{name}: an x axis without a label"
        plt.close(d.figure)
    return compared


def _medians(result, **want):
    return [r for r in result.summary if all(getattr(r, k) == v for k, v in want.items())]


def _check_throughput(fig, result) -> int:
    n = 0
    for ax in _axes(fig):
        proto, streams = re.match(r"(\w+), (\d+) stream", ax.get_title()).groups()
        bars = plots.bars_of(ax)
        for label, heights in bars.items():
            rows = [r for r in _medians(result, metric="throughput", protocol=proto.lower(), streams=int(streams))
                    if plots.label_of(r) == label and r.median is not None]
            assert sorted(heights) == sorted(r.median for r in rows), (label, proto, streams)
            n += len(heights)
    return n


def _check_grid(fig, result) -> int:
    """The access x channel bars are the grid cells' medians (k8snet/grid.py), per access mode."""
    from k8snet import grid

    g = grid.grid(result)
    assert g is not None
    (ax,) = _axes(fig)
    n = 0
    for access, heights in plots.bars_of(ax).items():
        rows = [g.row(c, access) for c in g.channels]
        assert heights == [r.median for r in rows if r is not None and r.median is not None], access
        n += len(heights)
    return n


def _check_reachability(fig, result) -> int:
    n = 0
    for ax in _axes(fig):
        if not ax.images:
            continue
        label = ax.get_title().split(":")[0]
        grid = np.ma.filled(ax.images[0].get_array().astype(float), np.nan)
        srcs = [t.get_text() for t in ax.get_yticklabels()]
        dsts = [t.get_text() for t in ax.get_xticklabels()]
        mine = [m for m in result.measurements if m.metric == "reachable" and plots.label_of(m) == label and m.ok]
        assert int(np.sum(~np.isnan(grid))) == len(mine)
        for m in mine:
            assert grid[srcs.index(m.src), dsts.index(m.dst)] == m.value
            n += 1
    return n


def _check_policy_tables(fig, result, three_tier: bool) -> int:
    """Each panel is one truth table: expected cells are the measurements' predictions,
    observed cells their values (for the case's stated port, or every declared port)."""
    n = 0
    for ax in _axes(fig):
        title = ax.get_title()
        grid = np.ma.filled(ax.images[0].get_array().astype(float), np.nan)
        srcs = [t.get_text() for t in ax.get_yticklabels()]
        dsts = [t.get_text() for t in ax.get_xticklabels()]
        if three_tier:                                                  # "host-gw/flat: expected"
            label, kind = title.split(": ")[0], title.split(": ")[1].split(" ")[0]
            mine = [m for m in result.measurements if m.metric == "reachable" and m.path == "three-tier"
                    and plots.label_of(m) == label]
            cell = lambda m: (srcs.index(m.src), dsts.index(f"{m.dst}:{m.protocol}"))
        else:                                                           # "slug (tcp:80): expected"
            slug, port, kind = re.match(r"(\S+) \((\S+)\): (\w+)", title).groups()
            mine = [m for m in result.measurements if m.metric == "reachable" and m.path == slug
                    and m.protocol == port]
            cell = lambda m: (srcs.index(m.src), dsts.index(m.dst))
        assert mine and int(np.sum(~np.isnan(grid))) == len(mine), title
        for m in mine:
            want = m.value if kind == "observed" else float(m.note.startswith("predicted reachable"))
            assert grid[cell(m)] == want, (title, m.src, m.dst)
            n += 1
    return n


def _check_walk(fig, result, name: str) -> int:
    """A walk's diagram: its title is the traced question, one marker per hop of the JSON."""
    m = next(m for m in result.measurements if m.metric == "hops" and
             f"walk-{m.backend}-{m.underlay}-{m.path}".replace("/", "-") == name)
    doc = result.raw[m.raw]
    ax = _axes(fig)[0]
    assert ax.get_title(loc="left").startswith(doc["question"])
    markers = [line for line in ax.lines if line.get_marker() == "o"]
    assert len(markers) == len(doc["hops"]) == m.value
    return len(markers)


def _check_policy_cost(fig, result) -> int:
    n = 0
    for ax in _axes(fig):
        for label, heights in plots.bars_of(ax).items():
            if ax.get_ylabel().startswith("throughput"):
                rows = [r for r in result.summary if r.metric == "throughput" and plots.label_of(r) == label]
            else:
                who, metric = label.rsplit(" ", 1)
                rows = [r for r in result.summary if r.metric == metric and plots.label_of(r) == who]
            assert sorted(heights) == sorted(r.median for r in rows if r.median is not None), label
            n += len(heights)
    return n


def _check_latency(fig, result) -> int:
    n = 0
    for ax in _axes(fig):
        protocol = "icmp" if ax.get_title().startswith("ICMP") else "tcp"
        for line in ax.get_lines():
            label, path = line.get_label().rsplit(" ", 1)
            values = sorted(m.value for m in result.measurements if m.metric == "rtt" and m.ok and
                            m.protocol == protocol and m.path == path and plots.label_of(m) == label)
            xs = list(line.get_xdata())
            assert xs == values and list(line.get_ydata())[-1] == 1.0
            n += len(xs)
    return n


def _check_spread(fig, result) -> int:
    n = 0
    for ax in _axes(fig):
        path = "spread" if ax.get_title().startswith("spread") else "affinity"
        for label, heights in plots.bars_of(ax).items():
            counts = [m.value for m in result.measurements if m.metric == "connections" and m.ok and
                      m.path == path and plots.label_of(m) == label]
            assert heights == counts
            n += len(heights)
    return n


def _check_churn(fig, result) -> int:
    n = 0
    for ax in _axes(fig):
        label = ax.get_ylabel()
        served = [c for c in ax.collections if c.get_label() == "connection served"][0]
        points = [tuple(p) for p in served.get_offsets()]
        expected = [(m.t, m.value) for m in result.measurements if m.metric == "served_by" and m.ok and
                    plots.label_of(m) == label]
        assert points == expected
        events = sorted(m.value for m in result.measurements if m.metric == "event" and plots.label_of(m) == label)
        assert sorted(line.get_xdata()[0] for line in ax.get_lines()) == events
        n += len(points)
    return n


def _check_ingress(fig, result) -> int:
    n = 0
    for ax in _axes(fig):
        metric = ax.get_title()
        for label, heights in plots.bars_of(ax).items():
            by_path: dict[str, list[float]] = {}
            for r in result.summary:
                if r.metric == metric and plots.label_of(r) == label and r.median is not None:
                    by_path.setdefault(r.path, []).append(r.median)
            assert sorted(heights) == sorted(float(np.median(v)) for v in by_path.values())
            n += len(heights)
    return n


def _check_faults_timeline(fig, result) -> int:
    """Each row's bars are that path's served (up) and failed (down) counts per 100 ms."""
    n = 0
    for ax in _axes(fig):
        row = ax.get_ylabel()
        mine = [m for m in result.measurements if m.metric in ("served", "failed") and m.ok
                and (f"{m.path} {m.protocol}" + (f"\nfrom {m.src}" if m.path == "clusterip" else "")) == row]
        assert mine, row
        served, failed = ax.containers[0], ax.containers[1]
        width = max(m.repeat for m in mine) + 1
        want = {k: [0.0] * width for k in ("served", "failed")}
        for m in mine:
            want[m.metric][m.repeat] = m.value
        assert [p.get_height() for p in served.patches] == want["served"], row
        assert [-p.get_height() for p in failed.patches] == want["failed"], row
        n += 2 * width
    return n


def _check_outages(fig, result) -> int:
    (ax,) = _axes(fig)
    texts = sorted(float(t.get_text()) for t in ax.texts)
    label = ax.get_title().split(":")[0]
    values = sorted(round(m.value) for m in result.measurements if m.metric == "outage" and m.ok
                    and plots.label_of(m) == label)
    assert [round(t) for t in texts] == values
    return len(texts)


def _check_loss_sweep(fig, result) -> int:
    (ax,) = _axes(fig)
    n = 0
    for container in ax.containers:  # one errorbar per backend and series
        label, line = container.get_label(), container.lines[0]
        for metric, name in (("throughput_at_loss", " iperf3"), ("mathis", " Mathis estimate")):
            if label.endswith(name):
                backend = label[: -len(name)]
                rows = [r for r in result.summary if r.metric == metric and plots.label_of(r) == backend
                        and r.median is not None]
                achieved = {r.path: r.median for r in result.summary if r.metric == "achieved_loss"
                            and plots.label_of(r) == backend}
                want = sorted((achieved[r.path], r.median) for r in rows if achieved.get(r.path))
                assert list(zip(line.get_xdata(), line.get_ydata())) == want, label
                n += len(want)
    return n


def check_report(directory: Path, scenario_results: list[results.ScenarioResult]) -> None:
    text = html.unescape((directory / "report.html").read_text())
    linked = set(re.findall(r"(?:src|href)='([^']+)'", text))
    assert not [u for u in linked if "://" in u], "the report must open offline"
    for r in scenario_results:
        assert f"{r.scenario}.json" in linked and f"{r.scenario}.csv" in linked
        for f in r.figures:
            assert set(f.files) <= linked, f.name
            assert f.caption in text
    for url in linked:
        assert (directory / url).exists(), url


def check_run(directory: Path) -> dict[str, results.ScenarioResult]:
    """Everything above for every scenario in a run folder."""
    out = {}
    for found in results.read_run(directory):  # in the run's own order
        path = directory / f"{found.scenario}.json"
        result = validate_json(path)
        check_csv(path.with_suffix(".csv"), result)
        assert check_figures(directory, result) > 0 or not result.measurements
        out[result.scenario] = result
    check_report(directory, list(out.values()))
    return out
