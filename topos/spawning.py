"""Processes a cluster starts in its hosts' namespaces: servers, clients, daemons.

A mixin of :class:`topos.cluster.ClusterNet` (it uses the net's Mininet hosts, run
directory, lock and ``_spawned_in``): every long-running process is recorded in the run
directory when it starts, so that teardown -- or ``k8snet clean`` after a crash -- stops
it by the PID we started, with its process group.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from typing import Any

from k8snet.procs import OwnedProcess, deferred_signals
from topos.agent import SCRIPT as AGENT
from topos.checks import HeldConnection
from topos.ovs import wait_for


class Spawning:
    net: Any
    run: Any
    _lock: Any
    _spawned_in: dict[str, list[subprocess.Popen]]

    def spawn(self, host_name: str, args: list[str], what: str, stdout: Any = subprocess.DEVNULL) -> subprocess.Popen:
        """Start a long-running process in a host's namespace, recorded for teardown
        (a process started there outlives the namespace's shell otherwise); ``stdout``:
        ``subprocess.PIPE`` to read what it prints (as text)."""
        assert self.net is not None and self.run is not None
        with deferred_signals():
            proc = self.net[host_name].popen(args, stdin=subprocess.DEVNULL, stdout=stdout,
                                             stderr=subprocess.DEVNULL, text=stdout is subprocess.PIPE)
            self.run.record(OwnedProcess.of(proc.pid, what))
            self._spawned_in.setdefault(host_name, []).append(proc)
        return proc

    def serve(self, pod_host: str, port: int, proto: str = "tcp") -> subprocess.Popen:
        """Run the identity server (:mod:`topos.agent`) in a pod; waits until it listens."""
        proc = self.spawn(pod_host, ["/usr/bin/python3", AGENT, "serve", "--name", pod_host, "--port", str(port),
                                     "--proto", proto], f"agent serve {pod_host}:{port}/{proto}")
        if proto == "tcp":
            check = ["ss", "-Htln", f"sport = :{port}"]
        else:
            check = ["ss", "-Huln", f"sport = :{port}"]
        wait_for(lambda: bool(self.net[pod_host].ns(*check).strip()) or proc.poll() is not None, 10,
                 f"{pod_host} to listen on {port}/{proto}")
        return proc

    def stop_spawned(self, host_name: str, proc: subprocess.Popen) -> None:
        """Stop one process :meth:`spawn` started (with its process group)."""
        with self._lock:
            procs = self._spawned_in.get(host_name, [])
            if proc in procs:
                procs.remove(proc)
        kill_group(proc)

    def ask(self, host_name: str, ip: str, port: int, proto: str = "tcp", count: int = 1,
            timeout: float = 2.0, interval: float = 0.0, size: int = 1, sport: int = 0) -> list[dict]:
        """``count`` connections from ``host_name`` to ``ip:port``; one result each (see agent).
        UDP: ``size`` bytes per datagram (answered with as many); from source port ``sport``
        when given (TCP too: one connection per port, its TIME_WAIT keeps the port)."""
        assert self.net is not None
        out = self.net[host_name].ns("/usr/bin/python3", AGENT, "ask", "--ip", ip, "--port", str(port),
                                     "--proto", proto, "--count", str(count), "--timeout", str(timeout),
                                     "--interval", str(interval), "--size", str(size), "--sport", str(sport),
                                     timeout=count * (timeout + interval) + 15)
        return json.loads(out)

    def hold(self, host_name: str, ip: str, port: int, seconds: float) -> HeldConnection:
        """Start one long-lived TCP exchange (agent ``hold``); see :class:`HeldConnection`."""
        assert self.net is not None
        return HeldConnection(self.net[host_name].popen(
            ["/usr/bin/python3", AGENT, "hold", "--ip", ip, "--port", str(port), "--seconds", str(seconds)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))

    def _stop_spawned(self, host_name: str) -> None:
        """Kill what :meth:`spawn` started in one host, with its children: ``mnexec -d``
        made each a process-group leader, and a server such as nginx forks workers that
        would outlive their master (and keep the namespace alive)."""
        for proc in self._spawned_in.pop(host_name, []):
            kill_group(proc)


def kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
