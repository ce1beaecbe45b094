"""Moved to :mod:`k8snet.model.cluster` (the model is its own package now, below the
topologies); this name keeps existing imports working."""

from k8snet.model.cluster import *  # noqa: F401,F403
from k8snet.model.cluster import (  # noqa: F401  (names star-import does not carry)
    FIRST_POD_OFPORT, SERVICE_CIDR, TUNNEL_IFNAME, TUNNEL_OFPORT, UPLINK_IFNAME, UPLINK_OFPORT, VXLAN_OVERHEAD,
)
