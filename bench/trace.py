"""``k8snet trace`` benchmark: how long a predicted and an observed trace take on a running
cluster.

    .venv/bin/python bench/trace.py [--repeat 20] [--out FILE]

On the ``racks`` example (4 nodes on 2 racks behind L3 gateways, VXLAN) with a Service,
each of these questions is asked ``--repeat`` times, predicted only and observed:

* ``web-0 -> web-2``: across both gateways and the core, encapsulated: 3 switch traces
  (the sender's, the receiver's twice: decapsulation, then the inner packet), 3 kernel
  routing lookups;
* ``web-0 -> svc/web`` (TCP): the Service pick, DNAT, and the endpoint's node;
* ``external -> node-1:30080`` (TCP): NodePort from outside, DNAT + SNAT.

Goals: a predicted trace across 3 nodes and a Service in <= 1 s; an observed one
(captures started and stopped on every interface of the path) in <= 3 s.  p50 and p95 per
question, printed and written as JSON with every sample.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import environment, write  # noqa: E402
from k8snet.model.manifests import load_text  # noqa: E402
from topos.cluster import ClusterNet  # noqa: E402
from topos.datapath import settle  # noqa: E402
from topos.specs import embedded_spec_text  # noqa: E402
from topos.trace import trace  # noqa: E402

SERVICE = """
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 80, nodePort: 30080}]
"""
QUESTIONS = (("web-0", "web-2", "icmp"), ("web-0", "svc/web", "tcp"), ("external", "node-1:30080", "tcp"))


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--out")
    args = parser.parse_args()
    started = datetime.now(timezone.utc)
    text = embedded_spec_text("racks") + SERVICE
    cluster = settle([load_text(text)])[0]
    rows: list[dict[str, Any]] = []
    with ClusterNet(cluster, progress=lambda m: None) as net:
        for src, dst, proto in QUESTIONS:
            for observe in (False, True):
                samples, verdicts, agree = [], set(), []
                for _ in range(args.repeat):
                    t0 = time.monotonic()
                    result = trace(net, src, dst, proto, observe=observe)
                    samples.append(time.monotonic() - t0)
                    verdicts.add(result.verdict)
                    agree.append(result.agrees)
                rows.append({"question": f"{proto} {src} -> {dst}", "observed": observe, "hops": len(result.hops),
                             "switch_traces": sum(h.role == "switch" for h in result.hops),
                             "verdicts": sorted(verdicts), "agreed": agree.count(True) if observe else None,
                             "p50_s": statistics.median(samples), "p95_s": p95(samples), "samples_s": samples,
                             "goal_s": 3.0 if observe else 1.0})
                print(f"  {rows[-1]['question']:<40} {'observed ' if observe else 'predicted'} "
                      f"p50 {rows[-1]['p50_s']:.3f} s p95 {rows[-1]['p95_s']:.3f} s", file=sys.stderr)
    doc = {"kind": "k8snet.bench.trace", "started": started.isoformat(),
           "finished": datetime.now(timezone.utc).isoformat(), "command": sys.argv,
           "environment": environment(cluster), "repeat": args.repeat, "traces": rows}
    print()
    for row in rows:
        met = "met" if row["p95_s"] <= row["goal_s"] else "MISSED"
        extra = f", captures agreed {row['agreed']}/{args.repeat}" if row["observed"] else ""
        print(f"{row['question']:<40} {'observed ' if row['observed'] else 'predicted'} {row['hops']:>2} hops "
              f"({row['switch_traces']} switch traces): p50 {row['p50_s']:.3f} s, p95 {row['p95_s']:.3f} s "
              f"(goal <= {row['goal_s']:g} s: {met}){extra}; {', '.join(row['verdicts'])}")
    write("trace", doc, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
