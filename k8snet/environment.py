"""What every result records about the machine, so numbers from different runs compare honestly."""

from __future__ import annotations

import os
import platform
from typing import Any


def environment(**extra: Any) -> dict[str, Any]:
    """k8snet, Open vSwitch, kernel and Python versions, CPUs and the datapath, plus ``extra``."""
    import k8snet
    from topos.ovs import ovs_version

    return {"k8snet": k8snet.__version__, "ovs": ovs_version(), "kernel": platform.release(),
            "python": platform.python_version(), "cpus": os.cpu_count(), "datapath_type": "netdev", **extra}
