"""NetworkPolicy benchmark: what policies cost a connection's throughput, how fast many
are programmed, and how soon a change is enforced.

    .venv/bin/python bench/policy.py [--seconds 3] [--repeat 3] [--rules 1000]
                                     [--policies 1000] [--changes 50] [--out FILE]

(a) throughput: iperf3 TCP from a client pod to a server pod on another node, with no
    policy, with one rule each way allowing the pair, and with ``--rules`` ingress rules
    (one policy each) selecting the server plus as many egress rules selecting the
    client, one of each allowing the pair; interleaved in every round, same run; the
    ratios.  Goal (rules / none) >= 0.9.  Only a connection's first packet is judged, so
    the rules cost its set-up, not its bytes; any policy brings conntrack on every packet
    (rules / one rule separates the two).
(b) programming: ``--policies`` policies on 4 nodes x 16 pods (each selecting the pods
    of one group, allowing another group on one port): time from the apply call until
    every switch holds the flows, and the flow count per node.  Goal <= 5 s.
(c) enforcement: a client opens connections back to back (50 ms timeout each) while a
    deny-all on the server's namespace is applied and removed ``--changes`` times; per
    change the time from the apply call to the first connection that shows it (the first
    refused after a deny, the first answered after the allow).  p50 and p95; a change no
    connection showed is unobserved, and a later connection that shows the old state again
    is a flap; both miss the goal.  Goal p95 <= 100 ms.

Printed, and written as JSON (raw samples included).
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

from bench.common import ask_through_changes, environment, write  # noqa: E402
from k8snet.model.apply import apply_text  # noqa: E402
from k8snet.model.manifests import load_text  # noqa: E402
from k8snet.model.policy_gen import policy_doc, rules_for_the_pair as rules_for_pair  # noqa: E402
from topos.cluster import ClusterNet  # noqa: E402
from topos.datapath import settle  # noqa: E402
from topos.iperf import iperf  # noqa: E402

SPEC = """\
apiVersion: k8snet.io/v1alpha1
kind: Cluster
metadata: {name: bench-policy}
spec: {nodes: NODES}
---
apiVersion: v1
kind: Namespace
metadata: {name: bench, labels: {team: bench}}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: bench, labels: {app: client}}
spec: {nodeName: node-0}
---
apiVersion: v1
kind: Pod
metadata: {name: server, namespace: bench, labels: {app: server}}
spec: {nodeName: node-1, containers: [{name: s, ports: [{name: iperf, containerPort: 5201}]}]}
"""


def policy(name: str, body: str, namespace: str = "bench") -> str:
    return policy_doc(name, body, namespace)


def rules_for_the_pair(count: int) -> str:
    """``count`` ingress policies on the server and as many egress ones on the client; the
    last of each allows the pair (:func:`k8snet.model.policy_gen.rules_for_the_pair`)."""
    return rules_for_pair(count, ("bench", {"app": "client"}), ("bench", {"app": "server"}), 5201)


def throughput(seconds: int, repeat: int, rules: int) -> dict[str, Any]:
    base = load_text(SPEC.replace("NODES", "2"))
    with_rules = apply_text(base, rules_for_the_pair(rules))
    one_rule = apply_text(base, rules_for_the_pair(1))
    server = base.pod("server", "bench")
    runs: dict[str, list[dict[str, Any]]] = {"none": [], "one": [], "rules": []}
    with ClusterNet(base, progress=lambda m: None) as net:
        client_host, server_host = net.net[base.pod("client", "bench").host_name], net.net[server.host_name]
        for i in range(repeat):
            for label, cluster in (("none", base), ("one", one_rule), ("rules", with_rules)):
                print(f"  throughput round {i + 1}/{repeat}: {label}", file=sys.stderr, flush=True)
                net.apply(cluster, wait=120)
                result = iperf(client_host, server_host, str(server.ip), 5201, seconds)
                result.pop("doc", None)
                runs[label].append(result)
    medians = {k: statistics.median([r["bits_per_second"] / 1e9 for r in v if r.get("ok")] or [float("nan")])
               for k, v in runs.items()}
    rounds = lambda num, den: [b["bits_per_second"] / a["bits_per_second"] for a, b in zip(runs[den], runs[num])
                               if a.get("ok") and b.get("ok")]
    # "rules / none" is what a user pays; "rules / one" separates the number of rules from
    # what any policy brings along (conntrack on every packet, which "none" does without).
    return {"rules_per_direction": rules, "runs": runs, "median_gbps": medians,
            "ratio": medians["rules"] / medians["none"], "ratio_rounds": rounds("rules", "none"),
            "ratio_to_one_rule": medians["rules"] / medians["one"], "ratio_to_one_rule_rounds": rounds("rules", "one"),
            "goal": 0.9}


def programming(policies: int) -> dict[str, Any]:
    text = SPEC.replace("NODES", "4") + "".join(
        f"---\napiVersion: v1\nkind: Pod\nmetadata: {{name: p{i}, namespace: bench, labels: {{group: g{i % 16}}}}}\n"
        f"spec: {{nodeName: node-{i % 4}}}\n" for i in range(64 - 2))
    base = load_text(text)
    docs = "---\n".join(policy(f"p{i}", f"{{podSelector: {{matchLabels: {{group: g{i % 16}}}}}, ingress: [{{from: "
                                       f"[{{podSelector: {{matchLabels: {{group: g{(i + 1) % 16}}}}}}}], ports: "
                                       f"[{{port: {1000 + i}}}]}}]}}") for i in range(policies))
    target = apply_text(base, docs)
    with ClusterNet(base, progress=lambda m: None) as net:
        count = lambda: {n.name: len(net.node(n.name).ovs.ofctl("dump-flows", "br-k8s").splitlines()) - 1
                         for n in base.nodes}
        before = count()
        t0 = time.monotonic()
        net.apply(target, wait=300)
        elapsed = time.monotonic() - t0
        after = count()
    return {"policies": policies, "nodes": 4, "pods": len(base.pods), "seconds": elapsed,
            "flows_per_node_before": before, "flows_per_node": after, "goal_s": 5.0}


def enforcement(changes: int, gap: float = 0.5) -> dict[str, Any]:
    base = load_text(SPEC.replace("NODES", "2"))
    denied = apply_text(base, policy("deny-all", "{podSelector: {}}"))
    server = base.pod("server", "bench")
    with ClusterNet(base, progress=lambda m: None) as net:
        net.serve(server.host_name, 8080)
        plan = [("deny", denied) if i % 2 == 0 else ("allow", base) for i in range(changes)]
        samples, events = ask_through_changes(net, base.pod("client", "bench").host_name, str(server.ip), 8080,
                                              0.05, plan, gap)
    delays: dict[str, list[float | None]] = {"deny": [], "allow": []}
    flaps: dict[str, list[dict[str, Any]]] = {"deny": [], "allow": []}
    for n, (state, t) in enumerate(events):
        end = events[n + 1][1] if n + 1 < len(events) else float("inf")
        window = [r for r in samples if t <= r["t"] < end]
        # The first connection that shows the change: refused after a deny, answered after
        # an allow.  Any later one that shows the old state is a flap, reported with it.
        want = state == "allow"
        shown = next((k for k, r in enumerate(window) if bool(r.get("ok")) == want), None)
        delays[state].append((window[shown]["t"] - t) * 1000 if shown is not None else None)
        if shown is not None:
            flaps[state] += [{"change": n, "after_ms": (r["t"] - t) * 1000, "sample": r}
                             for r in window[shown + 1:] if bool(r.get("ok")) != want]
    out_doc: dict[str, Any] = {"changes": changes, "gap_s": gap, "connections": len(samples),
                               "events": [{"state": st, "t": t} for st, t in events],
                               "delays_ms": delays, "flaps": flaps, "samples": samples,
                               "goal": {"p95_ms": 100, "flaps": 0}}
    for state, values in delays.items():
        seen = sorted(v for v in values if v is not None)
        out_doc[f"{state}_unobserved"] = len(values) - len(seen)
        out_doc[f"{state}_flaps"] = len(flaps[state])
        out_doc[f"{state}_p50_ms"] = statistics.median(seen) if seen else None
        out_doc[f"{state}_p95_ms"] = seen[min(len(seen) - 1, int(0.95 * len(seen)))] if seen else None
    return out_doc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rules", type=int, default=1000)
    parser.add_argument("--policies", type=int, default=1000)
    parser.add_argument("--changes", type=int, default=50)
    parser.add_argument("--out")
    args = parser.parse_args()
    started = datetime.now(timezone.utc)
    cluster = settle([load_text(SPEC.replace("NODES", "2"))])[0]
    print("(a) throughput with and without policy rules", file=sys.stderr)
    tp = throughput(args.seconds, args.repeat, args.rules)
    print("(b) programming", file=sys.stderr)
    prog = programming(args.policies)
    print("(c) enforcement after a change", file=sys.stderr)
    enf = enforcement(args.changes)
    doc = {"kind": "k8snet.bench.policy", "started": started.isoformat(),
           "finished": datetime.now(timezone.utc).isoformat(), "command": sys.argv,
           "environment": environment(cluster), "throughput": tp, "programming": prog, "enforcement": enf}
    verdict = lambda ok: "met" if ok else "MISSED"
    print(f"\nthroughput, {args.rules} rules each way vs none: {tp['median_gbps']['rules']:.2f} vs "
          f"{tp['median_gbps']['none']:.2f} Gbit/s = {tp['ratio']:.2f} (rounds: "
          f"{', '.join(f'{r:.2f}' for r in tp['ratio_rounds'])}; n={len(tp['ratio_rounds'])}; goal >= 0.9: "
          f"{verdict(tp['ratio'] >= 0.9)}); vs one rule: {tp['ratio_to_one_rule']:.2f} (rounds: "
          f"{', '.join(f'{r:.2f}' for r in tp['ratio_to_one_rule_rounds'])})")
    flows = ", ".join(f"{k} {v}" for k, v in prog["flows_per_node"].items())
    print(f"programming {prog['policies']} policies on 4 nodes x {prog['pods']} pods: {prog['seconds']:.2f} s "
          f"(goal <= 5 s: {verdict(prog['seconds'] <= 5)}); flows per node: {flows}")
    for state in ("deny", "allow"):
        p50, p95, missing = enf[f"{state}_p50_ms"], enf[f"{state}_p95_ms"], enf[f"{state}_unobserved"]
        flapped = enf[f"{state}_flaps"]
        fmt = lambda v: "not measured" if v is None else f"{v:.0f} ms"
        print(f"{state} -> enforced: p50 {fmt(p50)}, p95 {fmt(p95)}, {missing} unobserved, {flapped} later "
              f"connections showing the old state (goal p95 <= 100 ms, none unobserved, no flap: "
              f"{verdict(p95 is not None and p95 <= 100 and not missing and not flapped)})")
    write("policy", doc, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
