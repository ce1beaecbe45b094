"""The controller dials its switches: each node's bridge listens for it (``punix:``).

Why this way round: with ``unix:`` targets the switches dial the controller, and a switch
whose controller went away retries after OVS's reconnect backoff (1 s, doubling up to
8 s), so a restarted controller waited on the slowest switch's timer -- most of the
measured 2.3 s resync (bench/faults.py).  A bridge with a passive target (``set-controller
br0 punix:RUNDIR/br0.controller``) listens instead, and a starting controller connects to
every switch at once.  OVS counts a passive target as a *service* controller: no
``is_connected`` in its database and no asynchronous messages until the controller sets
a ``miss_send_len`` (the app's OFPT_SET_CONFIG does); flows, bundles, groups and
packet-ins work as on a primary connection.  Antrea's agent talks to its bridge the same
way round (over the bridge's management socket).

A connection is over, for the dialer, as soon as its receive side sees the switch go
(a crashed vswitchd): os-ken only tears a session down once its echo thread wakes up
(seconds later; native threads cannot be killed), and the dialer does not wait for that
to reach the switch's new vswitchd (``lost`` tells the app at once).
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any, Callable

LOG = logging.getLogger("k8snet.controller")
#: How long a dialer waits after a failed connect or a lost connection (s).
RETRY_S = 0.05
#: The environment variable listing the switches' sockets (``os.pathsep``-separated), so
#: that ``ryu-manager`` can load the same app.
ENV = "K8SNET_SWITCHES"


class UnixSocket:
    """An AF_UNIX socket on which TCP-level options are silently ignored: os-ken and Ryu
    set TCP_NODELAY on every OpenFlow socket, which AF_UNIX refuses (EOPNOTSUPP)."""

    def __init__(self, sock: socket.socket):
        self._sock = sock

    def setsockopt(self, level: int, option: int, value: Any) -> None:
        if level == socket.IPPROTO_TCP:
            return None
        return self._sock.setsockopt(level, option, value)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def switch_paths() -> list[str]:
    return [p for p in os.environ.get(ENV, "").split(os.pathsep) if p]


def session(sock: socket.socket, datapath_class: Any, hub: Any, lost: Callable[[Any], None]) -> None:
    """Run one OpenFlow session on ``sock``; return once its receive loop has ended
    (after calling ``lost(datapath)``), leaving the framework's teardown to finish later."""
    datapath = datapath_class(UnixSocket(sock), ("unix", 0))
    ended = hub.Event()
    receive = datapath._recv_loop

    def receive_then_signal() -> None:
        try:
            receive()
        finally:
            ended.set()

    datapath._recv_loop = receive_then_signal

    def serve() -> None:
        try:
            datapath.serve()
        except Exception as exc:  # a malformed message: the session ends like a lost switch
            LOG.error("switch session failed: %s", exc)
        finally:
            ended.set()
            datapath.close()

    hub.spawn(serve)
    ended.wait()
    lost(datapath)


def dial(path: str, run: Callable[[socket.socket], None], sleep: Callable[[float], Any],
         active: Callable[[], bool] = lambda: True) -> None:
    """Keep one OpenFlow connection to the switch listening on ``path``: connect, run a
    session on it (``run`` returns when it is over), repeat."""
    failures = 0
    while active():
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
        except OSError as exc:
            sock.close()
            failures += 1
            if failures == int(10 / RETRY_S):  # say so once, keep trying
                LOG.warning("switch at %s: cannot connect for 10 s (%s); still trying", path, exc)
            sleep(RETRY_S)
            continue
        failures = 0
        try:
            run(sock)
        finally:
            sock.close()
        sleep(RETRY_S)
