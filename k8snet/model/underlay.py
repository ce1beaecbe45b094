"""Where every node sits on the underlay: its rack, subnet and IP (pure planning).

* ``flat``: one L2 segment; node IPs are ``cidr`` + 10, 11, ...
* ``routed``: racks, each the next ``rackSubnetLen`` slice of ``cidr``, gateway at
  ``.1``, nodes from ``.10``.  The *last* slice of ``cidr`` is kept for the point-to-point
  links between each rack gateway and the core router (a /30 per rack).  Racks come
  from the nodes' ``rack`` names (in order of first appearance) or, for a node count,
  from ``underlay.racks`` (default 2), filled in blocks: nodes 0..k-1 in rack-0, ...

The gateways know the node subnets and nothing about pod CIDRs: exactly what a
physical underlay knows, which is why host-gw cannot cross them.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass, field
from typing import Optional

from k8snet.model.cluster import ExternalHost, Rack
from k8snet.model.schema import NodeIn, UnderlayIn

#: Node IPs start at this host offset in their segment (lower ones are kept for
#: gateways and, later, external hosts).
NODE_IP_OFFSET = 10
#: The external client's host offset on a flat underlay.
EXTERNAL_IP_OFFSET = 5
LB_IP_OFFSET = 6
FLAT_SEGMENT_HOST = "underlay"
CORE_HOST = "core"
EXTERNAL_HOST = "external"
LB_HOST = "lb"


@dataclass(frozen=True)
class PlannedNode:
    name: str
    rack: Optional[str]
    ip: ipaddress.IPv4Address
    subnet: ipaddress.IPv4Network


@dataclass
class UnderlayPlan:
    nodes: list[PlannedNode] = field(default_factory=list)
    racks: tuple[Rack, ...] = ()
    #: Host names the underlay itself uses (no node or pod may take them).
    infrastructure: tuple[str, ...] = ()
    external: Optional[ExternalHost] = None
    lb: Optional[ExternalHost] = None
    problems: list[tuple[str, str]] = field(default_factory=list)


def _hosts_fit(subnet: ipaddress.IPv4Network, count: int) -> int:
    """How many node IPs fit from .10 up to the last host address."""
    return max(0, subnet.num_addresses - 2 - NODE_IP_OFFSET + 1) if count else 0


def plan_underlay(spec: UnderlayIn, cidr: ipaddress.IPv4Network, nodes: list[NodeIn],
                  nodes_overridden: bool, rack_hint: tuple[str, ...] = ()) -> UnderlayPlan:
    """``rack_hint``: the spec's rack names, kept when ``--nodes`` replaces its node list."""
    if spec.type == "flat":
        return _flat(spec, cidr, nodes)
    return _routed(spec, cidr, nodes, nodes_overridden, rack_hint)


def _flat(spec: UnderlayIn, cidr: ipaddress.IPv4Network, nodes: list[NodeIn]) -> UnderlayPlan:
    plan = UnderlayPlan(infrastructure=(FLAT_SEGMENT_HOST, EXTERNAL_HOST, LB_HOST),
                        external=ExternalHost(ip=cidr.network_address + EXTERNAL_IP_OFFSET, cidr=cidr),
                        lb=ExternalHost(name=LB_HOST, ip=cidr.network_address + LB_IP_OFFSET, cidr=cidr))
    if spec.racks is not None:
        plan.problems.append(("spec.underlay.racks", "racks need a routed underlay (type: routed); "
                              "on a flat one, label nodes with `rack:` instead"))
        return plan
    fits = _hosts_fit(cidr, len(nodes))
    if len(nodes) > fits:
        plan.problems.append(("spec.underlay.cidr", f"{cidr} has room for {fits} node IPs (they start "
                              f"at host .{NODE_IP_OFFSET}), {len(nodes)} needed; use a larger range"))
        return plan
    plan.nodes = [PlannedNode(n.name, n.rack, cidr.network_address + NODE_IP_OFFSET + i, cidr)
                  for i, n in enumerate(nodes)]
    return plan


def _rack_names(spec: UnderlayIn, nodes: list[NodeIn], nodes_overridden: bool,
                plan: UnderlayPlan, rack_hint: tuple[str, ...]) -> list[str]:
    """One rack name per node."""
    named = [n.rack for n in nodes]
    if any(named) and not nodes_overridden:
        missing = [i for i, r in enumerate(named) if not r]
        for i in missing:
            plan.problems.append((f"spec.nodes[{i}].rack", "on a routed underlay every node needs a "
                                  "rack when any node names one"))
        distinct = list(dict.fromkeys(r for r in named if r))
        if spec.racks is not None and spec.racks != len(distinct):
            plan.problems.append(("spec.underlay.racks", f"{spec.racks} racks given but the nodes name "
                                  f"{len(distinct)} ({', '.join(distinct)}); drop one of the two"))
        return [r or "" for r in named]
    distinct = list(dict.fromkeys(r for r in named if r)) or list(rack_hint)
    count = spec.racks or len(distinct) or 2
    if count > len(nodes):
        plan.problems.append(("spec.underlay.racks", f"{count} racks for {len(nodes)} nodes would leave "
                              "a rack empty; use at most as many racks as nodes"))
        return []
    names = distinct if len(distinct) == count else [f"rack-{i}" for i in range(count)]
    per_rack = math.ceil(len(nodes) / count)
    return [names[i // per_rack] for i in range(len(nodes))]


def _routed(spec: UnderlayIn, cidr: ipaddress.IPv4Network, nodes: list[NodeIn],
            nodes_overridden: bool, rack_hint: tuple[str, ...]) -> UnderlayPlan:
    plan = UnderlayPlan()
    rack_of = _rack_names(spec, nodes, nodes_overridden, plan, rack_hint)
    if plan.problems:
        return plan
    names = list(dict.fromkeys(rack_of))
    if spec.rack_subnet_len <= cidr.prefixlen:
        plan.problems.append(("spec.underlay.rackSubnetLen", f"/{spec.rack_subnet_len} rack subnets do "
                              f"not fit in {cidr}; use a shorter cidr prefix or a longer rackSubnetLen"))
        return plan
    slices = list(cidr.subnets(new_prefix=spec.rack_subnet_len))
    if len(slices) < len(names) + 1:
        plan.problems.append(("spec.underlay.cidr", f"{cidr} holds {len(slices)} /{spec.rack_subnet_len} "
                              f"slices; {len(names)} racks need {len(names) + 1} (one per rack and one "
                              "for the gateway-core links)"))
        return plan
    transit = slices[-1]
    # One /30 per rack gateway, and the last two /30s for the external client's and the
    # load balancer's links.
    if (len(names) + 2) * 4 > transit.num_addresses:
        plan.problems.append(("spec.underlay.racks", f"{len(names)} racks need {len(names) + 2} /30 links "
                              f"but {transit} holds {transit.num_addresses // 4}"))
        return plan
    outside = ipaddress.IPv4Network(f"{transit.broadcast_address - 3}/30")
    plan.external = ExternalHost(ip=outside.network_address + 2, cidr=outside,
                                 gateway_ip=outside.network_address + 1)
    lb_link = ipaddress.IPv4Network(f"{transit.broadcast_address - 7}/30")
    plan.lb = ExternalHost(name=LB_HOST, ip=lb_link.network_address + 2, cidr=lb_link,
                           gateway_ip=lb_link.network_address + 1)
    racks = []
    for i, name in enumerate(names):
        base = transit.network_address + 4 * i
        racks.append(Rack(name=name, index=i, cidr=slices[i], gateway_ip=slices[i].network_address + 1,
                          transit_ip=base + 2, core_ip=base + 1))
    plan.racks = tuple(racks)
    plan.infrastructure = (CORE_HOST, EXTERNAL_HOST, LB_HOST)
    position: dict[str, int] = {}
    for node, rack_name in zip(nodes, rack_of):
        rack = racks[names.index(rack_name)]
        k = position.get(rack_name, 0)
        position[rack_name] = k + 1
        plan.nodes.append(PlannedNode(node.name, rack_name, rack.cidr.network_address + NODE_IP_OFFSET + k,
                                      rack.cidr))
    for rack in racks:
        count, fits = position[rack.name], _hosts_fit(rack.cidr, position[rack.name])
        if count > fits:
            plan.problems.append(("spec.underlay.rackSubnetLen", f"rack {rack.name} has {count} nodes but "
                                  f"its {rack.cidr} holds {fits} node IPs (from .{NODE_IP_OFFSET}); use a "
                                  "shorter rackSubnetLen or more racks"))
    return plan
