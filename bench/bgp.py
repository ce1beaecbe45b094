"""BGP benchmark: how fast the fabric of ``backend: bgp`` converges, at start and after a flap.

    .venv/bin/python bench/bgp.py [--repeat 5] [--out FILE]

On the ``racks`` spec (2 racks x 2 nodes, BIRD on every node, both rack gateways and the
core; topos/bird.py gives the lab timers: hold 3 s, keepalive 1 s, connect delay and retry
1 s, error wait 1-2 s), each ``--repeat`` times, a fresh cluster:

(a) start: from the first BIRD's start to every node holding a route to every other node's
    pod CIDR and every switch holding the flows that follow (``Fabric.converged_s``);
(b) a session flap, gw-rack-0 <-> core disabled at the gateway (``birdc disable``): the time
    until every node has lost the other rack's prefixes (withdrawn), then, enabled again,
    until the fabric has converged back;
(c) a node's session flap, node-0 <-> gw-rack-0, the same two times;
(d) a router failure, gw-rack-1 dropping everything (nftables, as ``k8snet fault router``):
    the time until rack-1's prefixes are withdrawn elsewhere (the hold timer's 3 s), then,
    restored, until converged back.

Goal: converged within 3 s at start and after every flap.  p50 and max per measurement,
printed and written as JSON with every sample.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import environment, write  # noqa: E402
from k8snet.model.manifests import Overrides, load_text  # noqa: E402
from topos.bgp import expected_routes  # noqa: E402
from topos.cluster import ClusterNet  # noqa: E402
from topos.datapath import settle  # noqa: E402
from topos.specs import embedded_spec_text  # noqa: E402

GOAL_S = 3.0


def until(predicate: Callable[[], bool], timeout: float = 30.0) -> float:
    t0 = time.monotonic()
    while not predicate():
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"not within {timeout:g}s")
        time.sleep(0.01)
    return time.monotonic() - t0


def since(action: Callable[[], None], predicate: Callable[[], bool], timeout: float = 30.0) -> float:
    """Seconds from the start of ``action`` until ``predicate`` holds."""
    t0 = time.monotonic()
    action()
    until(predicate, timeout)
    return time.monotonic() - t0


def one_round(cluster: Any) -> dict[str, float]:
    out: dict[str, float] = {}
    with ClusterNet(cluster, progress=lambda m: None) as net:
        assert net.bgp.converged_s is not None
        out["start"] = net.bgp.converged_s
        want = expected_routes(net.cluster)

        def converged() -> bool:
            return net.cluster.bgp_routes == want

        def lost(prefixes: set[str], on: set[str]) -> Callable[[], bool]:
            return lambda: not any(str(r.prefix) in prefixes and r.node in on for r in net.cluster.bgp_routes or ())

        rack = {n.name: n.rack for n in net.cluster.nodes}
        rack1 = {str(n.pod_cidr) for n in net.cluster.nodes if n.rack == "rack-1"}
        rack0_nodes = {n for n, r in rack.items() if r == "rack-0"}
        for name, (speaker, peer), gone, where in (
                ("gateway-core session", ("gw-rack-0", "core"), rack1, rack0_nodes),
                ("node session", ("gw-rack-0", "node-0"), {str(net.cluster.node("node-0").pod_cidr)},
                 set(rack) - {"node-0"})):
            out[f"{name} withdrawn"] = since(lambda: net.bgp.set_session(speaker, peer, up=False), lost(gone, where))
            out[f"{name} back"] = since(lambda: net.bgp.set_session(speaker, peer, up=True), converged)
        out["router failure withdrawn"] = since(lambda: net.faults.router("gw-rack-1", False), lost(rack1, rack0_nodes))
        out["router failure back"] = since(lambda: net.faults.router("gw-rack-1", True), converged)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.repeat < 1:
        print("--repeat must be at least 1", file=sys.stderr)
        return 2
    started = datetime.now(timezone.utc)
    cluster = settle([load_text(embedded_spec_text("racks"), Overrides(backend="bgp"))])[0]
    samples: dict[str, list[float]] = {}
    for i in range(args.repeat):
        print(f"round {i + 1}/{args.repeat} ...", file=sys.stderr, flush=True)
        for key, value in one_round(cluster).items():
            samples.setdefault(key, []).append(round(value, 3))
    rows = {k: {"p50_s": statistics.median(v), "max_s": max(v), "samples_s": v} for k, v in samples.items()}
    print(f"\n{'measurement':<32} {'p50 s':>7} {'max s':>7}  goal")
    for key, row in rows.items():
        goal = "" if "withdrawn" in key else \
            f"<= {GOAL_S:g} s {'met' if row['max_s'] <= GOAL_S else 'MISSED'}"
        print(f"{key:<32} {row['p50_s']:>7.2f} {row['max_s']:>7.2f}  {goal}")
    doc = {"kind": "k8snet.bench.bgp", "started": started.isoformat(),
           "finished": datetime.now(timezone.utc).isoformat(), "command": sys.argv,
           "environment": environment(cluster), "repeat": args.repeat,
           "timers": "hold 3 s, keepalive 1 s, connect delay 1 s, connect retry 1 s, error wait 1-2 s",
           "goal_s": GOAL_S, "measurements": rows}
    write("bgp", doc, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
