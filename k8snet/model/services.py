"""Service documents -> :class:`k8snet.model.cluster.Service`: validation and address allocation.

What the API server does for a Service, deterministically: ClusterIPs come from the
Service CIDR (10.96.0.0/12) in order from ``.0.100`` (``.0.1`` is the ``kubernetes``
Service's, ``.0.10`` cluster DNS's), NodePorts from 30000 up; a Service that already
exists in the running cluster keeps its addresses when the spec is applied again.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Optional

from k8snet.model.cluster import Cluster, Service, ServicePort, ServiceType
from k8snet.model.schema import NODE_PORT_RANGE, ServiceDoc, dns1123_subdomain

_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
FIRST_ALLOCATED = 100
RESERVED_OFFSETS = {1: "the kubernetes Service", 10: "cluster DNS"}


@dataclass
class ServiceResolution:
    services: list[Service] = field(default_factory=list)
    #: (document index, what, field, message)
    problems: list[tuple[int, str, str, str]] = field(default_factory=list)


DYNAMIC_NODE_PORT_START = NODE_PORT_RANGE[0]


def resolve_services(docs: list[tuple[int, str, ServiceDoc]], service_cidr: ipaddress.IPv4Network,
                     previous: Optional[Cluster] = None,
                     lb_pool: ipaddress.IPv4Network = ipaddress.IPv4Network("198.51.100.0/24"),
                     node_port_range: tuple[int, int] = NODE_PORT_RANGE) -> ServiceResolution:
    out = ServiceResolution()
    kept = {s.key: s for s in previous.services} if previous else {}
    seen: dict[str, int] = {}
    used_ips: dict[ipaddress.IPv4Address, str] = {}
    used_node_ports: dict[int, str] = {}
    failed: set[int] = set()

    def fail(index: int, what: str, where: str, message: str) -> None:
        out.problems.append((index, what, where, message))
        failed.add(index)

    # Addresses the user gave, and those of Services that already exist, are taken first.
    for old in kept.values():
        for port in old.ports:
            if port.node_port is not None:
                used_node_ports.setdefault(port.node_port, old.key)
    for index, what, doc in docs:
        key = f"{doc.metadata.namespace}/{doc.metadata.name}"
        given = doc.spec.cluster_ip
        if given and given != "None":
            try:
                ip = ipaddress.IPv4Address(given)
            except ValueError:
                fail(index, what, "spec.clusterIP", f"{given!r} is not an IPv4 address (or None for headless)")
                continue
            if ip not in service_cidr or ip in (service_cidr.network_address, service_cidr.broadcast_address):
                fail(index, what, "spec.clusterIP", f"{ip} is not a usable address of the Service CIDR {service_cidr}")
            elif ip in used_ips:
                fail(index, what, "spec.clusterIP", f"{ip} is already the ClusterIP of {used_ips[ip]}")
            used_ips[ip] = key
        for i, port in enumerate(doc.spec.ports):
            if port.node_port is not None:
                if not node_port_range[0] <= port.node_port <= node_port_range[1]:
                    fail(index, what, f"spec.ports[{i}].nodePort", f"{port.node_port} is outside the NodePort "
                         f"range {node_port_range[0]}-{node_port_range[1]}; choose a port in it or widen the "
                         "Cluster's spec.serviceNodePortRange")
                if port.node_port in used_node_ports and used_node_ports[port.node_port] != key:
                    fail(index, what, f"spec.ports[{i}].nodePort", f"{port.node_port} is already used by "
                         f"{used_node_ports[port.node_port]}; every NodePort must be unique")
                used_node_ports[port.node_port] = key
    for old in kept.values():
        if old.cluster_ip is not None:
            used_ips.setdefault(old.cluster_ip, old.key)
        for port in old.ports:
            if port.node_port is not None:
                used_node_ports.setdefault(port.node_port, old.key)

    next_offset = FIRST_ALLOCATED
    # Dynamic NodePorts start at Kubernetes' usual 30000 when the range holds it, so that a
    # range widened downwards (for a fixed port such as 23456) leaves its low end to ports
    # asked for by number (Kubernetes keeps a static band at the bottom for the same reason).
    next_node_port = DYNAMIC_NODE_PORT_START if node_port_range[0] <= DYNAMIC_NODE_PORT_START <= \
        node_port_range[1] else node_port_range[0]
    used_lb = {s.load_balancer_ip for s in kept.values() if s.load_balancer_ip is not None}
    next_lb = 10

    def allocate_lb(key: str) -> Optional[ipaddress.IPv4Address]:
        nonlocal next_lb
        if key in kept and kept[key].load_balancer_ip is not None:
            return kept[key].load_balancer_ip
        while next_lb < lb_pool.num_addresses - 1:
            ip = lb_pool.network_address + next_lb
            next_lb += 1
            if ip not in used_lb:
                used_lb.add(ip)
                return ip
        return None

    def allocate_ip(key: str) -> Optional[ipaddress.IPv4Address]:
        nonlocal next_offset
        while next_offset < service_cidr.num_addresses - 1:
            ip = service_cidr.network_address + next_offset
            next_offset += 1
            if ip not in used_ips:
                used_ips[ip] = key
                return ip
        return None

    def allocate_node_port(key: str) -> Optional[int]:
        nonlocal next_node_port
        size = node_port_range[1] - node_port_range[0] + 1
        for _ in range(size):
            port = next_node_port
            next_node_port = next_node_port + 1 if next_node_port < node_port_range[1] else node_port_range[0]
            if port not in used_node_ports:
                used_node_ports[port] = key
                return port
        return None

    for index, what, doc in docs:
        meta, spec = doc.metadata, doc.spec
        key = f"{meta.namespace}/{meta.name}"
        if len(meta.name) > 63 or not _DNS1035_LABEL.match(meta.name):
            fail(index, what, "metadata.name", f"{meta.name!r} is not a valid Service name (DNS-1035 label): "
                 "lowercase letters, digits and '-', starting with a letter, at most 63 characters")
            continue
        if key in seen:
            fail(index, what, "metadata.name", f"Service {key} is already defined in document {seen[key]}")
            continue
        seen[key] = index
        stype = ServiceType(spec.type)
        node_ports_allowed = stype in (ServiceType.NODE_PORT, ServiceType.LOAD_BALANCER)
        headless = spec.cluster_ip == "None"
        problems_before = len(out.problems)
        if stype is ServiceType.EXTERNAL_NAME:
            if not spec.external_name:
                fail(index, what, "spec.externalName", "required for type ExternalName: the DNS name to alias")
            else:
                try:
                    dns1123_subdomain(spec.external_name.rstrip("."))
                except ValueError as exc:
                    fail(index, what, "spec.externalName", str(exc))
            if spec.cluster_ip not in (None, "None"):
                fail(index, what, "spec.clusterIP", "an ExternalName Service has no ClusterIP")
        elif spec.external_name:
            fail(index, what, "spec.externalName", "only for type ExternalName")
        if headless and stype is not ServiceType.CLUSTER_IP:
            fail(index, what, "spec.clusterIP", "None (headless) is only allowed for type ClusterIP")
        if spec.session_affinity_config is not None and spec.session_affinity != "ClientIP":
            fail(index, what, "spec.sessionAffinityConfig", "only with sessionAffinity: ClientIP")
        if spec.external_traffic_policy is not None and not node_ports_allowed:
            fail(index, what, "spec.externalTrafficPolicy", "only for type NodePort or LoadBalancer")
        if not spec.ports and stype is not ServiceType.EXTERNAL_NAME and not headless:
            fail(index, what, "spec.ports", "a Service needs at least one port")
        names: dict[str, int] = {}
        pairs: dict[tuple[int, str], int] = {}
        ports = []
        for i, port in enumerate(spec.ports):
            if len(spec.ports) > 1 and not port.name:
                fail(index, what, f"spec.ports[{i}].name", "required when a Service has more than one port")
            if port.name:
                if port.name in names:
                    fail(index, what, f"spec.ports[{i}].name", f"{port.name!r} is already spec.ports[{names[port.name]}]")
                names.setdefault(port.name, i)
            if (port.port, port.protocol) in pairs:
                fail(index, what, f"spec.ports[{i}].port", f"{port.port}/{port.protocol} is already "
                     f"spec.ports[{pairs[(port.port, port.protocol)]}]")
            pairs.setdefault((port.port, port.protocol), i)
            node_port = port.node_port
            if node_port is not None and not node_ports_allowed:
                fail(index, what, f"spec.ports[{i}].nodePort", f"only for type NodePort or LoadBalancer, not {stype.value}")
            previous_port = _previous_port(kept.get(key), port.port, port.protocol)
            if node_ports_allowed and node_port is None:
                node_port = previous_port.node_port if previous_port and previous_port.node_port else \
                    allocate_node_port(key)
                if node_port is None:
                    fail(index, what, f"spec.ports[{i}].nodePort", f"the NodePort range {node_port_range[0]}-"
                         f"{node_port_range[1]} is exhausted")
            ports.append(ServicePort(name=port.name, protocol=port.protocol, port=port.port,
                                     target_port=port.target_port if port.target_port is not None else port.port,
                                     node_port=node_port if node_ports_allowed else None))
        if len(out.problems) > problems_before or index in failed:
            continue
        cluster_ip = None
        if stype is not ServiceType.EXTERNAL_NAME and not headless:
            if spec.cluster_ip:
                cluster_ip = ipaddress.IPv4Address(spec.cluster_ip)
            elif key in kept and kept[key].cluster_ip is not None:
                cluster_ip = kept[key].cluster_ip
            else:
                cluster_ip = allocate_ip(key)
                if cluster_ip is None:
                    fail(index, what, "spec.clusterIP", f"the Service CIDR {service_cidr} is exhausted")
                    continue
        lb_ip = allocate_lb(key) if stype is ServiceType.LOAD_BALANCER else None
        if stype is ServiceType.LOAD_BALANCER and lb_ip is None:
            fail(index, what, "spec.type", f"the load balancer's address pool {lb_pool} is exhausted")
            continue
        timeout = spec.session_affinity_config.client_ip.timeout_seconds if spec.session_affinity_config else 10800
        out.services.append(Service(
            name=meta.name, namespace=meta.namespace, type=stype, cluster_ip=cluster_ip, ports=tuple(ports),
            selector=spec.selector, session_affinity=spec.session_affinity, affinity_timeout=timeout,
            external_traffic_policy=spec.external_traffic_policy or "Cluster",
            internal_traffic_policy=spec.internal_traffic_policy, external_name=spec.external_name,
            load_balancer_ip=lb_ip))
    return out


def _previous_port(service: Optional[Service], port: int, protocol: str) -> Optional[ServicePort]:
    if service is None:
        return None
    return next((p for p in service.ports if p.port == port and p.protocol == protocol), None)
