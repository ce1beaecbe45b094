"""NetworkPolicy: Kubernetes' e2e model under classic policies, predicted and observed.

Workload (applied per cluster, removed at the end)::

    namespaces x, y, z (label ns: x|y|z)        pods a, b, c in each (label pod: a|b|c),
    spread over the nodes in turn               serving 80 and 81 over TCP and UDP

This is the model of sig-network's NetworkPolicy e2e suite (test/e2e/network/netpol:
``model.go`` builds namespaces x, y, z with pods a, b, c serving 80 and 81 over TCP,
UDP and SCTP; no SCTP here).  Then, on the same cluster:

* cases: each policy set of :data:`CASES` replaces the one before; every ordered pair of
  the 9 pods is probed on all four ports (a new connection or datagram each) and
  compared with :func:`k8snet.model.policy_eval.evaluate`: one ``reachable`` row per
  pair and port, its note the prediction and the deciding rule; per case, the
  ``mismatches`` on all ports, the ``apply`` time (until every switch holds the change)
  and ``enforced``: a client asking back to back (50 ms timeout) on a pair whose verdict
  the case flips, the time from the apply call to the first answer that shows it; and
  ``policy_packets``: what the probes did to the switches' policy counters, per rule
  (allowed) and per isolated pod (dropped), per node;
* three-tier: ``topos/specs/three-tier.yaml``'s app and policies applied to the same
  cluster, every declared port of every pair predicted and probed (as ``k8snet check``);
* cost: iperf3 TCP from x/a to y/b with 0, 100 and 1,000 rules each way selecting the
  pair (one of each allowing it), interleaved ``repeat`` times.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from typing import Any, Optional

from k8snet.model.apply import apply_text
from k8snet.model.cluster import Cluster
from k8snet.model.policy_gen import policy_doc, rules_for_the_pair
from k8snet.model.reach import port_pairs
from k8snet import results
from k8snet.results import Measurement, SummaryRow
from k8snet.scenario import Recorder, Scenario, Target
from topos.agent import SCRIPT as AGENT
from topos.checks import declared_servers, policy_counters
from topos.iperf import iperf
from topos.probe import probe_ports
from topos.specs import embedded_spec_text

NAMESPACES, PODS, PORTS = ("x", "y", "z"), ("a", "b", "c"), ((80, "TCP"), (81, "TCP"), (80, "UDP"), (81, "UDP"))
#: The cost arms: rules each way selecting the measured pair.
RULES = (0, 100, 1000)
IPERF_PORT = 5201


def model_yaml(nodes: list[str]) -> str:
    """The e2e model: 3 namespaces x 3 pods, placed on the nodes in turn."""
    ports = ", ".join(f"{{name: serve-{p}-{proto.lower()}, containerPort: {p}, protocol: {proto}}}"
                      for p, proto in PORTS)
    docs = [f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}, labels: {{ns: {ns}}}}}\n" for ns in NAMESPACES]
    for i, (ns, pod) in enumerate((ns, pod) for ns in NAMESPACES for pod in PODS):
        docs.append(f"apiVersion: v1\nkind: Pod\nmetadata: {{name: {pod}, namespace: {ns}, labels: {{pod: {pod}}}}}\n"
                    f"spec: {{nodeName: {nodes[i % len(nodes)]}, containers: [{{name: c, ports: [{ports}]}}]}}\n")
    return "---\n".join(docs)


def cases(cluster: Cluster) -> list[tuple[str, str, list[str], tuple[int, str]]]:
    """The classic policies, in order: (slug, what it is, documents, the port it is about).
    Named after the sig-network e2e tests they follow (network_policy.go)."""
    first_node = cluster.nodes[0]
    return [
        ("none", "no policy: everything reaches everything", [], (80, "TCP")),
        ("deny-ingress-x", "default-deny-ingress in x", [policy_doc("deny", "{podSelector: {}}", "x")], (80, "TCP")),
        ("allow-all-x", "deny, then allow-all ingress in x", [
            policy_doc("deny", "{podSelector: {}}", "x"),
            policy_doc("allow-all", "{podSelector: {}, ingress: [{}]}", "x")], (80, "TCP")),
        ("x-a-from-x", "x/a: ingress only from its own namespace", [
            policy_doc("same-ns", "{podSelector: {matchLabels: {pod: a}}, ingress: [{from: [{podSelector: {}}]}]}",
                       "x")], (80, "TCP")),
        ("x-a-from-y", "x/a: ingress only from namespace y", [
            policy_doc("from-y", "{podSelector: {matchLabels: {pod: a}}, ingress: [{from: [{namespaceSelector: "
                                 "{matchLabels: {ns: y}}}]}]}", "x")], (80, "TCP")),
        ("x-a-from-b-in-yz", "x/a: from pods b of namespaces In [y, z] (namespace AND pod selector)", [
            policy_doc("from-b", "{podSelector: {matchLabels: {pod: a}}, ingress: [{from: [{namespaceSelector: "
                                 "{matchExpressions: [{key: ns, operator: In, values: [y, z]}]}, podSelector: "
                                 "{matchLabels: {pod: b}}}]}]}", "x")], (80, "TCP")),
        ("x-a-port-81", "x/a: ingress on 81/TCP only", [
            policy_doc("port-81", "{podSelector: {matchLabels: {pod: a}}, ingress: [{ports: [{port: 81}]}]}", "x")],
         (80, "TCP")),
        ("x-a-named-port-udp", "x/a: ingress on its named port serve-80-udp only", [
            policy_doc("named", "{podSelector: {matchLabels: {pod: a}}, ingress: [{ports: [{port: serve-80-udp, "
                                "protocol: UDP}]}]}", "x")], (80, "UDP")),
        ("deny-egress-x", "default-deny-egress in x", [
            policy_doc("deny-out", "{podSelector: {}, policyTypes: [Egress]}", "x")], (80, "TCP")),
        ("x-egress-y-udp", "x: egress only to namespace y on 80/UDP", [
            policy_doc("to-y", "{podSelector: {}, policyTypes: [Egress], egress: [{to: [{namespaceSelector: "
                               "{matchLabels: {ns: y}}}], ports: [{protocol: UDP, port: 80}]}]}", "x")], (80, "UDP")),
        ("x-a-ipblock-except", f"x/a: from the pod network except {first_node.name}'s pods (ipBlock)", [
            policy_doc("cidr", f"{{podSelector: {{matchLabels: {{pod: a}}}}, ingress: [{{from: [{{ipBlock: "
                               f"{{cidr: '{cluster.pod_cidr}', except: ['{first_node.pod_cidr}']}}}}]}}]}}", "x")],
         (80, "TCP")),
    ]


def three_tier_docs(cluster: Cluster) -> str:
    """The three-tier example's documents without its Cluster, its pods on this cluster's
    first and last nodes."""
    text = embedded_spec_text("three-tier")
    docs = [d for d in text.split("\n---\n") if "kind: Cluster" not in d]
    first, last = cluster.nodes[0].name, cluster.nodes[-1].name
    return "\n---\n".join(docs).replace("nodeName: node-2", f"nodeName: {last}").replace(
        "nodeName: node-0", f"nodeName: {first}")


class Policy(Scenario):
    name = "policy"
    order = 60
    description = ("NetworkPolicy: sig-network's e2e model (x, y, z x a, b, c; 80/81 TCP/UDP) under classic policies, "
                   "expected vs observed per pair and port; the three-tier example; apply and enforcement times; "
                   "throughput with 0, 100 and 1000 rules")

    def summarize(self, measurements: list[Measurement]) -> list[SummaryRow]:
        """Per case its mismatches, apply and enforcement times; throughput per rule count
        with its ratio to no policy (same cluster, same run).  The per-pair rows are in the
        measurements and the figures, not summarised, nor are the counters."""
        rows = results.summarize([m for m in measurements if m.metric not in ("reachable", "policy_packets")])
        base = {(r.backend, r.underlay, r.access): r.median for r in rows if r.metric == "throughput" and r.path == "rules-0"}
        return [r.model_copy(update={"ratios": {"rules-0": r.median / base[(r.backend, r.underlay, r.access)]}})
                if r.metric == "throughput" and r.median and base.get((r.backend, r.underlay, r.access)) else r for r in rows]

    def steps(self, targets: list[Target]) -> int:
        return len(targets) * (2 + len(cases(targets[0].cluster)) + len(RULES) * self.options.repeat)

    def run(self, targets: list[Target], rec: Recorder) -> None:
        for target in targets:
            before = target.cluster
            rec.step(f"{target.label}: the e2e model (9 pods)")
            model = target.apply(model_yaml([n.name for n in before.nodes]))
            hosts = {p.host_name for p in model.pods if p.namespace in NAMESPACES}
            try:
                with declared_servers(target.net, only=hosts):
                    previous = model
                    for slug, what, docs, stated in cases(model):
                        rec.step(f"{target.label}: {what}")
                        previous = self.case(target, rec, model, previous, slug, what, docs, stated, hosts)
                rec.step(f"{target.label}: the three-tier example")
                self.three_tier(target, rec, model)
                for i in range(self.options.repeat):
                    for rules in RULES:
                        rec.step(f"{target.label}: throughput with {rules} rules, round {i + 1}")
                        self.cost(target, rec, model, rules, i)
            finally:
                target.net.apply(before)

    # ------------------------------------------------------------------ cases
    @staticmethod
    def with_policies(model: Cluster, docs: list[str]) -> Cluster:
        return apply_text(model, "---\n".join(docs)) if docs else model

    def case(self, target: Target, rec: Recorder, model: Cluster, previous: Cluster, slug: str, what: str,
             docs: list[str], stated: tuple[int, str], hosts: set[str]) -> Cluster:
        cluster = self.with_policies(model, docs)
        port, proto = stated
        was = {p.id: p.predicted for p in port_pairs(previous) if (p.port, p.protocol) == stated}
        flip = next((p for p in port_pairs(cluster) if {p.pair.src, p.pair.dst} <= hosts and (p.port, p.protocol)
                     == stated and p.predicted != was[p.id]), None)
        asker = self.ask_back_to_back(target, flip.pair.src, flip.pair.dst_ip, port, proto) if flip else None
        t_apply = time.time()
        try:
            target.net.apply(cluster)
        except BaseException:
            if asker is not None:
                asker.kill()
                asker.wait(timeout=10)
            raise
        applied_ms = (time.time() - t_apply) * 1000
        where = dict(src="-", dst="-", protocol=f"{proto.lower()}:{port}")
        rec.add(target, slug, "apply", "ms", **where, value=applied_ms, note=what)
        if asker is not None and flip is not None:
            delay, samples = self.shown_after(asker, t_apply, flip.predicted)
            rec.add(target, slug, "enforced", "ms", src=flip.pair.src, dst=flip.pair.dst,
                    protocol=where["protocol"], value=delay,
                    error=None if delay is not None else "no connection showed the change",
                    note=f"{'allowed' if flip.predicted else 'denied'} by the change", raw=samples)
        counted_before = self.counters(target)
        results = probe_ports(target.net.net, target.cluster, only=hosts)
        self.record_counters(target, rec, slug, counted_before, self.counters(target))
        wrong = 0
        for r in results:
            p = r.probe
            wrong += not r.as_predicted
            rec.add(target, slug, "reachable", "bool", src=p.pair.src, dst=p.pair.dst,
                    protocol=f"{p.protocol.lower()}:{p.port}", value=float(r.reachable),
                    note=("predicted reachable" if p.predicted else f"predicted unreachable: {p.reason}")
                    + ("; stated" if (p.port, p.protocol) == stated else ""))
        rec.add(target, slug, "mismatches", "pairs", **where, value=float(wrong),
                note=f"{what}; {len(results)} probes on 4 ports; documents: {json.dumps(docs)}")
        return cluster

    @staticmethod
    def counters(target: Target) -> dict[tuple[str, ...], dict[str, Any]]:
        """The switches' policy counters (:func:`topos.checks.policy_counters`), by what they count."""
        return {(r["node"], r.get("policy") or r.get("pod", ""), r["direction"], str(r.get("rule", "")),
                 r["verdict"]): r for r in policy_counters(target.net)}

    @staticmethod
    def record_counters(target: Target, rec: Recorder, slug: str, before: dict, after: dict) -> None:
        """What the case's probes did to each rule and each isolated pod's drop flow: packets
        a rule allowed (one per new connection: only first packets are judged) and packets
        the policies refused, per node, as the switches counted them."""
        for key, row in after.items():
            packets = row["packets"] - before.get(key, {}).get("packets", 0)
            if packets <= 0:
                continue
            node, who, direction, rule, verdict = key
            what = f"{who} {direction}[{rule}]" if rule else f"{who} {direction}"
            rec.add(target, slug, "policy_packets", "packets", src=what, dst=node, protocol="-", value=float(packets),
                    note=verdict)

    @staticmethod
    def ask_back_to_back(target: Target, src: str, ip: str, port: int, proto: str) -> Any:
        proc = target.net.net[src].popen(["/usr/bin/python3", AGENT, "ask", "--ip", ip, "--port", str(port),
                                          "--proto", proto.lower(), "--duration", "30", "--timeout", "0.05"],
                                         stdout=subprocess.PIPE, text=True)
        time.sleep(0.3)
        return proc

    @staticmethod
    def shown_after(proc: Any, t_apply: float, want: bool) -> tuple[Optional[float], list[dict]]:
        """Stop the asking client 0.5 s after the apply; the delay until the first answer
        (``want``) or refusal that shows the change."""
        time.sleep(max(0.0, t_apply + 0.5 - time.time()))
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        samples = json.loads(out or "[]")
        shown = next((s for s in samples if s["t"] >= t_apply and bool(s.get("ok")) == want), None)
        return ((shown["t"] - t_apply) * 1000 if shown else None), samples

    # ------------------------------------------------------------------ three-tier
    def three_tier(self, target: Target, rec: Recorder, model: Cluster) -> None:
        cluster = apply_text(model, three_tier_docs(model))
        target.net.apply(cluster)
        app = {p.host_name for p in cluster.pods if p.namespace == "shop" or p.name in ("client", "kube-dns")}
        hosts = app | {n.name for n in cluster.nodes}
        try:
            with declared_servers(target.net, only=app):
                results = probe_ports(target.net.net, target.cluster, only=hosts)
        finally:
            target.net.apply(model)
        for r in results:
            p = r.probe
            rec.add(target, "three-tier", "reachable", "bool", src=p.pair.src, dst=p.pair.dst,
                    protocol=f"{p.protocol.lower()}:{p.port}", value=float(r.reachable),
                    note="predicted reachable" if p.predicted else f"predicted unreachable: {p.reason}")
        rec.add(target, "three-tier", "mismatches", "pairs", src="-", dst="-", protocol="-",
                value=float(sum(not r.as_predicted for r in results)),
                note=f"topos/specs/three-tier.yaml; {len(results)} probes on declared ports")

    # ------------------------------------------------------------------ cost
    def cost(self, target: Target, rec: Recorder, model: Cluster, rules: int, repeat: int) -> None:
        client, server = model.pod("a", "x"), model.pod("b", "y")
        docs = [rules_for_the_pair(rules, ("x", {"pod": "a"}), ("y", {"pod": "b"}), IPERF_PORT)] if rules else []
        target.net.apply(self.with_policies(model, docs), wait=120)
        net = target.net.net
        result = iperf(net[client.host_name], net[server.host_name], str(server.ip), IPERF_PORT,
                       self.options.seconds)
        result.pop("doc", None)
        path = "same-node" if client.node == server.node else "cross-node"
        rec.add(target, f"rules-{rules}", "throughput", "Gbit/s", src=client.host_name, dst=server.host_name,
                protocol="tcp", streams=1, repeat=repeat,
                value=result["bits_per_second"] / 1e9 if result.get("ok") else None,
                error=None if result.get("ok") else result.get("error", "iperf3 failed"),
                note=f"{path}; {rules} rules each way selecting the pair"
                + (f"; the first run hung and was retried: {result['retried']}" if result.get("retried") else ""),
                raw=result)
