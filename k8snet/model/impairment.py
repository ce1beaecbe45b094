"""What a lossy underlay link is, in the model (the links themselves: :mod:`k8snet.model.links`).

A link is named by the host at its outer end -- a node (its uplink), a rack gateway
(its link to the core), ``external`` or ``lb`` -- because each of those has exactly
one underlay link.  ``direction`` is seen from that host: ``egress`` is what it
sends into the link, ``ingress`` what it receives, ``both`` both (each direction
drops independently, so a packet and its reply each face the loss).

Loss is in percent, as netem's ``loss`` is.  There is no netem on this kernel; the
drop is an nftables ``numgen random`` rule (:mod:`topos.impair` says where it sits).
"""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel, ConfigDict

#: The finest loss step the rule can express: ``numgen random mod LOSS_SCALE`` against
#: ``percent / 100 * LOSS_SCALE`` (a millionth of the packets, 0.0001 %).
LOSS_SCALE = 1_000_000


class Direction(str, Enum):
    BOTH = "both"
    EGRESS = "egress"
    INGRESS = "ingress"

    def ways(self) -> tuple["Direction", ...]:
        """The one-way directions this stands for."""
        return (Direction.EGRESS, Direction.INGRESS) if self is Direction.BOTH else (self,)


class Impairment(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    link: str
    #: Percent of the packets dropped, in [0, 100).
    loss: float = 0.0
    direction: Direction = Direction.BOTH

    def threshold(self) -> int:
        """The ``numgen random mod LOSS_SCALE < threshold`` bound for this loss."""
        return round(self.loss / 100 * LOSS_SCALE)
