"""Bring-up benchmark: how fast a cluster is usable, how fast the matrix runs, what it costs.

    .venv/bin/python bench/bringup.py [--sizes 2x2,4x4,8x4,16x4] [--repeat 1] [--sample N] [--out FILE]

For each nodes x pods-per-node size it measures, in one process:

* ``up_s``: from nothing to every pair reachable (build + controller sync + the first
  probe rounds that all answer), and where the time went (``phases_s``, cumulative):
  ``hosts`` (namespaces and links), ``nodes`` (each node's OVS daemons and bridge),
  ``pods``, ``synced`` (every switch holds its flows), ``reachable``;
* ``matrix_s``: one reachability matrix on the running cluster (all ordered pod->pod,
  node->pod, pod->node pairs, in parallel) -- or, with ``--sample N``, N of them
  stratified by path type (:mod:`k8snet.model.sampling`) for the sizes whose matrix is
  larger; the first reachability is then judged on the same sample;
* memory once up: MemAvailable before minus after, the summed RSS of the cluster's
  processes, and that RSS per node (its OVS daemons and namespace shell), per pod (its
  namespace shell) and for the controller.

Waits grow with the size (the controller sync and the first reachability: 60 s plus
1 s per node), so a 100-node cluster is measured, not given up on.

Goals on this 2-core machine: 4x4 up in <= 10 s, 16x4 in <= 30 s, a 16-pod matrix (240
pod pairs) in <= 5 s (the foundation issue); 100x4 up and reachable in <= 60 s within
6 GiB, and a 32x4 full matrix in <= 3 s (issue 13).  Printed as a table, written as JSON.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import environment, write  # noqa: E402

from k8snet.procs import pid_from_file  # noqa: E402
from topos.cluster import ClusterNet  # noqa: E402
from topos.datapath import settle  # noqa: E402
from k8snet.model.manifests import Overrides, load_text  # noqa: E402
from topos.specs import default_spec_text  # noqa: E402
from k8snet.model.sampling import Sample, draw  # noqa: E402
from topos.probe import probe, wait_reachable  # noqa: E402

GOALS = {"4x4": {"up_s": 10.0}, "16x4": {"up_s": 30.0}, "100x4": {"up_s": 60.0, "cluster_rss_mib": 6 * 1024},
         "32x4": {"matrix_s": 3.0}}
MATRIX_GOAL_S = 5.0


def mem_available_kib() -> int:
    with open("/proc/meminfo", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1])
    raise RuntimeError("no MemAvailable in /proc/meminfo")


def rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cluster_rss_kib(net: ClusterNet) -> dict[str, int]:
    """RSS of the cluster's processes: in all, per node (its OVS daemons and namespace
    shell), per pod (its shell) and the controller's; a process is counted once."""
    assert net.run is not None and net.net is not None
    cluster = net.cluster
    node_pids = {net.node(n.name).pid for n in cluster.nodes}
    for pidfile in net.run.path.glob("n*/*.pid"):
        pid = pid_from_file(str(pidfile))
        if pid:
            node_pids.add(pid)
    pod_pids = {net.pod(p.host_name).pid for p in cluster.pods}
    controller = {net.controller.pid} if net.controller is not None else set()
    other = {p.pid for p in net.run.processes} - node_pids - pod_pids - controller
    nodes, pods = sum(map(rss_kib, node_pids)), sum(map(rss_kib, pod_pids))
    ctl, rest = sum(map(rss_kib, controller)), sum(map(rss_kib, other))
    return {"all": nodes + pods + ctl + rest, "nodes": nodes, "pods": pods, "controller": ctl, "other": rest}


def measure(nodes: int, pods: int, sample: int = 0) -> dict:
    cluster = load_text(default_spec_text(), Overrides(nodes=nodes, pods_per_node=pods))
    drawn = draw(cluster, sample) if sample else Sample.full(cluster)
    everything, chosen = drawn.everything, drawn.pairs
    wait = 60.0 + nodes
    before = mem_available_kib()
    t0 = time.monotonic()
    net = ClusterNet(cluster, progress=lambda m: None, sync_timeout=wait)
    try:
        net.start()
        synced = time.monotonic() - t0
        wait_reachable(net.net, cluster, timeout=wait, only=chosen)
        up = time.monotonic() - t0
        mem_delta = (before - mem_available_kib()) / 1024
        rss = cluster_rss_kib(net)
        t1 = time.monotonic()
        results = probe(net.net, cluster, only=chosen)
        matrix = time.monotonic() - t1
        pod_pairs = sum(1 for p in everything if p.kind.startswith("pod-pod"))
        return {"size": f"{nodes}x{pods}", "nodes": nodes, "pods_per_node": pods,
                "pods": len(cluster.pods), "pairs": len(results), "matrix_pairs": len(everything),
                "sampled": len(results) < len(everything), "pod_pairs": pod_pairs,
                "up_s": round(up, 3), "synced_s": round(synced, 3),
                "phases_s": {**{k: round(v, 3) for k, v in net.timings.items()}, "reachable": round(up, 3)},
                "matrix_s": round(matrix, 3), "all_reachable": all(r.ok for r in results),
                "mem_available_drop_mib": round(mem_delta, 1), "cluster_rss_mib": round(rss["all"] / 1024, 1),
                "rss_per_node_mib": round(rss["nodes"] / 1024 / nodes, 2),
                "rss_per_pod_mib": round(rss["pods"] / 1024 / max(1, len(cluster.pods)), 2),
                "controller_rss_mib": round(rss["controller"] / 1024, 1),
                "other_rss_mib": round(rss["other"] / 1024, 1)}
    finally:
        net.stop()


def verdicts(row: dict) -> list[str]:
    """The goals this row has, met or missed."""
    notes = []
    for key, goal in GOALS.get(row["size"], {}).items():
        if key == "matrix_s" and row["sampled"]:
            notes.append("matrix goal is for the full matrix (sampled here)")
            continue
        unit = " MiB" if key.endswith("mib") else "s"
        notes.append(f"{key.removesuffix('_mib').removesuffix('_s')}<={goal:g}{unit} "
                     f"{'met' if row[key] <= goal else 'MISSED'}")
    if row["pods"] >= 16 and not row["sampled"] and "matrix_s" not in GOALS.get(row["size"], {}):
        notes.append(f"matrix<={MATRIX_GOAL_S:g}s {'met' if row['matrix_s'] <= MATRIX_GOAL_S else 'MISSED'}")
    return notes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="2x2,4x4,8x4,16x4")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--sample", type=int, default=0, metavar="N",
                        help="probe N pairs (stratified by path type) where the matrix is larger (default: all)")
    parser.add_argument("--out", default=None, help="JSON file (default results/bench-bringup-<time>.json)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/bringup.py needs root", file=sys.stderr)
        return 2
    sizes = [tuple(int(x) for x in s.split("x")) for s in args.sizes.split(",")]
    rows = []
    for nodes, pods in sizes:
        for i in range(args.repeat):
            print(f"measuring {nodes}x{pods} (run {i + 1}/{args.repeat}) ...", file=sys.stderr, flush=True)
            rows.append(measure(nodes, pods, args.sample))
    print(f"\n{'size':>6} {'pods':>5} {'pairs':>7} {'up s':>7} {'hosts':>6} {'nodes':>6} {'pods':>6} {'synced':>7} "
          f"{'matrix s':>9} {'RSS MiB':>8} {'/node':>6} {'/pod':>5}  goal")
    for row in rows:
        ph = row["phases_s"]
        pairs_text = f"{row['pairs']}{'*' if row['sampled'] else ''}"
        print(f"{row['size']:>6} {row['pods']:>5} {pairs_text:>7} {row['up_s']:>7.2f} {ph['hosts']:>6.1f} "
              f"{ph['nodes']:>6.1f} {ph['pods']:>6.1f} {ph['synced']:>7.1f} {row['matrix_s']:>9.2f} "
              f"{row['cluster_rss_mib']:>8.0f} {row['rss_per_node_mib']:>6.1f} {row['rss_per_pod_mib']:>5.1f}  "
              f"{', '.join(verdicts(row))}")
    if any(row["sampled"] for row in rows):
        print("* a sample of the matrix, stratified by path type (--sample)")
    doc = {"kind": "k8snet.bench.bringup", "date": datetime.now(timezone.utc).isoformat(),
           "command": sys.argv, "environment": environment(settle([load_text(default_spec_text())])[0]),
           "goals": {"by_size": GOALS, "matrix_s_for_16_pods_and_more": MATRIX_GOAL_S}, "rows": rows}
    write("bringup", doc, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
