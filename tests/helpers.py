"""Test helpers: what "nothing of ours is left" means, and OVS as a flow simulator."""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass

from typing import Iterable

from controllers.flows import Desired
from k8snet.procs import run
from k8snet.rundir import RUN_PREFIX, RUN_ROOT, RunDir
from k8snet.model.cluster import TUNNEL_IFNAME, TUNNEL_OFPORT, UPLINK_OFPORT, Cluster
from topos.ovs import OvsInstance


def _live_pids() -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as handle:
                stat = handle.read()
        except OSError:
            continue
        if stat[stat.rindex(")") + 2] != "Z":
            pids.append(int(entry))
    return pids


@dataclass(frozen=True)
class Snapshot:
    """Network namespaces in use, root-namespace links, our processes and run dirs."""

    netns: frozenset[str]
    links: frozenset[str]
    processes: frozenset[str]
    run_dirs: frozenset[str]

    @classmethod
    def take(cls) -> "Snapshot":
        netns, procs = set(), set()
        for pid in _live_pids():
            try:
                netns.add(os.readlink(f"/proc/{pid}/ns/net"))
                with open(f"/proc/{pid}/cmdline", "rb") as handle:
                    line = handle.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if RUN_PREFIX in line or "ovs-vswitchd" in line or "ovsdb-server" in line:
                procs.add(f"{pid}:{line.strip()[:120]}")
        links = set(run(["ip", "-o", "link", "show"]).stdout.split("\n"))
        names = frozenset(re.sub(r"^\d+: ([^:@]+).*$", r"\1", l) for l in links if l)
        dirs = frozenset(glob.glob(os.path.join(RUN_ROOT, RUN_PREFIX + "*")))
        return cls(frozenset(netns), names, frozenset(procs), dirs)

    def leaks_since(self, before: "Snapshot") -> dict[str, list[str]]:
        leaks = {
            "network namespaces": sorted(self.netns - before.netns),
            "root-namespace links": sorted(self.links - before.links),
            "processes": sorted(self.processes - before.processes),
            "run directories": sorted(self.run_dirs - before.run_dirs),
        }
        return {k: v for k, v in leaks.items() if v}


class FlowSim:
    """A throwaway OVS (dummy netdevs: nothing touches the kernel) holding one node's
    compiled flows, so ``ofproto/trace`` can tell where a packet goes."""

    BRIDGE = "br-sim"

    def __init__(self) -> None:
        # A run directory like a cluster's: locked while in use, so `k8snet clean`
        # running meanwhile leaves it alone, and removed with its daemons afterwards.
        self.run = RunDir.create()
        self.ovs = OvsInstance(self.run.sub("sim"), dummy=True)

    def __enter__(self) -> "FlowSim":
        self.ovs.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.ovs.stop()
        self.run.remove()

    def load(self, cluster: Cluster, node: str, desired: Desired) -> None:
        args = ["--may-exist", "add-br", self.BRIDGE, "--", "set", "bridge", self.BRIDGE,
                "datapath_type=dummy", "fail-mode=secure", "protocols=OpenFlow13",
                "--", "--may-exist", "add-port", self.BRIDGE, "uplink", "--", "set", "interface", "uplink",
                f"ofport_request={UPLINK_OFPORT}"]
        if cluster.encapsulates:
            args += ["--", "--may-exist", "add-port", self.BRIDGE, TUNNEL_IFNAME, "--", "set", "interface",
                     TUNNEL_IFNAME, "type=vxlan", "options:remote_ip=flow", "options:key=flow",
                     f"options:dst_port={cluster.vxlan_port}", f"ofport_request={TUNNEL_OFPORT}"]
        for pod in cluster.pods_on(node):
            args += ["--", "--may-exist", "add-port", self.BRIDGE, pod.port_name,
                     "--", "set", "interface", pod.port_name, f"ofport_request={pod.ofport}"]
        self.ovs.vsctl(*args)
        self.ovs.ofctl("del-flows", self.BRIDGE)
        self.ovs.ofctl("del-groups", self.BRIDGE)
        if desired.groups:
            self.ovs.ofctl("add-groups", self.BRIDGE, "-", input="\n".join(desired.group_lines()) + "\n")
        self.ovs.ofctl("add-flows", self.BRIDGE, "-", input="\n".join(desired.ofctl_lines()) + "\n")

    def dump(self) -> list[str]:
        return normalized_dump(self.ovs.ofctl("dump-flows", self.BRIDGE, "--no-stats"))

    def trace(self, flow: str, *ct_next: str) -> "Trace":
        """Trace ``flow``; each ``ct_next`` (``"trk,est"``) is the state the next ``ct``
        action resumes with (OVS assumes ``trk,new`` for those not given)."""
        options = [arg for flags in ct_next for arg in ("--ct-next", flags)]
        return Trace(self.ovs.appctl("ofproto/trace", self.BRIDGE, flow, *options))


def normalized_dump(text: str) -> list[str]:
    """``dump-flows --no-stats`` lines without the cookie, sorted: comparable across switches."""
    lines = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("OFPST") or line.startswith("NXST"):
            continue
        lines.append(re.sub(r"cookie=0x[0-9a-f]+, ?", "", line))
    return sorted(lines)


class Trace:
    """The parts of an ``ofproto/trace`` answer that tests look at."""

    def __init__(self, text: str):
        self.text = text
        final = re.search(r"^Final flow: (.*)$", text, re.M)
        self.final = final.group(1) if final else ""
        if self.final == "unchanged":
            first = re.search(r"^Flow: (.*)$", text, re.M)
            self.final = first.group(1) if first else ""
        self.openflow_actions = re.findall(r"^\s+(output:\S+|IN_PORT|LOCAL|drop|dec_ttl|CONTROLLER:\d+)\s*$", text,
                                           re.M)

    @property
    def outputs(self) -> list[str]:
        """Output actions, ``output:regN[]`` (the VXLAN egress check) resolved to its port."""
        out = []
        for action in self.openflow_actions:
            reg = re.fullmatch(r"output:NXM_NX_REG(\d)\[\]", action)
            if reg:
                action = f"output:{int(self.final_field(f'reg{reg.group(1)}') or '0', 0)}"
            if action.startswith("output:") or action in ("IN_PORT", "LOCAL"):
                out.append(action)
        return out

    def final_field(self, name: str) -> str | None:
        m = re.search(rf"(?:^|,){name}=([^,\s]+)", self.final)
        return m.group(1) if m else None

    def __repr__(self) -> str:
        return self.text


def cookies(dump_text: str) -> Iterable[int]:
    return [int(c, 16) for c in re.findall(r"cookie=(0x[0-9a-f]+)", dump_text)]
