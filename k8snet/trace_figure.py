"""A trace as a sequence diagram: the places the packet passes as columns, its steps as
arrows down the page, each annotated with what changed there (MACs, TTL, NAT, the VXLAN
header) and the verdict at the end.  Drawn from the trace's JSON (``k8snet trace --svg``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from k8snet.plot_base import PALETTE, plt, style

VERDICT_COLOUR = {"delivered": "#009E73", "rejected": "#E69F00", "dropped": "#D55E00"}


def _label(hop: dict[str, Any]) -> str:
    return {"switch": f"{hop['host']}\nOVS", "segment": f"{hop['host']}\nL2", "router": f"{hop['host']}\nrouter",
            "pod": f"{hop['host']}\npod", "node": f"{hop['host']}\nnode", "host": f"{hop['host']}"}.get(
                hop["role"], hop["host"])


def draw(doc: dict[str, Any]) -> "plt.Figure":
    style()
    hops = doc["hops"]
    columns: list[str] = []
    for hop in hops:
        if _label(hop) not in columns:
            columns.append(_label(hop))
    rows = len(hops) + 1
    fig, ax = plt.subplots(figsize=(max(6.0, 1.5 * len(columns)), 1.0 + 0.75 * rows))
    ax.set_xlim(-0.6, len(columns) - 0.4)
    ax.set_ylim(rows, -0.8)
    ax.axis("off")
    for x, name in enumerate(columns):
        ax.text(x, -0.5, name, ha="center", va="bottom", fontsize=8, fontweight="bold")
        ax.plot([x, x], [-0.3, rows - 0.5], color="#bbbbbb", lw=0.8, zorder=0)
    for i, hop in enumerate(hops):
        x = columns.index(_label(hop))
        mark = "!" if hop.get("mismatch") else ""
        ax.plot([x], [i], "o", color=PALETTE[0] if not mark else "#D55E00", ms=6, zorder=3)
        # What matters most first: tunnel header added or removed, NAT; then MACs and TTL.
        changes = sorted(hop.get("changes") or [], key=lambda c: (not c.startswith(("+", "-", "ip_", "sport", "dport")),
                                                                  c.startswith("outer eth")))
        text = "; ".join(changes[:3]) + (f" (+{len(changes) - 3})" if len(changes) > 3 else "")
        if mark:
            text = f"! {hop['mismatch'][0]}" + (f"   {text}" if text else "")
        if text:
            ax.text(x + 0.08, i + 0.12, text, fontsize=6.5, va="top", ha="left", color="#333333", wrap=True)
        if i + 1 < len(hops):
            nxt = columns.index(_label(hops[i + 1]))
            ax.annotate("", xy=(nxt, i + 1), xytext=(x, i),
                        arrowprops=dict(arrowstyle="->", color=PALETTE[0], lw=1.2, shrinkA=5, shrinkB=5))
    last = columns.index(_label(hops[-1])) if hops else 0
    ax.text(last, len(hops) - 0.2, f"{doc['verdict']}: {doc['reason']}", fontsize=7, ha="center", va="top",
            color=VERDICT_COLOUR.get(doc["verdict"], "#333333"), wrap=True)
    observed = ""
    if doc.get("kind") == "observed":
        observed = "  [captures agree]" if doc.get("agrees") else "  [captures differ: !]"
    ax.set_title(doc["question"] + observed, fontsize=9, loc="left")
    return fig


def save(doc: dict[str, Any], path: Path) -> Path:
    fig = draw(doc)
    fig.savefig(path)
    plt.close(fig)
    return path


def walks(result: Any) -> list[Any]:
    """The ``walks`` scenario's figures: one sequence diagram per traced path and backend,
    drawn from the raw walk each ``hops`` measurement keeps."""
    from k8snet.plot_base import Drawn

    out = []
    for m in result.measurements:
        doc = result.raw.get(m.raw) if m.raw else None
        if m.metric != "hops" or not doc:
            continue
        name = f"walk-{m.label}-{m.path}".replace("/", "-")
        caption = (f"{doc['question']}: one packet, hop by hop, as OVS's ofproto/trace and the kernels predict it "
                   f"({m.backend}, {m.underlay} underlay, access {m.access}). Columns are the places it passes, arrows its steps, "
                   "the text what changed there; '!' marks a hop where the capture differed from the prediction. "
                   f"Ends: {doc['verdict']}.")
        out.append(Drawn(name, f"walk: {m.path} ({m.label})", caption, draw(doc)))
    return out
