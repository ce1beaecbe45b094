"""``k8snet fault``: impair or break parts of the cluster a ``k8snet up`` is running.

Asked through the running cluster's socket (:mod:`topos.control`), like ``k8snet apply``:
only the process that owns the namespaces can change them.

* ``k8snet fault links`` -- every underlay link (named by the host at its outer end),
  the loss set on it and what its rules counted: frames, dropped, the loss achieved.
* ``k8snet fault loss LINK PERCENT [--direction both|egress|ingress]`` -- from now on
  the link drops that share of its frames (0 clears it); see k8snet/model/links.py.
* ``k8snet fault link|router|node down|up TARGET``, ``k8snet fault switch restart NODE``,
  ``k8snet fault controller kill|start|restart``, ``k8snet fault status`` -- see
  topos/faults.py for what each does and how it is undone.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.table import Table

from k8snet.term import EXIT_OK, EXIT_USAGE, console, out


def add_parser(sub: Any) -> None:
    p = sub.add_parser("fault", help="impair or break parts of a running cluster (k8snet up)")
    verbs = p.add_subparsers(dest="fault", required=True)
    links = verbs.add_parser("links", help="underlay links, their loss and what their rules counted")
    links.add_argument("--json", action="store_true", help="print the reply as JSON")
    loss = verbs.add_parser("loss", help="make an underlay link drop PERCENT of its frames (0 clears)")
    loss.add_argument("link", metavar="LINK", help="a node (its uplink), gw-RACK (its link to the core), "
                                                   "external or lb")
    loss.add_argument("percent", metavar="PERCENT", help="in [0, 100)")
    loss.add_argument("--direction", default="both", help="both (default), egress (what LINK's host sends) or "
                                                          "ingress (what it receives)")
    status = verbs.add_parser("status", help="what is down now, NotReady nodes, the faults done so far")
    status.add_argument("--json", action="store_true", help="print the reply as JSON")
    made = [links, loss, status]
    for kind, actions, target, what in (
            ("link", ("down", "up"), "LINK", "set an underlay link down (carrier lost) or up again"),
            ("router", ("down", "up"), "ROUTER", "a rack gateway (gw-RACK) or the core stops routing, or comes back"),
            ("node", ("down", "up"), "NODE", "a node fails (--how uplink: cut off; switch: vswitchd killed) or "
                                             "comes back"),
            ("switch", ("restart",), "NODE", "a node's ovs-vswitchd crashes and is started again"),
            ("controller", ("kill", "start", "restart"), None, "the OpenFlow controller is killed, started, or both")):
        verb = verbs.add_parser(kind, help=what)
        verb.add_argument("action", choices=actions)
        if target:
            verb.add_argument("target", metavar=target)
        if kind == "node":
            verb.add_argument("--how", choices=("uplink", "switch"), default="uplink")
        made.append(verb)
    for verb in made:
        verb.add_argument("--run", metavar="DIR", help="the run directory of the cluster (when several run)")


def render(reply: dict[str, Any]) -> Table:
    table = Table(title="underlay links", title_justify="left")
    for column in ("link", "kind", "rule at", "direction", "loss set", "frames", "dropped", "achieved"):
        table.add_column(column, justify="right" if column in ("frames", "dropped", "achieved") else "left")
    counted = {(c["link"], c["direction"]): c for c in reply["counters"]}
    for link in reply["links"]:
        ways = [w for w in ("egress", "ingress") if (link["name"], w) in counted]
        if not ways:
            table.add_row(link["name"], link["kind"], link["at"], "", "-", "", "", "")
        for way in ways:
            c = counted[(link["name"], way)]
            achieved = f"{c['achieved_percent']:.3f} %" if c["achieved_percent"] is not None else ""
            table.add_row(link["name"], link["kind"], link["at"], way, f"{c['configured_percent']:g} %",
                          str(c["frames"]), str(c["dropped"]), achieved)
    return table


def cmd_fault(args: argparse.Namespace) -> int:
    from controllers.api import ApiClient
    from k8snet.rundir import one_live_socket
    from topos.control import SOCKET_NAME

    socket, why = one_live_socket(SOCKET_NAME, args.run)
    if socket is None:
        console.print(f"k8snet fault: {why}", soft_wrap=True)
        return EXIT_USAGE
    request: dict[str, Any] = {"op": "links"}
    if args.fault == "loss":
        request = {"op": "loss", "link": args.link, "loss": args.percent, "direction": args.direction}
    elif args.fault == "status":
        request = {"op": "faults"}
    elif args.fault != "links":
        request = {"op": "fault", "kind": args.fault, "action": args.action, "target": getattr(args, "target", ""),
                   "how": getattr(args, "how", "uplink")}
    reply = ApiClient(str(socket), timeout=120).call_raw(request)
    if not reply.get("ok"):
        argument = reply.get("argument")
        console.print(f"[bold red]k8snet fault {args.fault}:[/] " + (f"{argument}: " if argument else "")
                      + str(reply.get("error")), soft_wrap=True)
        return EXIT_USAGE
    if getattr(args, "json", False):
        out.print(json.dumps(reply, indent=1), markup=False, soft_wrap=True)
    elif args.fault in ("links", "loss"):
        out.print(render(reply))
        if reply.get("note"):
            console.print(f"note: {reply['note']}", markup=False, soft_wrap=True)
    else:
        print_status(reply)
    return EXIT_OK


def print_status(reply: dict[str, Any]) -> None:
    done = reply.get("done")
    if done:
        target = f" {done['target']}" if done["target"] else ""
        out.print(f"{done['kind']}{target} {done['action']} ({done['took_s']:.2f} s)", markup=False)
    down = [f"{what}: {', '.join(reply[key])}" for what, key in (("links down", "links_down"),
                                                                 ("routers down", "routers_down"),
                                                                 ("switches down", "switches_down"),
                                                                 ("nodes NotReady", "nodes_not_ready")) if reply[key]]
    if not reply["controller"]:
        down.append("controller: not running")
    out.print("; ".join(down) if down else "nothing is down; every node is Ready", markup=False)
