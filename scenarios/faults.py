"""Traffic while things break: what failed, for how long, and what Kubernetes did about it.

Workload (applied per cluster)::

    Deployment fecho, one replica per node    TCP 8080 and UDP 8081 (the agent's echo)
    Pod fclient-NODE on every node
    Service fecho, type LoadBalancer          80/TCP -> 8080, 81/UDP -> 8081 (ClusterIP,
                                              NodePort and the load balancer's VIP)

While a schedule of faults plays (``--schedule FILE``, k8snet/model/schedule.py; by
default every kind once, :func:`k8snet.model.schedule.default_schedule`):

* every client pod connects back to back (TCP) and sends datagrams (UDP) to the ClusterIP;
* the external host does the same to the first node's NodePort and to the LoadBalancer VIP;
* the client on the first node pings the client on every other node (across racks too).

Recorded: per path and 100 ms bin, how many attempts were ``served`` and ``failed``
(the timeline); per fault and path the ``outage`` (the longest run of failed attempts,
first failure to first success after it, ms), ``recovered_after`` (the fault's start to
the end of the last failure before the next fault, ms) and ``failed_attempts``; each
fault as it was done (``fault``: its start, s from the traffic's start; how long the
action took); and each node's NotReady/Ready change (``node_ready``).
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any, Optional

from k8snet import results
from k8snet.model.schedule import ScheduledFault, ScheduleError, default_schedule, parse_schedule
from k8snet.results import Measurement, SummaryRow
from k8snet.scenario import Recorder, Scenario, Target
from topos.agent import SCRIPT as AGENT
from topos.faults import perform

BIN = 0.1
#: Seconds of traffic after the last action, for the recovery to show.
TAIL = 3.0
ASK_TIMEOUT, ASK_INTERVAL, PING_INTERVAL = 0.5, 0.02, 0.05

WORKLOAD = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: fecho}
spec:
  replicas: REPLICAS
  selector: {matchLabels: {app: fecho}}
  template:
    metadata: {labels: {app: fecho}}
    spec: {containers: [{name: echo, ports: [{name: tcp, containerPort: 8080},
                                             {name: udp, containerPort: 8081, protocol: UDP}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: fecho}
spec:
  type: LoadBalancer
  selector: {app: fecho}
  ports: [{name: tcp, port: 80, targetPort: tcp}, {name: udp, port: 81, targetPort: udp, protocol: UDP}]
"""
CLIENT = "---\napiVersion: v1\nkind: Pod\nmetadata: {name: fclient-NODE}\nspec: {nodeName: NODE}\n"


def schedule_for(options: Any, cluster: Any) -> list[ScheduledFault]:
    if options.schedule:
        return parse_schedule(Path(options.schedule).read_text(), cluster)
    return default_schedule(cluster)


# ---------------------------------------------------------------------------- analysis (pure)
Attempt = tuple[float, float, bool]  # (start, end, ok), seconds from the traffic's start


def timeline(attempts: list[Attempt], seconds: float) -> list[tuple[int, int]]:
    """(served, failed) per BIN-wide bin, by each attempt's start."""
    bins = [[0, 0] for _ in range(int(round(seconds / BIN)) + 1)]
    for start, _, ok in attempts:
        i = int(start / BIN + 1e-9)  # (0.3 / 0.1 is 2.9999999999999996)
        if 0 <= i < len(bins):
            bins[i][0 if ok else 1] += 1
    return [(s, f) for s, f in bins]


def outage(attempts: list[Attempt], start: float, end: float) -> tuple[float, float, int]:
    """Of the attempts that *ended* within [start, end) -- an attempt's outcome is decided
    when it ends: one begun 0.1 s before the next fault and timed out after it is that
    fault's (CI twice saw a 0.5 s timeout begun just before a vswitchd restart charged to
    the controller's window) --: (longest run of failures in s -- its first failure's start,
    not before ``start``, to the next success's start, or to its last failure's end --, the
    time from ``start`` to the end of the last failure, how many attempts failed)."""
    mine = sorted(a for a in attempts if start <= a[1] < end)
    longest, run_from, last_fail_end, failed = 0.0, None, None, 0
    for a_start, a_end, ok in mine:
        if not ok:
            failed += 1
            last_fail_end = a_end
            if run_from is None:
                run_from = max(a_start, start)
            longest = max(longest, a_end - run_from)
        elif run_from is not None:
            longest = max(longest, a_start - run_from)
            run_from = None
    recovered = (last_fail_end - start) if last_fail_end is not None else 0.0
    return longest, recovered, failed


def parse_asks(out: str, t0: float) -> list[Attempt]:
    return [(s["t"] - s["ms"] / 1000 - t0, s["t"] - t0, bool(s.get("ok"))) for s in json.loads(out)]


PING_LINE = re.compile(r"^\[(\d+\.\d+)\] (?:.*icmp_seq=(\d+).*time=([\d.]+) ms|no answer yet for icmp_seq=(\d+))")


def parse_ping(out: str, t0: float) -> list[Attempt]:
    """``ping -D -O`` lines: a reply is a success sent ``time`` before it came; 'no answer
    yet' is a failure sent one interval before it was printed (unless a reply came late)."""
    replied: dict[int, Attempt] = {}
    missing: dict[int, Attempt] = {}
    for line in out.splitlines():
        m = PING_LINE.match(line.strip())
        if not m:
            continue
        at = float(m.group(1)) - t0
        if m.group(2):
            rtt = float(m.group(3)) / 1000
            replied[int(m.group(2))] = (at - rtt, at, True)
        else:
            missing[int(m.group(4))] = (at - PING_INTERVAL, at, False)
    return sorted([*replied.values(), *[a for seq, a in missing.items() if seq not in replied]])


# ---------------------------------------------------------------------------- the scenario
class Faults(Scenario):
    name = "faults"
    order = 70
    description = ("Service and pod-to-pod traffic while nodes, links, gateways, switches and the controller fail "
                   "on a schedule: served and failed per 100 ms, and the outage per fault and path")

    def check(self, clusters: list[Any]) -> Optional[str]:
        """Every problem of the schedule, before anything starts (None: fine)."""
        try:
            for cluster in clusters:
                schedule_for(self.options, cluster)
        except ScheduleError as exc:
            return "--schedule " + (self.options.schedule or "(default)") + ": " + "; ".join(
                f"{f}: {m}" for f, m in exc.problems)
        except OSError as exc:
            return f"--schedule {self.options.schedule}: {exc.strerror}; give a YAML file"
        return None

    def steps(self, targets: list[Target]) -> int:
        return 2 * len(targets)

    def run(self, targets: list[Target], rec: Recorder) -> None:
        for target in targets:
            schedule = schedule_for(self.options, target.cluster)
            nodes = [n.name for n in target.cluster.nodes]
            text = WORKLOAD.replace("REPLICAS", str(len(nodes))) + "".join(CLIENT.replace("NODE", n) for n in nodes)
            cluster = target.apply(text)
            for pod in cluster.pods:
                if pod.name.startswith("fecho-"):
                    target.net.serve(pod.host_name, 8080)
                    target.net.serve(pod.host_name, 8081, "udp")
            rec.step(f"{target.label}: traffic while {len(schedule)} faults play")
            self.play(target, rec, schedule)
            rec.step(f"{target.label}: outages")

    def clients(self, target: Target, seconds: float) -> dict[tuple[str, str, str], subprocess.Popen]:
        """(path, source, protocol) -> the process measuring it."""
        cluster, net = target.cluster, target.net
        service = cluster.service("fecho")
        vip = str(service.cluster_ip)
        tcp, udp = service.ports
        first = cluster.nodes[0]
        procs: dict[tuple[str, str, str], subprocess.Popen] = {}

        def ask(host: str, ip: str, port: int, proto: str) -> subprocess.Popen:
            return net.net[host].popen(["/usr/bin/python3", AGENT, "ask", "--ip", ip, "--port", str(port), "--proto",
                                        proto, "--duration", f"{seconds:g}", "--timeout", str(ASK_TIMEOUT),
                                        "--interval", str(ASK_INTERVAL)],
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

        for node in cluster.nodes:
            host = cluster.pod(f"fclient-{node.name}").host_name
            procs[("clusterip", host, "tcp")] = ask(host, vip, 80, "tcp")
            procs[("clusterip", host, "udp")] = ask(host, vip, 81, "udp")
        outside = cluster.underlay.external
        if outside is not None:
            for port, proto in ((tcp, "tcp"), (udp, "udp")):
                procs[(f"nodeport {first.name}", outside.name, proto)] = ask(outside.name, str(first.ip),
                                                                            port.node_port, proto)
                if service.load_balancer_ip is not None:
                    procs[("loadbalancer", outside.name, proto)] = ask(outside.name, str(service.load_balancer_ip),
                                                                       port.port, proto)
        src = cluster.pod(f"fclient-{first.name}").host_name
        for node in cluster.nodes[1:]:
            dst = cluster.pod(f"fclient-{node.name}")
            procs[(f"ping {first.name}->{node.name}", src, "icmp")] = net.net[src].popen(
                ["ping", "-D", "-O", "-n", "-i", str(PING_INTERVAL), "-W", "1", "-w", f"{seconds:g}", str(dst.ip)],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        return procs

    def play(self, target: Target, rec: Recorder, schedule: list[ScheduledFault]) -> None:
        actions = sorted((t, n, request) for n, fault in enumerate(schedule) for t, request in fault.actions())
        seconds = max(t for t, _, _ in actions) + TAIL
        net = target.net
        events_before = len(net.monitor.events)
        t0 = time.time()
        procs = self.clients(target, seconds)
        done: list[dict[str, Any]] = []
        try:
            for t, n, request in actions:
                time.sleep(max(0.0, t0 + t - time.time()))
                began = time.time()
                try:
                    perform(net, request)
                    error = None
                except Exception as exc:  # recorded; the schedule goes on (and undoes what it did)
                    error = f"{type(exc).__name__}: {exc}"
                done.append({"fault": n, "request": request, "at": began - t0, "took": time.time() - began,
                             "error": error})
            outputs = {key: p.communicate(timeout=seconds + 30)[0] for key, p in procs.items()}
        finally:
            for p in procs.values():
                if p.poll() is None:
                    p.kill()
                    p.wait()
        t_base = time.time() - rec.now()  # wall clock of the scenario's t = 0
        self.record(target, rec, schedule, done, outputs, t0, t0 - t_base, seconds,
                    net.monitor.events[events_before:])

    def record(self, target: Target, rec: Recorder, schedule: list[ScheduledFault], done: list[dict[str, Any]],
               outputs: dict[tuple[str, str, str], str], t0: float, offset: float, seconds: float,
               node_events: list[dict[str, Any]]) -> None:
        for i, fault in enumerate(schedule):
            mine = [d for d in done if d["fault"] == i]
            errors = [d["error"] for d in mine if d["error"]]
            first = mine[0] if mine else {"at": fault.at, "took": 0.0}
            rec.add(target, "schedule", "fault", "s", src=fault.kind, dst=fault.label, repeat=i,
                    value=None if errors else round(first["at"], 3), error="; ".join(errors) or None,
                    t=round(offset + first["at"], 4), raw={**fault.to_json(), "done": mine},
                    note=f"until {fault.end:g} s; the action took {first['took'] * 1000:.0f} ms")
        for j, event in enumerate(node_events):
            rec.add(target, "lifecycle", "node_ready", "bool", src="control-plane", dst=event["node"], repeat=j,
                    value=float(event["ready"]), t=round(offset + event["t"] - t0, 4),
                    raw={"at": round(event["t"] - t0, 3), **event},
                    note=f"at {event['t'] - t0:.2f} s, after {event['silent_s']:.2f} s without a renewal")
        windows = [(f, f.at, schedule[i + 1].at if i + 1 < len(schedule) else seconds)
                   for i, f in enumerate(schedule)]
        for (path, src, proto), out in outputs.items():
            try:
                attempts = parse_ping(out, t0) if proto == "icmp" else parse_asks(out, t0)
            except (ValueError, KeyError) as exc:
                rec.add(target, path, "served", "count", src=src, dst="fecho", protocol=proto,
                        error=f"the client printed no results ({exc}): {out.strip()[-200:]}")
                continue
            dst = path.split("->")[-1] if proto == "icmp" else "svc/fecho"
            for b, (served, failed) in enumerate(timeline(attempts, seconds)):
                t = round(offset + b * BIN, 4)
                rec.add(target, path, "served", "count", src=src, dst=dst, protocol=proto, repeat=b, value=served, t=t)
                rec.add(target, path, "failed", "count", src=src, dst=dst, protocol=proto, repeat=b, value=failed, t=t)
            for i, (fault, start, end) in enumerate(windows):
                longest, recovered, failed = outage(attempts, start, end)
                where = dict(src=src, dst=fault.label, protocol=proto, repeat=i, t=round(offset + start, 4))
                rec.add(target, path, "outage", "ms", **where, value=round(longest * 1000, 1),
                        note=f"longest run of failed attempts from {start:g} s to {end:g} s")
                rec.add(target, path, "recovered_after", "ms", **where, value=round(recovered * 1000, 1),
                        note="fault start to the end of its last failure (0: nothing failed)")
                rec.add(target, path, "failed_attempts", "count", **where, value=failed,
                        note=f"of {sum(1 for a in attempts if start <= a[1] < end)} attempts")

    def summarize(self, measurements: list[Measurement]) -> list[SummaryRow]:
        """Per fault and path for the outage metrics (each fault is its own group);
        the timeline's bins are left to the figures and the CSV."""
        keyed = [m.model_copy(update={"path": f"{m.dst}: {m.path} {m.src}"})
                 if m.metric in ("outage", "recovered_after", "failed_attempts") else m
                 for m in measurements if m.metric not in ("served", "failed")]
        return results.summarize(keyed)
