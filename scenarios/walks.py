"""The measured paths, walked: ``k8snet trace`` of each, per backend, drawn as sequence diagrams.

The throughput and latency scenarios measure the perf workload's paths as numbers; this
one shows what those paths are.  For each backend, one packet on each of

* ``cross-node``: perf-client -> perf-server (ICMP): the host-gw routing steps or the VXLAN
  tunnel, the gateways on a routed underlay;
* ``clusterip``: perf-client -> the ``perf`` ClusterIP's echo port (a TCP SYN): the
  Service pick and its DNAT;
* ``nodeport``: the external host -> node A's NodePort (a TCP SYN): DNAT, SNAT, and on to
  the endpoint's node;

is predicted by OVS and the kernels and captured on every interface of its path
(:mod:`topos.trace`).  ``hops`` is the walk's length; ``agrees`` is 1 where every capture
matched the prediction.  The whole walk (headers per hop, decisions, captures) is the
measurement's raw record, and each one is drawn.
"""

from __future__ import annotations

from k8snet.model.trace_ends import TraceInputError
from k8snet.scenario import Recorder, Scenario, Target
from k8snet.workloads import ECHO_PORT, ensure_perf
from topos.trace import trace


class Walks(Scenario):
    name = "walks"
    order = 15
    description = ("one packet per measured path (pod->pod across nodes, pod->ClusterIP, external->NodePort), "
                   "per backend, followed hop by hop with k8snet trace: predicted, captured, drawn")

    def steps(self, targets: list[Target]) -> int:
        return 3 * len(targets)

    def run(self, targets: list[Target], rec: Recorder) -> None:
        for target in targets:
            perf = ensure_perf(target)
            ext = target.cluster.underlay.external
            questions = [("cross-node", perf.client.name, perf.server.name, "icmp"),
                         ("clusterip", perf.client.name, f"svc/{perf.service.name}:{ECHO_PORT}", "tcp")]
            if ext is not None:
                questions.append(("nodeport", ext.name, f"{perf.node_a.name}:{perf.node_port(ECHO_PORT)}", "tcp"))
            for path, src, dst, proto in questions:
                rec.step(f"{target.label}: trace {src} -> {dst}")
                where = dict(src=src, dst=dst, protocol=proto)
                try:
                    walk = trace(target.net, src, dst, proto)
                except TraceInputError as exc:
                    rec.add(target, path, "hops", "count", **where, error=f"cannot be traced: {exc}")
                    continue
                doc = walk.to_json()
                rec.add(target, path, "hops", "count", **where, value=float(len(walk.hops)),
                        note=f"{walk.verdict}: {walk.reason}", raw=doc)
                differing = [f"{h.where}: {'; '.join(h.mismatch)}" for h in walk.hops if h.mismatch]
                rec.add(target, path, "agrees", "bool", **where, value=float(bool(walk.agrees)),
                        note="every capture matched the prediction" if walk.agrees
                        else "differs: " + " | ".join(differing))
