"""Figures of the ``policy`` scenario, from its JSON alone (see :mod:`k8snet.plots`).

* per cluster, the classic cases: for each, the truth table the evaluator expects and
  the one observed side by side (9 x 9 pods, on the port the case is about), ``!`` where
  they differ;
* the three-tier example: expected and observed, sources x (destination, port);
* cost: throughput with 0, 100 and 1,000 rules, and per case the apply and enforcement times.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap

from k8snet.plot_base import Drawn, grouped_bars, label_of
from k8snet.results import Measurement, ScenarioResult, SummaryRow

CMAP = ListedColormap(["#d7301f", "#1a9850"]).with_extremes(bad="#f0f0f0")


def _table(ax, rows: list[Measurement], srcs: list[str], dsts: list[str], observed: bool, title: str) -> int:
    """One truth table on ``ax``; returns how many cells differ from the prediction."""
    grid = np.full((len(srcs), len(dsts)), np.nan)
    wrong = 0
    for m in rows:
        col = m.dst if m.dst in dsts else f"{m.dst}:{m.protocol}"
        if m.src not in srcs or col not in dsts:
            continue
        predicted = m.note.startswith("predicted reachable")
        y, x = srcs.index(m.src), dsts.index(col)
        if not observed:
            grid[y, x] = float(predicted)
        elif m.ok and m.value is not None:
            grid[y, x] = m.value
            if bool(m.value) != predicted:
                wrong += 1
                ax.text(x, y, "!", ha="center", va="center", fontsize=8, fontweight="bold")
    ax.imshow(np.ma.masked_invalid(grid), cmap=CMAP, vmin=0, vmax=1, aspect="auto", interpolation="nearest")
    ax.grid(False)
    ax.set_xticks(range(len(dsts)))
    ax.set_xticklabels(dsts, rotation=90, fontsize=5)
    ax.set_yticks(range(len(srcs)))
    ax.set_yticklabels(srcs, fontsize=5)
    ax.set_title(title, fontsize=7)
    return wrong


def cases(result: ScenarioResult) -> list[Drawn]:
    out = []
    reach = [m for m in result.measurements if m.metric == "reachable"]
    for label in dict.fromkeys(label_of(m) for m in reach):
        mine = [m for m in reach if label_of(m) == label and m.path != "three-tier"]
        slugs = list(dict.fromkeys(m.path for m in mine))
        if not slugs:
            continue
        what = {m.path: m.note.split(";")[0] for m in result.measurements
                if m.metric == "mismatches" and label_of(m) == label}
        pods = list(dict.fromkeys(m.src for m in mine if "." in m.src))
        per_row = 2
        nrows = math.ceil(len(slugs) / per_row)
        fig, axes = plt.subplots(nrows, 2 * per_row, figsize=(11, 2.7 * nrows + 0.6), squeeze=False)
        for ax in axes.flat:
            ax.set_visible(False)
        for n, slug in enumerate(slugs):
            stated = [m for m in mine if m.path == slug and m.note.endswith("; stated")]
            port = stated[0].protocol if stated else "?"
            for k, observed in enumerate((False, True)):
                ax = axes[n // per_row][(n % per_row) * 2 + k]
                ax.set_visible(True)
                kind = "observed" if observed else "expected"
                _table(ax, stated, pods, pods, observed, f"{slug} ({port}): {kind}")
        fig.suptitle(f"{label}: NetworkPolicy truth tables, expected (evaluator) | observed "
                     "(green reachable, red not; rows sources, columns destinations; ! differs)")
        caption = ("Kubernetes' e2e model (namespaces x, y, z; pods a, b, c) under each case in turn: "
                   + "; ".join(f"{s}: {what.get(s, '')}" for s in slugs) + ". Every pod pair was also probed on "
                   "the other three of 80/81 TCP/UDP (in the JSON).")
        out.append(Drawn(f"policy-cases-{label.replace('/', '-')}", f"NetworkPolicy cases ({label})", caption, fig))
    return out


def three_tier(result: ScenarioResult) -> list[Drawn]:
    rows = [m for m in result.measurements if m.metric == "reachable" and m.path == "three-tier"]
    labels = list(dict.fromkeys(label_of(m) for m in rows))
    if not labels:
        return []
    fig, axes = plt.subplots(len(labels), 2, figsize=(11, 4.2 * len(labels)), squeeze=False)
    for (ax_e, ax_o), label in zip(axes, labels):
        mine = [m for m in rows if label_of(m) == label]
        srcs = list(dict.fromkeys(m.src for m in mine))
        dsts = list(dict.fromkeys(f"{m.dst}:{m.protocol}" for m in mine))
        _table(ax_e, mine, srcs, dsts, False, f"{label}: expected")
        _table(ax_o, mine, srcs, dsts, True, f"{label}: observed ({wrong_text(mine)})")
    fig.suptitle("Three-tier app (topos/specs/three-tier.yaml): every declared port, expected | observed")
    caption = ("client -> frontend:80 -> api:8080 -> db:5432 and every shop pod -> kube-dns:53, nothing else "
               "(default deny both ways in namespace shop). Rows: sources (pods, node host networks); columns: "
               "destination pod and port. A pod's own node always reaches it (Kubernetes).")
    return [Drawn("policy-three-tier", "Three-tier NetworkPolicy example", caption, fig)]


def wrong_text(rows: list[Measurement]) -> str:
    wrong = sum(1 for m in rows if m.ok and m.value is not None
                and bool(m.value) != m.note.startswith("predicted reachable"))
    return f"{wrong} of {len(rows)} differ"


def cost(result: ScenarioResult) -> list[Drawn]:
    tput = [r for r in result.summary if r.metric == "throughput"]
    times = [r for r in result.summary if r.metric in ("apply", "enforced")]
    if not tput and not times:
        return []
    labels = list(dict.fromkeys(label_of(r) for r in tput + times))
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [1, 2.4]})
    series: dict[str, dict[str, SummaryRow]] = {label: {} for label in labels}
    for r in tput:
        series[label_of(r)][r.path] = r
    groups = sorted({r.path for r in tput}, key=lambda p: int(p.split("-")[1]))
    grouped_bars(ax_t, groups, series, "throughput (Gbit/s)", labels)
    ax_t.set_title("iperf3 TCP x/a -> y/b by rules each way")
    ax_t.legend(loc="lower right")
    series = {f"{label} {metric}": {} for label in labels for metric in ("apply", "enforced")}
    for r in times:
        series[f"{label_of(r)} {r.metric}"][r.path] = r
    grouped_bars(ax_m, list(dict.fromkeys(r.path for r in times)), series, "ms", list(series))
    ax_m.set_title("apply (all switches hold it) and enforced (first connection showing it), per case")
    ax_m.legend(loc="upper right", fontsize=7)
    caption = ("Left: median throughput (whiskers min-max over the repeats) with 0, 100 and 1,000 NetworkPolicy "
               "rules each way selecting the pair, one of each allowing it; only a connection's first packet is "
               "judged. Right: per case, the time from the apply call until every switch holds the change, and "
               "until a client asking back to back (50 ms timeout) saw it.")
    return [Drawn("policy-cost", "NetworkPolicy cost and enforcement", caption, fig)]


def policy(result: ScenarioResult) -> list[Drawn]:
    return cases(result) + three_tier(result) + cost(result)
