"""What every figure shares: the style, a colour per backend, grouped bars with min-max
whiskers (:mod:`k8snet.plots` and the scenario-specific drawers build on it)."""

from __future__ import annotations

from collections import defaultdict
from typing import NamedTuple, Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from k8snet.results import Measurement, SummaryRow  # noqa: E402

PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442"]
REFERENCE_COLOUR = "#888888"


class Drawn(NamedTuple):
    name: str
    title: str
    caption: str
    figure: "plt.Figure"


def style() -> None:
    plt.rcParams.update({"figure.constrained_layout.use": True, "font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8,
                         "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False,
                         "axes.spines.right": False, "figure.dpi": 100, "savefig.bbox": "tight",
                         "svg.fonttype": "none"})


def colour(label: str, labels: list[str]) -> str:
    if label == "reference":
        return REFERENCE_COLOUR
    others = [x for x in labels if x != "reference"]
    return PALETTE[others.index(label) % len(PALETTE)] if label in others else PALETTE[0]


def label_of(row: SummaryRow | Measurement) -> str:
    return row.label


def grouped_bars(ax, groups: list[str], series: dict[str, dict[str, SummaryRow]], ylabel: str,
                 labels: Optional[list[str]] = None) -> None:
    """Bars at the median, whiskers to min and max; in each group, one bar per series that
    has the group, centred; a failed cell is a red 'x' on the axis with no bar, so it is
    never mistaken for a measured zero."""
    labels = labels or list(series)
    present = {g: [name for name, rows in series.items() if g in rows] for g in groups}
    width = 0.8 / max(max((len(v) for v in present.values()), default=1), 1)
    for name, rows in series.items():
        xs, ys, lo, hi, failed_x = [], [], [], [], []
        for g, group in enumerate(groups):
            row = rows.get(group)
            if row is None:
                continue
            here = present[group]
            x = g + width * (here.index(name) - (len(here) - 1) / 2)
            if row.median is None:
                failed_x.append(x)
                continue
            xs.append(x)
            ys.append(row.median)
            lo.append(row.median - row.min)
            hi.append(row.max - row.median)
        if xs:
            ax.bar(xs, ys, width * 0.9, yerr=[lo, hi] if any(lo) or any(hi) else None, capsize=2,
                   color=colour(name, labels), label=name)
        if failed_x:
            ax.plot(failed_x, [0] * len(failed_x), "x", color="#c00000", markersize=8, clip_on=False,
                    label=f"{name}: failed")
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups, rotation=20, ha="right")
    ax.set_ylabel(ylabel)


def bars_of(ax) -> dict[str, list[float]]:
    """The plotted bar heights per series (for tests and for checking a figure)."""
    out: dict[str, list[float]] = defaultdict(list)
    for container in ax.containers:
        if hasattr(container, "patches"):
            out[container.get_label()].extend(p.get_height() for p in container.patches)
    return dict(out)
