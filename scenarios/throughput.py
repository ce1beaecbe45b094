"""iperf3 throughput: TCP and UDP, 1 and 4 streams, per path and backend, with references.

Cells are measured in rounds -- every cell once per round, ``repeat`` rounds -- so that
the machine's drift (it is shared and noisy) hits every backend and path alike.  The
summary's ``ratios`` divide each median by the same run's veth and OVS NORMAL medians
at the same protocol and stream count.

With ``--loss 0,0.1,1,5`` the run is a sweep instead: one TCP stream cross-node while the server
node's uplink drops that percentage of what it receives (nftables, counted: the loss
achieved is recorded next to the one set), ``throughput_at_loss`` per loss next to the
Mathis et al. estimate MSS / (RTT * sqrt(p)) (``mathis``; the constant C taken as 1, the
paper's C is 0.87 to 1.22 by ACK strategy) from the same run's mean RTT and MSS as
iperf3 reports them, and the loss p the counters measured.  The model is of loss-based
congestion control (Reno, CUBIC); every TCP measurement names the algorithm its sender used
(``congestion=``), and ``--congestion ALGO`` chooses it (default: the machine's, which pods
inherit -- BBR on this one, which hardly slows down for random loss).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from k8snet import results
from k8snet.results import Measurement, SummaryRow
from k8snet.scenario import Recorder, Scenario, Target
from k8snet.workloads import IPERF_PORT, ensure_perf
from topos.iperf import iperf
from topos.references import References

REFERENCES = ("veth", "ovs-normal")
#: Congestion controls whose window follows loss (AIMD or close to it): what Mathis et al.
#: model.  BBR paces to its estimate of bandwidth and RTT and does not back off on random
#: loss, so it stays far above the estimate (`--congestion cubic` for the model's case).
LOSS_BASED = ("reno", "cubic", "htcp", "bic", "scalable", "highspeed")


def mathis_caveat(algorithm: str) -> str:
    """Why the estimate does not describe a flow under ``algorithm``."""
    return (f"the flow used {algorithm}, not a loss-based congestion control; the model describes Reno-like "
            "AIMD (use --congestion cubic or reno to compare)")


@dataclass
class Cell:
    target: Optional[Target]      # None: a reference
    path: str
    src: str
    dst: str
    client: Any
    server: Any
    ip: str
    port: int
    listen: int
    unreachable: str = ""         # the backend's reason, when it cannot carry this path


class Throughput(Scenario):
    name = "throughput"
    order = 20
    description = ("iperf3 -J, TCP and UDP, 1 and 4 parallel streams: same-node, cross-node, via ClusterIP and "
                   "via NodePort, per backend, with the bare veth pair and single-bridge OVS NORMAL as references")

    def summarize(self, measurements: list[Measurement]) -> list[SummaryRow]:
        return add_ratios(results.summarize(measurements))

    def combos(self) -> list[tuple[str, int]]:
        return [(proto, n) for proto in self.options.protocols for n in self.options.streams]

    def steps(self, targets: list[Target]) -> int:
        if self.options.loss:
            return len(targets) * len(self.options.loss) * self.options.repeat
        return (len(REFERENCES) + 4 * len(targets)) * len(self.combos()) * self.options.repeat

    def cells(self, target: Target) -> list[Cell]:
        perf = ensure_perf(target)
        net = target.net
        client, local, server = (net.pod(p.host_name) for p in (perf.client, perf.local, perf.server))
        ok, why = target.reachable(perf.node_a, perf.node_b)
        cip_ok, cip_why = target.service_reachable(perf.node_a, perf.node_b)
        np_ok, np_why = target.service_reachable(perf.node_a, perf.node_b, from_pod=False)
        ext = target.cluster.underlay.external
        assert ext is not None
        node_port = perf.node_port(IPERF_PORT)
        cells = [Cell(target, "same-node", perf.client.name, perf.local.name, client, local, str(perf.local.ip),
                      IPERF_PORT, IPERF_PORT),
                 Cell(target, "cross-node", perf.client.name, perf.server.name, client, server,
                      str(perf.server.ip), IPERF_PORT, IPERF_PORT, "" if ok else why),
                 Cell(target, "clusterip", perf.client.name, f"svc/{perf.service.name}", client, server,
                      str(perf.service.cluster_ip), IPERF_PORT, IPERF_PORT, "" if cip_ok else cip_why),
                 Cell(target, "nodeport", ext.name, f"{perf.node_a.name}:{node_port}", net.net[ext.name], server,
                      str(perf.node_a.ip), node_port, IPERF_PORT, "" if np_ok else np_why)]
        if perf.node_a.name == perf.node_b.name:
            for cell in cells[1:]:
                cell.path += "(same-node)"
        return cells

    def run(self, targets: list[Target], rec: Recorder) -> None:
        if self.options.loss:  # a loss sweep is its own experiment (on offload none, see datapath.LOSSY)
            for target in targets:
                self.loss_sweep(target, rec)
            return
        # The references share the run's offload setting (settled for all clusters together).
        with References(targets[0].cluster.offload if targets else "none") as refs:
            cells = [Cell(None, r.name, r.client.name, r.server.name, r.client, r.server, r.server_ip, IPERF_PORT,
                          IPERF_PORT) for r in refs.build()]
            for target in targets:
                cells += self.cells(target)
            for round_no in range(self.options.repeat):
                for protocol, streams in self.combos():
                    for cell in cells:
                        label = cell.target.label if cell.target else "reference"
                        rec.step(f"{label} {cell.path} {protocol}×{streams} "
                                 f"(round {round_no + 1}/{self.options.repeat})")
                        self.measure(rec, cell, protocol, streams, round_no)

    def loss_sweep(self, target: Target, rec: Recorder) -> None:
        """TCP throughput against underlay loss, rounds of every loss as in the main table."""
        perf = ensure_perf(target)
        client, server = (target.net.pod(p.host_name) for p in (perf.client, perf.server))
        link = perf.node_b.name
        where = dict(src=perf.client.name, dst=perf.server.name, protocol="tcp", streams=1)
        ok, why = target.reachable(perf.node_a, perf.node_b)
        try:
            for round_no in range(self.options.repeat):
                for loss in self.options.loss:
                    path = f"loss {loss:g}%"
                    rec.step(f"{target.label} cross-node tcp at {loss:g} % loss (round {round_no + 1})")
                    if not ok or perf.node_a.name == perf.node_b.name:
                        rec.add(target, path, "throughput_at_loss", "Gbit/s", **where, repeat=round_no,
                                error=f"not attempted: no cross-node path ({why or 'one node'})")
                        continue
                    target.net.impairments.set_loss(link, loss, "ingress")
                    result = iperf(client, server, str(perf.server.ip), IPERF_PORT, self.options.seconds,
                                   protocol="tcp", streams=1, congestion=self.options.congestion)
                    count = next(c for c in target.net.impairments.counters()
                                 if c.link == link and c.direction.value == "ingress")
                    self.record_lossy(target, rec, path, where, round_no, loss, result, count)
        finally:
            target.net.impairments.set_loss(link, 0, "ingress")

    def record_lossy(self, target: Target, rec: Recorder, path: str, where: dict, round_no: int, loss: float,
                     result: dict, count: Any) -> None:
        achieved = count.achieved
        note = (f"{loss:g} % set on {count.link}'s ingress; achieved {achieved:.3f} % of {count.seen} frames"
                if achieved is not None else f"{loss:g} % set; no frame counted")
        if not result.get("ok"):
            rec.add(target, path, "throughput_at_loss", "Gbit/s", **where, repeat=round_no, error=result["error"])
            return
        doc = result["doc"]
        algorithm = result.get("congestion") or "unknown"
        rec.add(target, path, "throughput_at_loss", "Gbit/s", **where, repeat=round_no,
                value=result["bits_per_second"] / 1e9,
                note=f"{note}; retransmits={result['retransmits']}; congestion={algorithm}", raw=doc)
        rec.add(target, path, "achieved_loss", "%", **where, repeat=round_no, value=achieved or 0.0, note=note)
        sender = doc["end"]["streams"][0]["sender"]
        rtt_s, mss = sender.get("mean_rtt", 0) / 1e6, doc["start"].get("tcp_mss_default", 0)
        p = (achieved or 0.0) / 100
        if p > 0 and rtt_s > 0 and mss:
            rec.add(target, path, "mathis", "Gbit/s", **where, repeat=round_no,
                    value=mss * 8 / (rtt_s * p ** 0.5) / 1e9,
                    note=f"MSS {mss} B / (RTT {rtt_s * 1000:.3f} ms * sqrt({p:.5f})), C = 1"
                         + ("" if algorithm in LOSS_BASED else f"; {mathis_caveat(algorithm)}"))
        else:
            rec.add(target, path, "mathis", "Gbit/s", **where, repeat=round_no,
                    error="no estimate: " + ("no loss measured (the formula needs p > 0)" if p <= 0 else
                                             "iperf3 reported no RTT or MSS"))

    def measure(self, rec: Recorder, cell: Cell, protocol: str, streams: int, round_no: int) -> None:
        where = dict(src=cell.src, dst=cell.dst, protocol=protocol, streams=streams, repeat=round_no)
        if cell.unreachable:
            rec.add(cell.target, cell.path, "throughput", "Gbit/s", **where,
                    error=f"not attempted: the backend cannot carry this path ({cell.unreachable})")
            return
        switches = switch_pids(cell.target)
        result = iperf(cell.client, cell.server, cell.ip, cell.port, self.options.seconds, listen=cell.listen,
                       protocol=protocol, streams=streams, watch=switches, congestion=self.options.congestion)
        note = ""
        if result.get("ok"):
            note = (f"retransmits={result['retransmits']}; congestion={result['congestion']}" if protocol == "tcp"
                    else f"lost_percent={result['lost_percent']:.2f}") + "; " + cpu_note(result, bool(switches))
            if cell.target is not None:
                note += f"; attach={cell.target.cluster.attach}"
            if result.get("retried"):
                note += f"; the first run hung and was retried: {result['retried']}"
        rec.add(cell.target, cell.path, "throughput", "Gbit/s", **where,
                value=result["bits_per_second"] / 1e9 if result.get("ok") else None,
                error=None if result.get("ok") else result["error"], note=note, raw=result.get("doc"))


def switch_pids(target: Optional[Target]) -> list[int]:
    """The cluster's ovs-vswitchd processes (none for a reference)."""
    if target is None:
        return []
    procs = [target.net.node(n.name).ovs.vswitchd() for n in target.cluster.nodes]
    return [p.pid for p in procs if p is not None]


def cpu_note(result: dict, switches: bool) -> str:
    """CPU during the run, in percent of one core: iperf3's client and server, and every
    ovs-vswitchd of the cluster together (the datapath, on this machine's few cores)."""
    cpu = result.get("cpu_percent", {})
    parts = [f"cpu_client={cpu.get('client') or 0:.0f}%", f"cpu_server={cpu.get('server') or 0:.0f}%"]
    if switches:
        parts.append(f"cpu_ovs={cpu.get('watched', 0):.0f}%")
    return "; ".join(parts)


def add_ratios(summary: list[SummaryRow]) -> list[SummaryRow]:
    """Each throughput median over the same run's reference medians (same protocol, streams)."""
    refs = {(r.path, r.protocol, r.streams): r.median for r in summary
            if r.backend == "reference" and r.metric == "throughput" and r.median}
    out = []
    for row in summary:
        ratios = {}
        if row.metric == "throughput" and row.median is not None:
            for ref in REFERENCES:
                base = refs.get((ref, row.protocol, row.streams))
                if base:
                    ratios[ref] = row.median / base
        out.append(row.model_copy(update={"ratios": ratios}))
    return out
