"""What ``k8snet trace SRC DST[:PORT]`` names, resolved against the cluster model (pure).

A source is something that can send: a pod (``web-0``, ``ns/web-0``, ``pod/web-0``), a node
(``node-1``, ``node/node-1``), the ``external`` host, or the IP of one of those.  A
destination is anything with an address: the same, a Service (``svc/web``: its ClusterIP;
``lb/web``: its LoadBalancer IP), or any IPv4 address -- one that nobody owns is traced
until the network drops it, which is the point of asking.  A port follows a colon: a
number, or for a Service a port's name; a Service without one uses its first port of
the protocol traced.  Mistakes are :class:`TraceInputError`, naming the argument and the
fix, before anything starts.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Optional

from k8snet.model.cluster import Cluster, Pod, Service, ServicePort

PROTOCOLS = ("icmp", "tcp", "udp")
#: The source port a trace uses unless told otherwise: fixed, so the same question gets
#: the same Service endpoint (the pick hashes the 5-tuple) and the answer can be repeated.
DEFAULT_SOURCE_PORT = 41000


class TraceInputError(ValueError):
    """A trace argument names nothing, or something that cannot play its part."""

    def __init__(self, argument: str, message: str):
        self.argument = argument
        super().__init__(f"{argument}: {message}")


@dataclass(frozen=True)
class End:
    """One end of a traced packet."""

    kind: str                      # pod | node | external | lb | service | ip
    name: str                      # what to call it: "default/web-0", "node-1", "svc default/web"
    ip: ipaddress.IPv4Address
    host: Optional[str] = None     # the namespace that sends or receives (Mininet host name)
    service: Optional[Service] = None
    service_port: Optional[ServicePort] = None


@dataclass(frozen=True)
class Question:
    src: End
    dst: End
    protocol: str
    dport: Optional[int]
    sport: Optional[int]
    ttl: int = 64                  # Linux's default for what a pod, node or host sends
    #: The IP packet's total length, Don't Fragment set (Linux's path MTU discovery
    #: default); None: as small as the probe is.
    size: Optional[int] = None

    def describe(self) -> str:
        port = f":{self.dport}" if self.dport is not None else ""
        return f"{self.protocol} {self.src.name} ({self.src.ip}) -> {self.dst.name} ({self.dst.ip}{port})"


def _owner(cluster: Cluster, ip: ipaddress.IPv4Address) -> Optional[End]:
    for pod in cluster.pods:
        if pod.ip == ip:
            return End("pod", f"{pod.namespace}/{pod.name}", ip, pod.host_name)
    for node in cluster.nodes:
        if node.ip == ip:
            return End("node", node.name, ip, node.name)
    for host in cluster.underlay.outside_hosts():
        if host.ip == ip:
            return End("external" if host is cluster.underlay.external else "lb", host.name, ip, host.name)
    for svc in cluster.services:
        if svc.cluster_ip == ip:
            return End("service", f"svc {svc.key}", ip, service=svc)
        if svc.load_balancer_ip == ip:
            return End("service", f"lb {svc.key}", ip, service=svc)
    return None


def _service(cluster: Cluster, argument: str, ref: str, kind: str) -> End:
    namespace, _, name = ref.rpartition("/")
    try:
        svc = cluster.service(name, namespace or "default")
    except KeyError:
        known = ", ".join(sorted(s.key for s in cluster.services)) or "none"
        raise TraceInputError(argument, f"no Service {namespace or 'default'}/{name} (Services: {known})")
    ip = svc.cluster_ip if kind == "svc" else svc.load_balancer_ip
    if ip is None:
        what = ("has no ClusterIP (headless or ExternalName): name one of its pods instead" if kind == "svc"
                else "has no LoadBalancer IP (type LoadBalancer gets one from underlay.lbPool)")
        raise TraceInputError(argument, f"Service {svc.key} {what}")
    return End("service", f"{kind} {svc.key}", ip, service=svc)


def resolve(cluster: Cluster, argument: str, text: str) -> End:
    """One SRC or DST (without its port)."""
    kind, sep, ref = text.partition("/")
    if sep and kind in ("svc", "lb"):
        return _service(cluster, argument, ref, kind)
    if sep and kind == "node":
        try:
            node = cluster.node(ref)
        except KeyError:
            raise TraceInputError(argument, f"no node {ref!r} (nodes: {', '.join(n.name for n in cluster.nodes)})")
        return End("node", node.name, node.ip, node.name)
    if sep and kind == "pod":
        text, sep = ref, ""
    try:
        ip = ipaddress.IPv4Address(text)
    except ValueError:
        pass
    else:
        return _owner(cluster, ip) or End("ip", str(ip), ip)
    if text == "external":
        ext = cluster.underlay.external
        if ext is None:
            raise TraceInputError(argument, "this cluster has no external host")
        return End("external", ext.name, ext.ip, ext.name)
    namespace, _, name = text.rpartition("/")
    pods = [p for p in cluster.pods if p.name == name and p.namespace == (namespace or p.namespace)]
    nodes = [n for n in cluster.nodes if n.name == text]
    if len(pods) > 1:
        raise TraceInputError(argument, f"{name!r} names pods in several namespaces "
                                        f"({', '.join(sorted(p.namespace for p in pods))}): write NAMESPACE/{name}")
    if pods and nodes:
        raise TraceInputError(argument, f"{text!r} is a pod and a node: write pod/{text} or node/{text}")
    if pods:
        return End("pod", f"{pods[0].namespace}/{pods[0].name}", pods[0].ip, pods[0].host_name)
    if nodes:
        return End("node", nodes[0].name, nodes[0].ip, nodes[0].name)
    raise TraceInputError(argument, f"{text!r} is no pod, node, Service (svc/NAME, lb/NAME), 'external' or IPv4 "
                                    "address of this cluster")


def _port(argument: str, text: str, dst: End, protocol: str,
          pod: Optional[Pod] = None) -> tuple[Optional[int], Optional[ServicePort]]:
    """The port traced: given, a Service's (by name or its first), or a pod's first declared."""
    svc = dst.service
    ports = [p for p in svc.ports if p.protocol.lower() == protocol] if svc else []
    if text == "":
        if protocol == "icmp":
            return None, None
        if ports:
            return ports[0].port, ports[0]
        if svc is not None:
            raise TraceInputError(argument, f"Service {svc.key} has no {protocol.upper()} port")
        declared = [p.port for p in pod.ports if p.protocol.lower() == protocol] if pod else []
        if declared:
            return declared[0], None
        raise TraceInputError(argument, f"a {protocol.upper()} trace needs a port: {dst.name}:PORT "
                                    "(it declares none)")
    if protocol == "icmp":
        raise TraceInputError(argument, "ICMP has no ports: drop ':" + text + "' or pass --proto tcp|udp")
    named = next((p for p in ports if p.name == text), None)
    if named is not None:
        return named.port, named
    try:
        number = int(text)
    except ValueError:
        raise TraceInputError(argument, f"port {text!r} is neither a number nor a {protocol.upper()} port name"
                                        + (f" of Service {svc.key}" if svc else ""))
    if not 1 <= number <= 65535:
        raise TraceInputError(argument, f"port {number} is outside 1-65535")
    return number, next((p for p in ports if p.port == number), None)


#: The smallest packet each probe is: IP header, ICMP or UDP header, the 18-byte token.
MIN_SIZE = {"icmp": 20 + 8 + 18, "udp": 20 + 8 + 18}


def question(cluster: Cluster, src: str, dst: str, protocol: str = "icmp",
             sport: Optional[int] = None, ttl: int = 64, size: Optional[int] = None) -> Question:
    """Resolve ``SRC`` and ``DST[:PORT]``; every mistake is a :class:`TraceInputError`."""
    if protocol not in PROTOCOLS:
        raise TraceInputError("--proto", f"{protocol!r} is not one of {', '.join(PROTOCOLS)}")
    source = resolve(cluster, "SRC", src)
    if source.host is None:
        raise TraceInputError("SRC", f"{source.name} cannot send: a source is a pod, a node or 'external'")
    if source.kind == "lb":
        raise TraceInputError("SRC", "the load balancer only forwards: trace from 'external' to lb/NAME")
    where, sep, port_text = dst.rpartition(":") if ":" in dst else (dst, "", "")
    target = resolve(cluster, "DST", where)
    pod = next((p for p in cluster.pods if p.host_name == target.host), None) if target.kind == "pod" else None
    port, service_port = _port("DST", port_text if sep else "", target, protocol, pod)
    if sport is not None and protocol == "icmp":
        raise TraceInputError("--sport", "ICMP has no ports")
    if sport is not None and not 1 <= sport <= 65535:
        raise TraceInputError("--sport", f"{sport} is outside 1-65535")
    if not 1 <= ttl <= 255:
        raise TraceInputError("--ttl", f"{ttl} is outside 1-255")
    if size is not None and protocol == "tcp":
        raise TraceInputError("--size", "a TCP SYN carries no payload to make it larger: use --proto udp or icmp")
    if size is not None and not MIN_SIZE[protocol] <= size <= 65535:
        raise TraceInputError("--size", f"{size} is outside {MIN_SIZE[protocol]}-65535 (the IP packet's length)")
    if service_port is not None:
        target = End(target.kind, target.name, target.ip, target.host, target.service, service_port)
    if target.ip == source.ip:
        raise TraceInputError("DST", f"{target.name} is the source itself")
    return Question(source, target, protocol, port,
                    None if protocol == "icmp" else (sport or DEFAULT_SOURCE_PORT), ttl, size)
