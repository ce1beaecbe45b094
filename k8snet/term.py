"""The terminal of the ``k8snet`` commands: where output and progress go, and the exit codes.

Results go to stdout (``out``); progress, warnings and errors to stderr (``console``), so
``k8snet check > matrix.txt`` keeps only the matrix.
"""

from __future__ import annotations

import time

from rich.console import Console

from k8snet.model.cluster import Cluster

EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
console = Console(stderr=True, highlight=False)
out = Console(highlight=False)


def progress(message: str) -> None:
    console.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {message}")


def datapath_line(cluster: Cluster) -> None:
    """Which Open vSwitch, datapath and offload setting the run uses, and why."""
    from topos.environment import describe
    from topos.ovs import ovs_version

    progress(f"Open vSwitch {ovs_version()}, offload {describe(cluster)}: {cluster.datapath_note}")
