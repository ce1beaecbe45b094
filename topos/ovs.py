"""A private Open vSwitch (ovsdb-server + ovs-vswitchd) with its own directory.

Every emulated node runs one of these inside its network namespace, as Antrea runs
one OVS per node.  Each instance has its own ``OVS_RUNDIR``/``OVS_DBDIR``/
``OVS_LOGDIR``/``OVS_SYSCONFDIR`` and ``--unixctl`` path: without them the tools
reach the wrong vswitchd (see ../shared/spike/REPORT.md).  The bridges use the
userspace datapath (``netdev``) because this machine has no OVS kernel module.

The daemons are only ever stopped through their own pidfiles, after checking the
PID still belongs to a process whose command line names this instance's directory.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional, Sequence

from k8snet.procs import CommandError, OwnedProcess, from_pidfile, run

SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"
DAEMONS = ("ovs-vswitchd", "ovsdb-server")


class OvsInstance:
    """One ovsdb-server + ovs-vswitchd pair.

    ``netns_prefix`` is the command prefix that runs a program in the node's network
    namespace (``["mnexec", "-a", "<pid>"]``); ovs-vswitchd must run there because its
    ports are that namespace's interfaces.  ``dummy=True`` runs vswitchd with
    ``--enable-dummy=override``: no kernel device is touched at all, which is what the
    flow tests want (they only trace)."""

    #: What ``Open_vSwitch other_config`` turns userspace TSO on with.
    TSO = {"userspace-tso-enable": "true"}

    def __init__(self, rundir: Path, netns_prefix: Sequence[str] = (), dummy: bool = False):
        self.dir = Path(rundir)
        self.netns_prefix = list(netns_prefix)
        self.dummy = dummy

    @property
    def env(self) -> dict[str, str]:
        d = str(self.dir)
        return {"OVS_RUNDIR": d, "OVS_DBDIR": d, "OVS_LOGDIR": d, "OVS_SYSCONFDIR": d}

    @property
    def db_sock(self) -> str:
        return f"unix:{self.dir}/db.sock"

    def path(self, name: str) -> str:
        return str(self.dir / name)

    def start(self, other_config: Optional[dict[str, str]] = None) -> None:
        """Both daemons; ``other_config`` is written before ovs-vswitchd starts (settings
        such as ``userspace-tso-enable`` are only read at its start)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        run(["ovsdb-tool", "create", self.path("conf.db"), SCHEMA], timeout=10)
        run([*self.netns_prefix, "ovsdb-server", self.path("conf.db"),
             f"--remote=punix:{self.dir}/db.sock", f"--pidfile={self.path('ovsdb-server.pid')}",
             f"--unixctl={self.path('ovsdb-server.ctl')}", f"--log-file={self.path('ovsdb-server.log')}",
             "-vconsole:off", "--no-chdir", "--detach"], env=self.env, timeout=10)
        self.vsctl("--no-wait", "init")
        if other_config:
            self.vsctl("--no-wait", "set", "Open_vSwitch", ".",
                       *[f"other_config:{k}={v}" for k, v in sorted(other_config.items())])
        self.start_vswitchd()

    def start_vswitchd(self) -> None:
        """ovs-vswitchd alone (after a crash: it reads its bridges and ports from the
        database, which outlives it, and connects to the controller again)."""
        extra = ["--enable-dummy=override"] if self.dummy else []
        run([*self.netns_prefix, "ovs-vswitchd", self.db_sock, *extra,
             f"--pidfile={self.path('ovs-vswitchd.pid')}", f"--unixctl={self.path('ovs-vswitchd.ctl')}",
             f"--log-file={self.path('ovs-vswitchd.log')}", "-vconsole:off", "--no-chdir", "--detach"],
            env=self.env, timeout=15)

    def vsctl(self, *args: str, timeout: float = 15) -> str:
        return run(["ovs-vsctl", f"--db={self.db_sock}", "--timeout=10", *args], env=self.env,
                   timeout=timeout).stdout

    def ofctl(self, *args: str, input: str | None = None, timeout: float = 15) -> str:
        return run(["ovs-ofctl", "-O", "OpenFlow13", *args], env=self.env, input=input,
                   timeout=timeout).stdout

    def appctl(self, *args: str, timeout: float = 15) -> str:
        return run(["ovs-appctl", "-t", self.path("ovs-vswitchd.ctl"), *args], env=self.env,
                   timeout=timeout).stdout

    def vswitchd(self) -> Optional[OwnedProcess]:
        return from_pidfile(self.dir / "ovs-vswitchd.pid")

    def daemons(self) -> list[OwnedProcess]:
        """The running daemons of this instance, identified through their pidfiles."""
        return daemons_in(self.dir)

    def stop(self) -> None:
        for proc in self.daemons():
            proc.stop()


def daemons_in(directory: Path) -> list[OwnedProcess]:
    """OVS daemons whose pidfile is in ``directory`` and whose command line names it."""
    found = (from_pidfile(Path(directory) / f"{name}.pid") for name in DAEMONS)
    return [proc for proc in found if proc is not None]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise CommandError(f"timed out after {timeout:g}s waiting for {what}")


def ovs_version() -> str:
    out = run(["ovs-vswitchd", "--version"], timeout=5).stdout.splitlines()[0]
    return out.split()[-1]


def is_root() -> bool:
    return os.geteuid() == 0


def purge_datapath_flows(instances: "list[Optional[OvsInstance]]") -> None:
    """Make each switch's datapath forward by the flow tables it holds now.

    A flow table change reaches the userspace datapath's cached flows only when a
    revalidator thread has gone over them: within milliseconds on an idle machine, but CI
    saw a loaded one still drop new connections by a NetworkPolicy already replaced.
    ``revalidator/purge`` drops the cache at once (the next packets are classified
    afresh), so a change that returns from ``ClusterNet.apply`` is in force."""
    appctl_all(instances, "revalidator/purge")


def appctl_all(instances: "list[Optional[OvsInstance]]", *args: str) -> list[str]:
    """One ``ovs-appctl`` command on every switch at once (None: a node without one)."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(lambda ovs: ovs.appctl(*args) if ovs is not None else "", instances))
