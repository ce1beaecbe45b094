"""Round-trip time distributions for the throughput scenario's paths, plotted as CDFs.

Two probes, because a Service VIP does not answer ICMP (kube-proxy's iptables mode
does not either):

* ``icmp``: ``ping -i 0.01`` between pod IPs (same-node, cross-node) and from a node's
  host network to a pod on another node (node-pod);
* ``tcp``: request/response over one established TCP connection (one byte out, its
  echo back; netperf's TCP_RR), on every path including clusterip and nodeport, so
  the Service paths compare with the direct ones on the same probe.

Both also over the machine's references (a bare veth pair, one OVS bridge with a NORMAL
flow), so that the summary's ``ratios`` read each path's median RTT as a multiple of the
kernel's alone at the same probe.  Every sample is a row; the summary's median, min and
max are over the samples.
"""

from __future__ import annotations

import json
import re
from typing import Any, Optional

from k8snet import results
from k8snet.procs import CommandError
from k8snet.results import Measurement, SummaryRow
from k8snet.scenario import Recorder, Scenario, Target
from k8snet.workloads import ECHO_PORT, ensure_perf
from topos.agent import SCRIPT as AGENT
from topos.references import References

#: The references each run measures too (topos/references.py), by path name.
REFERENCES = ("veth", "ovs-normal")

_PING = re.compile(r"icmp_seq=(\d+) ttl=\d+ time=([\d.]+) ms")


class Latency(Scenario):
    name = "latency"
    order = 30
    description = ("round-trip times: ICMP echo between pod IPs and from a node to a pod, and TCP "
                   "request/response (1 byte each way) on every path including ClusterIP and NodePort")

    def summarize(self, measurements: list[Measurement]) -> list[SummaryRow]:
        """Per path and probe, with each median RTT over the references' at the same probe."""
        rows = results.summarize(measurements)
        refs = {(r.path, r.protocol): r.median for r in rows if r.backend == "reference" and r.metric == "rtt"
                and r.median}
        return [r.model_copy(update={"ratios": {ref: r.median / refs[(ref, r.protocol)] for ref in REFERENCES
                                                if (ref, r.protocol) in refs}})
                if r.metric == "rtt" and r.median is not None else r for r in rows]

    def steps(self, targets: list[Target]) -> int:
        return 8 * len(targets) + 2 * len(REFERENCES)

    def run(self, targets: list[Target], rec: Recorder) -> None:
        self.references(targets, rec)
        for target in targets:
            perf = ensure_perf(target)
            ok, why = target.reachable(perf.node_a, perf.node_b)
            cip = target.service_reachable(perf.node_a, perf.node_b)[1]
            # (node_a's own packets to the server take the path a NodePort's do: through its switch)
            nodeport = host = target.service_reachable(perf.node_a, perf.node_b, from_pod=False)[1]
            lb = target.load_balanced(perf.node_b)[1]
            ext = target.cluster.underlay.external
            assert ext is not None
            node_port = perf.node_port(ECHO_PORT)
            icmp = [("same-node", perf.client.name, perf.local.name, str(perf.local.ip), ""),
                    ("cross-node", perf.client.name, perf.server.name, str(perf.server.ip), why),
                    ("node-pod", perf.node_a.name, perf.server.name, str(perf.server.ip), host)]
            tcp = [("same-node", perf.client.name, perf.local.name, str(perf.local.ip), ECHO_PORT, ""),
                   ("cross-node", perf.client.name, perf.server.name, str(perf.server.ip), ECHO_PORT, why),
                   ("clusterip", perf.client.name, f"svc/{perf.service.name}", str(perf.service.cluster_ip),
                    ECHO_PORT, cip),
                   ("nodeport", ext.name, f"{perf.node_a.name}:{node_port}", str(perf.node_a.ip), node_port,
                    nodeport),
                   ("loadbalancer", ext.name, f"lb/{perf.lb.name}", str(perf.lb.load_balancer_ip), ECHO_PORT, lb)]
            local_echo = False
            for path, src, dst, ip, reason in icmp:
                rec.step(f"{target.label} {path} icmp")
                self.ping(target, rec, path, src, dst, ip, reason, target.net.net[src])
            for path, src, dst, ip, port, reason in tcp:
                rec.step(f"{target.label} {path} tcp request/response")
                if path == "same-node" and not local_echo:
                    target.net.serve(perf.local.host_name, ECHO_PORT)
                    local_echo = True
                self.rr(target, rec, path, src, dst, ip, port, reason, target.net.net[src])

    def references(self, targets: list[Target], rec: Recorder) -> None:
        """The same two probes over the machine's references (a bare veth pair, one OVS
        bridge with a NORMAL flow: topos/references.py), at the run's offloads, so that a
        path's RTT reads as a ratio to what the kernel alone takes."""
        with References(targets[0].cluster.offload if targets else "none") as refs:
            for ref in refs.build():
                refs.serve(ref.server, ECHO_PORT)
                rec.step(f"reference {ref.name} icmp")
                self.ping(None, rec, ref.name, ref.client.name, ref.server.name, ref.server_ip, "", ref.client)
                rec.step(f"reference {ref.name} tcp request/response")
                self.rr(None, rec, ref.name, ref.client.name, ref.server.name, ref.server_ip, ECHO_PORT, "",
                        ref.client)

    def ping(self, target: Optional[Target], rec: Recorder, path: str, src: str, dst: str, ip: str, reason: str,
             host: Any) -> None:
        where = dict(src=src, dst=dst, protocol="icmp")
        if reason:
            rec.add(target, path, "rtt", "ms", **where, error=f"not attempted: the backend cannot carry this "
                    f"path ({reason})")
            return
        n = self.options.pings
        try:
            out = host.ns("ping", "-n", "-c", str(n), "-i", "0.01", "-W", "1", ip, check=False, timeout=n * 0.05 + 15)
        except CommandError as exc:
            rec.add(target, path, "rtt", "ms", **where, error=str(exc))
            return
        samples = [(int(seq), float(ms)) for seq, ms in _PING.findall(out)]
        if not samples:
            rec.add(target, path, "rtt", "ms", **where, error=f"no echo reply from {ip}: {out.strip()[-200:]}")
            return
        for seq, ms in samples:
            rec.add(target, path, "rtt", "ms", **where, repeat=seq - 1, value=ms)
        if len(samples) < n:
            rec.add(target, path, "lost", "count", **where, value=n - len(samples),
                    note=f"{n - len(samples)} of {n} echo requests unanswered")

    def rr(self, target: Optional[Target], rec: Recorder, path: str, src: str, dst: str, ip: str, port: int,
           reason: str, host: Any) -> None:
        where = dict(src=src, dst=dst, protocol="tcp")
        if reason:
            rec.add(target, path, "rtt", "ms", **where, error=f"not attempted: the backend cannot carry this "
                    f"path ({reason})")
            return
        n = self.options.pings
        try:
            out = host.ns("/usr/bin/python3", AGENT, "rr", "--ip", ip, "--port", str(port), "--count", str(n),
                          timeout=n * 0.5 + 15)
            result = json.loads(out)
        except (CommandError, ValueError) as exc:
            rec.add(target, path, "rtt", "ms", **where, error=f"request/response probe failed: {exc}")
            return
        for i, ms in enumerate(result["ms"]):
            rec.add(target, path, "rtt", "ms", **where, repeat=i, value=ms, note=f"served by {result.get('server')}")
        if not result["ok"]:
            rec.add(target, path, "rtt", "ms", **where, repeat=len(result["ms"]),
                    error=f"TCP request/response to {ip}:{port} failed: {result['error']}")
