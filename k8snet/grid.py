"""The access x channel grid of one run, as a table and a figure.

``k8snet run throughput latency --backend host-gw,bgp,vxlan --access bridge,routed-veth,macvlan``
builds one cluster per (channel, access) -- backends outer -- and measures them side by side,
interleaved round by round (the scenarios' own loops).  The grid reads one cell per cluster
from each scenario's summary: the cross-node path (a client pod and a server pod on two
nodes), TCP with one stream for throughput, the TCP request/response probe for latency, each
with its ratio to the same run's bare veth pair (the kernel's reference at the same offloads).
A cell the channel or the access mode cannot carry is shown as such, with the reason in the
CSV, never as a zero.

Drawn only when a run has more than one access mode; with one, the scenarios' own figures
say it all.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

from k8snet.results import ScenarioResult, SummaryRow

if TYPE_CHECKING:
    from k8snet.plot_base import Drawn

#: scenario -> (metric, protocol, streams, axis label, unit) of its grid cell.
CELLS = {"throughput": ("throughput", "tcp", 1, "cross-node TCP, 1 stream (Gbit/s)", "Gbit/s"),
         "latency": ("rtt", "tcp", None, "cross-node TCP request/response RTT (ms)", "ms")}
PATH = "cross-node"
REFERENCE = "veth"


@dataclass(frozen=True)
class Grid:
    scenario: str
    channels: list[str]      # backend/underlay, the run's order
    accesses: list[str]
    cells: dict[tuple[str, str], SummaryRow]   # (channel, access) -> the cell's summary row

    def row(self, channel: str, access: str) -> Optional[SummaryRow]:
        return self.cells.get((channel, access))


def grid(result: ScenarioResult) -> Optional[Grid]:
    """The grid of a throughput or latency result whose run had more than one access mode."""
    if result.scenario not in CELLS:
        return None
    accesses = list(dict.fromkeys(c.access for c in result.metadata.clusters))
    if len(accesses) < 2:
        return None
    metric, protocol, streams, _, _ = CELLS[result.scenario]
    channels = list(dict.fromkeys(f"{c.backend}/{c.underlay}" for c in result.metadata.clusters))
    cells = {(f"{r.backend}/{r.underlay}", r.access): r for r in result.summary
             if r.backend != "reference" and r.metric == metric and r.path == PATH and r.protocol == protocol
             and (streams is None or r.streams == streams)}
    return Grid(result.scenario, channels, accesses, cells)


def cell_text(g: Grid, channel: str, access: str) -> str:
    """``2.61 Gbit/s (0.66× veth, n=3)``, or why there is no number."""
    unit = CELLS[g.scenario][4]
    row = g.row(channel, access)
    if row is None:
        return "not measured"
    if row.median is None:
        return "not carried" if any(e.startswith("not attempted") for e in row.errors) else "failed"
    ratio = row.ratios.get(REFERENCE)
    return (f"{row.median:.3g} {unit}" + (f" ({ratio:.2f}× {REFERENCE}" if ratio else " (") + f", n={row.n})")


def figure(result: ScenarioResult) -> list[Drawn]:
    """Bars per channel, one per access mode, each labelled with its ratio to the veth reference."""
    from k8snet.plot_base import Drawn, grouped_bars, plt  # (matplotlib only where a figure is drawn)

    g = grid(result)
    if g is None:
        return []
    _, _, _, ylabel, _ = CELLS[g.scenario]
    fig, ax = plt.subplots(figsize=(1.8 + 1.4 * len(g.channels) * max(1, len(g.accesses) / 2), 3.6))
    series = {a: {c: row for c in g.channels if (row := g.row(c, a)) is not None} for a in g.accesses}
    grouped_bars(ax, g.channels, series, ylabel, g.accesses)
    for container in ax.containers:
        if not hasattr(container, "patches"):
            continue
        rows = [row for c in g.channels if (row := series.get(container.get_label(), {}).get(c)) is not None
                and row.median is not None]
        labels = [f"{r.ratios[REFERENCE]:.2f}×" if r.ratios.get(REFERENCE) else "" for r in rows]
        if len(labels) == len(container.patches):
            ax.bar_label(container, labels=labels, fontsize=7, padding=2)
    ax.legend(title="access", loc="upper right")
    what = "throughput" if g.scenario == "throughput" else "round-trip time"
    ax.set_title(f"{what}: access mode × channel (labels: ÷ the bare veth pair, same run)")
    caption = (f"The run's grid: one cluster per channel (backend/underlay) and access mode, measured side by "
               f"side. Each bar is the median {what} of the cross-node path ({ylabel.split('(')[0].strip()}), "
               f"whiskers min-max over the repeats; the label over it divides it by the bare veth pair measured "
               f"in the same run at the same offloads. A red x is a cell the channel or the access mode cannot "
               f"carry (e.g. host-gw across a rack gateway), or that failed: the CSV says which.")
    return [Drawn(f"{g.scenario}-grid", f"{what.capitalize()} per access mode and channel", caption, fig)]


def table_html(results: list[ScenarioResult]) -> str:
    """The report's grid table: a row per access mode, a column per channel, each cell the
    throughput and the RTT found for it (empty string when the run has no grid)."""
    grids = [g for g in (grid(r) for r in results) if g is not None]
    if not grids:
        return ""
    channels = list(dict.fromkeys(c for g in grids for c in g.channels))
    accesses = list(dict.fromkeys(a for g in grids for a in g.accesses))
    e = html.escape
    head = "".join(f"<th>{e(c)}</th>" for c in channels)
    body = []
    for access in accesses:
        cells = []
        for channel in channels:
            lines = [f"{g.scenario}: {cell_text(g, channel, access)}" for g in grids]
            cells.append("<td>" + "<br>".join(e(line) for line in lines) + "</td>")
        body.append(f"<tr><th>{e(access)}</th>{''.join(cells)}</tr>")
    return ("<h2>Access mode × channel</h2><p>Cross-node path, TCP, one stream (throughput) and request/response "
            "(latency); in brackets the ratio to this run's bare veth pair and the number of samples behind the "
            "median.</p><table><tr><th>access \\ channel</th>" + head + "</tr>" + "".join(body) + "</table>")
