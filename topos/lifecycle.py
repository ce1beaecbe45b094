"""Kubernetes' reaction to a lost node, emulated: leases over the underlay, NotReady, endpoints.

How liveness is detected -- as on a real cluster, not by peeking at processes: every
node renews a lease (``topos/lease.py renew``, the kubelet's Lease in kube-node-lease)
with a UDP datagram sent from the node's own network stack to the control plane every
grace/10 seconds.  The control plane is the ``external`` host, outside the worker nodes
as a managed cluster's is: there the watcher (``lease.py watch``, the node lifecycle
controller) checks every grace/20 seconds (kube-controller-manager's
--node-monitor-period, 5 s by default) and calls a node NotReady once it has not
renewed for ``spec.nodeMonitorGracePeriod``.  So a node whose switch died, whose uplink
is down, or whose rack gateway failed goes NotReady; a node whose controller connection
is lost does not (its dataplane still forwards).

Renewals are datagrams, not a kubelet's retried HTTPS requests, so they are sent ten per
grace period (a kubelet sends four: every 10 s of a 40 s lease): a node goes NotReady
on a lossy link only when ten in a row are lost (at 30 % loss, 6 in a million).

What follows, as in Kubernetes: the node's pods stop being endpoints (the controller
marks them NotReady, the EndpointSlice controller drops them), so every Service path
stops sending new connections there, and the load balancer's health check leaves the
node out; at the node's next renewal it is Ready and its pods are endpoints again.
Pod eviction (after the taints' 300 s tolerationSeconds) is not emulated: the pods stay
where they are and come back with their node.
"""

from __future__ import annotations

import json
import logging
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Optional

from topos.ovs import wait_for

LOG = logging.getLogger("k8snet.lifecycle")
LEASE = str(Path(__file__).resolve().parent / "lease.py")
#: The UDP port the control plane takes renewals on (kube-apiserver's 6443, as a datagram).
LEASE_PORT = 6443


class NodeMonitor:
    """Started by :class:`topos.cluster.ClusterNet` once the cluster is up; ``events``
    records every change it acted on ({"node", "ready", "t", "silent_s", "applied_t"})."""

    def __init__(self, net: Any):
        self.net = net
        self.events: list[dict[str, Any]] = []
        self._watcher: Optional[subprocess.Popen] = None
        self._thread: Optional[threading.Thread] = None
        self._stopped = False
        #: What the watcher said last about each node it has changed.
        self.readiness: dict[str, bool] = {}

    @property
    def grace(self) -> float:
        return float(self.net.cluster.node_monitor_grace)

    def start(self) -> None:
        cluster = self.net.cluster
        control_plane = cluster.underlay.external
        if control_plane is None or not cluster.nodes:
            return
        grace = self.grace
        self._watcher = self.net.spawn(
            control_plane.name, ["/usr/bin/python3", LEASE, "watch", "--port", str(LEASE_PORT), "--grace", f"{grace:g}",
                                 "--period", f"{grace / 20:g}", "--nodes", ",".join(n.name for n in cluster.nodes)],
            "node lifecycle controller (lease watcher)", stdout=subprocess.PIPE)
        first = self._watcher.stdout.readline()
        if not first.startswith('{"watching"'):
            raise RuntimeError(f"the lease watcher did not start (it printed {first!r})")
        wait_for(lambda: bool(self.net.net[control_plane.name].ns("ss", "-Huln", f"sport = :{LEASE_PORT}").strip()),
                 10, "the lease watcher to listen")
        nodes = [arg for n in cluster.nodes for arg in ("--node", f"{n.name}={self.net.net[n.name].pid}")]
        self.net.spawn(control_plane.name, ["/usr/bin/python3", LEASE, "renew", "--to", str(control_plane.ip),
                                            "--port", str(LEASE_PORT), "--interval", f"{grace / 10:g}", *nodes],
                       "lease renewer (every node's kubelet)")
        self._thread = threading.Thread(target=self._follow, name="node-lifecycle", daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        assert self._watcher is not None and self._watcher.stdout is not None
        for line in self._watcher.stdout:
            try:
                event = json.loads(line)
                self._set_ready(event["node"], bool(event["ready"]))
            except Exception as exc:  # the cluster is being torn down, or a bad line
                if self._stopped:
                    return
                LOG.warning("node lifecycle: %s (line %r)", exc, line)
                continue
            event["applied_t"] = time.time()
            self.events.append(event)
            LOG.info("node %s is %s", event["node"], "Ready" if event["ready"] else "NotReady")

    def stop(self) -> None:
        """No more changes from here on (teardown): waits for one under way to finish."""
        with self.net._lock:
            self._stopped = True

    def _set_ready(self, name: str, ready: bool) -> None:
        with self.net._lock:
            if self._stopped:
                return
            self.readiness[name] = ready
            cluster = self.net.cluster
            if self.impose(cluster) != cluster and self.net.net is not None:
                self.net.apply(cluster)  # (apply imposes the readiness)

    def impose(self, cluster: Any) -> Any:
        """``cluster`` with each node's readiness as this monitor knows it: readiness is
        the control plane's to say, so a change that was computed from an older model
        (``k8snet apply`` racing a NotReady) cannot undo it."""
        nodes = tuple(n.model_copy(update={"ready": self.readiness[n.name]})
                      if n.name in self.readiness and n.ready != self.readiness[n.name] else n for n in cluster.nodes)
        return cluster if nodes == cluster.nodes else cluster.model_copy(update={"nodes": nodes})
