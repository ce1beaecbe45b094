"""Figures of the ``faults`` scenario, from its JSON alone (see :mod:`k8snet.plots`).

* per cluster, the timeline: one row per traffic path, attempts served (green, up) and
  failed (red, down) per 100 ms, each fault's window shaded and named, each node's
  NotReady / Ready change a dashed line;
* per cluster, the outages: faults x paths, the longest run of failed attempts (ms).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from k8snet.plot_base import Drawn, label_of
from k8snet.results import Measurement, ScenarioResult

BIN = 0.1
SHADES = ["#fdd0a2", "#c6dbef", "#d9d9d9", "#fcbba1", "#c7e9c0", "#dadaeb"]


def _row_name(m: Measurement) -> str:
    return f"{m.path} {m.protocol}" + (f"\nfrom {m.src}" if m.path == "clusterip" else "")


def timeline(result: ScenarioResult, label: str) -> Drawn | None:
    mine = [m for m in result.measurements if label_of(m) == label]
    bins = [m for m in mine if m.metric in ("served", "failed") and m.ok]
    if not bins:
        return None
    rows = list(dict.fromkeys(_row_name(m) for m in bins))
    width = max(m.repeat for m in bins) + 1
    grid = {(r, k): np.zeros(width) for r in rows for k in ("served", "failed")}
    for m in bins:
        grid[(_row_name(m), m.metric)][m.repeat] = m.value or 0
    faults = [(m, result.raw.get(m.raw or "", {})) for m in mine if m.metric == "fault"]
    ready = [m for m in mine if m.metric == "node_ready"]
    fig, axes = plt.subplots(len(rows), 1, figsize=(10, 0.7 * len(rows) + 1.6), squeeze=False)
    x = np.arange(width) * BIN
    for ax, row in zip(axes[:, 0], rows):
        ax.bar(x, grid[(row, "served")], BIN, align="edge", color="#1a9850", linewidth=0)
        ax.bar(x, -grid[(row, "failed")], BIN, align="edge", color="#d7301f", linewidth=0)
        for i, (m, raw) in enumerate(faults):
            start = m.value if m.value is not None else raw.get("at", 0)
            ax.axvspan(start, start + max(raw.get("for", 0), BIN), color=SHADES[i % len(SHADES)], alpha=0.6,
                       zorder=0)
        for m in ready:
            at = result.raw.get(m.raw or "", {}).get("at")
            if at is not None:
                ax.axvline(at, color="#333333", linestyle="--" if not m.value else ":", linewidth=0.8)
        ax.set_ylabel(row, rotation=0, ha="right", va="center", fontsize=7)
        ax.tick_params(labelsize=6)
        ax.set_xlim(0, width * BIN)  # every row on one time axis, each with its own ticks
        ax.axhline(0, color="#555555", linewidth=0.5)
    top = axes[0, 0]
    for i, (m, raw) in enumerate(faults):
        start = m.value if m.value is not None else raw.get("at", 0)
        top.annotate(m.dst, (start, 1.02), xycoords=("data", "axes fraction"), fontsize=7, rotation=15,
                     ha="left", va="bottom")
    axes[-1, 0].set_xlabel("time since the traffic started (s)")
    fig.suptitle(f"{label}: attempts per 100 ms, served (up) and failed (down); shaded: fault windows; "
                 "dashed: a node NotReady, dotted: Ready again", fontsize=9)
    caption = ("Every path's connections (TCP), datagrams (UDP) and pings while the schedule played; a red bar is "
               "attempts that failed in that 100 ms. Connections to a lost node's endpoints fail until the "
               "control plane marks it NotReady (after the node monitor grace period) and its pods leave the "
               "endpoints; a failed router cuts cross-rack paths until it returns.")
    return Drawn(f"faults-timeline-{label.replace('/', '-')}", f"Faults timeline ({label})", caption, fig)


def outages(result: ScenarioResult, label: str) -> Drawn | None:
    rows = [m for m in result.measurements if label_of(m) == label and m.metric == "outage" and m.ok]
    if not rows:
        return None
    faults = list(dict.fromkeys(m.dst for m in rows))
    paths = list(dict.fromkeys(_row_name(m).replace("\n", " ") for m in rows))
    grid = np.full((len(faults), len(paths)), np.nan)
    for m in rows:
        grid[faults.index(m.dst), paths.index(_row_name(m).replace("\n", " "))] = m.value
    fig, ax = plt.subplots(figsize=(1.0 * len(paths) + 3, 0.5 * len(faults) + 2))
    ax.imshow(np.ma.masked_invalid(grid), cmap="Reds", aspect="auto", vmin=0,
              vmax=max(float(np.nanmax(grid)), 1.0))
    for (y, xx), value in np.ndenumerate(grid):
        if not np.isnan(value):
            ax.text(xx, y, f"{value:.0f}", ha="center", va="center", fontsize=7)
    ax.grid(False)
    ax.set_xticks(range(len(paths)))
    ax.set_xticklabels(paths, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(len(faults)))
    ax.set_yticklabels(faults, fontsize=7)
    ax.set_title(f"{label}: longest outage per fault and path (ms)")
    caption = ("The longest run of failed attempts on each path between a fault's start and the next fault's "
               "(first failure to the first success after it), in ms; 0 is a path the fault did not touch. "
               "recovered_after and failed_attempts are in the JSON and CSV.")
    return Drawn(f"faults-outages-{label.replace('/', '-')}", f"Outages ({label})", caption, fig)


def faults(result: ScenarioResult) -> list[Drawn]:
    out = []
    for label in dict.fromkeys(label_of(m) for m in result.measurements):
        out += [d for d in (timeline(result, label), outages(result, label)) if d is not None]
    return out
