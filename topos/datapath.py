"""Which datapath and offload setting a run uses: decided from what this machine's Open
vSwitch can do, never from a guess.

Two settings, in the Cluster document (``spec.datapath``) and on the command line
(``--datapath``, ``--offload``):

* ``type``: ``system`` (the OVS kernel module: each node's bridge in the kernel, the
  fast path most researchers' machines have), ``netdev`` (the userspace datapath: one
  ovs-vswitchd thread per node handles every packet), or ``auto`` (default): system
  when the kernel has the module, else netdev.
* ``offload``: ``tso`` (pods keep their offloads; on netdev, OVS's
  ``userspace-tso-enable`` lets ~64 KB segments cross the datapath), ``none`` (TSO off
  and TX checksum offload off in the pods: every 1500-byte packet crosses one by one),
  or ``auto`` (default): tso when *every* cluster of the run can carry it, else none, so
  that backends compared side by side always share one setting.
* ``attach`` (``--attach``): how pods and node uplinks meet their node's OVS.  ``veth``:
  a veth pair whose node end is an OVS port; on the userspace datapath OVS reads it
  through a packet socket, whose receive buffer (which a namespace cannot raise) drops
  segments under TCP load: ~300,000 retransmits per 4 s host-gw run, 40x the kernel's.
  ``tap``: an OVS ``type=tap`` port, its kernel end moved into the pod's namespace (as
  its eth0) or the underlay's (the node's uplink, on the segment bridge); OVS reads and
  writes the tap's file descriptor, no socket buffer in between: 9.6 Gbit/s with 0
  retransmits against 7.2 with ~340,000 on the same run (../shared/DESIGN.md, issue 13).
  ``auto`` (default): tap on the userspace datapath, veth on the kernel's (a tap port of
  the kernel datapath cannot leave its namespace).  A tap's device lives as long as its
  ovs-vswitchd: a restarted one makes it anew, and k8snet moves it back and re-plumbs it
  (topos/attach.py).  With an underlay bandwidth limit the uplinks stay veth: the node's
  side of the limit is the uplink's egress qdisc, which a moved tap does not have.

On the userspace datapath OVS could not tunnel TSO segments before 3.3 (VXLAN TCP
stalls; measured on 3.1, see ../shared/DESIGN.md), so ``tso`` with an encapsulating
backend on an older OVS is refused, naming the version needed.  The kernel datapath
segments tunnelled traffic itself.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Iterable, Optional

from k8snet.procs import CommandError, run

if TYPE_CHECKING:
    from k8snet.model.cluster import Cluster

#: userspace-tso-enable appeared in OVS 2.13 (experimental).
USERSPACE_TSO_SINCE = (2, 13)
#: TSO segments through userspace VXLAN/Geneve tunnels: OVS 3.3.
TUNNEL_TSO_SINCE = (3, 3)


class Offload(str, Enum):
    AUTO = "auto"
    TSO = "tso"
    NONE = "none"


class DatapathType(str, Enum):
    AUTO = "auto"
    NETDEV = "netdev"
    SYSTEM = "system"


@dataclass(frozen=True)
class Capabilities:
    """What this machine's Open vSwitch can do."""

    ovs_version: tuple[int, ...]
    kernel_module: bool
    #: The kernel's ipvlan driver (``ip link add ... type ipvlan`` works).
    ipvlan: bool = True
    #: The kernel's macvlan driver.
    macvlan: bool = True

    @property
    def version_text(self) -> str:
        return ".".join(str(x) for x in self.ovs_version)

    def userspace_tso(self) -> bool:
        return self.ovs_version[:2] >= USERSPACE_TSO_SINCE

    def tunnel_tso(self, datapath_type: DatapathType) -> bool:
        return datapath_type is DatapathType.SYSTEM or self.ovs_version[:2] >= TUNNEL_TSO_SINCE


def parse_version(text: str) -> tuple[int, ...]:
    """``ovs-vswitchd (Open vSwitch) 3.1.0`` -> (3, 1, 0)."""
    m = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
    if not m:
        raise ValueError(f"no version in {text!r}")
    return tuple(int(x) for x in m.groups(default="0"))


def has_kernel_module(sys_module: str = "/sys/module/openvswitch") -> bool:
    """Loaded (``/sys/module/openvswitch``), or loadable (``modprobe -n`` finds it)."""
    if os.path.isdir(sys_module):
        return True
    try:
        return run(["modprobe", "-n", "-q", "openvswitch"], check=False, timeout=5).returncode == 0
    except Exception:  # no modprobe (a container): no way to load one either
        return False


_detected: Optional[Capabilities] = None


def can_make(link_type: str) -> bool:
    """Does this kernel make a ``link_type`` child of a veth?  Tried for real, in a network
    namespace that lives as long as the ``unshare`` (a driver built in shows nowhere else:
    this kernel has CONFIG_MACVLAN=y and no /sys/module/macvlan)."""
    script = f"ip link add v0 type veth peer name v1 && ip link add c0 link v0 type {link_type}"
    try:
        return run(["unshare", "--net", "sh", "-c", script], check=False, timeout=5).returncode == 0
    except CommandError:
        return False


def detect() -> Capabilities:
    """This machine's capabilities (once per process)."""
    global _detected
    if _detected is None:
        out = run(["ovs-vswitchd", "--version"], timeout=5).stdout.splitlines()[0]
        _detected = Capabilities(parse_version(out), has_kernel_module(), can_make("ipvlan"),
                                 can_make("macvlan"))
    return _detected


def access_problem(access: str, caps: Capabilities) -> Optional[str]:
    """Why ``spec.access`` cannot be had here, or None."""
    if access == "ipvlan" and not caps.ipvlan:
        return ("ipvlan needs the kernel's ipvlan driver, and this kernel has none (CONFIG_IPVLAN is not set: "
                "`ip link add ... type ipvlan` says \"Unknown device type\"); use bridge, routed-veth or macvlan")
    if access == "ipvlan":
        return ("ipvlan is not built yet in this version of k8snet (this machine could not test it); "
                "use bridge, routed-veth or macvlan")
    if access == "macvlan" and not caps.macvlan:
        return ("macvlan needs the kernel's macvlan driver, and this kernel has none (`ip link add ... type "
                "macvlan` says \"Unknown device type\"); use bridge or routed-veth")
    return None


#: Why macvlan pods need veth uplinks and the userspace datapath.
MACVLAN_UPLINK = ("macvlan pods are children of the node's uplink, which must stay a kernel device in the node "
                  "with no other receive handler")


def macvlan_problem(datapath_type: str, attach: str) -> Optional[tuple[str, str]]:
    """(field, why) when the asked datapath cannot hold macvlan pods, or None: a kernel
    datapath port takes the device's one receive handler (macvlan's parent needs it:
    EBUSY), and an uplink tap lives in the segment's namespace, not the node's."""
    if datapath_type == "system":
        return "datapath.type", (f"system cannot carry macvlan: {MACVLAN_UPLINK}, and the kernel datapath "
                                 "takes the uplink's receive handler; use netdev or auto")
    if attach == "tap":
        return "datapath.attach", (f"tap cannot carry macvlan: {MACVLAN_UPLINK}, and a tap uplink is moved to "
                                   "its segment's namespace; use veth or auto")
    return None


class DatapathError(ValueError):
    """A setting this machine cannot honour: ``field`` names the setting, the message the fix."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class Attach(str, Enum):
    AUTO = "auto"
    VETH = "veth"
    TAP = "tap"


@dataclass(frozen=True)
class Resolved:
    type: DatapathType          # netdev or system
    offload: Offload            # tso or none
    why: str                    # how auto was decided, for the results' metadata
    attach: Attach = Attach.VETH

    def describe(self) -> str:
        pods = "pod offloads on" if self.offload is Offload.TSO else "pod TX checksum offload off"
        tso = ("userspace TSO on" if self.offload is Offload.TSO else "userspace TSO off") \
            if self.type is DatapathType.NETDEV else "kernel segmentation"
        return f"{self.offload.value} ({pods}; {tso}; datapath {self.type.value})"


def settle(clusters: "list[Cluster]", caps: Optional[Capabilities] = None, lossy: bool = False) -> "list[Cluster]":
    """The clusters of one run with their datapath settings resolved together (an
    already-resolved cluster passes through unchanged).  ``lossy``: the run makes links
    lossy to measure what loss does (as a spec's impairments do)."""
    for cluster in clusters:
        problem = access_problem(cluster.access, caps or detect()) if cluster.access != "bridge" else None
        if problem:
            raise DatapathError("access", problem)
        held = macvlan_problem(cluster.datapath_type, cluster.attach) if cluster.access == "macvlan" else None
        if held:
            raise DatapathError(*held)
    # (A macvlan cluster settled before has attach veth whatever the run's is: see below.)
    settled_macvlan = [c for c in clusters if c.access == "macvlan" and c.datapath_note]
    asked = {(c.offload, c.datapath_type, c.attach) for c in clusters if c not in settled_macvlan} \
        or {(c.offload, c.datapath_type, c.attach) for c in clusters}
    if len(asked) > 1:
        raise DatapathError("datapath", f"the clusters of one run must ask for the same offload, datapath "
                            f"type and attachment, not {sorted(asked)}")
    offload, dtype, attach = asked.pop()
    if "auto" not in (offload, dtype, attach) and all(c.datapath_note for c in clusters):
        return list(clusters)
    lossy = lossy or any(c.underlay.impairments for c in clusters)
    r = resolve(offload, dtype, [c.backend.value for c in clusters], caps or detect(), lossy, attach,
                max(c.underlay.mtu for c in clusters))
    out = []
    for c in clusters:
        update = {"offload": r.offload.value, "datapath_type": r.type.value, "attach": r.attach.value,
                  "datapath_note": r.why}
        if c.access == "macvlan":
            held = macvlan_problem(r.type.value, "veth")
            if held:
                raise DatapathError(*held)
            # The pods are macvlan children, and the uplinks their parents: veth (whatever
            # auto chose for the other clusters of the run).
            update.update(attach="veth", datapath_note=f"{r.why}; macvlan: uplinks are veth ({MACVLAN_UPLINK})")
        out.append(c.model_copy(update=update))
    return out


#: Why a run with lossy links takes offload none under auto (and what tso means there).
LOSSY = ("a lossy link drops whole frames, and with TSO a frame on a veth is a segment of up to 64 KB "
         "(~45 TCP packets): per-packet loss needs offload none")


def resolve(offload: str, datapath_type: str, backends: Iterable[str], caps: Capabilities,
            lossy: bool = False, attach: str = "auto", mtu: int = 1500) -> Resolved:
    """One setting for every cluster of a run (``backends``: their backend names)."""
    backends = list(dict.fromkeys(backends))
    wanted_type = DatapathType(datapath_type)
    if wanted_type is DatapathType.SYSTEM and not caps.kernel_module:
        raise DatapathError("datapath.type", "system needs the Open vSwitch kernel module, and this kernel has "
                            "none (CONFIG_OPENVSWITCH is not set; `modprobe openvswitch` fails); use netdev or auto")
    dtype = wanted_type if wanted_type is not DatapathType.AUTO else \
        (DatapathType.SYSTEM if caps.kernel_module else DatapathType.NETDEV)
    type_why = f"datapath {dtype.value}" + ("" if wanted_type is not DatapathType.AUTO else
                                             (" (auto: the OVS kernel module is there)" if caps.kernel_module
                                              else " (auto: no OVS kernel module)"))
    tunnelled = [b for b in backends if b in ("vxlan", "directrouting")]
    blockers = []
    if dtype is DatapathType.NETDEV and not caps.userspace_tso():
        blockers.append(f"userspace TSO needs Open vSwitch {'.'.join(map(str, USERSPACE_TSO_SINCE))} or newer; "
                        f"this machine has {caps.version_text}")
    if tunnelled and not caps.tunnel_tso(dtype):
        blockers.append(f"backend {tunnelled[0]} tunnels TSO segments, which the userspace datapath can do from "
                        f"Open vSwitch {'.'.join(map(str, TUNNEL_TSO_SINCE))}; this machine has {caps.version_text}")
    wanted = Offload(offload)
    if wanted is Offload.TSO and blockers:
        raise DatapathError("datapath.offload", f"tso is not possible here: {blockers[0]}. Use offload none, or "
                            "auto (which picks none when any backend of the run cannot carry TSO)")
    if wanted is Offload.AUTO:
        if lossy:
            blockers.insert(0, LOSSY)
        chosen = Offload.NONE if blockers else Offload.TSO
        why = f"auto -> {chosen.value}" + (f" because {blockers[0]}" if blockers else
                                           f": every backend of the run ({', '.join(backends)}) can carry TSO")
    else:
        chosen, why = wanted, f"{wanted.value} as asked"
        if lossy and wanted is Offload.TSO:
            why += f" (so loss is per TSO segment: {LOSSY})"
    attached, attach_why = resolve_attach(Attach(attach), dtype, chosen, mtu)
    return Resolved(dtype, chosen, f"{why}; {type_why}; {attach_why}", attached)


#: Why a jumbo underlay without TSO keeps veth: OVS 3.1 reads a tap into a buffer sized by
#: the device's MTU, which it cannot read once the device is in another namespace, so it
#: takes 1,500 (netdev-linux's fallback) and cuts longer frames (coverage counter
#: miniflow_extract_ipv4_pkt_len_error); with userspace TSO it reads into 64 KB buffers.
JUMBO = "a tap moved out of ovs-vswitchd's namespace is read 1,500 bytes at a time unless userspace TSO is on"


def resolve_attach(wanted: Attach, dtype: DatapathType, offload: Offload = Offload.TSO,
                   mtu: int = 1500) -> tuple[Attach, str]:
    """The attachment and how it was decided (``mtu``: the largest underlay MTU of the run)."""
    jumbo = mtu > 1500 and offload is not Offload.TSO
    if wanted is Attach.TAP and dtype is not DatapathType.NETDEV:
        raise DatapathError("datapath.attach", "tap needs the userspace datapath (netdev): a tap port of the "
                            "kernel datapath cannot be moved into a pod's namespace; use veth, or auto")
    if wanted is Attach.TAP and jumbo:
        raise DatapathError("datapath.attach", f"tap with an underlay MTU of {mtu} needs offload tso ({JUMBO}); "
                            "use veth, offload tso, or auto")
    if wanted is not Attach.AUTO:
        return wanted, f"attach {wanted.value} as asked"
    if dtype is DatapathType.NETDEV and jumbo:
        return Attach.VETH, f"attach veth (auto: MTU {mtu} without TSO, and {JUMBO})"
    if dtype is DatapathType.NETDEV:
        return Attach.TAP, "attach tap (auto: the userspace datapath reads a veth through a packet socket that drops)"
    return Attach.VETH, "attach veth (auto: the kernel datapath)"
