"""Reachability checks a test writes against a running cluster: one path, or the whole matrix.

``ClusterNet.reachable(src, dst, port=None, proto="icmp")`` asks whether ``src`` reaches
``dst``, where ``src`` is any host of the emulation (a pod, a node, ``external``, ``lb``,
a gateway) and ``dst`` is a pod, a node, ``external``, ``lb``, a Service (``svc/web`` or
``svc/web.ns``) or an IP address:

* ``icmp``: at least one of three echo requests is answered (``fping``);
* ``tcp``: a TCP handshake completes with ``dst:port``; ``udp``: a datagram to
  ``dst:port`` gets an answer.  When nothing listens on that port where the connection
  lands (the pod, the node, or a Service's endpoints at their target port), k8snet
  answers there itself for the duration of the check (an echo agent, started and
  stopped by PID), so a check does not depend on the workload running a server.

A Service answers TCP and UDP on its ports only: ping to a ClusterIP is unanswered, as
with kube-proxy.  ``assert_matrix`` compares the full matrix with an expectation
(:func:`k8snet.model.reach.expectation`) and fails with one line per differing pair.
"""

from __future__ import annotations

import ipaddress
import json
import re
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Optional

from controllers.pipeline import FEATURE_MASK, FEATURE_SHIFT, OBJECT_MASK, Feature
from controllers.policy import counter_names
from k8snet.model.cluster import BRIDGE_NAME, Cluster, Service
from k8snet.model.reach import Expected, declared_ports, expectation, mismatch_line, pairs
from k8snet.procs import CommandError
from topos.agent import SCRIPT
from topos.ovs import appctl_all, wait_for
from topos.probe import Matrix, fping, measure

PROTOCOLS = ("icmp", "tcp", "udp")
#: How many differing pairs an assertion message lists before it summarises the rest.
SHOWN = 40


class MatrixMismatch(AssertionError):
    """The matrix differs from what the test expected; the message lists each pair."""

    def __init__(self, message: str, document: dict[str, Any]):
        super().__init__(message)
        self.document = document


@dataclass(frozen=True)
class Reach:
    """The answer of :func:`reachable`: true when reachable, and says what was seen."""

    src: str
    dst: str
    ip: str
    port: Optional[int]
    proto: str
    ok: bool
    detail: str
    #: What the backend predicts for this pair (None where the matrix has no such pair).
    predicted: Optional[bool] = None
    reason: str = ""
    #: icmp: the mean round trip; tcp: the connect time; udp: the time to the answer.
    ms: Optional[float] = None

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        where = f"{self.ip}:{self.port}" if self.port else self.ip
        verdict = "reachable" if self.ok else "unreachable"
        text = f"{self.src} -> {self.dst} ({where}/{self.proto}): {verdict} ({self.detail})"
        if self.predicted is False:
            text += f"; predicted unreachable: {self.reason}"
        return text

    __repr__ = __str__


@dataclass(frozen=True)
class _Destination:
    ip: str
    port: Optional[int]
    #: (host, port) where a connection to the destination lands (the Service's endpoints).
    lands: tuple[tuple[str, int], ...]


def _service(cluster: Cluster, spec: str) -> Service:
    name, _, namespace = spec.partition(".")
    try:
        return cluster.service(name, namespace or "default")
    except KeyError:
        known = ", ".join(f"svc/{s.name}" + ("" if s.namespace == "default" else f".{s.namespace}")
                          for s in cluster.services) or "none"
        raise ValueError(f"dst {'svc/' + spec!r}: no such Service; Services: {known}") from None


def _service_destination(cluster: Cluster, service: Service, port: Optional[int], proto: str,
                         ip: Optional[str] = None) -> _Destination:
    if service.cluster_ip is None:
        raise ValueError(f"Service {service.key} has no ClusterIP (headless or ExternalName): "
                         "check its pods by name instead")
    if proto == "icmp":
        return _Destination(ip or str(service.cluster_ip), None, ())
    candidates = [p for p in service.ports if p.protocol.lower() == proto and (port is None or p.port == port)]
    if not candidates:
        offered = ", ".join(f"{p.port}/{p.protocol}" for p in service.ports)
        raise ValueError(f"Service {service.key} has no port {port or ''}/{proto.upper()}; it offers {offered}")
    chosen = candidates[0]
    lands = tuple((e.pod, e.port) for e in cluster.endpoints(service, chosen))
    return _Destination(ip or str(service.cluster_ip), chosen.port, lands)


def _destination(cluster: Cluster, dst: str, port: Optional[int], proto: str) -> _Destination:
    """Where ``dst`` is (its IP), which port, and where a connection to it lands."""
    if dst.startswith("svc/"):
        return _service_destination(cluster, _service(cluster, dst[4:]), port, proto)
    hosts: dict[str, str] = {p.host_name: str(p.ip) for p in cluster.pods}
    hosts.update({n.name: str(n.ip) for n in cluster.nodes})
    hosts.update({h.name: str(h.ip) for h in cluster.underlay.outside_hosts()})
    if dst in hosts:
        return _Destination(hosts[dst], port, ((dst, port),) if port else ())
    try:
        address = ipaddress.IPv4Address(dst)
    except ValueError:
        raise ValueError(f"dst {dst!r}: not a pod, node, outside host, svc/NAME or IPv4 address; hosts: "
                         f"{', '.join(sorted(hosts))}") from None
    for service in cluster.services:
        if address in (service.cluster_ip, service.load_balancer_ip):
            return _service_destination(cluster, service, port, proto, ip=str(address))
    owner = next((name for name, ip in hosts.items() if ip == str(address)), None)
    return _Destination(str(address), port, ((owner, port),) if owner and port else ())


def _listening(net: Any, host: str, port: int, proto: str) -> bool:
    flag = "-Htln" if proto == "tcp" else "-Huln"
    return bool(net.net[host].ns("ss", flag, f"sport = :{port}").strip())


def reachable(net: Any, src: str, dst: str, port: Optional[int] = None, proto: str = "icmp",
              timeout: float = 1.0) -> Reach:
    """Does ``src`` reach ``dst`` (see the module docstring)?  ``net`` is a running ClusterNet."""
    if proto not in PROTOCOLS:
        raise ValueError(f"proto={proto!r}: use one of {', '.join(PROTOCOLS)}")
    if proto != "icmp" and port is None and not dst.startswith("svc/"):
        raise ValueError(f"proto={proto!r} needs a port (port=80), except for a Service (svc/NAME)")
    if proto == "icmp" and port is not None:
        raise ValueError("ICMP has no ports: leave port out, or use proto='tcp' or 'udp'")
    cluster: Cluster = net.cluster
    if net.net is None or src not in net.net.nameToNode:
        raise ValueError(f"src {src!r}: no such host in the running cluster")
    where = _destination(cluster, dst, port, proto)
    pair = next((p for p in pairs(cluster) if p.src == src and p.dst == dst), None)
    predicted, reason = (pair.predicted, pair.reason) if pair else (None, "")
    if proto == "icmp":
        sent, received, rtt = fping(net.net[src].pid, [where.ip], 3, int(timeout * 1000))[where.ip]
        return Reach(src, dst, where.ip, None, proto, received > 0, f"{received} of {sent} echo requests answered",
                     predicted, reason, rtt)
    assert where.port is not None
    started = []
    try:
        for host, host_port in where.lands:
            if not _listening(net, host, host_port, proto):
                started.append((host, net.serve(host, host_port, proto)))
        answer = _connect(net, src, where.ip, where.port, proto, timeout)
    finally:
        for host, proc in started:
            net.stop_spawned(host, proc)
    if answer.get("ok"):
        detail = f"{'connected' if proto == 'tcp' else 'answered'} in {answer['ms']} ms"
    else:
        detail = f"{answer.get('error')} after {answer.get('tries')} tries"
    if where.lands == () and dst.startswith("svc/"):
        detail += "; the Service has no ready endpoint"
    return Reach(src, dst, where.ip, where.port, proto, bool(answer.get("ok")), detail, predicted, reason,
                 answer.get("ms"))


@contextmanager
def declared_servers(net: Any, only: Optional[set[str]] = None) -> Iterator[int]:
    """Answer on every port a pod declares where nothing listens yet (one ``agent.py
    serve-ports`` per pod, started and stopped by PID), for as long as the block runs;
    yields how many ports it serves.  A declared port is where a Kubernetes workload
    listens; ``k8snet check`` probes it, so it must answer whatever the workload runs.
    ``only``: the pods (host names) to serve, when not all."""
    from concurrent.futures import ThreadPoolExecutor

    def missing(pod: Any) -> list[str]:
        return [f"{port}/{proto.lower()}" for port, proto, _ in declared_ports(pod)
                if not _listening(net, pod.host_name, port, proto.lower())]

    pods = [p for p in net.cluster.pods if declared_ports(p) and (only is None or p.host_name in only)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        wanted = {pod.host_name: ports for pod, ports in zip(pods, pool.map(missing, pods)) if ports}
    started = []
    try:
        for host, ports in wanted.items():
            args = ["/usr/bin/python3", SCRIPT, "serve-ports", "--name", host]
            for item in ports:
                args += ["--listen", item]
            started.append((host, net.spawn(host, args, f"agent serve-ports {host} {' '.join(ports)}")))
        for (host, proc), ports in zip(started, wanted.values()):
            wait_for(lambda: all(_listening(net, host, int(i.split("/")[0]), i.split("/")[1]) for i in ports)
                     or proc.poll() is not None, 10, f"{host} to listen on {', '.join(ports)}")
        yield sum(len(p) for p in wanted.values())
    finally:
        for host, proc in started:
            net.stop_spawned(host, proc)


def _connect(net: Any, src: str, ip: str, port: int, proto: str, timeout: float) -> dict[str, Any]:
    try:
        out = net.net[src].ns("/usr/bin/python3", SCRIPT, "connect", "--ip", ip, "--port", str(port), "--proto",
                              proto, "--count", "3", "--timeout", str(timeout), timeout=3 * timeout + 15)
        return json.loads(out)
    except (CommandError, ValueError) as exc:
        return {"ok": False, "error": f"probe failed: {exc}", "tries": 0}


def assert_matrix(net: Any, expected: Expected = "all", matrix: Optional[Matrix] = None,
                  default: bool = True) -> dict[str, Any]:
    """Probe the matrix (or take ``matrix``) and compare every pair with ``expected``;
    return the matrix document, or raise :class:`MatrixMismatch` listing each pair that
    differs: what was expected, what happened, and what the backend predicts."""
    wanted = expectation(expected, default)
    matrix = matrix or measure(net.net, net.cluster, net.timings, net.framework)
    document = matrix.document()
    differing = [r for r in matrix.results if r.reachable != wanted(r.pair)]
    if not differing:
        return document
    lines = [mismatch_line(r.pair, not r.reachable, r.reachable, f"{r.received} of {r.sent} answered")
             for r in differing]
    shown = lines[:SHOWN] + ([f"... and {len(lines) - SHOWN} more"] if len(lines) > SHOWN else [])
    raise MatrixMismatch(f"{len(differing)} of {len(matrix.results)} pairs are not as expected "
                         f"({net.cluster.summary()}):\n  " + "\n  ".join(shown), document)


class HeldConnection:
    """A long-lived TCP connection kept busy by the agent (``agent.py hold``), for checking
    that a change does not break it: wait until it stands (and learn which endpoint
    serves it), make the change, then read how it ended."""

    def __init__(self, proc: Any):
        self.proc = proc
        self.server: Optional[str] = None

    def established(self, timeout: float = 10.0) -> str:
        """The endpoint serving the connection, once it stands (AssertionError if it never does)."""
        import select

        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        try:
            first = json.loads(line)
        except ValueError:
            first = {}
        if not first.get("established"):
            rest, err = self.proc.communicate(timeout=30)
            raise AssertionError(f"the held connection never stood: {line!r} {rest!r} {err!r}")
        self.server = first["server"]
        return first["server"]

    def result(self, timeout: float = 30.0, stop: bool = False) -> dict[str, Any]:
        """How it ended: ``{"ok": true, "server": ..., "exchanges": N}`` or the error;
        ``stop``: end it now (SIGTERM: the agent stops and reports) instead of waiting."""
        if stop and self.proc.poll() is None:
            self.proc.terminate()
        out, err = self.proc.communicate(timeout=timeout)
        lines = [line for line in out.splitlines() if line.strip()]
        if not lines:
            raise AssertionError(f"the held connection said nothing: {err!r}")
        return json.loads(lines[-1])


def policy_counters(net: Any) -> list[dict[str, Any]]:
    """NetworkPolicy flow statistics of every node, by what they count: per node, each
    policy rule's ``allowed`` packets and each isolated pod's ``dropped`` ones (only the
    first packet of a connection is judged, so these are connection attempts).  Read from
    the switches (``ovs-ofctl dump-flows``), named from the running model."""
    names = counter_names(net.cluster)
    # A datapath flow's packets reach the OpenFlow rules it was made from when a revalidator
    # next goes over it (up to 500 ms later): wait for that round on every node first.
    appctl_all([net.node(n.name).ovs for n in net.cluster.nodes], "revalidator/wait")
    feature = f"{int(Feature.POLICY) << FEATURE_SHIFT:#x}/{FEATURE_MASK:#x}"
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    for node in net.cluster.nodes:
        dump = net.node(node.name).ovs.ofctl("dump-flows", BRIDGE_NAME, f"cookie={feature}")
        for cookie, packets in re.findall(r"cookie=(0x[0-9a-f]+),.*?n_packets=(\d+)", dump):
            key = int(cookie, 16) & (FEATURE_MASK | OBJECT_MASK)
            if key in names:
                row = rows.setdefault((node.name, key), {"node": node.name, **names[key], "packets": 0})
                row["packets"] += int(packets)
    return list(rows.values())
