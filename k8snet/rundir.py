"""Run directories: where a running cluster keeps everything it must later remove.

Each run gets ``/tmp/k8snet-XXXXXXXX/`` holding the per-node OVS directories (with
the daemons' pidfiles), the controller's sockets and log, and ``processes.json``: every
process the run started, by PID *and* kernel start time.  The run holds an exclusive
``flock`` on ``lock`` for as long as it lives, so ``k8snet clean`` can tell a live run
(lock held: leave it alone) from the remains of a crashed one (lock free: stop its
processes, remove the directory).  Namespaces need no separate bookkeeping: ours are
Mininet hosts' namespaces, which vanish once their last process is gone.
"""

from __future__ import annotations

import fcntl
import glob
import json
import os
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Optional

from k8snet.procs import OwnedProcess, from_pidfile, stop_all

RUN_PREFIX = "k8snet-"
RUN_ROOT = "/tmp"


class RunDir:
    def __init__(self, path: Path, lock_fd: int):
        self.path = path
        self._lock_fd: Optional[int] = lock_fd
        self.processes: list[OwnedProcess] = []

    @classmethod
    def create(cls, root: str = RUN_ROOT) -> "RunDir":
        path = Path(tempfile.mkdtemp(prefix=RUN_PREFIX, dir=root))
        fd = os.open(path / "lock", os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        run = cls(path, fd)
        run._save()
        return run

    def record(self, proc: OwnedProcess) -> None:
        self.processes.append(proc)
        self._save()

    def _save(self) -> None:
        tmp = self.path / "processes.json.tmp"
        tmp.write_text(json.dumps([asdict(p) for p in self.processes]))
        os.replace(tmp, self.path / "processes.json")

    def sub(self, name: str) -> Path:
        path = self.path / name
        path.mkdir(exist_ok=True)
        return path

    def remove(self) -> None:
        """Stop what is still recorded as ours, then delete the directory and the lock."""
        stop_recorded(self.path)
        shutil.rmtree(self.path, ignore_errors=True)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


def recorded(path: Path) -> list[OwnedProcess]:
    try:
        data = json.loads((path / "processes.json").read_text())
    except (OSError, ValueError):
        return []
    return [OwnedProcess(**entry) for entry in data]


def stop_recorded(path: Path) -> list[str]:
    """Stop the daemons (OVS, by their pidfiles) and recorded processes of one run."""
    daemons = [proc for pidfile in sorted(glob.glob(str(path / "**" / "*.pid"), recursive=True))
               if (proc := from_pidfile(pidfile)) is not None]
    daemons = list({(p.pid, p.started): p for p in daemons}.values())
    stop_all(daemons)
    others = [p for p in recorded(path) if p.alive()]
    stop_all(others)
    return [f"{p.what} pid {p.pid}" for p in daemons + others]


def is_live(path: Path) -> bool:
    """True while the run that owns ``path`` holds its lock."""
    try:
        fd = os.open(path / "lock", os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def leftover_runs(root: str = RUN_ROOT) -> list[Path]:
    return [Path(p) for p in sorted(glob.glob(os.path.join(root, RUN_PREFIX + "*"))) if Path(p).is_dir()]


def live_sockets(socket_name: str, run: Optional[str] = None, root: str = RUN_ROOT) -> list[Path]:
    """The control sockets of running clusters (``k8snet up``), or of the one in ``run``."""
    if run:
        return [Path(run) / socket_name] if (Path(run) / socket_name).exists() else []
    return [p / socket_name for p in leftover_runs(root) if is_live(p) and (p / socket_name).exists()]


def one_live_socket(socket_name: str, run: Optional[str] = None) -> tuple[Optional[Path], str]:
    """The one running cluster's socket, or None and the sentence that says why not."""
    sockets = live_sockets(socket_name, run)
    if not sockets:
        return None, ("no running cluster" + (f" in {run}" if run else "")
                      + ": start one with `k8snet up` (in another terminal)")
    if len(sockets) > 1:
        return None, ("several clusters are running; choose one with --run: "
                      + ", ".join(str(s.parent) for s in sockets))
    return sockets[0], ""


def clean(root: str = RUN_ROOT, include_live: bool = False) -> list[str]:
    """Remove every run directory of ours whose owner is gone; report what was done."""
    report = []
    for path in leftover_runs(root):
        if is_live(path) and not include_live:
            report.append(f"{path}: a running k8snet owns it; left alone")
            continue
        for item in stop_recorded(path):
            report.append(f"{path}: stopped {item}")
        shutil.rmtree(path, ignore_errors=True)
        report.append(f"{path}: removed")
    return report
