"""Who speaks BGP with whom in a ``backend: bgp`` cluster (pure planning).

The layout is Calico's "AS per rack" model for an L3 fabric (docs.tigera.io, "Calico over
IP fabrics"; the same shape as its BGPPeer examples, a rack's nodes peering with their
top-of-rack router in the rack's own AS)::

            core  AS base                       flat underlay: every node in AS base,
           /    \\   eBGP                         an iBGP full mesh (Calico's default
      gw-r0      gw-r1  AS base+1, base+2         node-to-node mesh)
      /  \\  iBGP  |  route reflector
  node-0 node-1  node-2 ...

* Each node announces its pod CIDR to its rack gateway over iBGP; the gateway is a route
  reflector for its rack, so nodes of one rack learn each other's CIDRs with the peer
  itself as next hop (no router between them: what host-gw does), and the other racks'
  CIDRs with the gateway as next hop (``next hop self ebgp``).
* Gateways and the core speak eBGP (one AS per rack, the core its own), so a rack's
  CIDRs travel through the core with the usual AS-path loop protection.
* Why not an AS per node: it also works, but it needs one AS number per node and makes
  the gateway's reflection an eBGP re-advertisement; the per-rack layout keeps the node
  configuration identical inside a rack, which is what Calico recommends for ToR peering.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Optional

from k8snet.model.cluster import Cluster, UnderlayType
from k8snet.model.underlay import CORE_HOST

#: Calico's default AS number (private range, RFC 6996).
DEFAULT_AS = 64512
#: The largest 4-byte AS number that is not reserved (RFC 7300 reserves 4294967295).
MAX_AS = 4294967294
#: AS_TRANS (RFC 6793): never a real speaker's.
AS_TRANS = 23456


@dataclass(frozen=True)
class Peer:
    """One BGP session, seen from one end."""

    name: str                       # the remote speaker's host name
    ip: ipaddress.IPv4Address       # its address for the session
    asn: int
    local_ip: ipaddress.IPv4Address
    #: iBGP to a node of the rack this gateway reflects for.
    rr_client: bool = False

    @property
    def protocol(self) -> str:
        """BIRD's protocol name for the session (letters, digits and underscores)."""
        return "p_" + "".join(c if c.isalnum() else "_" for c in self.name)


@dataclass(frozen=True)
class Speaker:
    """One BGP daemon: a node, a rack gateway or the core router."""

    name: str
    role: str                       # node | gateway | core
    asn: int
    router_id: ipaddress.IPv4Address
    peers: tuple[Peer, ...]
    #: The prefixes it originates (a node's pod CIDR).
    originates: tuple[ipaddress.IPv4Network, ...] = ()

    @property
    def installs_into_kernel_table(self) -> Optional[int]:
        """Where its learned routes go: a node's into a table of their own that the node's
        route watcher reads (OVS forwards, not the node's kernel); a router's into its main
        table (its kernel forwards)."""
        return NODE_ROUTE_TABLE if self.role == "node" else None


#: The kernel routing table a node's BGP daemon writes what it learned into.
NODE_ROUTE_TABLE = 201


def rack_as(base: int, index: int) -> int:
    return base + 1 + index


def as_problem(base: int, racks: int) -> Optional[str]:
    """Why ``base`` cannot number this cluster's speakers, or None."""
    top = base + racks
    if base < 1 or top > MAX_AS:
        return (f"{base} leaves no room: the speakers use AS {base} to {top}, and AS numbers run from 1 to "
                f"{MAX_AS}; use a private AS such as {DEFAULT_AS} (64512-65534, or 4200000000-4294967294)")
    if base <= AS_TRANS <= top:
        return f"the speakers would use AS {AS_TRANS} (AS_TRANS, RFC 6793, reserved); choose another asNumber"
    return None


def speakers(cluster: Cluster) -> list[Speaker]:
    """Every BGP speaker of ``cluster`` with its sessions (both ends of each session appear)."""
    base = cluster.bgp_as
    if cluster.underlay.type is UnderlayType.FLAT:
        return [Speaker(n.name, "node", base, n.ip,
                        tuple(Peer(p.name, p.ip, base, n.ip) for p in cluster.nodes if p.name != n.name),
                        (n.pod_cidr,))
                for n in cluster.nodes]
    out: list[Speaker] = []
    racks = cluster.underlay.racks
    for rack in racks:
        asn = rack_as(base, rack.index)
        assert rack.gateway_ip and rack.transit_ip and rack.core_ip
        members = [n for n in cluster.nodes if n.rack == rack.name]
        out += [Speaker(n.name, "node", asn, n.ip, (Peer(rack.host_name, rack.gateway_ip, asn, n.ip),),
                        (n.pod_cidr,)) for n in members]
        peers = tuple(Peer(n.name, n.ip, asn, rack.gateway_ip, rr_client=True) for n in members)
        out.append(Speaker(rack.host_name, "gateway", asn, rack.gateway_ip,
                           peers + (Peer(CORE_HOST, rack.core_ip, base, rack.transit_ip),)))
    if racks:
        assert racks[0].core_ip
        out.append(Speaker(CORE_HOST, "core", base, racks[0].core_ip,
                           tuple(Peer(r.host_name, r.transit_ip, rack_as(base, r.index), r.core_ip)  # type: ignore
                                 for r in racks)))
    return out


def speaker(cluster: Cluster, name: str) -> Speaker:
    for s in speakers(cluster):
        if s.name == name:
            return s
    raise KeyError(name)
