"""The machine's own references for throughput, built in namespaces of ours.

::

    veth-a ══════════ veth-b                 (bare veth pair: the kernel's limit)
    ovs-a ══ p1 [br0: userspace OVS, one NORMAL flow] p2 ══ ovs-b

Both with the run's offload setting (topos/datapath.py): ``none``, TX checksum offload
off as in the pods; ``tso``, offloads on and userspace TSO on in the bridge.  A pod path
divided by one of these is then a ratio at equal offloads.  ``stop()`` removes everything, also half-built.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from typing import Any

from mininet.net import Mininet

from k8snet.procs import OwnedProcess, deferred_signals
from k8snet.rundir import RunDir
from topos.agent import SCRIPT as AGENT
from topos.nodes import NsHost
from topos.ovs import OvsInstance, wait_for
from topos.spawning import kill_group


@dataclass
class ReferencePath:
    name: str
    what: str
    client: Any
    server: Any
    server_ip: str


class Namespaces:
    """Namespaces of a benchmark's own, in a run directory of ours (so ``k8snet clean``
    finds them after a crash): :meth:`build` makes them (``_build`` in a subclass) and
    removes everything if that fails half way; :meth:`stop` removes everything."""

    #: Names the hosts' processes in the run directory's record.
    kind = "reference"

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self._servers: list[subprocess.Popen] = []
        with deferred_signals():
            self.run: RunDir | None = RunDir.create()
        Mininet.inited = True
        self.net = Mininet(topo=None, build=False, controller=None, autoSetMacs=False, autoStaticArp=False,
                           waitConnected=False)

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _host(self, name: str) -> NsHost:
        assert self.run is not None
        with deferred_signals():
            host = self.net.addHost(f"{self.prefix}{name}", cls=NsHost, ip=None)
            self.run.record(OwnedProcess.of(host.pid, f"{self.kind} {name}"))
        return host

    def serve(self, host: NsHost, port: int) -> None:
        """The identity/echo server (:mod:`topos.agent`) in ``host``, recorded in the run
        directory and stopped with everything; returns once it listens."""
        assert self.run is not None
        with deferred_signals():
            proc = host.popen(["/usr/bin/python3", AGENT, "serve", "--name", host.name, "--port", str(port)],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.run.record(OwnedProcess.of(proc.pid, f"{self.kind} agent serve {host.name}:{port}"))
            self._servers.append(proc)
        wait_for(lambda: bool(host.ns("ss", "-Htln", f"sport = :{port}").strip()) or proc.poll() is not None, 10,
                 f"{host.name} to listen on {port}/tcp")

    def build(self) -> list[ReferencePath]:
        try:
            return self._build()
        except BaseException:
            self.stop()
            raise

    def _build(self) -> list[ReferencePath]:
        raise NotImplementedError

    def stop(self) -> None:
        with deferred_signals():
            for proc in self._servers:
                kill_group(proc)
            self._servers = []
            for host in list(self.net.hosts):
                host.terminate()
            self.net.hosts = []
            if self.run is not None:
                self.run.remove()
                self.run = None


class References(Namespaces):
    """veth and single-bridge OVS NORMAL, each a client and a server namespace."""

    def __init__(self, offload: str = "none", suffix: str = "") -> None:
        """``suffix`` tells two sets apart in one run (``-tso``): in the path names, and
        (as the hosts' prefix) in the namespace names."""
        super().__init__(suffix.strip("-")[:2])
        self.offload = offload
        self.suffix = suffix
        self.ovs: OvsInstance | None = None

    def _address(self, host: NsHost, ip: str) -> None:
        host.ip_batch(["link set lo up", "link set eth0 up", f"addr add {ip}/24 dev eth0"])
        if self.offload != "tso":
            host.ns("ethtool", "-K", "eth0", "tx", "off")

    def _build(self) -> list[ReferencePath]:
        a, b = self._host("veth-a"), self._host("veth-b")
        self.net.addLink(a, b, intfName1="eth0", intfName2="eth0")
        self._address(a, "10.99.0.1")
        self._address(b, "10.99.0.2")
        c, d, sw = self._host("ovs-a"), self._host("ovs-b"), self._host("ovs-sw")
        self.net.addLink(c, sw, intfName1="eth0", intfName2="p1")
        self.net.addLink(d, sw, intfName1="eth0", intfName2="p2")
        self._address(c, "10.99.1.1")
        self._address(d, "10.99.1.2")
        sw.ip_batch(["link set lo up", "link set p1 up", "link set p2 up"])
        self.ovs = OvsInstance(self.run.sub("ovs"), ["mnexec", "-a", str(sw.pid)])
        self.ovs.start(OvsInstance.TSO if self.offload == "tso" else None)
        self.ovs.vsctl("add-br", "br0", "--", "set", "bridge", "br0", "datapath_type=netdev", "fail-mode=secure",
                       "--", "add-port", "br0", "p1", "--", "add-port", "br0", "p2")
        self.ovs.ofctl("add-flow", "br0", "priority=0,actions=NORMAL")
        offloads = "offloads on" if self.offload == "tso" else "tx checksum offload off"
        tso = ", userspace TSO on" if self.offload == "tso" else ""
        return [ReferencePath(f"veth{self.suffix}", f"bare veth pair, {offloads}", a, b, "10.99.0.2"),
                ReferencePath(f"ovs-normal{self.suffix}",
                              f"one userspace OVS bridge, a single NORMAL flow, {offloads}{tso}", c, d, "10.99.1.2")]

    def stop(self) -> None:
        with deferred_signals():
            if self.ovs:
                self.ovs.stop()
                self.ovs = None
            super().stop()
