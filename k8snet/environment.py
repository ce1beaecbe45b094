"""What every result records about the machine, so numbers from different runs compare honestly."""

from __future__ import annotations

import os
import platform
from typing import Any, Optional


def environment(cluster: Optional[Any] = None, **extra: Any) -> dict[str, Any]:
    """k8snet, Open vSwitch, kernel and Python versions, CPUs, and -- from ``cluster`` (a
    resolved :class:`topos.model.Cluster`) -- the datapath type and offload setting with
    how they were chosen; plus ``extra``."""
    import k8snet
    from topos.ovs import ovs_version

    env: dict[str, Any] = {"k8snet": k8snet.__version__, "ovs": ovs_version(), "kernel": platform.release(),
                           "python": platform.python_version(), "cpus": os.cpu_count()}
    if cluster is not None:
        env.update(datapath_type=cluster.datapath_type, offload=cluster.offload,
                   offload_detail=describe(cluster), datapath_choice=cluster.datapath_note)
    env.update(extra)
    return env


def describe(cluster: Any) -> str:
    """One line: what the offload setting means for this cluster."""
    from topos.datapath import DatapathType, Offload, Resolved

    return Resolved(DatapathType(cluster.datapath_type), Offload(cluster.offload), cluster.datapath_note).describe()
