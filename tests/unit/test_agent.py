"""The pod agent's L4 probe (``serve-ports`` and ``sweep``), on loopback: real sockets,
no namespaces."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

from topos.agent import SCRIPT


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_ports_answers_every_port_it_can_bind_and_sweep_asks_them_all_at_once():
    tcp, udp, closed = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM)
    held = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    held.bind(("0.0.0.0", 0))
    held.listen(1)
    taken = held.getsockname()[1]
    server = subprocess.Popen([sys.executable, SCRIPT, "serve-ports", "--name", "me", "--listen", f"{tcp}/tcp",
                               "--listen", f"{udp}/udp", "--listen", f"{taken}/tcp"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", tcp), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        targets = [f"127.0.0.1:{tcp}/tcp", f"127.0.0.1:{udp}/udp", f"127.0.0.1:{closed}/tcp",
                   f"127.0.0.1:{taken}/tcp"]
        args = [sys.executable, SCRIPT, "sweep", "--timeout", "1", "--tries", "2"]
        for target in targets:
            args += ["--target", target]
        out = subprocess.run(args, capture_output=True, text=True, timeout=30, check=True)
        answers = json.loads(out.stdout)
        assert [a["ok"] for a in answers] == [True, True, False, True], answers
        assert answers[2]["error"] == "ConnectionRefusedError" and answers[2]["tries"] == 2
        assert answers[0]["tries"] == 1
        assert server.poll() is None  # the port it could not bind did not stop the others
    finally:
        server.kill()
        _, err = server.communicate(timeout=10)
        held.close()
    assert f"{taken}/tcp" in err and "Address already in use" in err
