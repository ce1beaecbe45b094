"""Bring-up benchmark: how fast a cluster is usable, how fast the matrix runs, what it costs.

    .venv/bin/python bench/bringup.py [--sizes 2x2,4x4,8x4,16x4] [--repeat 1] [--out FILE]

For each nodes x pods-per-node size it measures, in one process:

* ``up_s``: from nothing to every pair reachable (build + controller sync + the first
  probe rounds that all answer);
* ``matrix_s``: one full reachability matrix on the running cluster (all ordered
  pod->pod, node->pod, pod->node pairs, in parallel);
* ``mem_mib``: the memory the cluster holds once up: MemAvailable before minus after,
  and the summed RSS of its processes (OVS daemons, namespace shells, controller).

Goals on this 2-core machine (from the foundation issue): 4x4 up in <= 10 s, 16x4 in
<= 30 s, a 16-pod matrix (240 pod pairs) in <= 5 s.  Printed as a table, written as JSON.
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
from k8snet.model.reach import pairs  # noqa: E402
from topos.probe import probe, wait_reachable  # noqa: E402

GOALS = {"4x4": {"up_s": 10.0}, "16x4": {"up_s": 30.0}}
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


def cluster_rss_kib(net: ClusterNet) -> int:
    assert net.run is not None
    pids = {p.pid for p in net.run.processes}
    for pidfile in net.run.path.glob("n*/*.pid"):
        pid = pid_from_file(str(pidfile))
        if pid:
            pids.add(pid)
    return sum(rss_kib(pid) for pid in pids)


def measure(nodes: int, pods: int) -> dict:
    cluster = load_text(default_spec_text(), Overrides(nodes=nodes, pods_per_node=pods))
    before = mem_available_kib()
    t0 = time.monotonic()
    net = ClusterNet(cluster, progress=lambda m: None)
    try:
        net.start()
        synced = time.monotonic() - t0
        wait_reachable(net.net, cluster, timeout=60)
        up = time.monotonic() - t0
        mem_delta = (before - mem_available_kib()) / 1024
        rss = cluster_rss_kib(net) / 1024
        t1 = time.monotonic()
        results = probe(net.net, cluster)
        matrix = time.monotonic() - t1
        pod_pairs = sum(1 for p in pairs(cluster) if p.kind.startswith("pod-pod"))
        return {"size": f"{nodes}x{pods}", "nodes": nodes, "pods_per_node": pods,
                "pods": len(cluster.pods), "pairs": len(results), "pod_pairs": pod_pairs,
                "up_s": round(up, 3), "synced_s": round(synced, 3),
                "phases_s": {k: round(v, 3) for k, v in net.timings.items()},
                "matrix_s": round(matrix, 3), "all_reachable": all(r.ok for r in results),
                "mem_available_drop_mib": round(mem_delta, 1), "cluster_rss_mib": round(rss, 1)}
    finally:
        net.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="2x2,4x4,8x4,16x4")
    parser.add_argument("--repeat", type=int, default=1)
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
            rows.append(measure(nodes, pods))
    print(f"\n{'size':>6} {'pods':>5} {'pairs':>6} {'up s':>7} {'matrix s':>9} {'RSS MiB':>8} "
          f"{'MemAvail drop MiB':>18}  goal")
    for row in rows:
        goal = GOALS.get(row["size"], {}).get("up_s")
        notes = []
        if goal:
            notes.append(f"up<={goal:g}s {'met' if row['up_s'] <= goal else 'MISSED'}")
        if row["pods"] >= 16:
            notes.append(f"matrix<={MATRIX_GOAL_S:g}s {'met' if row['matrix_s'] <= MATRIX_GOAL_S else 'MISSED'}")
        print(f"{row['size']:>6} {row['pods']:>5} {row['pairs']:>6} {row['up_s']:>7.2f} {row['matrix_s']:>9.2f} "
              f"{row['cluster_rss_mib']:>8.0f} {row['mem_available_drop_mib']:>18.0f}  {', '.join(notes)}")
    doc = {"kind": "k8snet.bench.bringup", "date": datetime.now(timezone.utc).isoformat(),
           "command": sys.argv, "environment": environment(settle([load_text(default_spec_text())])[0]),
           "goals": {"up_s": GOALS, "matrix_s_for_16_pods": MATRIX_GOAL_S}, "rows": rows}
    write("bringup", doc, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
