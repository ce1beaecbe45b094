"""``report.html``: one page per run that opens offline (no scripts, no fonts, no CDN).

Headline table first (the numbers a reader wants, with ratios measured in this run),
then every figure with its caption, the failures with their reasons, and the metadata.
Figures are linked by relative path, so the folder can be moved or zipped as a whole.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Optional

from k8snet import grid
from k8snet.results import ScenarioResult, SummaryRow
from k8snet.results import label as results_label

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1100px;margin:2em auto;color:#222;
padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;font-size:.9em;margin:.5em 0}td,th{border:1px solid #ddd;padding:.25em .6em;
text-align:left}th{background:#f4f4f4}td.n{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #eee}figcaption{font-size:.9em;color:#444}
.failed{color:#b00}.muted{color:#777}code{font-size:.9em}
"""


def _fmt(v: Optional[float], unit: str = "") -> str:
    if v is None:
        return "—"
    text = f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
    return f"{text} {unit}".strip()


def _find(rows: list[SummaryRow], **want: Any) -> Optional[SummaryRow]:
    for r in rows:
        if all(getattr(r, k) == v for k, v in want.items()):
            return r
    return None


def headlines(result: ScenarioResult) -> list[tuple[str, str, str]]:
    """(what, value, how to read it) rows for the summary table, from the summary only."""
    rows = result.summary
    out: list[tuple[str, str, str]] = []
    if result.scenario == "reachability":
        by: dict[str, list[float]] = {}
        for m in result.measurements:
            if m.ok and m.value is not None:
                by.setdefault(m.label, []).append(m.value)
        for label, values in by.items():
            out.append((f"{label}: pairs reachable", f"{int(sum(values))}/{len(values)}",
                        "the Kubernetes model needs all"))
    elif result.scenario == "throughput":
        cells = list(dict.fromkeys((r.backend, r.underlay, r.access) for r in rows if r.backend != "reference"))
        for b, u, a in cells:
            label = results_label(b, u, a)
            cross = _find(rows, backend=b, underlay=u, access=a, path="cross-node", protocol="tcp", streams=1,
                          metric="throughput")
            cip = _find(rows, backend=b, underlay=u, access=a, path="clusterip", protocol="tcp", streams=1,
                        metric="throughput")
            if cross and cross.median:
                out.append((f"{label}: cross-node TCP, 1 stream", _fmt(cross.median, "Gbit/s"),
                            ", ".join(f"{v:.2f}× {k}" for k, v in cross.ratios.items())))
                if cip and cip.median:
                    out.append((f"{label}: ClusterIP / direct pod IP (TCP, 1 stream)",
                                f"{cip.median / cross.median:.2f}", "same run; ~1 means the Service costs nothing"))
        for r in rows:
            if r.metric == "throughput_at_loss" and r.median is not None:
                mathis = _find(rows, backend=r.backend, underlay=r.underlay, access=r.access, path=r.path,
                               metric="mathis")
                out.append((f"{r.label}: TCP at {r.path}", _fmt(r.median, "Gbit/s"),
                            f"Mathis estimate {_fmt(mathis.median, 'Gbit/s')}" if mathis and mathis.median
                            else "no Mathis estimate without loss"))
        base = [r for r in rows if r.path == "cross-node" and r.protocol == "tcp" and r.streams == 1 and r.median
                and r.metric == "throughput"]
        if len(base) > 1:
            first = base[0]
            for other in base[1:]:
                out.append((f"{other.label} ÷ {first.label}, cross-node TCP",
                            f"{other.median / first.median:.2f}", "same run, same offloads"))
    elif result.scenario == "latency":
        for r in rows:
            if r.metric == "rtt" and r.median is not None:
                out.append((f"{r.label}: {r.path} {r.protocol} RTT", _fmt(r.median, "ms"),
                            f"median of {r.n}; min {_fmt(r.min)}, max {_fmt(r.max)}"))
    elif result.scenario == "services":
        for r in rows:
            if r.metric == "chi2_p":
                out.append((f"{r.label}: {r.path} chi-square p", _fmt(r.median),
                            "spread: > 0.001 is consistent with even" if r.path == "spread"
                            else "affinity: ~0 (one endpoint) is right"))
            if r.metric == "convergence" and r.median is not None:
                out.append((f"{r.label}: {r.path} -> traffic followed", _fmt(r.median, "ms"),
                            f"median of {r.n} changes, max {_fmt(r.max, 'ms')}"))
    elif result.scenario == "ingress":
        for m in result.measurements:
            if m.metric in ("reachable", "routed"):
                out.append((f"{m.label}: {m.path} {m.src} -> {m.dst}",
                            "failed" if not m.ok else ("yes" if m.value else "NO"), (m.error or m.note)[:120]))
        for r in rows:
            if r.metric == "throughput" and r.median is not None:
                out.append((f"{r.label}: {r.path} download", _fmt(r.median, "Gbit/s"),
                            f"median of {r.n}"))
    elif result.scenario == "faults":
        worst: dict[tuple[str, str], tuple[float, str]] = {}
        for m in result.measurements:
            if m.metric == "outage" and m.ok and m.value is not None:
                key = (m.label, m.dst)
                if m.value >= worst.get(key, (-1.0, ""))[0]:
                    worst[key] = (m.value, f"{m.path} {m.protocol} from {m.src}")
        for (label, fault), (value, where) in worst.items():
            out.append((f"{label}: {fault}, longest outage", _fmt(value, "ms"),
                        f"on {where}" if value else "no path lost an attempt"))
    else:  # a scenario of one's own: every summary row
        for r in rows:
            if r.median is not None:
                out.append((f"{r.label}: {r.path} {r.metric}", _fmt(r.median, r.unit),
                            f"median of {r.n}; min {_fmt(r.min)}, max {_fmt(r.max)}"))
    return out


def write_report(directory: Path, results: list[ScenarioResult], run: dict[str, Any]) -> Path:
    e = html.escape
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>k8snet run {e(run['run_id'])}"
             f"</title><style>{CSS}</style></head><body>",
             f"<h1>k8snet run {e(run['run_id'])}</h1>",
             f"<p>Status <b>{e(run.get('status', ''))}</b>; scenarios {e(', '.join(run['scenarios']))}; "
             f"started {e(run['started'])}, finished {e(run.get('finished') or '—')}.<br>"
             f"<code>{e(' '.join(run['command']))}</code></p>"]
    env = run.get("environment", {})
    parts.append("<table>" + "".join(f"<tr><th>{e(str(k))}</th><td>{e(str(v))}</td></tr>" for k, v in env.items())
                 + "</table>")
    parts.append("<h2>Summary</h2><table><tr><th>scenario</th><th>what</th><th>value</th><th>reading</th></tr>")
    for r in results:
        for what, value, note in headlines(r) or [("(no measurements)", "—", r.status_reason or "")]:
            parts.append(f"<tr><td>{e(r.scenario)}</td><td>{e(what)}</td><td class='n'>{e(value)}</td>"
                         f"<td>{e(note)}</td></tr>")
    parts.append("</table>")
    parts.append(grid.table_html(results))
    for r in results:
        failed = [m for m in r.measurements if not m.ok]
        parts.append(f"<h2 id='{e(r.scenario)}'>{e(r.scenario)}</h2><p>{e(r.description)}.</p>"
                     f"<p>Status <b class='{'' if r.status == 'complete' else 'failed'}'>{e(r.status)}</b>"
                     f"{(': ' + e(r.status_reason)) if r.status_reason else ''}; {len(r.measurements)} "
                     f"measurements, {len(failed)} failed. Data: <a href='{e(r.scenario)}.json'>"
                     f"{e(r.scenario)}.json</a>, <a href='{e(r.scenario)}.csv'>{e(r.scenario)}.csv</a>.</p>")
        for f in r.figures:
            png = next((x for x in f.files if x.endswith(".png")), f.files[0])
            svg = next((x for x in f.files if x.endswith(".svg")), None)
            parts.append(f"<figure><a href='{e(svg or png)}'><img src='{e(png)}' alt='{e(f.title)}'></a>"
                         f"<figcaption><b>{e(f.title)}.</b> {e(f.caption)}</figcaption></figure>")
        if failed:
            reasons: dict[str, int] = {}
            for m in failed:
                reasons[m.error or "?"] = reasons.get(m.error or "?", 0) + 1
            parts.append("<p class='failed'>Failed measurements, by reason:</p><ul>" +
                         "".join(f"<li>{n}× {e(reason)}</li>" for reason, n in reasons.items()) + "</ul>")
        clusters = ", ".join(f"{c.label} ({len(c.spec.get('nodes', []))} nodes, "
                             f"{len(c.spec.get('pods', []))} pods)" for c in r.metadata.clusters)
        parts.append(f"<p class='muted'>Clusters: {e(clusters)}. Options: {e(str(r.metadata.options))}.</p>")
    parts.append("</body></html>")
    path = directory / "report.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path



def write_comparison(directory: Path, runs: dict[str, list[ScenarioResult]], figures: list) -> Path:
    """The page for ``k8snet plot A B ...``: the runs, their environments, the figures."""
    e = html.escape
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>k8snet: {len(runs)} runs "
             f"compared</title><style>{CSS}</style></head><body><h1>{len(runs)} runs compared</h1><table>"
             "<tr><th>run</th><th>scenarios</th><th>OVS</th><th>kernel</th><th>offload</th></tr>"]
    for run_id, rs in runs.items():
        env = rs[0].metadata.environment if rs else {}
        parts.append(f"<tr><td>{e(run_id)}</td><td>{e(', '.join(r.scenario for r in rs))}</td>"
                     f"<td>{e(str(env.get('ovs')))}</td><td>{e(str(env.get('kernel')))}</td>"
                     f"<td>{e(str(env.get('offload')))}</td></tr>")
    parts.append("</table>")
    for f in figures:
        png = next((x for x in f.files if x.endswith(".png")), f.files[0])
        svg = next((x for x in f.files if x.endswith(".svg")), png)
        parts.append(f"<figure><a href='{e(svg)}'><img src='{e(png)}' alt='{e(f.title)}'></a>"
                     f"<figcaption><b>{e(f.title)}.</b> {e(f.caption)}</figcaption></figure>")
    parts.append("</body></html>")
    path = directory / "report.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
