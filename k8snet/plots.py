"""Figures from results -- only from the JSON, so ``k8snet plot`` redraws any run.

One style for all (:func:`style`): labelled axes with units, min-max error bars where
a cell was repeated, a colour per backend (the references grey), PNG (150 dpi) and SVG.
:func:`figures` returns the matplotlib figures with their name, title and caption, so
the tests can read back the plotted numbers; :func:`draw` saves them.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Iterable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402

from k8snet import grid  # noqa: E402
from k8snet.results import Figure, ScenarioResult, SummaryRow  # noqa: E402
from k8snet.plot_base import (  # noqa: E402, F401  (bars_of: re-exported for users and tests)
    PALETTE, Drawn, bars_of, colour, grouped_bars, label_of, style,
)
from k8snet.plots_faults import faults  # noqa: E402
from k8snet.plots_policy import policy  # noqa: E402
from k8snet.trace_figure import walks  # noqa: E402


# ---------------------------------------------------------------------- scenarios
def reachability(result: ScenarioResult) -> list[Drawn]:
    rows = [m for m in result.measurements if m.metric == "reachable"]
    labels = list(dict.fromkeys(label_of(m) for m in rows))
    if not labels:
        return []
    fig, axes = plt.subplots(1, len(labels), figsize=(4.5 * len(labels) + 1, 4.8), squeeze=False)
    cmap = ListedColormap(["#d7301f", "#1a9850"]).with_extremes(bad="#f0f0f0")
    for ax, label in zip(axes[0], labels):
        mine = [m for m in rows if label_of(m) == label]
        srcs = list(dict.fromkeys(m.src for m in mine))
        seen = set(m.dst for m in mine)
        dsts = [s for s in srcs if s in seen] + [d for d in dict.fromkeys(m.dst for m in mine) if d not in srcs]
        grid = np.full((len(srcs), len(dsts)), np.nan)
        for m in mine:
            if m.ok and m.value is not None:
                grid[srcs.index(m.src), dsts.index(m.dst)] = m.value
                predicted = m.note.startswith("predicted reachable")
                if bool(m.value) != predicted:
                    ax.text(dsts.index(m.dst), srcs.index(m.src), "!", ha="center", va="center", fontsize=7,
                            color="black", fontweight="bold")
        ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=0, vmax=1, aspect="auto", interpolation="nearest")
        ax.grid(False)
        ax.set_xticks(range(len(dsts)))
        ax.set_xticklabels(dsts, rotation=90, fontsize=6)
        ax.set_yticks(range(len(srcs)))
        ax.set_yticklabels(srcs, fontsize=6)
        ax.set_xlabel("destination")
        ax.set_ylabel("source")
        ok = int(np.nansum(grid))
        total = int(np.sum(~np.isnan(grid)))
        ax.set_title(f"{label}: {ok}/{total} reachable")
    fig.suptitle("Reachability (green reachable, red not, grey not probed; ! differs from the prediction)")
    caption = ("Every probed pair per backend: pods, node host networks, the perf Service's ClusterIP, its "
               "NodePort on every node and its LoadBalancer VIP as destinations. The Kubernetes network model "
               "needs every cell green; red cells without '!' are what the backend predicts (e.g. host-gw "
               "across an L3 gateway), a '!' is an emulation that disagrees with the prediction.")
    return [Drawn("reachability", "Reachability matrix", caption, fig)]


def throughput(result: ScenarioResult) -> list[Drawn]:
    rows = [r for r in result.summary if r.metric == "throughput"]
    if not rows:
        return loss_sweep(result)
    combos = list(dict.fromkeys((r.protocol, r.streams) for r in rows))
    labels = list(dict.fromkeys(label_of(r) for r in rows))
    groups = list(dict.fromkeys(r.path for r in rows))
    cols = min(2, len(combos))
    nrows = (len(combos) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(5.2 * cols, 3.4 * nrows), squeeze=False)
    for ax, (protocol, streams) in zip(axes.flat, combos):
        series: dict[str, dict[str, SummaryRow]] = {label: {} for label in labels}
        for r in rows:
            if (r.protocol, r.streams) == (protocol, streams):
                series[label_of(r)][r.path] = r
        grouped_bars(ax, groups, series, "throughput (Gbit/s)", labels)
        ax.set_title(f"{protocol.upper()}, {streams} stream{'s' if streams != 1 else ''}")
        ax.legend(loc="upper right")
    for ax in list(axes.flat)[len(combos):]:
        ax.set_visible(False)
    fig.suptitle("iperf3 throughput: median of the repeats, whiskers min-max")
    caption = ("Received throughput per path (iperf3 -J), bars at the median of the repeats with min-max "
               "whiskers, one colour per backend; the grey bars are this run's references (a bare veth pair "
               "and one userspace OVS bridge with a NORMAL flow). UDP sends as fast as the sender can, so its "
               "bars are what arrived. A red x is a cell that could not be measured (reason in the CSV).")
    return [Drawn("throughput", "Throughput by path and backend", caption, fig)] + loss_sweep(result) + \
        grid.figure(result)


def loss_sweep(result: ScenarioResult) -> list[Drawn]:
    """TCP throughput against the loss the counters measured, and the Mathis estimate."""
    measured = [r for r in result.summary if r.metric == "throughput_at_loss"]
    if not measured:
        return []
    fig, ax = plt.subplots(figsize=(6, 4))
    labels = list(dict.fromkeys(label_of(r) for r in measured))
    for label in labels:
        achieved = {r.path: r.median for r in result.summary if r.metric == "achieved_loss" and label_of(r) == label}
        for metric, marker, name in (("throughput_at_loss", "o-", "iperf3"), ("mathis", "s--", "Mathis estimate")):
            rows = [r for r in result.summary if r.metric == metric and label_of(r) == label
                    and r.median is not None and achieved.get(r.path)]
            rows.sort(key=lambda r: achieved[r.path])
            if not rows:
                continue
            xs = [achieved[r.path] for r in rows]
            ax.errorbar(xs, [r.median for r in rows], yerr=[[r.median - r.min for r in rows],
                                                             [r.max - r.median for r in rows]],
                        fmt=marker, capsize=2, color=colour(label, labels), label=f"{label} {name}")
        lossless = next((r for r in measured if label_of(r) == label and not achieved.get(r.path)
                         and r.median is not None), None)
        if lossless is not None:
            ax.axhline(lossless.median, color=colour(label, labels), linestyle=":", linewidth=1,
                       label=f"{label} at 0 % loss")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("loss measured on the receiving node's uplink (%)")
    ax.set_ylabel("TCP throughput, 1 stream (Gbit/s)")
    ax.legend(fontsize=7)
    # What iperf3 reported its sender used (its raw JSON is kept with the result).
    algorithms = sorted({algorithm for m in result.measurements
                         if m.metric == "throughput_at_loss" and m.raw in result.raw
                         and (algorithm := result.raw[m.raw].get("end", {}).get("sender_tcp_congestion"))})
    fig.suptitle("TCP throughput against underlay loss: median of the repeats, whiskers min-max\n"
                 f"congestion control: {', '.join(algorithms) or 'not reported'}", fontsize=10)
    caption = ("One TCP stream cross-node while the server node's uplink drops a share of what it receives "
               "(nftables numgen, counted: x is the loss achieved). Dashed: the Mathis et al. estimate "
               "MSS / (RTT sqrt(p)) with C = 1 from the same run's iperf3 mean RTT and MSS, a model of "
               "loss-based congestion control (Reno, CUBIC): a BBR flow stays far above it, as it does not "
               "back off on random loss (the title names what the flows used; --congestion chooses); "
               "dotted: the lossless throughput.")
    return [Drawn("throughput-loss", "Throughput against loss", caption, fig)]


def cdf(values: list[float]) -> tuple[np.ndarray, np.ndarray]:
    xs = np.sort(np.asarray(values, dtype=float))
    return xs, np.arange(1, len(xs) + 1) / len(xs)


def latency(result: ScenarioResult) -> list[Drawn]:
    rows = [m for m in result.measurements if m.metric == "rtt" and m.ok]
    protocols = list(dict.fromkeys(m.protocol for m in rows))
    if not rows:
        return []
    fig, axes = plt.subplots(1, len(protocols), figsize=(5.2 * len(protocols), 3.6), squeeze=False)
    labels = list(dict.fromkeys(label_of(m) for m in rows))
    styles = ["-", "--", ":", "-.", (0, (5, 1)), (0, (1, 1))]
    for ax, protocol in zip(axes[0], protocols):
        by: dict[tuple[str, str], list[float]] = defaultdict(list)
        for m in rows:
            if m.protocol == protocol:
                by[(label_of(m), m.path)].append(m.value)
        paths = list(dict.fromkeys(p for _, p in by))
        for (label, path), values in by.items():
            xs, ys = cdf(values)
            # One backend: a colour per path.  Several: a colour per backend, a line style per path.
            tint = PALETTE[paths.index(path) % len(PALETTE)] if len(labels) == 1 else colour(label, labels)
            ax.step(xs, ys, where="post", color=tint, linestyle="-" if len(labels) == 1 else
                    styles[paths.index(path) % 6], label=f"{label} {path}")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("round-trip time (ms, log scale)")
        ax.set_ylabel("fraction of samples ≤ x")
        ax.set_title("ICMP echo" if protocol == "icmp" else "TCP request/response (1 byte each way)")
        ax.legend(loc="lower right")
    fig.suptitle("Round-trip time distributions (CDF)")
    caption = ("Empirical CDF of every RTT sample per path and backend (colour: backend, line style: path). "
               "ICMP only works on pod and node IPs; the TCP request/response probe also crosses the ClusterIP, "
               "NodePort and LoadBalancer paths. Further right is slower; a long tail is jitter.")
    return [Drawn("latency-cdf", "Latency CDFs", caption, fig)] + grid.figure(result)


def services(result: ScenarioResult) -> list[Drawn]:
    out = []
    rows = [r for r in result.measurements if r.metric == "connections" and r.ok]
    if rows:
        paths = list(dict.fromkeys(m.path for m in rows))
        labels = list(dict.fromkeys(label_of(m) for m in rows))
        fig, axes = plt.subplots(1, len(paths), figsize=(4.6 * len(paths), 3.4), squeeze=False)
        for ax, path in zip(axes[0], paths):
            mine = [m for m in rows if m.path == path]
            endpoints = list(dict.fromkeys(m.dst for m in mine))
            series = {label: {m.dst: SummaryRow(backend=m.backend, underlay=m.underlay, access=m.access, path=m.path,
                                                protocol=m.protocol, streams=None, metric=m.metric, unit=m.unit,
                                                n=1, failed=0, median=m.value, min=m.value, max=m.value)
                              for m in mine if label_of(m) == label} for label in labels}
            grouped_bars(ax, endpoints, series, "connections served", labels)
            ax.set_title("spread (Service echo)" if path == "spread" else "ClientIP affinity (echo-sticky)")
            ax.legend(loc="upper right")
        fig.suptitle("New connections per endpoint")
        caption = ("How many of the client's back-to-back new connections each endpoint served: an even spread "
                   "for the plain Service (the chi-square p-value is in the CSV), a single endpoint for the "
                   "Service with sessionAffinity ClientIP.")
        out.append(Drawn("services-spread", "Service spread and affinity", caption, fig))
    timeline = [m for m in result.measurements if m.metric == "served_by"]
    if timeline:
        labels = list(dict.fromkeys(label_of(m) for m in timeline))
        fig, axes = plt.subplots(len(labels), 1, figsize=(8, 2.2 * len(labels) + 0.6), squeeze=False)
        for ax, label in zip(axes[:, 0], labels):
            ok = [m for m in timeline if label_of(m) == label and m.ok]
            bad = [m for m in timeline if label_of(m) == label and not m.ok]
            ax.scatter([m.t for m in ok], [m.value for m in ok], s=3, color=colour(label, labels),
                       label="connection served", gid="served")
            if bad:
                ax.scatter([m.t for m in bad], [-1] * len(bad), s=12, marker="x", color="#c00000",
                           label="connection failed", gid="failed")
            for ev in (m for m in result.measurements if m.metric == "event" and label_of(m) == label):
                ax.axvline(ev.value, color="#d62728" if "removed" in ev.path else "#2ca02c", linewidth=0.8,
                           linestyle="--")
            ax.set_yticks([-1, 0, 1, 2])
            ax.set_yticklabels(["failed", "echo-0", "echo-1", "echo-2"])
            ax.set_ylabel(label)
            ax.legend(loc="upper right", fontsize=7)
        axes[-1, 0].set_xlabel("time since the scenario started (s); dashed: echo-2 removed (red) / added (green)")
        fig.suptitle("Endpoint churn: which endpoint served each connection")
        caption = ("Every connection of a back-to-back client during the churn, placed at the time it was made "
                   "and at the endpoint that served it. At a red line echo-2 stops being ready (its dots must "
                   "stop), at a green line it is ready again (they must resume). The convergence times per "
                   "change are in the CSV (metric convergence).")
        out.append(Drawn("services-churn", "Endpoint churn timeline", caption, fig))
    return out


def ingress(result: ScenarioResult) -> list[Drawn]:
    rows = [r for r in result.summary if r.metric in ("latency", "throughput")]
    if not rows:
        return []
    labels = list(dict.fromkeys(label_of(r) for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), squeeze=False)
    for ax, metric, unit in ((axes[0, 0], "latency", "request latency (ms)"),
                             (axes[0, 1], "throughput", "download throughput (Gbit/s)")):
        mine = [r for r in rows if r.metric == metric]
        groups = list(dict.fromkeys(r.path for r in mine))
        series: dict[str, dict[str, SummaryRow]] = {label: {} for label in labels}
        for r in mine:
            series[label_of(r)].setdefault(r.path, _merge([x for x in mine if x.path == r.path
                                                           and label_of(x) == label_of(r)]))
        grouped_bars(ax, groups, series, unit, labels)
        ax.set_title(metric)
        ax.legend(loc="upper right")
    fig.suptitle("Ingress, hop by hop: shop.example -> LB -> NodePort 23456 -> nginx -> ClusterIP -> pod")
    caption = ("Each hop of the ingress path measured on its own, median of the repeats with min-max whiskers: "
               "dns (dig to the public DNS), loadbalancer (the whole path from the external client), nodeport "
               "(straight to a node, all nodes pooled), ingress-clusterip and ingress-pod (from an ingress pod). "
               "The difference between neighbouring bars is what that hop adds.")
    return [Drawn("ingress-hops", "Ingress hop by hop", caption, fig)]


def _merge(rows: list[SummaryRow]) -> SummaryRow:
    """Several summary rows of one hop (nodeport: one per node) pooled into one bar."""
    if len(rows) == 1:
        return rows[0]
    meds = [r.median for r in rows if r.median is not None]
    first = rows[0]
    return first.model_copy(update={"median": float(np.median(meds)) if meds else None,
                                    "min": min((r.min for r in rows if r.min is not None), default=None),
                                    "max": max((r.max for r in rows if r.max is not None), default=None),
                                    "n": sum(r.n for r in rows), "failed": sum(r.failed for r in rows)})


def generic(result: ScenarioResult) -> list[Drawn]:
    """Any other scenario (a new file in ``scenarios/``): a panel per metric, bars at the
    median per path, one colour per backend, whiskers min-max."""
    metrics = list(dict.fromkeys((r.metric, r.unit) for r in result.summary))[:4]
    if not metrics:
        return []
    labels = list(dict.fromkeys(label_of(r) for r in result.summary))
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics), 3.6), squeeze=False)
    for ax, (metric, unit) in zip(axes[0], metrics):
        mine = [r for r in result.summary if (r.metric, r.unit) == (metric, unit)]
        key = {id(r): " ".join(str(x) for x in (r.path, r.protocol if r.protocol != "-" else "",
                                                 f"x{r.streams}" if r.streams else "") if x) for r in mine}
        series: dict[str, dict[str, SummaryRow]] = {label: {} for label in labels}
        for r in mine:
            series[label_of(r)][key[id(r)]] = r
        grouped_bars(ax, list(dict.fromkeys(key.values())), series, f"{metric} ({unit})", labels)
        ax.set_title(metric)
        ax.legend(loc="upper right")
    fig.suptitle(f"{result.scenario}: median per path, whiskers min-max")
    caption = (f"{result.description}. Each bar is the median of a group's measurements (its n is in the JSON "
               "summary), whiskers min and max; a red x is a group with no successful measurement.")
    return [Drawn(result.scenario, result.scenario, caption, fig)]


DRAWERS = {"reachability": reachability, "throughput": throughput, "latency": latency, "services": services,
           "ingress": ingress, "policy": policy, "walks": walks, "faults": faults}


def figures(result: ScenarioResult) -> list[Drawn]:
    style()
    return DRAWERS.get(result.scenario, generic)(result)


def save(drawn: Iterable[Drawn], directory: Path) -> list[Figure]:
    out = []
    for d in drawn:
        files = []
        for ext in ("png", "svg"):
            path = directory / f"{d.name}.{ext}"
            d.figure.savefig(path, dpi=150 if ext == "png" else None)
            files.append(path.name)
        plt.close(d.figure)
        out.append(Figure(name=d.name, title=d.title, caption=d.caption, files=files))
    return out


def draw(result: ScenarioResult, directory: Path) -> list[Figure]:
    return save(figures(result), directory)


# ---------------------------------------------------------------------- comparing runs
#: What each scenario's comparison shows: (metric, axis label).
COMPARED = {"throughput": ("throughput", "throughput (Gbit/s)"), "latency": ("rtt", "median RTT (ms)"),
            "ingress": ("throughput", "download throughput (Gbit/s)"),
            "services": ("convergence", "convergence (ms)"),
            "reachability": ("reachable", "fraction of pairs reachable")}


def reachable_fractions(result: ScenarioResult) -> list[SummaryRow]:
    """Per (backend, path): the fraction of probed pairs that answered, as a bar."""
    groups: dict[tuple[str, str, str, str, str], list[float]] = {}
    for m in result.measurements:
        if m.metric == "reachable" and m.ok and m.value is not None:
            groups.setdefault((m.backend, m.underlay, m.access, m.path, m.protocol), []).append(m.value)
    return [SummaryRow(backend=b, underlay=u, access=a, path=p, protocol=proto, streams=None, metric="reachable",
                       unit="fraction", n=len(v), failed=0, median=sum(v) / len(v), min=sum(v) / len(v),
                       max=sum(v) / len(v)) for (b, u, a, p, proto), v in groups.items()]


def compare(runs: dict[str, list[ScenarioResult]]) -> list[Drawn]:
    """Side by side: for every scenario in more than one run, its main metric's medians,
    one bar per run in each group (backend, path, protocol, streams)."""
    style()
    out = []
    scenarios = list(dict.fromkeys(r.scenario for rs in runs.values() for r in rs))
    for scenario in scenarios:
        known = COMPARED.get(scenario)
        if known is None:  # a scenario of one's own: its first metric
            first = next((row for rs in runs.values() for r in rs if r.scenario == scenario for row in r.summary),
                         None)
            if first is None:
                continue
            known = (first.metric, f"{first.metric} ({first.unit})")
        metric, ylabel = known
        series: dict[str, dict[str, SummaryRow]] = {}
        for run_id, rs in runs.items():
            for r in rs:
                if r.scenario != scenario:
                    continue
                rows = reachable_fractions(r) if metric == "reachable" else r.summary
                for row in rows:
                    if row.metric != metric:
                        continue
                    key = " ".join(str(x) for x in (label_of(row), row.path, row.protocol,
                                                     f"x{row.streams}" if row.streams else "") if x)
                    series.setdefault(run_id, {})[key] = row
        if len(series) < 2:
            continue
        groups = list(dict.fromkeys(k for rows in series.values() for k in rows))
        fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(groups) * len(series) + 2), 4))
        runs_order = list(series)
        grouped_bars(ax, groups, series, ylabel, runs_order)
        ax.set_title(f"{scenario}: {metric} by run")
        ax.legend(loc="upper right")
        caption = (f"The {metric} medians of each run side by side (one colour per run, whiskers min-max), "
                   f"grouped by backend, path, protocol and streams. Compare ratios within a run before "
                   f"comparing runs: the machine's speed differs from run to run.")
        out.append(Drawn(f"compare-{scenario}", f"{scenario} compared across runs", caption, fig))
    return out
