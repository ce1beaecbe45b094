"""External commands, always with a timeout, and processes we own, tracked by PID.

Two rules from the design notes live here: every external command has a timeout
(a hung ``ovs-vsctl`` must not hang a test run), and a process is only ever signalled
by a PID we recorded ourselves, after checking it is still the process we started
(PIDs get reused; we never kill by name).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Iterator, Mapping, Optional, Sequence

DEFAULT_TIMEOUT = 20.0


class CommandError(RuntimeError):
    """A command failed or timed out; the message holds the command and its output."""


def run(args: Sequence[str], timeout: float = DEFAULT_TIMEOUT, check: bool = True,
        env: Optional[Mapping[str, str]] = None, input: Optional[str] = None) -> subprocess.CompletedProcess:
    full_env = None if env is None else {**os.environ, **env}
    try:
        result = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout,
                                env=full_env, input=input, stdin=None if input is not None else subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise CommandError(f"timed out after {timeout:g}s: {' '.join(args)}") from exc
    except FileNotFoundError as exc:
        raise CommandError(f"command not found: {args[0]} (run `make setup`)") from exc
    if check and result.returncode != 0:
        raise CommandError(f"exit {result.returncode}: {' '.join(args)}\n{result.stderr.strip()}"
                           f"{result.stdout.strip()}")
    return result


def _stat(pid: int) -> Optional[tuple[int, str]]:
    """(start time in clock ticks since boot, state letter) of ``pid``, or None if gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            stat = handle.read()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[19]), fields[0]


def start_time(pid: int) -> Optional[int]:
    """The kernel's start time of ``pid``, or None if gone.

    Together with the PID it identifies one process for its whole life."""
    stat = _stat(pid)
    return stat[0] if stat else None


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@dataclass(frozen=True)
class OwnedProcess:
    """A process we started: its PID and start time, so we never signal a stranger."""

    pid: int
    started: int
    what: str

    @classmethod
    def of(cls, pid: int, what: str) -> "OwnedProcess":
        started = start_time(pid)
        if started is None:
            raise CommandError(f"{what} (pid {pid}) exited right after starting")
        return cls(pid, started, what)

    def alive(self) -> bool:
        """Still running (a zombie is not) and still the process we started."""
        stat = _stat(self.pid)
        if stat is None or stat[0] != self.started:
            return False
        if stat[1] == "Z":
            _reap(self.pid)
            return False
        return True

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; a no-op if it is gone or not ours."""
        stop_all([self], timeout)

    def crash(self, timeout: float = 5.0) -> None:
        """SIGKILL at once -- what a crash leaves: no cleanup of its own -- and wait until
        it is gone; a no-op if it is gone or not ours."""
        if self.alive():
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                return
        deadline = time.monotonic() + timeout
        while self.alive() and time.monotonic() < deadline:
            _reap(self.pid)
            time.sleep(0.01)


def stop_all(procs: Sequence[OwnedProcess], timeout: float = 5.0) -> None:
    """Stop several processes at once: SIGTERM to all, one wait, SIGKILL what is left.

    A detached daemon that exits is reparented, so it may linger as a zombie until
    its new parent reaps it; ``alive()`` does not count zombies, or every stop would
    wait for someone else's reaper."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 2.0)):
        living = [p for p in procs if p.alive()]
        if not living:
            return
        for proc in living:
            try:
                os.kill(proc.pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            for proc in living:
                _reap(proc.pid)
            if not any(p.alive() for p in living):
                return
            time.sleep(0.02)


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block is done.

    Wrap every step that creates something and records it (a run directory, a namespace
    shell, the controller): a Ctrl-C between the two would leave the thing unrecorded,
    and so behind.  A signal that arrives meanwhile is remembered and re-delivered to its
    old handler when the block ends.  (Blocking the signals with a mask instead would be
    inherited by every child started in the block, which would then ignore SIGTERM.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, frame: pending.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for signum in pending[:1]:
            handler = previous[signum]
            if callable(handler):
                handler(signum, None)
            elif handler == signal.SIG_DFL and signum == signal.SIGINT:
                raise KeyboardInterrupt
            elif handler == signal.SIG_DFL:
                signal.raise_signal(signum)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def pid_from_file(path: str) -> Optional[int]:
    try:
        with open(path, encoding="ascii") as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return None


def from_pidfile(pidfile: "str | os.PathLike[str]") -> Optional[OwnedProcess]:
    """The daemon a pidfile of ours names (``<dir>/<program>.pid``), or None.

    Only when that PID is alive and its command line names both the program and the
    pidfile's directory: a daemon we started was given that directory, and a stranger
    who inherited a reused PID was not."""
    path = os.fspath(pidfile)
    pid = pid_from_file(path)
    if pid is None or start_time(pid) is None:
        return None
    line = cmdline(pid)
    program = os.path.basename(path).removesuffix(".pid")
    if program not in line or os.path.dirname(path) not in line:
        return None
    try:
        return OwnedProcess.of(pid, program)
    except CommandError:
        return None
