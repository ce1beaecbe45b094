"""Faults on a running cluster: links, routers, nodes' switches, the controller.

``ClusterNet.faults`` (Python API), the ``fault`` op of the cluster's socket (``k8snet
fault``) and scenario schedules all come here.  Each fault has a way back, and
``log`` keeps when each was done:

* ``link down|up LINK`` -- the link's segment-side device is set down (its peer, the
  node's uplink or the gateway's core port, loses carrier), then up again, with the
  routes the kernel dropped with it put back.
* ``router down|up gw-RACK|core`` -- the router stops routing and answering, ARP
  included (nftables drop-all tables in its namespace: a hung router); a rack
  gateway's L2 segment -- a separate ToR switch in a real rack -- keeps switching, so
  same-rack pairs still talk.  Up removes the tables.
* ``node down NODE`` with ``how=uplink`` (cut off: its link down) or ``how=switch``
  (its ``ovs-vswitchd`` killed: nothing forwards); ``node up NODE`` undoes either.
* ``switch restart NODE`` -- ``ovs-vswitchd`` crashes (SIGKILL) and is started again at
  once: it reads bridges and ports from its database, the LOCAL port's addresses and
  routes are put back (:meth:`topos.nodes.K8sNode.plumb`), and the controller replays
  the flows when the switch reconnects.
* ``controller kill|start|restart`` -- SIGKILL, and a new controller that resynchronises
  every switch; meanwhile the switches forward on the flows they hold
  (``fail_mode=secure``, no timeouts on forwarding flows).
"""

from __future__ import annotations

import time
from typing import Any, Optional

from k8snet.model.cluster import BRIDGE_NAME
from k8snet.model.faults import check_fault
from k8snet.model.links import underlay_links
from k8snet.model.underlay import CORE_HOST
from topos.attach import reattach
from topos.nodes import CoreRouter
from topos.ovs import wait_for

#: nftables tables a failed router gets (inet: everything it routes or terminates; arp:
#: it stops answering for its addresses).
ROUTER_DOWN = ("table inet k8snet_down {\n"
               "  chain input { type filter hook input priority -500; policy drop; }\n"
               "  chain forward { type filter hook forward priority -500; policy drop; }\n"
               "  chain output { type filter hook output priority -500; policy drop; }\n}\n"
               "table arp k8snet_down {\n"
               "  chain input { type filter hook input priority -500; policy drop; }\n"
               "  chain output { type filter hook output priority -500; policy drop; }\n}\n")

class Faults:
    """The faults of one running cluster (``ClusterNet.faults``)."""

    def __init__(self, net: Any):
        self.net = net
        #: Nodes whose ovs-vswitchd is not running: nothing waits for their switch to sync.
        self.switches_down: set[str] = set()
        self.links_down: set[str] = set()
        self.routers_down: set[str] = set()
        #: {"t": unix time, "kind", "action", "target", "took_s"} per fault done.
        self.log: list[dict[str, Any]] = []

    def do(self, kind: str, action: str, target: str = "", how: str = "uplink") -> dict[str, Any]:
        check_fault(self.net.cluster, kind, action, target, how)
        t0 = time.time()
        if kind == "link":
            self.link(target, action == "up")
        elif kind == "router":
            self.router(target, action == "up")
        elif kind == "node" and action == "down":
            (self.link if how == "uplink" else self.switch)(target, False)
        elif kind == "node":  # up: whatever took it down comes back
            if target in self.switches_down:
                self.switch(target, True)
            if target in self.links_down or target not in self.switches_down:
                self.link(target, True)
        elif kind == "switch":
            self.switch(target, False)
            self.switch(target, True)
        else:
            self.controller(action)
        entry = {"t": t0, "kind": kind, "action": action, "target": target, "took_s": round(time.time() - t0, 3)}
        if kind == "node" and action == "down":
            entry["how"] = how
        self.log.append(entry)
        return entry

    def link(self, name: str, up: bool) -> None:
        cluster = self.net.cluster
        link = underlay_links(cluster)[name]
        host = self.net.net[link.host]
        host.ns("ip", "link", "set", "dev", link.device, "up" if up else "down")
        if not up:
            self.links_down.add(name)
            return
        self.links_down.discard(name)
        if link.host == CORE_HOST:
            # An interface set down loses its routes; the core's own that use it go back.
            underlay = cluster.underlay
            routes = [r for r in CoreRouter.routes(underlay.racks, underlay.lb, str(underlay.lb_pool))
                      if r.endswith(f" dev {link.device}")]
            if routes:
                host.ip_batch(routes)

    def router(self, name: str, up: bool) -> None:
        host = self.net.net[name]
        if up:
            host.ns("nft", "-f", "-", input="delete table inet k8snet_down\ndelete table arp k8snet_down\n",
                    check=name in self.routers_down)
            self.routers_down.discard(name)
        else:
            if name not in self.routers_down:
                host.ns("nft", "-f", "-", input=ROUTER_DOWN)
            self.routers_down.add(name)

    def switch(self, node: str, up: bool) -> None:
        host = self.net.node(node)
        if not up:
            proc = host.ovs.vswitchd()
            if proc is not None:
                proc.crash()
            self.switches_down.add(node)
            return
        if host.ovs.vswitchd() is not None:
            self.switches_down.discard(node)
            return  # it runs: nothing to bring back
        started = time.time()
        host.ovs.start_vswitchd()

        # The LOCAL port is the tap vswitchd creates once it has read the bridge.
        wait_for(lambda: bool(host.ns("ip", "-o", "link", "show", "dev", BRIDGE_NAME, check=False).strip()),
                 15, f"{node}'s bridge to come back")
        host.plumb(self.net.cluster, self.net.cluster.node(node))
        reattach(self.net, node)  # taps go with their vswitchd: the new ones are put back
        self.net.api.wait_synced([node], 30, since=started)
        self.switches_down.discard(node)

    def controller(self, action: str) -> None:
        if action in ("kill", "restart") and self.net.controller is not None:
            self.net.controller.crash()
            self.net.stop_controller()  # sockets and bookkeeping (the process is gone)
        if action in ("start", "restart") and self.net.controller is None:
            self.net.start_controller()
            self.net.api.wait_synced([n.name for n in self.net.cluster.nodes if n.name not in self.switches_down], 30)
            # What changed while it was away (a node gone NotReady) reaches it now.
            self.net.apply(self.net.cluster)

    def status(self) -> dict[str, Any]:
        return {"links_down": sorted(self.links_down), "routers_down": sorted(self.routers_down),
                "switches_down": sorted(self.switches_down), "controller": self.net.controller is not None,
                "nodes_not_ready": [n.name for n in self.net.cluster.nodes if not n.ready], "log": self.log}


def perform(net: Any, request: dict[str, Any]) -> Optional[dict[str, Any]]:
    """One request in the cluster socket's terms -- ``{"op": "loss", "link", "loss",
    "direction"}`` or ``{"op": "fault", "kind", "action", "target", "how"}`` -- done on
    ``net`` (the socket and scenario schedules both speak them); a fault's log entry, or
    None for a loss.  A request that names nothing real raises ``FaultInputError``."""
    if request.get("op") == "loss":
        net.impairments.set_loss(str(request.get("link", "")), request.get("loss"), request.get("direction", "both"))
        return None
    return net.faults.do(str(request.get("kind", "")), str(request.get("action", "")),
                         str(request.get("target") or ""), str(request.get("how") or "uplink"))
