"""The machine the emulation runs on: can it run here at all (:func:`preflight`), and what
every result records about it (:func:`environment`), so numbers from different runs
compare honestly."""

from __future__ import annotations

import os
import platform
import shutil
from typing import Any, Iterable, Optional

#: The programs a cluster cannot be built without (Debian packages in the Makefile).
REQUIRED_TOOLS = ("ovs-vswitchd", "ovsdb-server", "ovs-vsctl", "mnexec", "fping", "ethtool", "ip")


def preflight(clusters: Iterable[Any] = ()) -> Optional[str]:
    """Why no cluster can be built here (not root, a tool missing, BIRD for a ``bgp``
    cluster among ``clusters``), or None when one can."""
    if os.geteuid() != 0:
        return "k8snet needs root (network namespaces, veths, OVS): run it with sudo"
    missing = [t for t in REQUIRED_TOOLS if shutil.which(t) is None]
    if missing:
        return f"missing tools: {', '.join(missing)} (Open vSwitch, Mininet, fping, ...); run `make setup` first"
    if any(c.backend.value == "bgp" for c in clusters):
        from topos.bgp import missing as bird_missing

        return bird_missing()
    return None


def environment(cluster: Optional[Any] = None, **extra: Any) -> dict[str, Any]:
    """k8snet, Open vSwitch, kernel and Python versions, CPUs, and -- from ``cluster`` (a
    resolved :class:`k8snet.model.cluster.Cluster`) -- the datapath type, offload setting and
    attachment (topos/datapath.py) with how they were chosen; plus ``extra``."""
    import k8snet
    from topos.ovs import ovs_version

    from topos.neighbours import limits

    env: dict[str, Any] = {"k8snet": k8snet.__version__, "ovs": ovs_version(), "kernel": platform.release(),
                           "python": platform.python_version(), "cpus": os.cpu_count()}
    try:
        env["arp_limits"] = limits()  # one ARP table for all namespaces (topos/neighbours.py)
    except OSError:
        env["arp_limits"] = None
    if cluster is not None:
        env.update(datapath_type=cluster.datapath_type, offload=cluster.offload, attach=cluster.attach,
                   offload_detail=describe(cluster), datapath_choice=cluster.datapath_note)
    env.update(extra)
    return env


def describe(cluster: Any) -> str:
    """One line: what the offload setting means for this cluster."""
    from topos.datapath import DatapathType, Offload, Resolved

    return Resolved(DatapathType(cluster.datapath_type), Offload(cluster.offload), cluster.datapath_note).describe()
