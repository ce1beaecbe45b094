"""Pod-to-pod TCP throughput per backend, underlay and offload setting, next to the
kernel's own numbers for the same paths, all in one run.

    .venv/bin/python bench/throughput.py [--seconds 3] [--repeat 3] [--out FILE]

Cells (iperf3 -J, TCP, one stream, port 5201):

References, in namespaces of the benchmark's own:

* ``veth``, ``ovs-normal``  a bare veth pair / one userspace OVS bridge with a NORMAL flow,
                    TX checksum offload off (topos/references.py); ``veth-tso``,
                    ``ovs-normal-tso`` the same with offloads on and userspace TSO, the
                    references of the ``tso`` cells;
* ``kernel-same-node``, ``kernel-host-gw``, ``kernel-vxlan``, ``kernel-vxlan-routed``,
                    ``kernel-clusterip``  what Flannel and kube-proxy program in the kernel:
                    two pods on one cni0 bridge; Linux bridge per node with host-gw routes;
                    a flannel.1 VXLAN device with route, permanent neighbour and FDB entry,
                    on one segment and across a router; nftables DNAT for a ClusterIP
                    (topos/kernelref.py), offloads on;
* ``kernel-routed``  kernel routes only, across a rack gateway, a core and a rack gateway
                    (what Calico's BGP installs; the reference of ``bgp-cross-rack``).

k8snet, offload ``tso`` (userspace TSO, pods keep offloads; only where this OVS can):

* ``tso-same-node``, ``tso-host-gw``, ``tso-clusterip``  flat underlay, two nodes;
* ``bgp-cross-rack``  backend bgp on the racks spec, node-0 to node-2 through both gateways
  and the core (``none`` where TSO cannot be had);

k8snet, offload ``none`` (TX checksum offload off; what every backend can share):

* ``same-node``, ``host-gw``, ``clusterip``, ``vxlan-flat``, ``vxlan-routed``,
  ``directrouting-same-rack``, ``directrouting-cross-rack``.

Every k8snet cell above uses the run's default attachment (``tap`` on the userspace
datapath, topos/attach.py); ``tso-host-gw-veth`` and ``vxlan-flat-veth`` are the same paths
with pods and uplinks attached by veth, to compare the two in the same rounds.  Each run
records iperf3's retransmits and CPU (client, server) and the CPU every ovs-vswitchd of the
cell's cluster used meanwhile (percent of one core).

Everything is built first, then measured in rounds (every cell once per round) so
the machine's drift hits all cells alike.  Every k8snet path is printed as a ratio to its
true kernel counterpart (same path, same topology) and to the OVS references at its own
offload setting, each as the median of the per-round ratios with their min-max, and the
number of runs behind each median; then the goals: host-gw (tso) >= 0.6x kernel host-gw
with at most 5x its retransmits, VXLAN >= 0.2x kernel VXLAN, ClusterIP >= 0.9x direct at
the same offloads, bgp across racks / kernel routing at least host-gw (tso) / kernel
host-gw of the same run; VXLAN vs host-gw at equal offloads, taps vs veths.
Printed, and written as JSON.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import environment, write  # noqa: E402
from k8snet.procs import run  # noqa: E402
from topos.cluster import ClusterNet  # noqa: E402
from topos.datapath import DatapathError, detect, settle  # noqa: E402
from topos.iperf import iperf  # noqa: E402
from topos.kernelref import KernelCluster, KernelRouted  # noqa: E402
from k8snet.model.manifests import Overrides, load_text  # noqa: E402
from topos.specs import embedded_spec_text  # noqa: E402
from topos.references import References  # noqa: E402

PORT = 5201
#: goal name -> (numerator cell, denominator cell, goal or None to just report).
GOALS: dict[str, tuple[str, str, Optional[float]]] = {
    "host-gw (tso) / kernel host-gw": ("tso-host-gw", "kernel-host-gw", 0.6),
    "vxlan / kernel vxlan": ("vxlan-flat", "kernel-vxlan", 0.2),
    "host-gw (tso): tap / veth": ("tso-host-gw", "tso-host-gw-veth", None),
    "vxlan: tap / veth": ("vxlan-flat", "vxlan-flat-veth", None),
    "ClusterIP / direct, tso": ("tso-clusterip", "tso-host-gw", 0.9),
    "ClusterIP / direct, none": ("clusterip", "host-gw", 0.9),
    "vxlan / host-gw, both none": ("vxlan-flat", "host-gw", None),
    "host-gw (none) / ovs-normal": ("host-gw", "ovs-normal", 0.9),
    "bgp across racks / kernel routing": ("bgp-cross-rack", "kernel-routed", None),
}
#: Goals that are another ratio of the same run: (numerator, denominator) >= (numerator, denominator).
RELATIVE_GOALS: dict[str, tuple[tuple[str, str], tuple[str, str]]] = {
    "bgp / kernel routing >= host-gw (tso) / kernel host-gw": (("bgp-cross-rack", "kernel-routed"),
                                                             ("tso-host-gw", "kernel-host-gw"))}
#: Retransmits per run, at most this many times the kernel counterpart's (goal name -> cells, bound).
RETRANSMIT_GOALS: dict[str, tuple[str, str, float]] = {
    "host-gw (tso) retransmits / kernel host-gw's": ("tso-host-gw", "kernel-host-gw", 5.0)}
#: Each k8snet cell and the kernel path it emulates: the same path over the same topology.
KERNEL_COUNTERPART = {"tso-same-node": "kernel-same-node", "tso-host-gw": "kernel-host-gw",
                      "tso-clusterip": "kernel-clusterip", "same-node": "kernel-same-node",
                      "host-gw": "kernel-host-gw", "clusterip": "kernel-clusterip",
                      "vxlan-flat": "kernel-vxlan", "vxlan-routed": "kernel-vxlan-routed",
                      "directrouting-same-rack": "kernel-host-gw",
                      "directrouting-cross-rack": "kernel-vxlan-routed", "tso-host-gw-veth": "kernel-host-gw",
                      "vxlan-flat-veth": "kernel-vxlan", "bgp-cross-rack": "kernel-routed"}

IPERF_SERVICE = """
---
apiVersion: v1
kind: Pod
metadata: {name: iperf-client}
spec: {nodeName: node-0}
---
apiVersion: v1
kind: Pod
metadata: {name: iperf-server, labels: {app: iperf}}
spec:
  nodeName: node-1
  containers: [{name: iperf3, ports: [{name: iperf, containerPort: 5201}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: iperf-local}
spec: {nodeName: node-0}
---
apiVersion: v1
kind: Service
metadata: {name: iperf}
spec:
  selector: {app: iperf}
  ports: [{port: 5201, targetPort: iperf}]
"""


@dataclass
class Cell:
    name: str
    what: str
    client: Any
    server: Any
    server_ip: str
    offload: str
    runs: list[dict[str, Any]] = field(default_factory=list)
    #: The cluster's attachment and its ovs-vswitchd processes (none for a reference).
    attach: str = ""
    switches: list[int] = field(default_factory=list)


def of_cluster(cell: Cell, net: ClusterNet) -> Cell:
    cell.attach = net.cluster.attach
    procs = [net.node(n.name).ovs.vswitchd() for n in net.cluster.nodes]
    cell.switches = [p.pid for p in procs if p is not None]
    return cell


def flat_cells(net: ClusterNet, prefix: str) -> list[Cell]:
    c = net.cluster
    client, server, local = (net.pod(c.pod(n).host_name) for n in ("iperf-client", "iperf-server", "iperf-local"))
    off = c.offload
    return [of_cluster(cell, net) for cell in [Cell(f"{prefix}same-node", f"two pods on one node, offload {off}", client, local,
                 str(c.pod("iperf-local").ip), off),
            Cell(f"{prefix}host-gw", f"pods on two nodes, host-gw, flat, offload {off}", client, server,
                 str(c.pod("iperf-server").ip), off),
            Cell(f"{prefix}clusterip", f"pod -> ClusterIP -> pod on the other node, offload {off}", client, server,
                 str(c.service("iperf").cluster_ip), off)]]


def veth_cells(nets: dict[str, ClusterNet]) -> list[Cell]:
    """The same cross-node paths with pods and uplinks attached by veth."""
    cells = []
    for name, key, what in (("tso-host-gw-veth", "flat-host-gw-tso-veth", "pods on two nodes, host-gw, flat"),
                            ("vxlan-flat-veth", "flat-vxlan-veth", "VXLAN, flat underlay")):
        if key not in nets:
            continue
        net = nets[key]
        a, b = [[p for p in net.cluster.pods if p.node == n][0] for n in ("node-0", "node-1")]
        cells.append(of_cluster(Cell(name, f"{what}, offload {net.cluster.offload}, attach veth",
                                     net.pod(a.host_name), net.pod(b.host_name), str(b.ip), net.cluster.offload), net))
    return cells


def other_cells(nets: dict[str, ClusterNet]) -> list[Cell]:
    def pod(net: ClusterNet, node: str):
        p = [x for x in net.cluster.pods if x.node == node][0]
        return net.pod(p.host_name), str(p.ip)

    cells = []
    for name, what, key, a, b in (("vxlan-flat", "VXLAN, flat underlay", "flat-vxlan", "node-0", "node-1"),
                                  ("vxlan-routed", "VXLAN across the rack gateways", "routed-vxlan", "node-0",
                                   "node-2"),
                                  ("directrouting-same-rack", "DirectRouting within a rack (unencapsulated)",
                                   "routed-directrouting", "node-0", "node-1"),
                                  ("directrouting-cross-rack", "DirectRouting across racks (VXLAN)",
                                   "routed-directrouting", "node-0", "node-2"),
                                  ("bgp-cross-rack", "BGP across racks (routed by the gateways, unencapsulated)",
                                   "routed-bgp", "node-0", "node-2")):
        net = nets[key]
        (c, _), (s, ip) = pod(net, a), pod(net, b)
        cells.append(of_cluster(Cell(name, f"{what}, offload {net.cluster.offload}", c, s, ip, net.cluster.offload),
                                net))
    return cells


def build_clusters(tso_possible: bool) -> dict[str, ClusterNet]:
    flat = embedded_spec_text("default").split("\n---\n")[0] + IPERF_SERVICE
    specs = {"flat-host-gw": load_text(flat, Overrides(nodes=2, offload="none")),
             "flat-vxlan": load_text(embedded_spec_text("default"),
                                     Overrides(nodes=2, pods_per_node=1, backend="vxlan", offload="none")),
             "routed-vxlan": load_text(embedded_spec_text("racks"), Overrides(pods_per_node=1, offload="none")),
             "routed-directrouting": load_text(embedded_spec_text("racks"),
                                               Overrides(pods_per_node=1, backend="directrouting", offload="none")),
             "routed-bgp": load_text(embedded_spec_text("racks"), Overrides(
                 pods_per_node=1, backend="bgp", offload="tso" if tso_possible else "none")),
             "flat-vxlan-veth": load_text(embedded_spec_text("default"),
                                          Overrides(nodes=2, pods_per_node=1, backend="vxlan", offload="none",
                                                    attach="veth"))}
    if tso_possible:
        specs["flat-host-gw-tso"] = load_text(flat, Overrides(nodes=2, offload="tso"))
        specs["flat-host-gw-tso-veth"] = load_text(embedded_spec_text("default"),
                                                   Overrides(nodes=2, pods_per_node=1, offload="tso", attach="veth"))
    nets: dict[str, ClusterNet] = {}
    try:
        for name, cluster in specs.items():
            # Settled one by one on purpose: this benchmark compares offload settings.
            nets[name] = ClusterNet(settle([cluster])[0], progress=lambda m: None).start()
    except BaseException:
        for net in nets.values():
            net.stop()
        raise
    return nets


def references_of(name: str, offload: str) -> tuple[str, ...]:
    """The OVS references a cell is divided by: those built with its own offload setting."""
    if name.startswith(("veth", "ovs-normal", "kernel-")):
        return ()
    suffix = "-tso" if offload == "tso" else ""
    return (f"veth{suffix}", f"ovs-normal{suffix}")


def per_round(cell: Cell, base: Cell) -> list[float]:
    """cell/base for every round in which both were measured (the same round: same drift)."""
    return [a["bits_per_second"] / b["bits_per_second"] for a, b in zip(cell.runs, base.runs)
            if a.get("ok") and b.get("ok")]


def summarize(cells: list[Cell]) -> dict[str, dict[str, Any]]:
    by_name = {c.name: c for c in cells}
    out = {}
    for cell in cells:
        rates = [r["bits_per_second"] / 1e9 for r in cell.runs if r.get("ok")]
        failures = [r["error"] for r in cell.runs if not r.get("ok")]
        row: dict[str, Any] = {"what": cell.what, "offload": cell.offload, "runs_gbps": rates, "n": len(rates),
                               "failures": failures}
        if rates:
            row.update(median_gbps=statistics.median(rates), min_gbps=min(rates), max_gbps=max(rates))
            sent = [r for r in cell.runs if r.get("ok") and r.get("retransmits") is not None]
            row["retransmits_per_run"] = statistics.median([r["retransmits"] for r in sent]) if sent else None
            row["attach"] = cell.attach or None
            for who in ("client", "server", "watched"):
                used = [r["cpu_percent"][who] for r in cell.runs if r.get("ok") and
                        r.get("cpu_percent", {}).get(who) is not None]
                row[f"cpu_{'ovs' if who == 'watched' else who}_percent"] = \
                    round(statistics.median(used), 1) if used else None
        ratios = {}
        for key, ref in [("kernel", KERNEL_COUNTERPART.get(cell.name))] + \
                [(r.removesuffix("-tso"), r) for r in references_of(cell.name, cell.offload)]:
            if ref in by_name:
                rounds = per_round(cell, by_name[ref])
                ratios[key] = {"to": ref, "rounds": rounds, "median": statistics.median(rounds) if rounds else None,
                               "min": min(rounds) if rounds else None, "max": max(rounds) if rounds else None}
        row["ratios"] = ratios
        if "kernel" in ratios:
            row["kernel_counterpart"] = ratios["kernel"]["to"]
            row["ratio_to_kernel"] = ratios["kernel"]["median"]
        out[cell.name] = row
    return out


def _pct(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.0f}%"


def ratio(rows: dict[str, dict[str, Any]], a: str, b: str) -> float | None:
    x, y = rows.get(a, {}).get("median_gbps"), rows.get(b, {}).get("median_gbps")
    return x / y if x and y else None


def shown(r: Optional[dict[str, Any]]) -> str:
    """A ratio as median (min-max over the rounds), or '-' where there is none."""
    if not r or r.get("median") is None:
        return "-"
    return f"{r['median']:.2f} ({r['min']:.2f}-{r['max']:.2f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=3, help="iperf3 -t (whole seconds, >= 1)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.seconds < 1 or args.repeat < 1:
        print("--seconds and --repeat must be at least 1", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("bench/throughput.py needs root", file=sys.stderr)
        return 2
    caps = detect()
    try:
        settle([load_text(embedded_spec_text("default"), Overrides(nodes=2, offload="tso"))], caps)
        tso_possible, tso_why = True, ""
    except DatapathError as exc:
        tso_possible, tso_why = False, exc.message
    started = datetime.now(timezone.utc)
    refs = [References()] + ([References("tso", "-tso")] if tso_possible else [])
    kernels = [KernelCluster("host-gw", "kh"), KernelCluster("vxlan", "kv"), KernelCluster("vxlan", "kr", routed=True),
               KernelRouted("kb")]
    nets: dict[str, ClusterNet] = {}
    try:
        cells = [Cell(r.name, r.what, r.client, r.server, r.server_ip, ref.offload)
                 for ref in refs for r in ref.build()]
        for kernel in kernels:
            cells += [Cell(p.name, p.what, p.client, p.server, p.server_ip, "kernel defaults (on)")
                      for p in kernel.build()]
        nets = build_clusters(tso_possible)
        if tso_possible:
            cells += flat_cells(nets["flat-host-gw-tso"], "tso-")
        cells += flat_cells(nets["flat-host-gw"], "")
        cells += other_cells(nets)
        cells += veth_cells(nets)
        total = len(cells) * args.repeat
        done = 0
        t0 = time.monotonic()
        for round_no in range(args.repeat):
            for cell in cells:
                done += 1
                left = (time.monotonic() - t0) / max(done - 1, 1) * (total - done + 1) if done > 1 else 0
                print(f"[{done}/{total}] round {round_no + 1}: {cell.name} (about {left:.0f}s left)",
                      file=sys.stderr, flush=True)
                result = iperf(cell.client, cell.server, cell.server_ip, PORT, args.seconds, watch=cell.switches)
                result.pop("doc", None)  # iperf3_end is kept; the rest would bloat the JSON
                cell.runs.append(result)
        environments = {name: environment(net.cluster) for name, net in nets.items()}
    finally:
        for net in nets.values():
            net.stop()
        for kernel in kernels:
            kernel.stop()
        for ref in refs:
            ref.stop()
    rows = summarize(cells)
    goals = {name: {"cells": [a, b], "goal": goal, "measured": ratio(rows, a, b)}
             for name, (a, b, goal) in GOALS.items()}
    for name, (a, b, bound) in RETRANSMIT_GOALS.items():
        x, y = rows.get(a, {}).get("retransmits_per_run"), rows.get(b, {}).get("retransmits_per_run")
        goals[name] = {"cells": [a, b], "at_most": bound, "retransmits": [x, y],
                       "measured": (x / max(y, 1)) if x is not None and y is not None else None}
    for name, ((a, b), (c, d)) in RELATIVE_GOALS.items():
        goals[name] = {"cells": [a, b], "against": [c, d], "goal": ratio(rows, c, d), "measured": ratio(rows, a, b)}
    print(f"\n{'cell':<26} {'offload':<8} {'n':>2} {'median Gbit/s':>13} {'min-max':>13} "
          f"{'/kernel counterpart':>40} {'/ovs-normal, same offload':>26} {'retr/run':>9} {'attach':>6} {'ovs cpu':>7}")
    for name, row in rows.items():
        if "median_gbps" not in row:
            print(f"{name:<26} FAILED: {'; '.join(row['failures'])}")
            continue
        retr = row.get("retransmits_per_run")
        kernel = row["ratios"].get("kernel")
        against = f"{shown(kernel)} {kernel['to']}" if kernel else "-"
        print(f"{name:<26} {row['offload'][:8]:<8} {row['n']:>2} {row['median_gbps']:>13.2f} "
              f"{row['min_gbps']:>6.2f}-{row['max_gbps']:<6.2f} {against:>40} "
              f"{shown(row['ratios'].get('ovs-normal')):>26} {retr if retr is not None else '-':>9} "
              f"{row['attach'] or '-':>6} {_pct(row['cpu_ovs_percent']):>7}")
    print()
    if not tso_possible:
        print(f"offload tso not measured: {tso_why}")
    for name, g in goals.items():
        m = g["measured"]
        if m is None:
            print(f"{name}: not measured")
        elif "at_most" in g:
            print(f"goal {name} <= {g['at_most']:g}: measured {m:.1f} ({g['retransmits'][0]:g} / "
                  f"{g['retransmits'][1]:g} per run; {'met' if m <= g['at_most'] else 'MISSED'})")
        elif "against" in g:
            bound = g["goal"]
            verdict = "not comparable" if bound is None else ("met" if m >= bound else "MISSED")
            print(f"goal {name}: measured {m:.3f} >= {'-' if bound is None else f'{bound:.3f}'} ({verdict})")
        elif g["goal"] is None:
            print(f"{name}: {m:.2f}")
        else:
            print(f"goal {name} >= {g['goal']}: measured {m:.2f} ({'met' if m >= g['goal'] else 'MISSED'})")
    doc = {"kind": "k8snet.bench.throughput", "started": started.isoformat(),
           "finished": datetime.now(timezone.utc).isoformat(), "command": sys.argv,
           "environment": environment(
               iperf3=run(["iperf3", "--version"], check=False).stdout.splitlines()[0],
               offload="per cell (see cells[*].offload); clusters: see clusters[*]",
               kernel_module=caps.kernel_module),
           "clusters": {name: {"offload": env["offload"], "offload_detail": env["offload_detail"],
                               "attach": env["attach"],
                               "datapath_type": env["datapath_type"], "datapath_choice": env["datapath_choice"]}
                        for name, env in environments.items()},
           "tso_possible": tso_possible, "tso_refused_because": tso_why or None,
           "seconds": args.seconds, "repeat": args.repeat, "cells": rows, "goals": goals}
    write("throughput", doc, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
