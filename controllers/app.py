"""The os-ken (or Ryu) application: a thin adapter between the compiler and switches.

It owns no forwarding logic.  It holds the desired cluster model, asks
:mod:`controllers.compiler` what each switch should hold, and moves each switch there:

* on (re)connect it *replays*: reads the switch's groups, then in one atomic bundle
  modifies or adds the desired ones, adds every desired flow with this run's generation
  in the cookie (an ADD with the same table/priority/match replaces the old entry in
  place, so traffic keeps flowing), and deletes by cookie mask every flow of another
  generation (stale flows of an older run; :func:`controllers.pipeline.stale_deletes`)
  and the groups nobody wants, then a barrier; when the barrier returns, the switch is
  *synced*;
* on a model change it diffs installed against desired (:func:`controllers.flows.plan`)
  and sends the deletes, group changes and adds as **one atomic bundle** (OpenFlow 1.3's
  ONF bundle extension, which OVS implements): the switch moves from the old flow table
  to the new one at once, so no packet ever meets half of a change (say a ``multipath``
  over 3 endpoints with the flow of endpoint 2 already deleted), then a barrier;
* after a change, UDP conntrack entries that point at an endpoint that is gone are
  deleted on every switch, as kube-proxy does (:mod:`controllers.conntrack`);
* a packet-in is never on an ordinary forwarding path: a Service port without endpoints
  is answered with a TCP reset or ICMP port unreachable (:mod:`controllers.reject`); on
  VXLAN clusters a packet too large for the pod MTU is fragmented and sent on
  (:mod:`controllers.egress`).

Flow mods are encoded once and their bytes sent to every switch that needs them
(:mod:`controllers.encoded`): most flows are the same on every node.

Configuration comes from the environment so that ``ryu-manager`` can load the same
app: ``K8SNET_STATE`` (the cluster model as JSON) and ``K8SNET_API`` (the API socket).
"""

from __future__ import annotations

import logging
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any, Optional

from controllers import compiler, conntrack, dialer, egress, framework, services
from controllers.api import ApiServer
from controllers.changes import plan
from controllers.encoded import Encoder
from controllers.flows import Desired, Flow, Group, group_mod
from controllers.framework import (
    CONFIG_DISPATCHER, DEAD_DISPATCHER, MAIN_DISPATCHER, BaseApp, hub, make_lock, ofp_event,
    ofproto_v1_3, set_ev_cls,
)
from controllers.pipeline import (
    FEATURE_MASK, FEATURE_SHIFT, FRAG_NX_MATCH, MISS_SEND_LEN, OBJECT_MASK, SERVICE_AFFINITY, SERVICE_LB, Feature,
    stale_deletes, with_generation,
)
from controllers.reject import packet_out, reject
from k8snet.model.cluster import Cluster

LOG = logging.getLogger("k8snet.controller")
#: A Service's cookie without the generation: feature byte + object id.
SERVICE_COOKIE_MASK = FEATURE_MASK | OBJECT_MASK
#: How often learned affinity older than OpenFlow's 16-bit timeouts is looked for (s).
SWEEP_INTERVAL = float(os.environ.get("K8SNET_SWEEP_INTERVAL", "5"))
#: When the conntrack flushes of a change are sent again (seconds after the previous), for
#: datagrams that stale datapath flows DNATed meanwhile (see K8snetController._flush_again).
FLUSH_AGAIN_S = (0.15, 0.45)


@dataclass
class Switch:
    name: str
    datapath: Any
    installed: Desired = field(default_factory=Desired)
    synced: bool = False
    pending_barrier: Optional[int] = None
    dump: list[Any] = field(default_factory=list)
    sweeps: dict[int, list[Any]] = field(default_factory=dict)
    connected_at: float = field(default_factory=time.time)
    messages: int = 0
    rejects: int = 0
    bundles: int = 0
    ct_flushes: int = 0
    fragmented: int = 0
    mtu_drops: int = 0


class K8snetController(BaseApp):
    OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION]

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.lock = make_lock()
        self.state_path = os.environ.get("K8SNET_STATE", "")
        self.cluster = self._load_state()
        # 16 bits of this run's identity in every cookie; never 0 (0 = "no generation").
        self.generation = random.randint(1, 0xFFFF)
        self.switches: dict[int, Switch] = {}
        self.errors: list[str] = []
        # Most flows are the same on every node: each is encoded once (controllers/encoded.py).
        self.encoder = Encoder()
        hub.spawn(self._sweep_loop)
        api_path = os.environ.get("K8SNET_API")
        if api_path:
            self.api = ApiServer(api_path, self.handle_api, spawn=hub.spawn)
            self.api.start()
        LOG.info("k8snet controller up: generation %#x, %s", self.generation,
                 self.cluster.summary() if self.cluster else "no model yet")

    def start(self) -> Any:
        """After every app is loaded (their handlers registered): dial the switches."""
        thread = super().start()
        for path in dialer.switch_paths():
            hub.spawn(dialer.dial, path, lambda sock: dialer.session(
                sock, framework.controller.Datapath, hub, self._lost), hub.sleep)
        return thread

    # ------------------------------------------------------------------ model
    def _load_state(self) -> Optional[Cluster]:
        if not self.state_path or not os.path.exists(self.state_path):
            return None
        with open(self.state_path, encoding="utf-8") as handle:
            return Cluster.model_validate_json(handle.read())

    def _save_state(self, cluster: Cluster) -> None:
        if not self.state_path:
            return
        tmp = f"{self.state_path}.tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(cluster.model_dump_json())
        os.replace(tmp, self.state_path)

    def node_name(self, dpid: int) -> Optional[str]:
        if self.cluster is None:
            return None
        try:
            return self.cluster.node_by_dpid(dpid).name
        except KeyError:
            return None

    def desired_for(self, dpid: int) -> tuple[Optional[str], Desired]:
        name = self.node_name(dpid)
        if name is None or self.cluster is None:
            return None, Desired()
        return name, compiler.compile_node(self.cluster, name)

    # ------------------------------------------------------------------ API
    def handle_api(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op == "status":
            return self.status()
        if op == "apply":
            cluster = Cluster.model_validate(request["cluster"])
            self.apply(cluster)
            return {"ok": True, "generation": self.generation}
        return {"ok": False, "error": f"unknown op {op!r}; allowed: status, apply"}

    def status(self) -> dict[str, Any]:
        with self.lock:
            switches = {s.name: {"dpid": dpid, "connected": True, "connected_at": s.connected_at,
                                 "synced": s.synced,
                                 "flows": len(s.installed.flows), "groups": len(s.installed.groups),
                                 "messages": s.messages, "bundles": s.bundles, "ct_flushes": s.ct_flushes,
                                 "rejects": s.rejects, "fragmented": s.fragmented, "mtu_drops": s.mtu_drops}
                        for dpid, s in self.switches.items()}
            return {"ok": True, "framework": framework.NAME, "pid": os.getpid(),
                    "generation": self.generation, "switches": switches,
                    "flow_mods": {"encoded": self.encoder.built, "reused": self.encoder.reused},
                    "errors": list(self.errors[-20:])}

    def apply(self, cluster: Cluster) -> None:
        with self.lock:
            before, self.cluster = self.cluster, cluster
            self._save_state(cluster)
            for dpid, switch in self.switches.items():
                name, desired = self.desired_for(dpid)
                self._push(switch, desired)
                if before is not None and name is not None:
                    # After the flows: a datagram between the two would otherwise be
                    # DNATed to the gone endpoint again and make a fresh stale entry.
                    flushes = conntrack.udp_flushes(before, cluster, cluster.node(name))
                    self._flush(switch, flushes)
                    if flushes:
                        hub.spawn(self._flush_again, switch, flushes)

    def _flush(self, switch: Switch, flushes: list) -> None:
        for flush in flushes:
            self._send(switch, conntrack.message(switch.datapath, flush))
            switch.ct_flushes += 1

    def _flush_again(self, switch: Switch, flushes: list) -> None:
        """The same flushes again, twice, within the next 0.6 s.  A committed bundle
        changes the flow tables at once, but the userspace datapath keeps forwarding by
        its cached megaflows until a revalidator thread has gone over them (soon, later on
        a busy machine); a datagram in that gap is still DNATed to the gone endpoint and
        makes a fresh stale entry after the first flush (CI saw a client stay with a
        not-ready pod for 2.7 s, to the end of its run).  The flushes only ever delete
        entries that point where nothing may point any more, so repeating them is safe."""
        for delay in FLUSH_AGAIN_S:
            hub.sleep(delay)
            with self.lock:
                if self.switches.get(switch.datapath.id) is switch:
                    self._flush(switch, flushes)

    # ------------------------------------------------------------------ OpenFlow
    def _send(self, switch: Switch, msg: Any) -> None:
        switch.datapath.send_msg(msg)
        switch.messages += 1

    def _stamp(self, flow: Flow) -> int:
        return with_generation(flow.cookie, self.generation)

    def _barrier(self, switch: Switch) -> None:
        dp = switch.datapath
        msg = dp.ofproto_parser.OFPBarrierRequest(dp)
        dp.set_xid(msg)
        switch.pending_barrier = msg.xid
        self._send(switch, msg)

    def _commit(self, switch: Switch, messages: list[Any]) -> None:
        """Send ``messages`` as one atomic, ordered bundle (nothing when there are none).

        Why a bundle rather than a careful order: a Service change touches flows in
        several tables at once (the ``multipath`` pick and the per-endpoint DNATs), and
        no order of single flow mods keeps every intermediate table consistent; OVS
        applies a committed bundle as one new version of its flow tables, which every
        packet sees either entirely or not at all (the ONF extension works on OpenFlow 1.3,
        which Ryu and os-ken both speak)."""
        if not messages:
            return
        dp = switch.datapath
        parser, ofp = dp.ofproto_parser, dp.ofproto
        switch.bundles += 1
        bundle, flags = switch.bundles, ofp.ONF_BF_ATOMIC | ofp.ONF_BF_ORDERED
        self._send_all(switch, [parser.ONFBundleCtrlMsg(dp, bundle, ofp.ONF_BCT_OPEN_REQUEST, flags, [])]
                       + [parser.ONFBundleAddMsg(dp, bundle, flags, msg, []) for msg in messages]
                       + [parser.ONFBundleCtrlMsg(dp, bundle, ofp.ONF_BCT_COMMIT_REQUEST, flags, [])])

    def _send_all(self, switch: Switch, messages: list[Any]) -> None:
        """``messages`` in order, as one write: a replay is thousands of messages, and the
        framework's send queue costs a hand-over and a system call for each."""
        dp = switch.datapath
        buffers = []
        for msg in messages:
            if msg.xid is None:
                dp.set_xid(msg)
            msg.serialize()
            buffers.append(bytes(msg.buf))
        dp.send(b"".join(buffers))
        switch.messages += len(messages)

    def _push(self, switch: Switch, desired: Desired) -> None:
        """Move a synced switch from what it holds to ``desired``, atomically."""
        dp = switch.datapath
        changes = plan(switch.installed, desired)
        if not changes:
            return
        # A Service whose frontends change (affinity switched, ports, timeout) forgets what
        # its clients learned.  Endpoint changes alone keep it: learned flows name the
        # endpoint by IP, and a gone endpoint sends its clients back for a fresh pick.
        touched = {f.cookie & SERVICE_COOKIE_MASK for f in changes.flow_deletes + changes.flow_adds
                   if (f.cookie & FEATURE_MASK) >> FEATURE_SHIFT == Feature.SERVICES and f.cookie & OBJECT_MASK
                   and f.table == SERVICE_LB}
        parser, ofp = dp.ofproto_parser, dp.ofproto
        messages = [parser.OFPFlowMod(datapath=dp, cookie=service_cookie, cookie_mask=SERVICE_COOKIE_MASK,
                                      table_id=SERVICE_AFFINITY, command=ofp.OFPFC_DELETE, out_port=ofp.OFPP_ANY,
                                      out_group=ofp.OFPG_ANY, match=parser.OFPMatch())
                    for service_cookie in sorted(touched)]
        messages += [self.encoder.flow_mod(dp, flow, "delete_strict") for flow in changes.flow_deletes]
        messages += [group_mod(dp, group, "delete") for group in changes.group_deletes]
        messages += [group_mod(dp, group, "add") for group in changes.group_adds]
        messages += [group_mod(dp, group, "modify") for group in changes.group_modifies]
        messages += [self.encoder.flow_mod(dp, flow, "add", cookie=self._stamp(flow)) for flow in changes.flow_adds]
        self._commit(switch, messages)
        switch.installed = desired
        switch.synced = False
        self._barrier(switch)

    @set_ev_cls(ofp_event.EventOFPSwitchFeatures, CONFIG_DISPATCHER)
    def on_switch_features(self, ev: Any) -> None:
        """Replay, step 1: set how fragments are matched (``pipeline.FRAG_NX_MATCH``), then
        ask which groups the switch already has (an earlier run's)."""
        dp = ev.msg.datapath
        with self.lock:
            switch = Switch(self.node_name(dp.id) or f"dpid-{dp.id:x}", dp)
            self.switches[dp.id] = switch
            switch.dump = []
            LOG.info("switch %s (dpid %#x) connected", switch.name, dp.id)
            self._send(switch, dp.ofproto_parser.OFPSetConfig(dp, FRAG_NX_MATCH, MISS_SEND_LEN))
            self._send(switch, dp.ofproto_parser.OFPGroupDescStatsRequest(dp, 0))

    @set_ev_cls(ofp_event.EventOFPGroupDescStatsReply, MAIN_DISPATCHER)
    def on_group_desc(self, ev: Any) -> None:
        """Replay, step 2, one atomic bundle: groups (modify those that exist, add the
        rest), every flow with this run's generation (an ADD replaces a same-key entry in
        place, so nothing stops forwarding), then the deletes that reach every flow of
        another generation (:func:`controllers.pipeline.stale_deletes`, no flow dump
        needed) and the groups nobody wants; then a barrier."""
        dp = ev.msg.datapath
        with self.lock:
            switch = self.switches.get(dp.id)
            if switch is None:
                return
            switch.dump.extend(ev.msg.body)
            if ev.msg.flags & dp.ofproto.OFPMPF_REPLY_MORE:
                return
            existing = {g.group_id for g in switch.dump}
            switch.dump = []
            _, desired = self.desired_for(dp.id)
            stale_groups = sorted(existing - {g.group_id for g in desired.groups})
            parser, ofp = dp.ofproto_parser, dp.ofproto
            self._commit(switch, [group_mod(dp, group, "modify" if group.group_id in existing else "add")
                                  for group in desired.groups] +
                         [self.encoder.flow_mod(dp, flow, "add", cookie=self._stamp(flow))
                          for flow in desired.flows] +
                         [parser.OFPFlowMod(datapath=dp, cookie=d.cookie, cookie_mask=d.mask,
                                            table_id=ofp.OFPTT_ALL if d.table is None else d.table,
                                            command=ofp.OFPFC_DELETE, out_port=ofp.OFPP_ANY,
                                            out_group=ofp.OFPG_ANY, match=parser.OFPMatch())
                          for d in stale_deletes(self.generation)] +
                         [group_mod(dp, Group(gid), "delete") for gid in stale_groups])
            switch.installed = desired
            LOG.info("switch %s: replayed %d flows, %d groups; %d stale groups deleted", switch.name,
                     len(desired.flows), len(desired.groups), len(stale_groups))
            self._barrier(switch)

    # ------------------------------------------------------------------ long affinity
    def _sweep_loop(self) -> None:
        while True:
            hub.sleep(SWEEP_INTERVAL)
            try:
                self.sweep_affinity()
            except Exception as exc:  # keep sweeping; say why once per failure
                LOG.error("affinity sweep failed: %s", exc)

    def sweep_affinity(self) -> None:
        """Ask every switch for its learned affinity flows when some Service's timeout is
        longer than OpenFlow can hold; the replies are judged in :meth:`_sweep_reply`."""
        with self.lock:
            if self.cluster is None or not services.long_affinity_timeouts(self.cluster):
                return
            for switch in self.switches.values():
                dp = switch.datapath
                parser, ofp = dp.ofproto_parser, dp.ofproto
                msg = parser.OFPFlowStatsRequest(dp, 0, SERVICE_AFFINITY, ofp.OFPP_ANY, ofp.OFPG_ANY, 0, 0,
                                                 parser.OFPMatch())
                dp.set_xid(msg)
                switch.sweeps[msg.xid] = []
                self._send(switch, msg)

    def _sweep_reply(self, switch: Switch, entries: list[Any]) -> None:
        timeouts = services.long_affinity_timeouts(self.cluster) if self.cluster else {}
        dp = switch.datapath
        parser, ofp = dp.ofproto_parser, dp.ofproto
        for entry in expired_affinity(entries, timeouts):
            self._send(switch, parser.OFPFlowMod(
                datapath=dp, cookie=0, cookie_mask=0, table_id=entry.table_id, command=ofp.OFPFC_DELETE_STRICT,
                priority=entry.priority, out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY, match=entry.match))

    @set_ev_cls(ofp_event.EventOFPFlowStatsReply, MAIN_DISPATCHER)
    def on_flow_stats(self, ev: Any) -> None:
        """The learned affinity flows a sweep asked for (:meth:`sweep_affinity`)."""
        dp = ev.msg.datapath
        with self.lock:
            switch = self.switches.get(dp.id)
            if switch is None or ev.msg.xid not in switch.sweeps:
                return
            switch.sweeps[ev.msg.xid].extend(ev.msg.body)
            if not ev.msg.flags & dp.ofproto.OFPMPF_REPLY_MORE:
                self._sweep_reply(switch, switch.sweeps.pop(ev.msg.xid))

    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    def on_packet_in(self, ev: Any) -> None:
        """Two features send packets here, neither on an ordinary forwarding path: a Service
        port without endpoints (answered with a reset or port unreachable), and, on VXLAN
        clusters, a packet larger than the pod MTU (fragmented and sent on)."""
        msg = ev.msg
        feature = (msg.cookie & FEATURE_MASK) >> FEATURE_SHIFT
        if feature == Feature.MTU:
            self._fragment(msg)
            return
        if feature != Feature.SERVICES:
            return
        answer = reject(msg.data)
        if answer is None:
            return
        with self.lock:
            switch = self.switches.get(msg.datapath.id)
            if switch is None:
                return
            switch.rejects += 1
            self._send(switch, packet_out(msg.datapath, msg.match["in_port"], answer))

    def _fragment(self, msg: Any) -> None:
        with self.lock:
            switch = self.switches.get(msg.datapath.id)
            if switch is None or self.cluster is None:
                return
            outs = egress.resend(msg.datapath, bytes(msg.data), msg.match, self.cluster.pod_mtu)
            if outs:
                switch.fragmented += 1
            else:  # Don't Fragment: refused, with "fragmentation needed" (controllers/egress.py)
                switch.mtu_drops += 1
                node = next((n for n in self.cluster.nodes if n.name == switch.name), None)
                outs = egress.refuse(msg.datapath, bytes(msg.data), msg.match, self.cluster, node) if node else []
            for out in outs:
                self._send(switch, out)

    @set_ev_cls(ofp_event.EventOFPBarrierReply, MAIN_DISPATCHER)
    def on_barrier(self, ev: Any) -> None:
        with self.lock:
            switch = self.switches.get(ev.msg.datapath.id)
            if switch is not None and switch.pending_barrier == ev.msg.xid:
                switch.pending_barrier = None
                switch.synced = True

    @set_ev_cls(ofp_event.EventOFPErrorMsg, [CONFIG_DISPATCHER, MAIN_DISPATCHER])
    def on_error(self, ev: Any) -> None:
        msg = ev.msg
        with self.lock:
            switch = self.switches.get(msg.datapath.id)
            text = (f"switch {switch.name if switch else msg.datapath.id}: OpenFlow error "
                    f"type={msg.type} code={msg.code}")
            self.errors.append(text)
        LOG.error(text)

    @set_ev_cls(ofp_event.EventOFPStateChange, DEAD_DISPATCHER)
    def on_disconnect(self, ev: Any) -> None:
        self._lost(ev.datapath)

    def _lost(self, dp: Any) -> None:
        """A switch connection is gone (the dialer saw it end, or the framework tore it
        down): forget it, unless the switch is already back on a newer connection."""
        with self.lock:
            switch = self.switches.get(dp.id) if dp.id is not None else None
            if switch is not None and switch.datapath is dp:
                del self.switches[dp.id]
                LOG.info("switch %s disconnected", switch.name)


def expired_affinity(entries: list[Any], timeouts: dict[int, int]) -> list[Any]:
    """Learned affinity flows older than their Service's timeout (pure; entries are flow
    stats with ``cookie`` and ``duration_sec``; timeouts by cookie object id)."""
    out = []
    for entry in entries:
        timeout = timeouts.get(entry.cookie & OBJECT_MASK)
        if timeout is not None and entry.duration_sec >= timeout:
            out.append(entry)
    return out
