"""What a hung iperf3 is diagnosed with: the system call it sleeps in, read from /proc."""

from __future__ import annotations

import subprocess
import sys
import time

from topos.iperf import where_stuck

WAIT_FOR_DATAGRAM = ("import socket, sys; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
                     "s.bind(('127.0.0.1', 0)); print('ready', flush=True); s.recvfrom(4)")


def test_a_process_blocked_in_a_udp_receive_is_seen_there():
    proc = subprocess.Popen([sys.executable, "-c", WAIT_FOR_DATAGRAM], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 5
        while not where_stuck(proc.pid).startswith("recvfrom") and time.monotonic() < deadline:
            time.sleep(0.01)
        assert where_stuck(proc.pid).startswith("recvfrom ("), where_stuck(proc.pid)
    finally:
        proc.kill()
        proc.wait(timeout=5)
    assert where_stuck(proc.pid) == "gone"
