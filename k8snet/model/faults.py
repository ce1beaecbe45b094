"""Which faults there are and what each may name -- a loss change too -- checked against
the model (pure).

What each fault does to the running cluster: :mod:`topos.faults`.
"""

from __future__ import annotations

from typing import Any

from k8snet.model.cluster import UnderlayType
from k8snet.model.impairment import Direction
from k8snet.model.links import underlay_links, unknown_link
from k8snet.model.underlay import CORE_HOST

KINDS = {"link": ("down", "up"), "router": ("down", "up"), "node": ("down", "up"), "switch": ("restart",),
         "controller": ("kill", "start", "restart")}


class FaultInputError(ValueError):
    """A run-time fault or loss request that names nothing real; ``argument`` says which
    of the command's arguments is wrong."""

    def __init__(self, argument: str, message: str):
        super().__init__(message)
        self.argument = argument


def routers(cluster: Any) -> list[str]:
    if cluster.underlay.type is not UnderlayType.ROUTED:
        return []
    return [r.host_name for r in cluster.underlay.racks] + [CORE_HOST]


def check_fault(cluster: Any, kind: str, action: str, target: str = "", how: str = "uplink") -> None:
    """Raise :class:`FaultInputError` naming the argument that is wrong."""
    if kind not in KINDS:
        raise FaultInputError("KIND", f"{kind!r} is not a fault; allowed: {', '.join(KINDS)}")
    if action not in KINDS[kind]:
        raise FaultInputError("ACTION", f"{kind} faults are {' or '.join(KINDS[kind])}, not {action!r}")
    if kind == "link" and target not in underlay_links(cluster):
        raise FaultInputError("TARGET", unknown_link(cluster, target))
    if kind == "router" and target not in routers(cluster):
        known = routers(cluster)
        raise FaultInputError("TARGET", f"no router {target!r}; " + (f"routers are: {', '.join(known)}" if known else
                                         "a flat underlay has none (type: routed has rack gateways and a core)"))
    if kind in ("node", "switch") and target not in {n.name for n in cluster.nodes}:
        raise FaultInputError("TARGET", f"no node {target!r}; nodes are: {', '.join(n.name for n in cluster.nodes)}")
    if kind == "node" and how not in ("uplink", "switch"):
        raise FaultInputError("--how", f"{how!r}: a node fails by its uplink (cut off) or its switch (vswitchd "
                                       "killed)")


def check_loss(cluster: Any, link: str, loss: Any, direction: Any) -> tuple[float, Direction]:
    """A run-time loss change, checked: (percent, direction), or :class:`FaultInputError`."""
    if link not in underlay_links(cluster):
        raise FaultInputError("LINK", unknown_link(cluster, link))
    try:
        percent = float(loss)
    except (TypeError, ValueError):
        raise FaultInputError("PERCENT", f"{loss!r} is not a number; give the loss in percent, e.g. 1 or 0.5") from None
    if not 0 <= percent < 100:
        raise FaultInputError("PERCENT", f"{percent:g} is outside [0, 100); a loss is a percentage of the "
                                         "frames, 0 clears it")
    try:
        way = Direction(direction)
    except ValueError:
        raise FaultInputError("--direction", f"{direction!r} is not a direction; allowed: both, egress, "
                                             "ingress") from None
    return percent, way
