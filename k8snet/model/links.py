"""The underlay's links, named for the user, and the nftables rules that make one lossy.

Every underlay link has a host at its outer end (a node's uplink, a rack gateway's
link to the core, the external client's, the load balancer's) and a *segment side*
(the flat underlay's bridge, a rack gateway's segment bridge, the core router).  The
loss rule sits on the segment side's device, in that namespace, as two netdev-family
chains: the ``ingress`` hook sees what the outer host sends (its *egress*), the
``egress`` hook what it receives (its *ingress*).  Netdev hooks run before the
bridge or the router looks at a frame, so a dropped frame is lost on the wire --
ARP included, as a lossy cable would -- and the rule's own counters say how many
frames crossed and how many were dropped: the loss a result reports is measured.

All pure: :mod:`topos.impair` runs the scripts and reads the counters back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

from k8snet.model.cluster import Cluster, UnderlayType
from k8snet.model.impairment import LOSS_SCALE, Direction, Impairment
from k8snet.model.underlay import CORE_HOST, FLAT_SEGMENT_HOST

#: Device names on the segment side (the outer host's end is ``uplink``, ``core`` or ``eth0``).
EXTERNAL_FLAT_IFNAME, LB_FLAT_IFNAME = "ext", "lbx"
EXTERNAL_CORE_IFNAME, LB_CORE_IFNAME = "ext", "lb"
#: nftables table (netdev family) that holds every loss chain of one namespace.
TABLE = "k8snet"
#: Before anything else on the device (ingress) or in the qdisc path (egress).
PRIORITY = -500


@dataclass(frozen=True)
class UnderlayLink:
    name: str    # the outer host: node name, gw-RACK, external, lb
    kind: str    # "node uplink", "gateway-core", "external", "load balancer"
    host: str    # the namespace on the segment side, where the rules go
    device: str  # its interface there

    def chain(self, way: Direction) -> str:
        """nftables chain (and counter prefix) for one direction, seen from ``name``."""
        return f"{self.device}_{way.value}"

    def hook(self, way: Direction) -> str:
        """What the outer host sends arrives at the segment side's ``ingress``."""
        return "ingress" if way is Direction.EGRESS else "egress"


def underlay_links(cluster: Cluster) -> dict[str, UnderlayLink]:
    """Every link of the cluster's underlay, by name, in a stable order."""
    links: list[UnderlayLink] = []
    routed = cluster.underlay.type is UnderlayType.ROUTED
    for node in cluster.nodes:
        segment = cluster.rack(node.rack).host_name if routed else FLAT_SEGMENT_HOST
        links.append(UnderlayLink(node.name, "node uplink", segment, f"n{node.index}"))
    if routed:
        links += [UnderlayLink(r.host_name, "gateway-core", CORE_HOST, f"r{r.index}") for r in cluster.underlay.racks]
    for host, kind, flat_if, core_if in ((cluster.underlay.external, "external", EXTERNAL_FLAT_IFNAME,
                                          EXTERNAL_CORE_IFNAME),
                                         (cluster.underlay.lb, "load balancer", LB_FLAT_IFNAME, LB_CORE_IFNAME)):
        if host is not None:
            links.append(UnderlayLink(host.name, kind, CORE_HOST if routed else FLAT_SEGMENT_HOST,
                                      core_if if routed else flat_if))
    return {link.name: link for link in links}


LossMap = dict[tuple[str, Direction], float]


def loss_map(impairments: Iterable[Impairment]) -> LossMap:
    """(link, one-way direction) -> percent."""
    return {(i.link, way): i.loss for i in impairments for way in i.direction.ways()}


def impairments_of(losses: Mapping[tuple[str, Direction], float], order: Iterable[str]) -> tuple[Impairment, ...]:
    """Back to model form: one entry per link (``both`` when its two ways agree), in
    link order; a loss of 0 is no impairment."""
    result = []
    for name in order:
        out, back = losses.get((name, Direction.EGRESS), 0.0), losses.get((name, Direction.INGRESS), 0.0)
        if out == back and out:
            result.append(Impairment(link=name, loss=out, direction=Direction.BOTH))
            continue
        result += [Impairment(link=name, loss=loss, direction=way)
                   for way, loss in ((Direction.EGRESS, out), (Direction.INGRESS, back)) if loss]
    return tuple(result)


def unknown_link(cluster: Cluster, name: str) -> str:
    """The error for a link name that is not one (names every link there is)."""
    return (f"no underlay link {name!r}; links are named by the host at their outer end: "
            f"{', '.join(underlay_links(cluster))}")


def nft_scripts(cluster: Cluster, losses: Mapping[tuple[str, Direction], float]) -> dict[str, str]:
    """``nft -f`` input per segment-side namespace that sets each named (link, way) to its
    loss.  Idempotent: tables, counters and chains are added if missing, the chain's
    rules replaced and its counters restarted in the same transaction (nft applies a
    file atomically), so what they count is always the loss set now.  A loss of 0
    leaves the counting rule."""
    links = underlay_links(cluster)
    scripts: dict[str, list[str]] = {}
    for (name, way), loss in sorted(losses.items(), key=lambda kv: (kv[0][0], kv[0][1].value)):
        link = links[name]
        chain = link.chain(way)
        lines = scripts.setdefault(link.host, [f"add table netdev {TABLE}"])
        lines += [f"add counter netdev {TABLE} {chain}_seen",
                  f"add counter netdev {TABLE} {chain}_dropped",
                  f"add chain netdev {TABLE} {chain} {{ type filter hook {link.hook(way)} device "
                  f'"{link.device}" priority {PRIORITY}; policy accept; }}',
                  f"flush chain netdev {TABLE} {chain}",
                  # Counters restart (deleted and added again once no rule uses them):
                  f"delete counter netdev {TABLE} {chain}_seen",
                  f"delete counter netdev {TABLE} {chain}_dropped",
                  f"add counter netdev {TABLE} {chain}_seen",
                  f"add counter netdev {TABLE} {chain}_dropped",
                  f'add rule netdev {TABLE} {chain} counter name "{chain}_seen"']
        threshold = Impairment(link=name, loss=loss).threshold()
        if threshold:
            lines.append(f"add rule netdev {TABLE} {chain} numgen random mod {LOSS_SCALE} < {threshold} "
                         f'counter name "{chain}_dropped" drop')
    return {host: "\n".join(lines) + "\n" for host, lines in scripts.items()}


@dataclass(frozen=True)
class LossCount:
    """What one direction of one link's rule counted since its loss was last set."""

    link: str
    direction: Direction
    configured: float  # percent, now
    seen: int          # frames that reached the rule
    dropped: int       # frames it dropped

    @property
    def achieved(self) -> float | None:
        """Percent dropped, measured; None before any frame crossed."""
        return 100.0 * self.dropped / self.seen if self.seen else None

    def to_json(self) -> dict:
        achieved = self.achieved
        return {"link": self.link, "direction": self.direction.value, "configured_percent": self.configured,
                "frames": self.seen, "dropped": self.dropped,
                "achieved_percent": round(achieved, 4) if achieved is not None else None}


def read_counters(cluster: Cluster, losses: Mapping[tuple[str, Direction], float],
                  listed: Mapping[str, Mapping]) -> list[LossCount]:
    """Counters from ``nft -j list counters`` documents (one per namespace) -> one entry per
    (link, way) that has a rule, installed ones only (a missing counter is 0)."""
    links = underlay_links(cluster)
    values: dict[tuple[str, str], int] = {}
    for host, doc in listed.items():
        for item in doc.get("nftables", []):
            counter = item.get("counter")
            if counter and counter.get("table") == TABLE:
                values[(host, counter["name"])] = int(counter.get("packets", 0))
    result = []
    for (name, way), loss in losses.items():
        link = links[name]
        chain = link.chain(way)
        result.append(LossCount(name, way, loss, values.get((link.host, f"{chain}_seen"), 0),
                                values.get((link.host, f"{chain}_dropped"), 0)))
    return sorted(result, key=lambda c: (list(links).index(c.link), c.direction.value))
