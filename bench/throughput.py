"""Pod-to-pod TCP throughput per backend and underlay, with the machine's references.

    .venv/bin/python bench/throughput.py [--seconds 3] [--repeat 3] [--out FILE]

Cells (iperf3 -J, TCP, one stream):

* ``veth``          two namespaces joined by a bare veth pair, TX checksum offload off as
                    in the pods (the machine's limit for the same offloads);
* ``ovs-normal``    two namespaces on one userspace OVS bridge with a single NORMAL flow
                    (the userspace datapath's own limit);
* ``same-node``     two pods on one node (host-gw, flat);
* ``host-gw``       pods on two nodes, flat underlay;
* ``vxlan-flat``    the same over VXLAN;
* ``vxlan-routed``  pods in two racks behind L3 gateways, VXLAN;
* ``directrouting-same-rack`` / ``directrouting-cross-rack``  Flannel DirectRouting on
                    the routed underlay: unencapsulated within a rack, VXLAN across.

All environments are built first, then measured in rounds (every cell once per round)
so that the machine's drift hits all cells alike; each cell reports median, min and
max, and ratios to both references and (goals) host-gw / ovs-normal >= 0.9 and
VXLAN / host-gw >= 0.8, all from this one run.  Printed, and written as JSON.
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
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import environment, write  # noqa: E402
from topos.iperf import iperf  # noqa: E402

from k8snet.procs import run  # noqa: E402
from topos.cluster import ClusterNet  # noqa: E402
from topos.manifests import Overrides, embedded_spec_text, load_text  # noqa: E402
from topos.references import References  # noqa: E402

GOALS = {"host-gw / ovs-normal": 0.9, "vxlan-flat / host-gw": 0.8}


@dataclass
class Cell:
    name: str
    what: str
    client: Any
    server: Any
    server_ip: str
    runs: list[dict[str, Any]] = field(default_factory=list)


def cluster_cells(nets: dict[str, ClusterNet]) -> list[Cell]:
    def pod(net: ClusterNet, node: str, k: int = 0):
        p = [x for x in net.cluster.pods if x.node == node][k]
        return net.pod(p.host_name), str(p.ip)

    cells = []
    flat = nets["flat-host-gw"]
    (c, _), (s, ip) = pod(flat, "node-0", 0), pod(flat, "node-0", 1)
    cells.append(Cell("same-node", "two pods on one node (host-gw)", c, s, ip))
    (c, _), (s, ip) = pod(flat, "node-0"), pod(flat, "node-1")
    cells.append(Cell("host-gw", "pods on two nodes, host-gw, flat underlay", c, s, ip))
    vx = nets["flat-vxlan"]
    (c, _), (s, ip) = pod(vx, "node-0"), pod(vx, "node-1")
    cells.append(Cell("vxlan-flat", "pods on two nodes, VXLAN, flat underlay", c, s, ip))
    vr = nets["routed-vxlan"]
    (c, _), (s, ip) = pod(vr, "node-0"), pod(vr, "node-2")
    cells.append(Cell("vxlan-routed", "pods in two racks, VXLAN across the gateways", c, s, ip))
    dr = nets["routed-directrouting"]
    (c, _), (s, ip) = pod(dr, "node-0"), pod(dr, "node-1")
    cells.append(Cell("directrouting-same-rack", "DirectRouting, same rack (unencapsulated)", c, s, ip))
    (c, _), (s, ip) = pod(dr, "node-0"), pod(dr, "node-2")
    cells.append(Cell("directrouting-cross-rack", "DirectRouting, across racks (VXLAN)", c, s, ip))
    return cells


def build_clusters() -> dict[str, ClusterNet]:
    specs = {
        "flat-host-gw": load_text(embedded_spec_text("default"), Overrides(nodes=2, pods_per_node=2)),
        "flat-vxlan": load_text(embedded_spec_text("default"), Overrides(nodes=2, pods_per_node=1,
                                                                         backend="vxlan")),
        "routed-vxlan": load_text(embedded_spec_text("racks"), Overrides(pods_per_node=1)),
        "routed-directrouting": load_text(embedded_spec_text("racks"),
                                          Overrides(pods_per_node=1, backend="directrouting")),
    }
    nets: dict[str, ClusterNet] = {}
    try:
        for name, cluster in specs.items():
            nets[name] = ClusterNet(cluster, progress=lambda m: None).start()
    except BaseException:
        for net in nets.values():
            net.stop()
        raise
    return nets


def summarize(cells: list[Cell]) -> dict[str, dict[str, Any]]:
    out = {}
    for cell in cells:
        rates = [r["bits_per_second"] / 1e9 for r in cell.runs if r.get("ok")]
        failures = [r["error"] for r in cell.runs if not r.get("ok")]
        row: dict[str, Any] = {"what": cell.what, "runs_gbps": rates, "failures": failures}
        if rates:
            row.update(median_gbps=statistics.median(rates), min_gbps=min(rates), max_gbps=max(rates))
            sent = [r for r in cell.runs if r.get("ok") and r.get("retransmits") is not None]
            row["retransmits_per_run"] = statistics.median([r["retransmits"] for r in sent]) if sent else None
        out[cell.name] = row
    refs = {k: out[k].get("median_gbps") for k in ("veth", "ovs-normal")}
    for row in out.values():
        for ref, value in refs.items():
            if value and row.get("median_gbps") is not None:
                row[f"ratio_to_{ref}"] = row["median_gbps"] / value
    return out


def ratio(rows: dict[str, dict[str, Any]], a: str, b: str) -> float | None:
    x, y = rows.get(a, {}).get("median_gbps"), rows.get(b, {}).get("median_gbps")
    return x / y if x and y else None


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
    started = datetime.now(timezone.utc)
    refs = References()
    nets: dict[str, ClusterNet] = {}
    try:
        cells = [Cell(r.name, r.what, r.client, r.server, r.server_ip) for r in refs.build()]
        nets = build_clusters()
        cells += cluster_cells(nets)
        total = len(cells) * args.repeat
        done = 0
        t0 = time.monotonic()
        for round_no in range(args.repeat):
            for cell in cells:
                done += 1
                left = (time.monotonic() - t0) / max(done - 1, 1) * (total - done + 1) if done > 1 else 0
                print(f"[{done}/{total}] round {round_no + 1}: {cell.name} (about {left:.0f}s left)",
                      file=sys.stderr, flush=True)
                result = iperf(cell.client, cell.server, cell.server_ip, 5300 + done, args.seconds)
                result.pop("doc", None)  # iperf3_end is kept; the rest would bloat the JSON
                cell.runs.append(result)
    finally:
        for net in nets.values():
            net.stop()
        refs.stop()
    rows = summarize(cells)
    goals = {name: {"goal": goal, "measured": ratio(rows, *name.split(" / "))} for name, goal in GOALS.items()}
    print(f"\n{'cell':<26} {'median Gbit/s':>13} {'min-max':>13} {'/veth':>6} {'/ovs-normal':>11} {'retr/run':>9}")
    for name, row in rows.items():
        if "median_gbps" not in row:
            print(f"{name:<26} FAILED: {'; '.join(row['failures'])}")
            continue
        retr = row.get("retransmits_per_run")
        print(f"{name:<26} {row['median_gbps']:>13.2f} {row['min_gbps']:>6.2f}-{row['max_gbps']:<6.2f} "
              f"{row.get('ratio_to_veth', 0):>6.2f} {row.get('ratio_to_ovs-normal', 0):>11.2f} "
              f"{retr if retr is not None else '-':>9}")
    print()
    for name, g in goals.items():
        m = g["measured"]
        verdict = "n/a" if m is None else ("met" if m >= g["goal"] else "MISSED")
        print(f"goal {name} >= {g['goal']}: measured {m:.2f} ({verdict})" if m is not None
              else f"goal {name}: not measured")
    doc = {"kind": "k8snet.bench.throughput", "started": started.isoformat(),
           "finished": datetime.now(timezone.utc).isoformat(), "command": sys.argv,
           "environment": environment(offloads="pods and references: tx checksum offload off; no userspace TSO",
                                      iperf3=run(["iperf3", "--version"], check=False).stdout.splitlines()[0]),
           "seconds": args.seconds, "repeat": args.repeat, "cells": rows, "goals": goals}
    write("throughput", doc, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
