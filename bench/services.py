"""Services benchmark: what a ClusterIP costs, how fast endpoint changes converge, how
fast many Services are programmed, and how evenly connections spread.

    .venv/bin/python bench/services.py [--seconds 3] [--repeat 3] [--changes 50]
                                       [--services 1000] [--connections 3000] [--out FILE]

(a) throughput: iperf3 TCP from a client pod to a pod on another node, directly and
    through a ClusterIP with that pod as its one endpoint (iperf3's control and data
    connections must reach the same endpoint), interleaved, same run; the ratio.
    Goal >= 0.9.
(b) convergence: a client connects in a tight loop while an endpoint is taken out and
    put back ``--changes`` times; for each change, the time from the apply call to the
    first connection served by an added endpoint / to the first connection after the last
    one served by a removed endpoint (a change no connection showed is reported
    unobserved, and misses the goal).
    p50 and p95, and every failed connection.  Goal: 0 failed in >= 20,000 connections over
    >= 100 changes, p95 <= 100 ms (kube-proxy's iptables mode waits at least its 1 s
    min-sync-period).
(c) programming: ``--services`` Services x 5 endpoints on 4 nodes: time from the apply
    call until every switch holds the flows, and the flow count per node.  Goal <= 5 s.
(d) spread: ``--connections`` connections to a Service with 3 endpoints; counts and the
    chi-square p-value (df = 2, so p = exp(-chi2 / 2)).

Printed, and written as JSON (raw samples included).
"""

from __future__ import annotations

import argparse
import collections
import math
import os
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ask_through_changes, environment, write  # noqa: E402
from topos.iperf import iperf  # noqa: E402

from topos.cluster import ClusterNet  # noqa: E402
from topos.datapath import settle  # noqa: E402
from k8snet.model.manifests import load_text  # noqa: E402
from k8snet.model.cluster import Service, ServicePort  # noqa: E402

SPEC = """\
apiVersion: k8snet.io/v1alpha1
kind: Cluster
metadata: {name: bench}
spec: {nodes: NODES}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: REPLICAS
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, ports: [{name: http, containerPort: 8080}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec: {nodeName: node-0}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def throughput(seconds: int, repeat: int) -> dict[str, Any]:
    cluster = load_text(SPEC.replace("NODES", "2").replace("REPLICAS", "1"))
    target = next(p for p in cluster.pods if p.name == "web-0")
    if target.node == "node-0":
        raise RuntimeError("the endpoint must be on another node than the client")
    vip = str(cluster.service("web").cluster_ip)
    runs: dict[str, list[dict[str, Any]]] = {"direct": [], "clusterip": []}
    with ClusterNet(cluster, progress=lambda m: None) as net:
        # The Service maps 80 -> 8080 on web-0; iperf3 listens on 8080 for both paths.
        for i in range(repeat):
            print(f"  throughput round {i + 1}/{repeat}", file=sys.stderr, flush=True)
            client, server = net.net["client"], net.net[target.host_name]
            for path, ip, port in (("direct", str(target.ip), 8080), ("clusterip", vip, 80)):
                result = iperf(client, server, ip, port, seconds, listen=8080)
                result.pop("doc", None)  # iperf3_end is kept; the rest would bloat the JSON
                runs[path].append(result)
    medians = {k: statistics.median([r["bits_per_second"] / 1e9 for r in v if r.get("ok")] or [float("nan")])
               for k, v in runs.items()}
    return {"runs": runs, "median_gbps": medians, "ratio": medians["clusterip"] / medians["direct"],
            "goal": 0.9}


def convergence(changes: int, gap: float = 0.5) -> dict[str, Any]:
    """A client connects back to back (0.5 s timeout each) while ``web-2`` leaves and
    returns ``changes`` times, ``gap`` seconds apart.  Per change, the time until a
    connection showed the change had taken effect: the first one the returning endpoint
    served; the first one after the last the leaving endpoint served.  A change no
    connection showed is *unobserved* (None), never 0 ms."""
    cluster = load_text(SPEC.replace("NODES", "3").replace("REPLICAS", "3"))
    vip = str(cluster.service("web").cluster_ip)
    toggled = "web-2"
    with ClusterNet(cluster, progress=lambda m: None) as net:
        for pod in cluster.pods:
            if pod.name.startswith("web"):
                net.serve(pod.host_name, 8080)
        without = cluster.with_pods(tuple(p.model_copy(update={"ready": p.name != toggled}) for p in cluster.pods))
        plan = [("removed", without) if i % 2 == 0 else ("added", cluster) for i in range(changes)]
        samples, events = ask_through_changes(net, "client", vip, 80, 0.5, plan, gap)
    served = [(r["t"], r["server"]) for r in samples if r.get("ok")]
    added: list[float | None] = []
    removed: list[float | None] = []
    for n, (state, t) in enumerate(events):
        end = events[n + 1][1] if n + 1 < len(events) else float("inf")
        window = [(ts, s) for ts, s in served if t <= ts < end]
        if state == "added":
            # the first connection the returning endpoint served
            first = [ts for ts, s in window if s == toggled]
            added.append((min(first) - t) * 1000 if first else None)
        else:
            # the first connection after the last one the leaving endpoint served (or after
            # the change): from there on the traffic had followed
            last = max([ts for ts, s in window if s == toggled], default=t)
            after = [ts for ts, s in window if ts > last and s != toggled]
            removed.append((min(after) - t) * 1000 if after else None)
    seen_add = [v for v in added if v is not None]
    seen_remove = [v for v in removed if v is not None]
    failed = [r for r in samples if not r.get("ok")]
    failed_by = collections.Counter(r.get("errno") or r.get("error") for r in failed)
    return {"changes": changes, "gap_s": gap, "connections": len(samples), "failed": len(failed),
            "failures": failed[:20], "failed_by": dict(failed_by), "add_ms": added, "remove_ms": removed,
            "add_unobserved": added.count(None), "remove_unobserved": removed.count(None),
            "add_p50_ms": percentile(seen_add, 0.5) if seen_add else None,
            "add_p95_ms": percentile(seen_add, 0.95) if seen_add else None,
            "remove_p50_ms": percentile(seen_remove, 0.5) if seen_remove else None,
            "remove_p95_ms": percentile(seen_remove, 0.95) if seen_remove else None,
            "goal": {"p95_ms": 100, "failed": 0, "min_connections": 20_000, "min_changes": 100}}


def convergence_verdict(b: dict[str, Any]) -> tuple[bool, str]:
    """Met only if everything was observed, nothing failed, enough was measured, and both
    p95s are within the goal; otherwise MISSED, with every reason."""
    goal, why = b["goal"], []
    for side in ("add", "remove"):
        p95 = b[f"{side}_p95_ms"]
        if b[f"{side}_unobserved"]:
            why.append(f"{b[f'{side}_unobserved']} {side} changes unobserved")
        if p95 is None or p95 > goal["p95_ms"]:
            why.append(f"{side} p95 {'not measured' if p95 is None else f'{p95:.0f} ms'}")
    if b["failed"] > goal["failed"]:
        by = ", ".join(f"{n} {what}" for what, n in b.get("failed_by", {}).items())
        why.append(f"{b['failed']} failed connections" + (f" ({by})" if by else ""))
    if b["connections"] < goal["min_connections"] or b["changes"] < goal["min_changes"]:
        why.append(f"only {b['connections']} connections over {b['changes']} changes (goal: >= "
                   f"{goal['min_connections']} over >= {goal['min_changes']})")
    return not why, "; ".join(why)


def programming(services: int) -> dict[str, Any]:
    cluster = load_text(SPEC.replace("NODES", "4").replace("REPLICAS", "20"))
    web = [p for p in cluster.pods if p.name.startswith("web")]
    pods = tuple(p.model_copy(update={"labels": {"app": "web", "group": str(i % 4)}}) if p in web else p
                 for i, p in enumerate(cluster.pods))
    many = tuple(Service(name=f"svc-{i}", cluster_ip=cluster.service_cidr.network_address + 1000 + i,
                         ports=(ServicePort(port=80, target_port="http"),), selector={"group": str(i % 4)})
                 for i in range(services))
    target = cluster.model_copy(update={"pods": pods, "services": many})
    per_service = {len(target.endpoints(s, s.ports[0])) for s in many[:8]}
    with ClusterNet(cluster, progress=lambda m: None) as net:
        base = {n.name: len(net.node(n.name).ovs.ofctl("dump-flows", "br-k8s").splitlines()) - 1
                for n in cluster.nodes}
        t0 = time.monotonic()
        net.apply(target, wait=120)
        elapsed = time.monotonic() - t0
        flows = {n.name: len(net.node(n.name).ovs.ofctl("dump-flows", "br-k8s").splitlines()) - 1
                 for n in cluster.nodes}
    return {"services": services, "endpoints_per_service": sorted(per_service), "nodes": 4,
            "seconds": elapsed, "flows_per_node_before": base, "flows_per_node": flows, "goal_s": 5.0}


def spread(connections: int) -> dict[str, Any]:
    cluster = load_text(SPEC.replace("NODES", "3").replace("REPLICAS", "3"))
    vip = str(cluster.service("web").cluster_ip)
    with ClusterNet(cluster, progress=lambda m: None) as net:
        for pod in cluster.pods:
            if pod.name.startswith("web"):
                net.serve(pod.host_name, 8080)
        results = net.ask("client", vip, 80, count=connections, timeout=2)
    counts: dict[str, int] = {}
    for r in results:
        if r.get("ok"):
            counts[r["server"]] = counts.get(r["server"], 0) + 1
    total = sum(counts.values())
    expected = total / 3
    chi2 = sum((counts.get(f"web-{i}", 0) - expected) ** 2 / expected for i in range(3))
    return {"connections": connections, "served": total, "counts": counts, "chi2": chi2,
            "p_value": math.exp(-chi2 / 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--changes", type=int, default=100)
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=3000)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/services.py needs root", file=sys.stderr)
        return 2
    started = datetime.now(timezone.utc)
    print("(a) throughput: ClusterIP vs direct", file=sys.stderr, flush=True)
    a = throughput(args.seconds, args.repeat)
    print(f"(b) convergence over {args.changes} endpoint changes", file=sys.stderr, flush=True)
    b = convergence(args.changes)
    print(f"(c) programming {args.services} Services x 5 endpoints on 4 nodes", file=sys.stderr, flush=True)
    c = programming(args.services)
    print(f"(d) spread over 3 endpoints, {args.connections} connections", file=sys.stderr, flush=True)
    d = spread(args.connections)
    print(f"\n(a) ClusterIP {a['median_gbps']['clusterip']:.2f} Gbit/s vs direct {a['median_gbps']['direct']:.2f}"
          f" Gbit/s: ratio {a['ratio']:.2f} (goal >= 0.9: {'met' if a['ratio'] >= 0.9 else 'MISSED'})")
    fmt = lambda v: "unobserved" if v is None else f"{v:.1f} ms"  # noqa: E731
    met, why = convergence_verdict(b)
    print(f"(b) endpoint added -> first connection served: p50 {fmt(b['add_p50_ms'])}, p95 {fmt(b['add_p95_ms'])};"
          f" removed -> traffic followed: p50 {fmt(b['remove_p50_ms'])}, p95 {fmt(b['remove_p95_ms'])}"
          f" over {b['changes']} changes ({b['add_unobserved'] + b['remove_unobserved']} unobserved);"
          f" {b['connections']} connections, {b['failed']} failed"
          f" (goal: 0 failed in >= 20,000 over >= 100 changes, p95 <= 100 ms: {'met' if met else 'MISSED: ' + why})")
    print(f"(c) {c['services']} Services x {c['endpoints_per_service']} endpoints programmed in {c['seconds']:.2f} s "
          f"(goal <= 5 s: {'met' if c['seconds'] <= 5 else 'MISSED'}); flows per node {c['flows_per_node']}")
    print(f"(d) {d['counts']} over {d['served']} connections: chi2 {d['chi2']:.2f}, p = {d['p_value']:.3f}")
    doc = {"kind": "k8snet.bench.services", "started": started.isoformat(),
           "finished": datetime.now(timezone.utc).isoformat(), "command": sys.argv,
           # Every cluster here asks for the default offload (auto), so they all resolve alike.
           "environment": environment(settle([load_text(SPEC.replace("NODES", "2").replace("REPLICAS", "1"))])[0]),
           "throughput": a, "convergence": b, "programming": c, "spread": d}
    write("services", doc, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
