"""Model -> a running emulated cluster, and back to nothing.

::

    pod web-0 ─eth0══pod0─┐                                   ┌─pod0══eth0─ pod web-1
    pod web-3 ─eth0══pod1─┤ br-k8s (OVS, netdev)  ...  br-k8s ├─pod1══eth0─ pod web-4
                 node-0   │ LOCAL = 192.168.56.10      LOCAL  │  node-1
                          └uplink══n0─┐             ┌─n1══uplink┘
                                      └── fabric ───┘   (Linux bridge in namespace "underlay")

    controller (python -m controllers) ◀── OpenFlow over unix:<run>/controller/of.sock
                                       ◀── state API over unix:<run>/controller/api.sock

Everything lives in namespaces and directories of ours; :meth:`ClusterNet.stop` (also
run on any error or Ctrl-C during :meth:`ClusterNet.start`) removes all of it.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Optional

from mininet.log import setLogLevel
from mininet.net import Mininet

from controllers.api import ApiClient
from k8snet.procs import CommandError, OwnedProcess, deferred_signals, stop_all
from k8snet.rundir import RunDir
from k8snet.model.reach import Expected
from k8snet.model.staging import stages
from topos import checks
from topos.checks import Reach
from topos.datapath import settle
from topos.neighbours import make_room
from topos.bgp import Fabric
from topos.attach import attach_all, hand_over, macvlan_children, on_switch, pods_tapped, port_type, uplinks_tapped
from k8snet.model.dns import DNS_NAME, DNS_NAMESPACE, resolv_conf
from topos.dns import unbound_conf
from k8snet.model.cluster import BRIDGE_NAME, UPLINK_IFNAME, UPLINK_OFPORT, Cluster, Node, Pod, UnderlayType, to_json
from topos.nodes import (
    SWITCH_SOCKET, CoreRouter, ExternalClient, K8sNode, LoadBalancerHost, PodHost, RackGateway, Underlay, lb_targets,
)
from k8snet.model.links import EXTERNAL_FLAT_IFNAME, LB_FLAT_IFNAME
from k8snet.model.underlay import CORE_HOST, FLAT_SEGMENT_HOST as UNDERLAY_HOST
from topos.ovs import purge_datapath_flows, wait_for
from topos.faults import Faults
from topos.impair import Impairments
from topos.lifecycle import NodeMonitor
from topos.spawning import Spawning
from topos.probe import measure

LOG = logging.getLogger("k8snet.cluster")

Progress = Callable[[str], None]


class ClusterError(RuntimeError):
    pass


class ClusterNet(Spawning):
    """A running cluster. Use as a context manager, or call start() and stop()."""

    def __init__(self, cluster: Cluster, framework: str = "os-ken", progress: Optional[Progress] = None,
                 sync_timeout: float = 60.0):
        self.cluster = cluster
        self.framework = framework
        self.progress = progress or (lambda message: LOG.info(message))
        self.sync_timeout = sync_timeout
        self.run: Optional[RunDir] = None
        self.net: Optional[Mininet] = None
        self.controller: Optional[OwnedProcess] = None
        self._controller_popen: Optional[subprocess.Popen] = None
        self.timings: dict[str, float] = {}
        self.impairments = Impairments(self)
        self.faults = Faults(self)
        self.monitor = NodeMonitor(self)
        self.bgp = Fabric(self)
        #: Processes started in hosts (servers, unbound), by host name.
        self._spawned_in: dict[str, list[subprocess.Popen]] = {}
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ paths
    @property
    def controller_dir(self) -> Path:
        assert self.run is not None
        return self.run.path / "controller"

    @property
    def of_socket(self) -> str:
        return str(self.controller_dir / "of.sock")

    def ovs_dir(self, node: Node) -> Path:
        """``node``'s OVS run directory (its daemons' sockets, pidfiles, logs and database)."""
        assert self.run is not None
        return self.run.path / f"n{node.index}"

    def switch_socket(self, node: Node) -> str:
        """Where ``node``'s bridge listens for the controller (its OVS rundir)."""
        return str(self.ovs_dir(node) / SWITCH_SOCKET)

    @property
    def api_socket(self) -> str:
        return str(self.controller_dir / "api.sock")

    @property
    def api(self) -> ApiClient:
        return ApiClient(self.api_socket)

    def node(self, name: str) -> K8sNode:
        assert self.net is not None
        return self.net[name]

    def pod(self, host_name: str) -> PodHost:
        assert self.net is not None
        return self.net[host_name]

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> "ClusterNet":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> "ClusterNet":
        if not self.cluster.datapath_note:
            # Not resolved by the caller (k8snet check/up/run do it, to exit 2 on a refusal).
            self.cluster = settle([self.cluster])[0]
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        t0 = time.monotonic()
        with deferred_signals():
            self.run = RunDir.create()
        self.run.sub("controller")
        self.cluster = self.bgp.impose(self.cluster)  # (bgp: no pod route until BGP learns one)
        (self.run.path / "cluster.json").write_text(to_json(self.cluster, indent=1))
        self.progress(f"run directory {self.run.path}")
        self.start_controller()
        make_room(self.cluster, self.progress)
        self._build_hosts()
        self.timings["hosts"] = time.monotonic() - t0
        self._build_underlay()
        self._build_nodes()
        self.impairments.install(self.cluster)  # (on the uplinks, which may be taps made just now)
        self.timings["nodes"] = time.monotonic() - t0
        self._build_pods()
        self.timings["pods"] = time.monotonic() - t0
        if self.cluster.dns:
            self.start_dns()
        self.progress("waiting for every switch to hold the desired flows")
        self.api.wait_synced([n.name for n in self.cluster.nodes], self.sync_timeout)
        self.timings["synced"] = time.monotonic() - t0
        if self.bgp.active:
            self.progress(f"starting BGP: {len(self.cluster.nodes)} nodes' BIRD, "
                          f"{len(self.cluster.underlay.racks)} rack gateways' and the core's")
            self.bgp.start()
            self.timings["bgp"] = time.monotonic() - t0
            self.progress(f"BGP converged in {self.bgp.converged_s:.2f}s")
        self.monitor.start()
        self.progress(f"cluster up in {time.monotonic() - t0:.1f}s: {self.cluster.summary()}")

    @property
    def routed(self) -> bool:
        return self.cluster.underlay.type is UnderlayType.ROUTED

    def _build_hosts(self) -> None:
        setLogLevel("warning")
        # Mininet.init() would raise root-namespace sysctls and limits (fixLimits) on every
        # start; the only one a cluster needs, ARP table room, is raised by make_room when
        # the cluster needs it (topos/neighbours.py).
        Mininet.inited = True
        self.net = Mininet(topo=None, build=False, controller=None, autoSetMacs=False,
                           autoStaticArp=False, waitConnected=False)
        self.progress(f"creating {len(self.cluster.nodes)} node and {len(self.cluster.pods)} pod namespaces")
        external = self.cluster.underlay.external
        if self.routed:
            self._add_host(CORE_HOST, CoreRouter)
            for rack in self.cluster.underlay.racks:
                self._add_host(rack.host_name, RackGateway)
                self.net.addLink(rack.host_name, CORE_HOST, port1=0, port2=rack.index,
                                 intfName1=RackGateway.CORE_IFNAME, intfName2=f"r{rack.index}")
        else:
            self._add_host(UNDERLAY_HOST, Underlay)
        lb = self.cluster.underlay.lb
        for host, cls, core_if, segment_if in (
                (external, ExternalClient, CoreRouter.EXTERNAL_IFNAME, EXTERNAL_FLAT_IFNAME),
                (lb, LoadBalancerHost, CoreRouter.LB_IFNAME, LB_FLAT_IFNAME)):
            if host is None:
                continue
            self._add_host(host.name, cls)
            if self.routed:
                self.net.addLink(host.name, CORE_HOST, port1=0, intfName1="eth0", intfName2=core_if)
            else:
                self.net.addLink(host.name, UNDERLAY_HOST, port1=0, intfName1="eth0", intfName2=segment_if)
        for node in self.cluster.nodes:
            self._add_host(node.name, K8sNode)
        for pod in self.cluster.pods:
            self._add_host(pod.host_name, PodHost)
        # Veth pairs, unless the node's OVS makes taps for them (topos/attach.py).
        for node in [] if uplinks_tapped(self.cluster) else self.cluster.nodes:
            segment = self.cluster.rack(node.rack).host_name if self.routed else UNDERLAY_HOST
            self.net.addLink(node.name, segment, port1=UPLINK_OFPORT, port2=node.index + 1,
                             intfName1=UPLINK_IFNAME, intfName2=f"n{node.index}")
        for pod in [] if pods_tapped(self.cluster) or not on_switch(self.cluster) else self.cluster.pods:
            self.net.addLink(pod.host_name, pod.node, port1=0, port2=pod.ofport,
                             intfName1="eth0", intfName2=pod.port_name)

    def _add_host(self, name: str, cls: type) -> None:
        assert self.net is not None and self.run is not None
        with deferred_signals():
            host = self.net.addHost(name, cls=cls, ip=None)
            self.run.record(OwnedProcess.of(host.pid, f"{cls.__name__} {name} shell"))

    def _build_underlay(self) -> None:
        assert self.net is not None
        mtu, bw = self.cluster.underlay.mtu, self.cluster.underlay.bandwidth_mbit
        external, lb, pool = self.cluster.underlay.external, self.cluster.underlay.lb, self.cluster.underlay.lb_pool
        uplinks = [] if uplinks_tapped(self.cluster) else self.cluster.nodes  # (taps join once made)
        if not self.routed:
            self.net[UNDERLAY_HOST].build([f"n{n.index}" for n in uplinks], mtu, bw)
            self.net[UNDERLAY_HOST].ip_batch([f"link set {p} mtu {mtu} master {Underlay.BRIDGE} up"
                                              for p, h in ((EXTERNAL_FLAT_IFNAME, external), (LB_FLAT_IFNAME, lb))
                                              if h is not None])
        else:
            for rack in self.cluster.underlay.racks:
                ports = [f"n{n.index}" for n in uplinks if n.rack == rack.name]
                self.net[rack.host_name].build(rack, ports, mtu, bw)
            self.net[CORE_HOST].build(self.cluster.underlay.racks, mtu, bw, external, lb, str(pool))
        if external is not None:
            self.net[external.name].build(external, mtu, self.cluster.offload)
            if lb is not None and not self.routed:
                # On a flat underlay the outside reaches the load balancer's VIPs through it.
                self.net[external.name].ip_batch([f"route add {pool} via {lb.ip} dev eth0"])
        if lb is not None:
            self.net[lb.name].build(lb, mtu, self.cluster.offload)
            self.program_lb()

    def program_lb(self) -> None:
        """Point the emulated cloud load balancer at the NodePorts of the current model."""
        lb = self.cluster.underlay.lb
        if lb is not None and self.net is not None:
            self.net[lb.name].program(lb_targets(self.cluster))

    def _build_nodes(self) -> None:
        assert self.run is not None
        self.progress(f"starting {len(self.cluster.nodes)} Open vSwitch instances (userspace datapath)")
        for node in self.cluster.nodes:
            host = self.node(node.name)
            host.start_ovs(self.run.sub(self.ovs_dir(node).name), self.cluster)
            host.build(self.cluster, node)
        attach_all(self, self.cluster)

    def _build_pods(self) -> None:
        for pod in self.cluster.pods:
            self.pod(pod.host_name).build(self.cluster, pod)
            if self.cluster.dns:
                self._resolv_conf(pod)

    # ------------------------------------------------------------------ cluster DNS
    def _resolv_conf(self, pod: Pod) -> None:
        """The pod's own /etc/resolv.conf, bind-mounted in its private mount namespace."""
        assert self.run is not None
        path = self.run.sub("pods") / f"{pod.host_name}.resolv.conf"
        path.write_text(resolv_conf(pod))
        self.pod(pod.host_name).ns("mount", "--bind", str(path), "/etc/resolv.conf")

    def start_dns(self) -> None:
        """(Re)start unbound in the kube-dns pod with a zone written from the model (only
        when the zone changed: an apply that touches no Service leaves DNS alone)."""
        assert self.run is not None
        host = next(p.host_name for p in self.cluster.pods if p.name == DNS_NAME and p.namespace == DNS_NAMESPACE)
        directory = self.run.sub("dns")
        conf, text = directory / "unbound.conf", unbound_conf(self.cluster, str(directory))
        running = [p for p in self._spawned_in.get(host, []) if p.poll() is None]
        if running and conf.exists() and conf.read_text() == text:
            return  # the zone did not change
        conf.write_text(text)
        self._stop_spawned(host)
        proc = self.spawn(host, ["unbound", "-d", "-c", str(directory / "unbound.conf")], "unbound (cluster DNS)")
        wait_for(lambda: bool(self.net[host].ns("ss", "-Hlun", "sport = :53").strip()) or proc.poll() is not None,
                 10, "unbound to listen on 53/udp")
        if proc.poll() is not None:
            raise ClusterError(f"unbound exited with status {proc.returncode}; its config: {directory / 'unbound.conf'}")

    # ------------------------------------------------------------------ controller
    def controller_command(self) -> list[str]:
        state = str(self.controller_dir / "state.json")
        switches = [arg for node in self.cluster.nodes for arg in ("--switch", self.switch_socket(node))]
        module = "controllers.ryu_launcher" if self.framework == "ryu" else "controllers"
        return [sys.executable, "-m", module, "--of-socket", self.of_socket, "--api-socket", self.api_socket,
                "--state", state, *switches]

    def start_controller(self) -> None:
        """Start (or restart) the controller process; it reads the model from its state file."""
        assert self.run is not None
        state = self.controller_dir / "state.json"
        if not state.exists():
            state.write_text(to_json(self.cluster))
        env = {**os.environ, "PYTHONPATH": _project_root() + os.pathsep + os.environ.get("PYTHONPATH", "")}
        with deferred_signals(), open(self.controller_dir / "controller.log", "ab") as log:
            self._controller_popen = subprocess.Popen(
                self.controller_command(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, env=env)
            self.controller = OwnedProcess.of(self._controller_popen.pid, "controller")
            self.run.record(self.controller)
        try:
            wait_for(lambda: os.path.exists(self.api_socket) and os.path.exists(self.of_socket)
                     or self._controller_popen.poll() is not None, 30, "the controller's sockets")
        except CommandError as exc:
            raise ClusterError(f"{exc}; see {self.controller_dir / 'controller.log'}") from exc
        if self._controller_popen.poll() is not None:
            raise ClusterError(f"the controller exited with status {self._controller_popen.returncode}; "
                               f"its log: {self.controller_dir / 'controller.log'}:\n{self.controller_log()}")

    def stop_controller(self) -> None:
        if self.controller is not None:
            self.controller.stop()
        if self._controller_popen is not None:
            self._controller_popen.poll()
        for path in (self.of_socket, self.api_socket):
            if os.path.exists(path):
                os.unlink(path)
        self.controller = None

    def controller_log(self) -> str:
        try:
            return (self.controller_dir / "controller.log").read_text()[-4000:]
        except OSError:
            return ""

    def apply(self, cluster: Cluster, wait: float = 30.0,
              started: Optional[Callable[[Pod], None]] = None) -> None:
        """Make ``cluster`` the desired state and wait until every switch holds it.

        Pods that are new get their namespace and port first (so no flow points at a
        port that does not exist yet), then ``started(pod)`` runs for each -- what its
        containers do before a readiness probe would pass, such as starting the server,
        so that a new pod serves before it is an endpoint; pods that are gone lose their
        flows first and their namespace after (so no new connection is sent to a pod
        being removed)."""
        with self._lock:
            # Run-time state is not the caller's to change: node readiness (the control
            # plane's) and the links' loss (set by faults) come from the running cluster.
            cluster = self.bgp.impose(self.monitor.impose(cluster.model_copy(update={
                "underlay": cluster.underlay.model_copy(update={"impairments": self.cluster.underlay.impairments})})))
            before = {p.host_name: p for p in self.cluster.pods}
            after = {p.host_name: p for p in cluster.pods}
            moved = [h for h in before.keys() & after.keys()
                     if (before[h].node, before[h].ip, before[h].ofport) != (after[h].node, after[h].ip, after[h].ofport)]
            if moved or [n.name for n in cluster.nodes] != [n.name for n in self.cluster.nodes]:
                raise ClusterError(f"nodes and pod addresses cannot change on a running cluster: {moved}")
            for name in sorted(after.keys() - before.keys()):
                self.add_pod(cluster, after[name])
                if started is not None:
                    started(after[name])
            # Pods coming or going: two steps, each on every switch before the next
            # (k8snet/model/staging.py says why).
            for step in stages(self.cluster, cluster):
                self.api.apply(json.loads(to_json(step)))
                if wait or step is not cluster:
                    # (A switch whose vswitchd is down gets the change when it comes back.)
                    live = [n.name for n in cluster.nodes if n.name not in self.faults.switches_down]
                    self.api.wait_synced(live, wait or 30.0)
                    purge_datapath_flows([self.node(name).ovs for name in live])
            self.cluster = cluster
            self.program_lb()
            if cluster.dns:
                self.start_dns()
            for name in before.keys() - after.keys():
                self.remove_pod(before[name])

    def add_pod(self, cluster: Cluster, pod: Pod) -> None:
        """A new pod namespace on a running node: veth (or tap) and OVS port, or a macvlan child; addresses."""
        assert self.net is not None
        self._add_host(pod.host_name, PodHost)
        node = self.node(pod.node)
        tapped = pods_tapped(cluster)
        if not on_switch(cluster):
            macvlan_children(node, [(pod.port_name, self.pod(pod.host_name).pid)])
        elif not tapped:
            self.net.addLink(pod.host_name, pod.node, port1=0, port2=pod.ofport, intfName1="eth0",
                             intfName2=pod.port_name)
            node.ip_batch([f"link set {pod.port_name} mtu {cluster.pod_mtu} up"])
        assert node.ovs is not None
        if on_switch(cluster):
            node.ovs.vsctl("add-port", BRIDGE_NAME, pod.port_name, "--", "set", "interface", pod.port_name,
                           f"ofport_request={pod.ofport}", *port_type(tapped))
        if tapped:
            hand_over(node, [(pod.port_name, self.pod(pod.host_name).pid, "eth0")])
        self.pod(pod.host_name).build(cluster, pod)
        if cluster.dns:
            self._resolv_conf(pod)

    def remove_pod(self, pod: Pod) -> None:
        """Take a pod away: its processes, its OVS port, its namespace."""
        assert self.net is not None
        self._stop_spawned(pod.host_name)
        node = self.node(pod.node)
        assert node.ovs is not None
        node.ovs.vsctl("--if-exists", "del-port", BRIDGE_NAME, pod.port_name)
        # The veth goes now, not when the kernel gets round to freeing the pod's namespace
        # (asynchronously): a pod created next on this node may take the same port name.
        node.ns("ip", "link", "del", pod.port_name, check=False)
        host = self.net[pod.host_name]
        for link in [l for l in self.net.links if host in (l.intf1.node, l.intf2.node)]:
            self.net.links.remove(link)
            other = link.intf2 if link.intf1.node is host else link.intf1
            other.node.delIntf(other)
        host.terminate()
        self.net.hosts.remove(host)
        del self.net.nameToNode[pod.host_name]

    # ------------------------------------------------------------------ checks (topos.checks)
    def reachable(self, src: str, dst: str, port: Optional[int] = None, proto: str = "icmp",
                  timeout: float = 1.0) -> Reach:
        """Does ``src`` reach ``dst`` (a pod, node, outside host, ``svc/NAME`` or IP) by
        ``proto`` (icmp, tcp, udp) on ``port``?  Truthy when it does; says what was seen."""
        return checks.reachable(self, src, dst, port, proto, timeout)

    def matrix(self) -> dict:
        """Probe the full reachability matrix once: the document ``k8snet check --json`` writes."""
        assert self.net is not None
        with checks.declared_servers(self):
            return measure(self.net, self.cluster, self.timings, self.framework, ports=True).document()

    def assert_matrix(self, expected: Expected = "all", default: bool = True) -> dict:
        """Probe the matrix and fail with a readable diff where a pair differs from
        ``expected``: ``"all"``, ``"predicted"``, a bool, ``{"src->dst": bool}`` (wildcards
        allowed; unnamed pairs expected ``default``) or a function of the pair."""
        return checks.assert_matrix(self, expected, default=default)

    # ------------------------------------------------------------------ teardown
    def stop(self) -> None:
        """Remove everything: OVS daemons, shells (and so the namespaces), the controller,
        the run directory. Safe to call at any point, and more than once; a Ctrl-C during
        it is held until it is done."""
        with deferred_signals():
            self._stop()

    def _stop(self) -> None:
        self.monitor.stop()
        self.bgp.stop()
        for host_name in list(self._spawned_in):
            self._stop_spawned(host_name)
        if self.net is not None:
            daemons = []
            for host in list(self.net.hosts):
                if isinstance(host, K8sNode) and host.ovs is not None:
                    daemons.extend(host.ovs.daemons())
            stop_all(daemons)
            for host in list(self.net.hosts):
                try:
                    host.terminate()
                except Exception as exc:
                    LOG.warning("terminating %s: %s", host.name, exc)
            self.net = None
        self.stop_controller()
        if self.run is not None:
            self.run.remove()
            self.run = None


def _project_root() -> str:
    return str(Path(__file__).resolve().parent.parent)
