"""Service load balancing: spread over endpoints, ClientIP affinity, and a churn timeline.

Workload (applied per cluster)::

    Deployment echo (3 replicas, spread over the nodes)   Pod echo-client (first node)
    Service echo         ClusterIP, port 80 -> 8080
    Service echo-sticky  ClusterIP, sessionAffinity ClientIP (timeoutSeconds 30)

* spread: ``connections`` new connections to ``echo``; how many each endpoint served,
  and the chi-square p-value against an even spread (df = k - 1);
* affinity: the same count to ``echo-sticky``: one endpoint should serve them all;
* convergence: the client connects back to back for the whole churn while ``echo-2``
  is marked not ready and ready again ``churn`` times (``kubectl apply`` of its
  readiness); each row of the timeline is one connection and who served it, and each
  change gets the time until the traffic followed (first connection served by an
  added endpoint, last one served by a removed endpoint).
"""

from __future__ import annotations

import json
import math
import subprocess
import time

from k8snet.scenario import Recorder, Scenario, Target
from topos.agent import SCRIPT as AGENT

ECHO_YAML = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: echo}
spec:
  replicas: 3
  selector: {matchLabels: {app: echo}}
  template:
    metadata: {labels: {app: echo}}
    spec: {containers: [{name: echo, ports: [{name: http, containerPort: 8080}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: echo-client}
spec: {nodeName: NODE}
---
apiVersion: v1
kind: Service
metadata: {name: echo}
spec:
  selector: {app: echo}
  ports: [{port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: echo-sticky}
spec:
  selector: {app: echo}
  sessionAffinity: ClientIP
  sessionAffinityConfig: {clientIP: {timeoutSeconds: 30}}
  ports: [{port: 80, targetPort: http}]
"""

READY = """\
apiVersion: v1
kind: Pod
metadata:
  name: echo-2
  annotations: {k8snet.io/ready: "READY"}
"""

ENDPOINTS = ("echo-0", "echo-1", "echo-2")


def chi2_p(counts: list[int]) -> float:
    """Upper tail of chi-square for an even spread (df = k - 1), exact for even df and by
    the Wilson-Hilferty approximation otherwise (no SciPy needed)."""
    total, k = sum(counts), len(counts)
    if total == 0 or k < 2:
        return float("nan")
    expected = total / k
    chi2 = sum((c - expected) ** 2 / expected for c in counts)
    df = k - 1
    if df % 2 == 0:
        term, s = 1.0, 1.0
        for i in range(1, df // 2):
            term *= chi2 / (2 * i)
            s += term
        return math.exp(-chi2 / 2) * s
    z = ((chi2 / df) ** (1 / 3) - (1 - 2 / (9 * df))) / math.sqrt(2 / (9 * df))
    return 0.5 * math.erfc(z / math.sqrt(2))


class Services(Scenario):
    name = "services"
    order = 40
    description = ("ClusterIP load balancing: how evenly new connections spread over 3 endpoints, ClientIP "
                   "affinity, and a timeline of connections while an endpoint leaves and returns")

    def steps(self, targets: list[Target]) -> int:
        return 3 * len(targets)

    def run(self, targets: list[Target], rec: Recorder) -> None:
        for target in targets:
            cluster = target.apply(ECHO_YAML.replace("NODE", target.cluster.nodes[0].name))
            for name in ENDPOINTS:
                target.net.serve(cluster.pod(name).host_name, 8080)
            self.spread(target, rec, "spread", "echo")
            self.spread(target, rec, "affinity", "echo-sticky")
            self.churn(target, rec)

    def spread(self, target: Target, rec: Recorder, path: str, service: str) -> None:
        rec.step(f"{target.label}: {self.options.connections} connections to {service}")
        vip = str(target.cluster.service(service).cluster_ip)
        answers = target.net.ask("echo-client", vip, 80, count=self.options.connections, timeout=2)
        counts = {name: 0 for name in ENDPOINTS}
        failed = [a for a in answers if not a.get("ok")]
        for a in answers:
            if a.get("ok"):
                counts[a["server"]] = counts.get(a["server"], 0) + 1
        where = dict(src="echo-client", protocol="tcp")
        for name, count in counts.items():
            rec.add(target, path, "connections", "count", dst=name, **where, value=count,
                    note=f"of {len(answers)} connections to svc/{service}")
        if failed:
            rec.add(target, path, "connections", "count", dst=f"svc/{service}", **where,
                    error=f"{len(failed)} of {len(answers)} connections failed: "
                          f"{sorted({a.get('error') for a in failed})}")
        rec.add(target, path, "chi2_p", "p", dst=f"svc/{service}", **where, value=chi2_p(list(counts.values())),
                note="chi-square p-value against an even spread")
        rec.add(target, path, "endpoints_used", "count", dst=f"svc/{service}", **where,
                value=sum(1 for c in counts.values() if c))

    def churn(self, target: Target, rec: Recorder) -> None:
        changes = self.options.churn
        rec.step(f"{target.label}: {changes} endpoint changes under load")
        base = target.cluster
        vip = str(base.service("echo").cluster_ip)
        pause = 0.5
        duration = 1.0 + changes * pause + 1.0
        asker = target.net.net["echo-client"].popen(
            ["/usr/bin/python3", AGENT, "ask", "--ip", vip, "--port", "80", "--duration", str(duration),
             "--timeout", "0.5"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        events = []
        try:
            time.sleep(1.0)
            for i in range(changes):
                state = "removed" if i % 2 == 0 else "added"
                t = time.time()
                target.apply(READY.replace("READY", "false" if state == "removed" else "true"))
                events.append((state, t, time.time()))
                time.sleep(pause)
            if len(events) % 2:  # leave echo-2 ready, as the workload says
                target.apply(READY.replace("READY", "true"))
            out, err = asker.communicate(timeout=duration + 30)
        finally:
            if asker.poll() is None:
                asker.kill()
                asker.wait()
        t_base = time.time() - rec.now()  # wall clock of the scenario's t = 0
        where = dict(src="echo-client", protocol="tcp")
        try:
            samples = json.loads(out)
        except ValueError:
            rec.add(target, "churn", "served_by", "index", dst="svc/echo", **where,
                    error=f"the client printed no results: {err.strip()[-300:]}")
            return
        for i, s in enumerate(samples):
            t = round(s["t"] - t_base, 4)
            if s.get("ok"):
                rec.add(target, "churn", "served_by", "index", dst=s["server"], **where, repeat=i, t=t,
                        value=ENDPOINTS.index(s["server"]) if s["server"] in ENDPOINTS else -1,
                        note=f"{s['ms']} ms")
            else:
                rec.add(target, "churn", "served_by", "index", dst="svc/echo", **where, repeat=i, t=t,
                        error=f"connection failed: {s.get('error')}")
        served = [(s["t"], s["server"]) for s in samples if s.get("ok")]
        for n, (state, t, applied) in enumerate(events):
            rec.add(target, f"endpoint-{state}", "event", "s", dst="echo-2", **where, repeat=n,
                    value=round(t - t_base, 4), t=round(t - t_base, 4),
                    note=f"kubectl apply took {(applied - t) * 1000:.0f} ms")
            end = events[n + 1][1] if n + 1 < len(events) else float("inf")
            window = [(ts, s) for ts, s in served if t <= ts < end]
            hits = [ts for ts, s in window if s == "echo-2"]
            if state == "added":
                if hits:
                    rec.add(target, "endpoint-added", "convergence", "ms", dst="echo-2", **where, repeat=n,
                            value=(min(hits) - t) * 1000, note="apply -> first connection served by echo-2")
                else:
                    rec.add(target, "endpoint-added", "convergence", "ms", dst="echo-2", **where, repeat=n,
                            error="echo-2 served no connection before the next change")
            else:
                rec.add(target, "endpoint-removed", "convergence", "ms", dst="echo-2", **where, repeat=n,
                        value=((max(hits) - t) * 1000) if hits else 0.0,
                        note="apply -> last connection served by echo-2 (0: none after the apply)")
