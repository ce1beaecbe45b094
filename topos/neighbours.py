"""The kernel's ARP table is one for every namespace of this machine: an emulated cluster
must have room in it for what its N separate kernels would each hold.

Linux keeps one neighbour table per protocol for the whole kernel (``arp_tbl``), and its
garbage-collection limits (``net.ipv4.neigh.default.gc_thresh1..3``) exist only in the root
namespace.  A real node's 16 pods fill its own table; 32 emulated nodes fill one.  When the
table holds ``gc_thresh3`` entries used in the last 5 s, the kernel refuses a new one
(``table_fulls`` in ``/proc/net/stat/arp_cache``) and the packet that needed it is lost.
Measured (2026-12-01, 32 nodes x 16 pods, a 20,000-pair sample, default limits
128/512/1024): 224 of 522 same-node pod pairs unreachable -- all of them same-node, the
only pairs that need an entry of their own -- and ``table_fulls`` at 280,271.

Mininet raises these limits (to 4096/8192/16384) every time it starts (``fixLimits``);
k8snet raises them only when the cluster it builds needs more than the machine allows,
never lowers them, and says so (:func:`make_room`).  The change lasts until reboot, as a
loaded kernel module would; nothing else outside the cluster's namespaces is touched.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from k8snet.model.cluster import Cluster

#: Where the limits live (root namespace only).
SYSCTL_DIR = Path("/proc/sys/net/ipv4/neigh/default")
#: The table's counters, one row per CPU in hex.
STAT_FILE = Path("/proc/net/stat/arp_cache")
#: Mininet's values (mininet/util.py fixLimits), the floor of any raise.
MININET_LIMITS = {"gc_thresh1": 4096, "gc_thresh2": 8192, "gc_thresh3": 16384}


def need(cluster: Cluster) -> int:
    """How many ARP entries the cluster's kernels may hold at once (a full matrix): each
    pod one for its gateway and one per pod on its node (they share a subnet and resolve
    each other); each node one per pod of its own and a few on the underlay; each router
    and outside host a few per node."""
    per_node: dict[str, int] = {}
    for pod in cluster.pods:
        per_node[pod.node] = per_node.get(pod.node, 0) + 1
    pods = sum(n * n for n in per_node.values())
    nodes = sum(per_node.get(node.name, 0) + 4 for node in cluster.nodes)
    return pods + nodes + 3 * len(cluster.nodes) + 16


def limits(sysctl_dir: Path = SYSCTL_DIR) -> dict[str, int]:
    """The three garbage-collection thresholds as they are now."""
    return {name: int((sysctl_dir / name).read_text()) for name in MININET_LIMITS}


def table_fulls(stat_file: Path = STAT_FILE) -> Optional[int]:
    """How many times since boot the kernel found the ARP table full (summed over CPUs);
    None where the counters cannot be read."""
    try:
        header, *rows = stat_file.read_text().splitlines()
    except OSError:
        return None
    names = header.split()
    if "table_fulls" not in names:
        return None
    col = names.index("table_fulls")
    return sum(int(row.split()[col], 16) for row in rows if row.split())


def wanted(needed: int, now: dict[str, int]) -> dict[str, int]:
    """The thresholds to set so that ``needed`` entries fit with room to spare: thresh3 at
    least twice the need (the kernel collects above thresh2 only entries idle for 5 s), never
    below Mininet's values nor below what is set; empty when what is set already suffices."""
    if 2 * needed <= now["gc_thresh3"]:
        return {}
    third = max(MININET_LIMITS["gc_thresh3"], 2 * needed, now["gc_thresh3"])
    target = {"gc_thresh1": max(MININET_LIMITS["gc_thresh1"], now["gc_thresh1"]),
              "gc_thresh2": max(MININET_LIMITS["gc_thresh2"], third // 2, now["gc_thresh2"]),
              "gc_thresh3": third}
    return {k: v for k, v in target.items() if v != now[k]}


def make_room(cluster: Cluster, say: Callable[[str], None], sysctl_dir: Path = SYSCTL_DIR) -> dict[str, int]:
    """Raise the thresholds when ``cluster`` needs it (:func:`wanted`), telling ``say``
    what changed; return the changes (old values are in the message)."""
    now = limits(sysctl_dir)
    change = wanted(need(cluster), now)
    if change:
        for name, value in change.items():
            (sysctl_dir / name).write_text(f"{value}\n")
        what = ", ".join(f"{k} {now[k]} -> {v}" for k, v in change.items())
        say(f"raised the kernel's ARP table limits (net.ipv4.neigh.default.{what}): one table serves every "
            f"namespace, and this cluster's {len(cluster.nodes)} nodes may hold {need(cluster)} entries, as "
            f"Mininet's own start would (until reboot)")
    return change
