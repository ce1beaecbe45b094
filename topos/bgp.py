"""The BGP fabric of a ``backend: bgp`` cluster: one BIRD per speaker, and each node's route
watcher feeding the controller.

::

    core (bird, AS base) ─ eBGP ─ gw-<rack> (bird, AS base+1+i, route reflector)
                                     │ iBGP
    node (bird) ── installs learned routes into table 201 ── ip monitor ──▶ watcher thread
                                                                              │ bgp_routes
                                                      controller (flows) ◀── ClusterNet.apply

Forwarding follows what BGP learned, not the model: the nodes' routes reach the controller
only through their kernel tables (netlink: ``ip monitor`` wakes the watcher, ``ip -j route``
reads the table), and the controller programs OVS from them (controllers/bgp.py).  Each
BIRD runs in its host's namespace (``bird -f``: the PID we start is the daemon's, recorded
in the run directory, so teardown and ``k8snet clean`` stop it), with its configuration,
control socket, pidfile and log under ``<run>/bgp/``; BGP listens on port 179 in the
namespaces only.
"""

from __future__ import annotations

import json
import logging
import os
import selectors
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Optional

from k8snet.model.bgp import NODE_ROUTE_TABLE, Speaker, speakers
from k8snet.model.cluster import Backend, BgpRoute, Cluster
from k8snet.procs import CommandError, run
from topos.bird import config

LOG = logging.getLogger(__name__)

#: Every node's table is read again this often, whatever ``ip monitor`` said (a safety net).
RESYNC_S = 5.0
#: Debian's package with ``bird`` and ``birdc`` (the Makefile installs it).
PACKAGE = "bird2"


def missing() -> Optional[str]:
    """Why a bgp cluster cannot run here, or None."""
    if shutil.which("bird") is None or shutil.which("birdc") is None:
        return f"backend bgp needs BIRD 2 (`bird`, `birdc`; Debian package {PACKAGE}): run `make setup`"
    return None


def expected_routes(cluster: Cluster) -> tuple[BgpRoute, ...]:
    """What every node's table holds once BGP has converged (every peer's pod CIDR)."""
    model = cluster.model_copy(update={"bgp_routes": None})
    out = []
    for node in cluster.nodes:
        for peer in cluster.peers_of(node.name):
            via = model.bgp_next_hop(node, peer.pod_cidr)
            if via is not None:
                out.append(BgpRoute(node=node.name, prefix=peer.pod_cidr, via=via))
    return tuple(sorted(out, key=_key))


def _key(route: BgpRoute) -> tuple[str, int, int]:
    return (route.node, int(route.prefix.network_address), route.prefix.prefixlen)


def parse_table(node: str, text: str) -> list[BgpRoute]:
    """``ip -j route show table 201`` of one node -> its routes (single next hop)."""
    out = []
    for entry in json.loads(text or "[]"):
        dst, via = entry.get("dst"), entry.get("gateway")
        if dst and via and "/" in dst:
            out.append(BgpRoute(node=node, prefix=dst, via=via))
    return out


class Fabric:
    """Started by :class:`topos.cluster.ClusterNet` after its switches hold their flows."""

    def __init__(self, net: Any):
        self.net = net
        self.routes: Optional[tuple[BgpRoute, ...]] = None
        #: The sessions not Established when the routes last changed ("a<->b").
        self.down: tuple[str, ...] = ()
        self._by_node: dict[str, list[BgpRoute]] = {}
        self._monitors: dict[Any, str] = {}
        self._thread: Optional[threading.Thread] = None
        self._stopped = False
        self.converged_s: Optional[float] = None

    @property
    def active(self) -> bool:
        return self.net.cluster.backend is Backend.BGP

    def directory(self) -> Path:
        return self.net.run.sub("bgp")

    def socket(self, name: str) -> Path:
        return self.directory() / f"{name}.ctl"

    def impose(self, cluster: Cluster) -> Cluster:
        """``cluster`` with the routes as observed (before the fabric starts: none, so that
        nothing is forwarded that BGP has not learned)."""
        if cluster.backend is not Backend.BGP:
            return cluster
        routes = self.routes if self.routes is not None else ()
        if cluster.bgp_routes == routes and cluster.bgp_down == self.down:
            return cluster
        return cluster.model_copy(update={"bgp_routes": routes, "bgp_down": self.down})

    def start(self, timeout: float = 30.0) -> None:
        """Every speaker's BIRD, then the route watchers; waits until BGP has converged
        (every node holds a route to every other node's pod CIDR) and the switches hold
        the flows that follow from it."""
        if not self.active:
            return
        t0 = time.monotonic()
        self.routes = ()
        # The watchers first: a session takes a second (connect delay) to bring routes, by
        # which time every ``ip monitor`` listens; a periodic re-read covers the rest.
        sel = selectors.DefaultSelector()
        for node in self.net.cluster.nodes:
            proc = self.net.spawn(node.name, ["ip", "monitor", "route"], f"route watcher {node.name}",
                                  stdout=subprocess.PIPE)
            sel.register(proc.stdout.fileno(), selectors.EVENT_READ, node.name)
        for speaker in speakers(self.net.cluster):
            self._start_bird(speaker)
        self._sync(list(self._names()))
        self._thread = threading.Thread(target=self._watch, args=(sel,), name="bgp-routes", daemon=True)
        self._thread.start()
        want = expected_routes(self.net.cluster)
        deadline = time.monotonic() + timeout
        while self.net.cluster.bgp_routes != want:  # (applied: the switches hold the flows)
            if time.monotonic() > deadline:
                missing_routes = sorted(set(want) - set(self.net.cluster.bgp_routes or ()), key=_key)
                raise TimeoutError(f"BGP did not converge in {timeout:g}s: {len(missing_routes)} routes missing, "
                                   f"e.g. {', '.join(f'{r.prefix} on {r.node}' for r in missing_routes[:4])}; "
                                   f"sessions: {self.session_summary()}; logs in {self.directory()}")
            time.sleep(0.05)
        self.converged_s = time.monotonic() - t0

    def _names(self) -> list[str]:
        return [n.name for n in self.net.cluster.nodes]

    def _start_bird(self, speaker: Speaker) -> None:
        d = self.directory()
        conf = d / f"{speaker.name}.conf"
        conf.write_text(config(speaker, d / f"{speaker.name}.log"))
        self.net.spawn(speaker.name, ["bird", "-f", "-c", str(conf), "-s", str(self.socket(speaker.name)),
                                      "-P", str(d / f"{speaker.name}.pid")], f"bird {speaker.name}")

    def _watch(self, sel: selectors.BaseSelector) -> None:
        last_full = time.monotonic()
        while not self._stopped:
            try:
                events = sel.select(timeout=0.5)
            except (OSError, ValueError):  # a watcher's pipe closed under us: teardown
                return
            dirty = set()
            for key, _ in events:
                # Everything the pipe holds (a buffered readline could keep a line back
                # where select no longer sees it).
                try:
                    chunk = os.read(key.fd, 65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    sel.unregister(key.fd)
                    continue
                if f"table {NODE_ROUTE_TABLE}".encode() in chunk:
                    dirty.add(key.data)
            if time.monotonic() - last_full > RESYNC_S:
                dirty, last_full = set(self._names()), time.monotonic()
            if dirty and not self._stopped:
                try:
                    self._sync(sorted(dirty))
                except Exception as exc:  # teardown under way, or a node's shell gone
                    if not self._stopped:
                        LOG.warning("bgp route watcher: %s", exc)

    def _sync(self, nodes: list[str]) -> None:
        """Read ``nodes``' tables; if what BGP installed changed, make it the desired state."""
        for name in nodes:
            self._by_node[name] = parse_table(name, self._table(name))
        routes = tuple(sorted((r for rs in self._by_node.values() for r in rs), key=_key))
        if routes == self.routes:
            return
        down = self.down_sessions() if self.routes else ()  # (none before the first route)
        with self.net._lock:
            if self._stopped or routes == self.routes:
                return
            self.routes, self.down = routes, down
            if self.net.net is not None:
                self.net.apply(self.net.cluster)  # (apply imposes the routes)

    def _table(self, name: str) -> str:
        """``ip -j route show table 201`` in node ``name`` ("" before its first route: the
        kernel makes a table with its first route)."""
        args = ["mnexec", "-a", str(self.net.net[name].pid), "ip", "-j", "route", "show", "table",
                str(NODE_ROUTE_TABLE)]
        out = run(args, check=False, timeout=10)
        if out.returncode != 0:
            if "does not exist" in out.stderr:
                return ""
            raise CommandError(f"exit {out.returncode}: {' '.join(args)}: {out.stderr.strip()}")
        return out.stdout

    def sessions(self) -> dict[str, dict[str, str]]:
        """Each speaker's BGP sessions: {speaker: {peer: state}} from ``birdc show protocols``."""
        out: dict[str, dict[str, str]] = {}
        for speaker in speakers(self.net.cluster):
            text = subprocess.run(["birdc", "-s", str(self.socket(speaker.name)), "show", "protocols"],
                                  capture_output=True, text=True, timeout=10).stdout
            peers = {p.protocol: p.name for p in speaker.peers}
            out[speaker.name] = {peers[f[0]]: f[-1] if f[3] == "up" else f[3]
                                 for f in (line.split() for line in text.splitlines()) if f and f[0] in peers}
        return out

    def set_session(self, name: str, peer: str, up: bool) -> None:
        """Bring one session down (``birdc disable``, as an operator would) or back up, from
        speaker ``name``'s end; the routes it carried are withdrawn (or learned again) as
        BGP does it, and the watcher follows."""
        protocol = next(p.protocol for p in next(s for s in speakers(self.net.cluster) if s.name == name).peers
                        if p.name == peer)
        out = subprocess.run(["birdc", "-s", str(self.socket(name)), "enable" if up else "disable", protocol],
                             capture_output=True, text=True, timeout=10)
        if out.returncode != 0 or ("enabled" if up else "disabled") not in out.stdout:
            raise RuntimeError(f"birdc {'enable' if up else 'disable'} {protocol} on {name}: "
                               f"{(out.stdout + out.stderr).strip()}")

    def down_sessions(self) -> tuple[str, ...]:
        """Sessions that are not Established, each once ("a<->b", as its first end names it)."""
        out: list[str] = []
        for a, peers in self.sessions().items():
            for b, state in peers.items():
                if state != "Established" and f"{b}<->{a}" not in out:
                    out.append(f"{a}<->{b}")
        return tuple(out)

    def session_summary(self) -> str:
        try:
            down = self.down_sessions()
        except Exception as exc:
            return f"unknown ({exc})"
        return ", ".join(down) + " not Established" if down else "all Established"

    def stop(self) -> None:
        """No more changes from here on (teardown, before the watchers are killed): waits
        for the watcher thread, which looks at the flag at least every half second."""
        with self.net._lock:
            self._stopped = True
        if self._thread is not None:
            self._thread.join(timeout=2.0)
