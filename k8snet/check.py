"""``k8snet check``: build the cluster, probe the full reachability matrix once, print it.

Every pair is pinged (ICMP), and where the destination pod declares container ports
(``spec.containers[].ports``) each of them is probed with a new TCP connection or a UDP
datagram (k8snet answers there: :func:`topos.checks.declared_servers`), because a
NetworkPolicy that names ports says nothing about ICMP.  Exit 0 when every pair and port
that no policy denies is reachable (the Kubernetes network model) and everything is as
predicted, 1 otherwise; each unreachable pair is listed with the reason the backend or
the policy evaluator gives, and a pair or port where the emulation disagrees with that
prediction is flagged as a bug (``!``).
"""

from __future__ import annotations

import json
from typing import Optional

from rich.table import Table

from k8snet.model.cluster import Cluster
from k8snet.model.reach import port_pairs
from k8snet.model.sampling import Sample
from k8snet.term import EXIT_OK, EXIT_UNREACHABLE, console, datapath_line, out, progress
from topos.checks import declared_servers
from topos.cluster import ClusterNet
from topos.probe import Matrix, measure


def cmd_check(cluster: Cluster, framework: str = "os-ken", json_path: Optional[str] = None,
              sample: Optional[Sample] = None) -> int:
    """Build, probe the matrix once, tear down; print it; exit 1 if a pair that no policy
    denies is unreachable, or a pair does other than predicted (a policy not enforced,
    a backend carrying what it cannot)."""
    datapath_line(cluster)
    sample = sample or Sample.full(cluster)
    with ClusterNet(cluster, framework=framework, progress=progress) as net:
        probes = port_pairs(cluster, sample.pairs if sample.partial else None)
        with declared_servers(net):
            what = f"{len(sample.pairs)} of {len(sample.everything)} pairs (a sample stratified by path type)" \
                if sample.partial else f"{len(sample.pairs)} pairs"
            progress(f"probing {what} in parallel"
                     + (f", and {len(probes)} declared ports (TCP/UDP)" if probes else ""))
            matrix = measure(net.net, cluster, net.timings, framework, ports=bool(probes), sample=sample)
    results = matrix.results
    failed = matrix.failed + matrix.port_failed
    surprises = matrix.surprises + matrix.port_surprises
    print_matrix(matrix)
    if json_path:
        with open(json_path, "w", encoding="utf-8") as handle:
            json.dump(matrix.document(), handle, indent=1)
        progress(f"wrote {json_path}")
    print_reasons(failed)
    if failed and matrix.arp_table_fulls:
        console.print(f"[bold red]the kernel found its ARP table full {matrix.arp_table_fulls} times while "
                      "probing[/]: one table serves every namespace of this machine, so echoes were lost "
                      "outside the emulated dataplane; raise net.ipv4.neigh.default.gc_thresh3 (topos/neighbours.py)")
    if surprises:
        console.print(f"[bold red]{len(surprises)} pairs differ from what {cluster.backend.value} on this "
                      "underlay and the policies should do (an emulation bug):[/] "
                      + ", ".join(r.name for r in surprises[:10]))
    if failed:
        console.print(f"[bold red]{len(failed)} of {len(results) + len(matrix.ports)} pairs and ports are "
                      "unreachable; the Kubernetes network model needs every pod to reach every pod and node "
                      "that no policy denies[/]")
        return EXIT_UNREACHABLE
    if surprises:
        return EXIT_UNREACHABLE
    ports = f" and {len(matrix.ports)} declared ports" if matrix.ports else ""
    denied = [r for r in results if not r.pair.required] + [r for r in matrix.ports if not r.probe.required]
    if denied:
        out.print(f"all {len(results) + len(matrix.ports) - len(denied)} required probes of {len(results)} pairs"
                  f"{ports} reachable; the other {len(denied)} denied by NetworkPolicy, as predicted "
                  f"({cluster.summary()}; probe {matrix.probe_s:.2f}s)")
        return EXIT_OK
    probed = f"{len(results)} sampled pairs (of {matrix.sample['of']})" if matrix.sample else f"{len(results)} pairs"
    out.print(f"all {probed}{ports} reachable ({cluster.summary()}; probe {matrix.probe_s:.2f}s)")
    return EXIT_OK


def print_reasons(failed: list) -> None:
    """Unreachable pairs, grouped by why the backend cannot carry them."""
    by_reason: dict[str, list[str]] = {}
    for r in failed:
        by_reason.setdefault(r.expected.reason or "unexpected: the backend should carry this pair",
                             []).append(r.name)
    for n, (reason, names) in enumerate(by_reason.items()):
        if n == 6:
            out.print(f"... and {len(by_reason) - 6} more reasons (all pairs are in --json)")
            break
        shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
        out.print(f"[bold]unreachable[/] ({len(names)}): {shown}\n  why: {reason}")


def print_matrix(matrix: Matrix) -> None:
    """One row per source, one column per destination, then the summary by path kind and,
    with L4 probes, by port.  A cell sums up the pair's ping and its declared ports."""
    cluster = matrix.cluster
    by_pair = {(r.pair.src, r.pair.dst): r for r in matrix.results}
    port_rows: dict[tuple[str, str], list] = {}
    for p in matrix.ports:
        port_rows.setdefault((p.probe.pair.src, p.probe.pair.dst), []).append(p)
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
            elif (src, dst) in port_rows:
                cells.append(_cell([r, *port_rows[(src, dst)]]))
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
    if matrix.ports:
        by_port = Table(title="declared ports (a new TCP connection or UDP datagram per pair)")
        for col in ("port", "probes", "reachable", "predicted", "as predicted"):
            by_port.add_column(col)
        for key, row in matrix.port_summary().items():
            by_port.add_row(key, *(str(row[k]) for k in ("probes", "reachable", "predicted", "as_predicted")))
        out.print(by_port)
    legend = "✓ reachable  ✗ unreachable  ! differs from the prediction"
    if cluster.policies:
        legend += "  ⊘ denied by NetworkPolicy, as predicted"
    if matrix.ports:
        legend += "  ◐ some of ping and the declared ports denied, as predicted (per port in --json)"
    out.print(legend)


def _cell(probes: list) -> str:
    """One cell for a pair's ping and its ports: all reachable ✓, all denied as predicted
    ⊘, a mix of both ◐; ``!`` when any of them differs from the prediction."""
    wrong = any(not p.as_predicted for p in probes)
    required = [p.expected.required for p in probes]
    if all(p.reachable for p in probes):
        return "[bold red]✓![/]" if wrong else "[green]✓[/]"
    if wrong:
        return "[bold red]✗![/]"
    if not any(p.reachable for p in probes):
        return "[yellow]⊘[/]" if not any(required) else "[red]✗[/]"
    return "[yellow]◐[/]" if all(p.reachable or not req for p, req in zip(probes, required)) else "[red]✗[/]"
