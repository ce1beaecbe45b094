"""One iperf3 measurement between two of our hosts, for tests, benchmarks and scenarios.

iperf3 3.12 (Debian's) can hang for good on a network that loses one packet at the wrong
moment: its UDP test starts with a 4-byte datagram answered by another, with no
retransmission (esnet/iperf#351; a retry was proposed in esnet/iperf#1144), and client and
server can each wait forever for the other at the end of a test (esnet/iperf#819, #1527).
A measurement that does not finish in time is therefore looked at before it is killed --
which system call and kernel wait channel the client and the server sleep in, and their
sockets' queues -- and run once more.  The retry is reported with that diagnosis
(``retried``), never silently: a hang that keeps happening points at a dataplane that
loses packets, and the diagnosis says where to look.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from typing import Any, Iterable, Optional, Sequence

from k8snet.procs import CommandError, deferred_signals, run

#: UDP datagram payload: fits a VXLAN pod MTU (1450) with room to spare, so no test
#: measures IP fragmentation by accident.
UDP_LENGTH = 1400
#: Beyond the test's own duration, how long a client may take before it counts as hung.
GRACE = 20.0
#: x86_64 system call numbers a hung iperf3 can sleep in (``/proc/PID/syscall``).
SYSCALLS = {"0": "read", "1": "write", "7": "poll", "23": "select", "44": "sendto", "45": "recvfrom",
            "232": "epoll_wait", "270": "pselect6", "271": "ppoll"}


def _wait_listening(host: Any, proc: subprocess.Popen, port: int, timeout: float = 10.0) -> None:
    """Until the iperf3 server's socket listens (its control connection is TCP for UDP
    tests too); a server that exits or never listens is an error, not a sleep too short."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if run(["mnexec", "-a", str(host.pid), "ss", "-Htln", f"sport = :{port}"], timeout=5).stdout.strip():
            return
        if proc.poll() is not None:
            raise CommandError(f"iperf3 -s on port {port} exited with status {proc.returncode}")
        time.sleep(0.02)
    raise CommandError(f"iperf3 -s did not listen on port {port} within {timeout:g}s")


def where_stuck(pid: int) -> str:
    """The system call and kernel wait channel ``pid`` sleeps in: a UDP client blocked in
    ``recvfrom`` waits for the handshake's answer; one in ``select`` for its peer."""
    try:
        with open(f"/proc/{pid}/syscall", encoding="ascii") as handle:
            call = handle.read().split()[0]
        with open(f"/proc/{pid}/wchan", encoding="ascii") as handle:
            wchan = handle.read().strip() or "-"
    except (OSError, IndexError):
        return "gone"
    return f"{SYSCALLS.get(call, call)} ({wchan})"


def _sockets(host: Any) -> str:
    """The host's UDP and TCP sockets with their queues, on one line."""
    out = run(["mnexec", "-a", str(host.pid), "ss", "-Hanu", "-t"], timeout=5, check=False).stdout
    return "; ".join(" ".join(line.split()) for line in out.splitlines() if line.strip()) or "none"


def _attempt(client: Any, server: Any, args: list[str], listen: int, seconds: int) -> dict[str, Any]:
    """One run: ``{"doc": parsed JSON}``, ``{"error": why}`` or ``{"hung": diagnosis}``."""
    srv = proc = None
    try:
        # Started and remembered as one step: a Ctrl-C in between would leave the server
        # running in its namespace (and the namespace with it).
        with deferred_signals():
            srv = server.popen(["iperf3", "-s", "-1", "-p", str(listen)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        _wait_listening(server, srv, listen)
        with deferred_signals():
            proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    stdin=subprocess.DEVNULL)
        try:
            out, err = proc.communicate(timeout=seconds + GRACE)
        except subprocess.TimeoutExpired:
            return {"hung": (f"iperf3 -c did not finish within {seconds + GRACE:g}s; client in "
                             f"{where_stuck(proc.pid)}, server in {where_stuck(srv.pid)}; client sockets: "
                             f"{_sockets(client)}; server sockets: {_sockets(server)}")}
    except CommandError as exc:
        return {"error": str(exc)}
    finally:
        for p in (proc, srv):
            if p is not None and p.poll() is None:
                p.kill()
            if p is not None:
                p.wait(timeout=5)
    try:
        return {"doc": json.loads(out)}
    except ValueError:
        return {"error": f"iperf3 printed no JSON: {err.strip()[:300]}"}


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU time the processes ``pids`` have used so far (gone ones count 0)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat(5))
    return total / os.sysconf("SC_CLK_TCK")


def iperf(client: Any, server: Any, ip: str, port: int, seconds: int, listen: Optional[int] = None,
          protocol: str = "tcp", streams: int = 1, udp_bitrate: str = "0", watch: Sequence[int] = (),
          congestion: str = "") -> dict[str, Any]:
    """iperf3 -J from host ``client`` to ``ip:port``, the server in host ``server`` listening
    on ``listen`` (default ``port``; differs when ``ip:port`` is a Service frontend).

    ``protocol`` ``udp`` sends ``UDP_LENGTH``-byte datagrams at ``udp_bitrate`` (``0``:
    as fast as the sender can); the figure is what the receiver got.  ``congestion`` names
    the TCP congestion control (``-C``; empty: the namespace's default); ``congestion`` in the
    result is the one the sender used, as iperf3 reports it (None for UDP).

    Returns ``{"ok": True, "bits_per_second", "retransmits", "lost_percent", "bytes",
    "cpu_percent", "iperf3_end", "doc", "retried"}`` (``cpu_percent``: iperf3's own client and
    server CPU, and ``watched``: what the processes ``watch`` -- a cluster's ovs-vswitchd,
    say -- used meanwhile, in percent of one core; ``doc``: iperf3's whole JSON, as it came;
    ``retried``: the diagnosis of a first run that hung, else None) or ``{"ok": False,
    "error": why}`` -- a failure keeps its reason and is never reported as a zero."""
    if shutil.which("iperf3") is None:
        return {"ok": False, "error": "iperf3 is not installed (Debian package iperf3; `make setup` installs it)"}
    args = ["mnexec", "-a", str(client.pid), "iperf3", "-c", ip, "-p", str(port), "-t", str(seconds), "-J",
            "-P", str(streams)]
    if protocol == "udp":
        args += ["-u", "-b", udp_bitrate, "-l", str(UDP_LENGTH)]
    elif congestion:
        args += ["-C", congestion]
    used, t0 = cpu_seconds(watch), time.monotonic()
    got = _attempt(client, server, args, listen or port, seconds)
    watched = (cpu_seconds(watch) - used) / max(1e-3, time.monotonic() - t0) * 100
    retried = got.get("hung")
    if retried:
        got = _attempt(client, server, args, listen or port, seconds)
        if "hung" in got:
            return {"ok": False, "error": f"hung twice: {retried} / then: {got['hung']}"}
    if "error" in got:
        return {"ok": False, "error": got["error"]}
    doc = got["doc"]
    if "error" in doc:
        return {"ok": False, "error": f"iperf3: {doc['error']}", "doc": doc}
    end = doc.get("end", {})
    received = end.get("sum_received")
    if not received or not received.get("bytes"):
        return {"ok": False, "error": "iperf3 finished but the receiver got no data", "doc": doc}
    cpu = end.get("cpu_utilization_percent", {})
    return {"ok": True, "bits_per_second": received["bits_per_second"],
            "retransmits": end.get("sum_sent", {}).get("retransmits"),
            "cpu_percent": {"client": cpu.get("host_total"), "server": cpu.get("remote_total"),
                            **({"watched": round(watched, 1)} if watch else {})},
            "lost_percent": received.get("lost_percent"), "bytes": received["bytes"],
            "congestion": end.get("sender_tcp_congestion"),
            "iperf3_end": end, "doc": doc, "retried": retried}
