"""``k8snet trace SRC DST[:PORT]``: the command and its table.

Against the cluster a ``k8snet up`` is running (asked through its socket,
``topos.control``), or, with ``--spec`` or when none runs, on a cluster built for the
question and torn down after it.  A mistake in the question is exit status 2 before
anything starts (or, for what only the running network can tell -- no route from the
source -- after everything built for it is gone again).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any, Optional

from rich.table import Table

from k8snet.term import EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE, console, out


def add_parser(sub: Any, datapath_args: Any) -> None:
    p = sub.add_parser("trace", help="follow one packet hop by hop, predicted by OVS and the kernels, and observed",
                       description="SRC: a pod (web-0, ns/web-0), a node, 'external' or their IP.  DST: the same, "
                                   "svc/NAME (ClusterIP), lb/NAME (LoadBalancer IP) or any IP, with :PORT (a number "
                                   "or a Service port's name) for tcp and udp.")
    p.add_argument("src", metavar="SRC")
    p.add_argument("dst", metavar="DST[:PORT]")
    p.add_argument("--proto", choices=["icmp", "tcp", "udp"], default="icmp", help="default icmp (an echo request)")
    p.add_argument("--sport", type=int, help="source port (tcp, udp; default: a fresh one)")
    p.add_argument("--ttl", type=int, default=64, help="the TTL the packet leaves with (default 64)")
    p.add_argument("--size", type=int, help="the IP packet's length in bytes, Don't Fragment set (icmp, udp)")
    p.add_argument("--no-observe", action="store_true", help="predict only: send nothing, capture nothing")
    p.add_argument("--json", metavar="FILE", help="write the trace as JSON")
    p.add_argument("--svg", metavar="FILE", help="draw the walk as a sequence diagram (SVG; .png works too)")
    p.add_argument("--spec", help="build this spec for the trace (default: the running cluster, else the "
                                  "embedded default)")
    p.add_argument("--backend", help="pod network backend, with --spec or without a running cluster")
    p.add_argument("--nodes", type=int, metavar="N")
    p.add_argument("--pods-per-node", type=int, metavar="M")
    p.add_argument("--run", metavar="DIR", help="the run directory of the cluster (when several run)")
    datapath_args(p)


def _headers(h: Optional[dict[str, Any]]) -> str:
    if h is None:
        return ""
    ports = (lambda ip, port: f"{ip}:{port}" if port is not None else ip)
    text = (f"{h['eth_src']} > {h['eth_dst']}\n{ports(h['ip_src'], h['sport'])} > "
            f"{ports(h['ip_dst'], h['dport'])} {h['protocol']} ttl {h['ttl']}")
    o = h.get("outer")
    if o:
        text += f"\nVXLAN {o['vni']}: {o['ip_src']} > {o['ip_dst']} ttl {o['ttl']}\n  {o['eth_src']} > {o['eth_dst']}"
    return text


def _seen(hop: dict[str, Any]) -> str:
    if hop["mismatch"]:
        return "[bold red]![/] " + "\n".join(hop["mismatch"])
    if hop["seen_in"] or hop["seen_out"]:
        return "[green]✓[/]"
    return "[dim]-[/]" if not (hop["in_if"] or hop["out_if"]) else ""


def short(what: str) -> str:
    """An OpenFlow action list as the table shows it: ``field=value`` for a set_field,
    without the pipeline's own registers (the JSON keeps every action as OVS printed it)."""
    out = []
    for action in what.split("; "):
        m = re.fullmatch(r"set_field:(\S+)->(\S+)", action)
        if m:
            action = f"{m.group(2)}={m.group(1)}"
        if re.match(r"(reg\d+=|load:\S+->NXM_OF_IN_PORT)", action):
            continue
        out.append(action.replace("output:NXM_NX_REG6[]", "output"))
    return ", ".join(out)


def render(doc: dict[str, Any]) -> Table:
    """One row per hop: where, the headers as it leaves (as it arrives where it ends), what
    happened there and why, and for an observed trace whether the capture agreed."""
    observed = doc["kind"] == "observed"
    table = Table(title=doc["question"], show_lines=True, title_justify="left")
    for col in ("#", "where", "headers", "what happened, and why"):
        table.add_column(col, overflow="fold")
    if observed:
        table.add_column("seen", overflow="fold")
    for i, hop in enumerate(doc["hops"], 1):
        what = [f"[bold]{d['where']}[/]: {short(d['what'])}" + (f"\n  [dim]{d['why']}[/]" if d["why"] else "")
                for d in hop["decisions"] if short(d["what"])]
        # MACs and TTL show in the actions and the headers column; the rest (NAT, VXLAN) here.
        what += [f"[cyan]{c}[/]" for c in hop["changes"] if not c.startswith(("eth_", "ttl "))]
        where = hop["where"] + (f"\n-> {hop['out']}" if hop["out"] else "")
        row = [str(i), where, _headers(hop["left"] or hop["arrived"]), "\n".join(what)]
        table.add_row(*row, *([_seen(hop)] if observed else []))
    return table


def print_trace(doc: dict[str, Any]) -> None:
    out.print(render(doc))
    colour = {"delivered": "green", "rejected": "yellow"}.get(doc["verdict"], "red")
    out.print(f"[bold {colour}]{doc['verdict']}[/]: {doc['reason']}", soft_wrap=True)
    if doc["kind"] == "observed":
        if doc["agrees"]:
            out.print("observed: the captures agree with the prediction "
                      + (f"(last seen at {doc['seen_last']})" if doc["seen_last"] else "(nothing left the source)"))
        else:
            bad = [str(i) for i, h in enumerate(doc["hops"], 1) if h["mismatch"]]
            out.print(f"[bold red]observed: differs from the prediction at hop {', '.join(bad)}[/] "
                      f"(last seen at {doc['seen_last'] or 'nowhere'})")
    reply = doc.get("reply")
    if doc["kind"] == "observed" and reply:
        port = f":{reply['sport']}" if reply["sport"] is not None else ""
        out.print(f"answer: {doc['reply_kind']} from {reply['ip_src']}{port}, ttl {reply['ttl']}, seen at "
                  f"{doc['hops'][0]['host']} {doc['hops'][0]['out_if']}", soft_wrap=True)
    elif doc["kind"] == "observed":
        out.print("answer: none seen at the source")
    for note in doc["notes"]:
        out.print(f"note: {note}", markup=False, soft_wrap=True)


def _finish(doc: dict[str, Any], args: argparse.Namespace) -> int:
    print_trace(doc)
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")
    if args.svg:
        from k8snet.trace_figure import save

        save(doc, Path(args.svg))
    return EXIT_OK if doc["kind"] != "observed" or doc["agrees"] else EXIT_UNREACHABLE


def cmd_trace(args: argparse.Namespace, load_cluster: Any) -> int:
    from k8snet.model.trace_ends import TraceInputError, question
    from k8snet.rundir import live_sockets
    from topos.control import SOCKET_NAME

    for option in ("json", "svg"):
        path = getattr(args, option)
        if path and (Path(path).is_dir() or not Path(path).resolve().parent.is_dir()):
            console.print(f"--{option} {path}: give a file name in an existing folder")
            return EXIT_USAGE
    runs = [Path(args.run)] if args.run else [socket.parent for socket in live_sockets(SOCKET_NAME)]
    if not args.spec and runs:
        given = [f"--{name.replace('_', '-')}" for name in ("backend", "nodes", "pods_per_node", "offload")
                 if getattr(args, name) is not None] + (["--datapath"] if args.datapath_type else [])
        if given:
            console.print(f"{', '.join(given)}: shape a cluster built for the trace (with --spec); the cluster "
                          f"running in {runs[0]} is traced as it is: drop {', '.join(given)} or add --spec",
                          soft_wrap=True)
            return EXIT_USAGE
        if len(runs) > 1:
            console.print(f"several clusters are running; choose one with --run: {', '.join(map(str, runs))}")
            return EXIT_USAGE
        from controllers.api import ApiClient

        reply = ApiClient(str(runs[0] / SOCKET_NAME), timeout=60).call_raw(
            {"op": "trace", "src": args.src, "dst": args.dst, "proto": args.proto, "sport": args.sport,
             "ttl": args.ttl, "size": args.size, "observe": not args.no_observe})
        if not reply.get("ok"):
            console.print(f"[bold red]k8snet trace:[/] {reply.get('error')}", soft_wrap=True)
            return EXIT_USAGE
        return _finish(reply["trace"], args)
    cluster = load_cluster(args)
    if cluster is None:
        return EXIT_USAGE
    try:
        question(cluster, args.src, args.dst, args.proto, args.sport, args.ttl, args.size)
    except TraceInputError as exc:
        console.print(f"[bold red]k8snet trace:[/] {exc}", soft_wrap=True)
        return EXIT_USAGE
    from topos.cluster import ClusterNet
    from topos.trace import trace
    from k8snet.term import progress

    with ClusterNet(cluster, progress=progress) as net:
        try:
            result = trace(net, args.src, args.dst, args.proto, args.sport, args.ttl, not args.no_observe,
                           args.size)
        except TraceInputError as exc:
            error: Optional[TraceInputError] = exc
        else:
            error = None
    if error is not None:
        console.print(f"[bold red]k8snet trace:[/] {error}", soft_wrap=True)
        return EXIT_USAGE
    return _finish(result.to_json(), args)
