"""``k8snet check``: build the cluster, probe the full reachability matrix once, print it.

Exit 0 when every pair is reachable (the Kubernetes network model), 1 otherwise; each
unreachable pair is listed with the reason the backend predicts, and a pair where the
emulation disagrees with that prediction is flagged as a bug.
"""

from __future__ import annotations

import json
from typing import Optional

from rich.table import Table

from k8snet.model.cluster import Cluster
from k8snet.model.reach import pairs
from k8snet.term import EXIT_OK, EXIT_UNREACHABLE, console, datapath_line, out, progress
from topos.cluster import ClusterNet
from topos.probe import Matrix, measure


def cmd_check(cluster: Cluster, framework: str = "os-ken", json_path: Optional[str] = None) -> int:
    """Build, probe the matrix once, tear down; print it; exit 1 if a pair that no policy
    denies is unreachable, or a pair does other than predicted (a policy not enforced,
    a backend carrying what it cannot)."""
    datapath_line(cluster)
    with ClusterNet(cluster, framework=framework, progress=progress) as net:
        progress(f"probing {len(pairs(cluster))} pairs in parallel")
        matrix = measure(net.net, cluster, net.timings, framework)
    results, failed, surprises = matrix.results, matrix.failed, matrix.surprises
    print_matrix(matrix)
    if json_path:
        with open(json_path, "w", encoding="utf-8") as handle:
            json.dump(matrix.document(), handle, indent=1)
        progress(f"wrote {json_path}")
    print_reasons(failed)
    if surprises:
        console.print(f"[bold red]{len(surprises)} pairs differ from what {cluster.backend.value} on this "
                      "underlay and the policies should do (an emulation bug):[/] "
                      + ", ".join(f"{r.pair.src}->{r.pair.dst}" for r in surprises[:10]))
    if failed:
        console.print(f"[bold red]{len(failed)} of {len(results)} pairs are unreachable; the Kubernetes "
                      "network model needs every pod to reach every pod and node that no policy denies[/]")
        return EXIT_UNREACHABLE
    if surprises:
        return EXIT_UNREACHABLE
    denied = [r for r in results if not r.pair.required]
    if denied:
        out.print(f"all {len(results) - len(denied)} required pairs reachable; {len(denied)} denied by "
                  f"NetworkPolicy, as predicted ({cluster.summary()}; probe {matrix.probe_s:.2f}s)")
        return EXIT_OK
    out.print(f"all {len(results)} pairs reachable ({cluster.summary()}; probe {matrix.probe_s:.2f}s)")
    return EXIT_OK


def print_reasons(failed: list) -> None:
    """Unreachable pairs, grouped by why the backend cannot carry them."""
    by_reason: dict[str, list[str]] = {}
    for r in failed:
        by_reason.setdefault(r.pair.reason or "unexpected: the backend should carry this pair",
                             []).append(f"{r.pair.src}->{r.pair.dst}")
    for n, (reason, names) in enumerate(by_reason.items()):
        if n == 6:
            out.print(f"... and {len(by_reason) - 6} more reasons (all pairs are in --json)")
            break
        shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
        out.print(f"[bold]unreachable[/] ({len(names)}): {shown}\n  why: {reason}")


def print_matrix(matrix: Matrix) -> None:
    """One row per source, one column per destination, then the summary by path kind."""
    cluster = matrix.cluster
    by_pair = {(r.pair.src, r.pair.dst): r for r in matrix.results}
    columns = [p.host_name for p in cluster.pods] + [n.name for n in cluster.nodes]
    rows = columns
    table = Table(title=f"reachability: {cluster.summary()}", show_lines=False)
    table.add_column("from \\ to", style="bold")
    for col in columns:
        table.add_column(col, justify="center")
    for src in rows:
        cells = []
        for dst in columns:
            r = by_pair.get((src, dst))
            if src == dst:
                cells.append("·")
            elif r is None:
                cells.append("")
            elif r.reachable:
                cells.append("[green]✓[/]" if r.as_predicted else "[bold red]✓![/]")
            elif not r.pair.required and r.as_predicted:
                cells.append("[yellow]⊘[/]")
            else:
                cells.append("[red]✗[/]" if r.as_predicted else "[bold red]✗![/]")
        table.add_row(src, *cells)
    out.print(table)
    summary = Table(title="by path (predicted: what the backend can carry on this underlay"
                    + (" and the policies allow)" if cluster.policies else ")"))
    for col in ("path", "pairs", "reachable", "predicted", "as predicted"):
        summary.add_column(col)
    for kind, row in matrix.summary().items():
        summary.add_row(kind, str(row["pairs"]), str(row["reachable"]), str(row["predicted"]),
                        str(row["as_predicted"]))
    out.print(summary)
    legend = "✓ reachable  ✗ unreachable  ! differs from the prediction"
    out.print(legend + ("  ⊘ denied by NetworkPolicy, as predicted" if cluster.policies else ""))
