"""The NXT_CT_FLUSH messages the controller sends are byte for byte what OVS's own
``ovs-ofctl ct-flush`` sends (captured from it on a throwaway Unix socket)."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import tempfile
import threading

import pytest

from controllers.conntrack import NX_VENDOR_ID, NXT_CT_FLUSH, CtFlush, encode


def ofctl_sends(args: list[str]) -> bytes:
    """The body of the experimenter message ``ovs-ofctl ct-flush`` sends to a fake switch."""
    with tempfile.TemporaryDirectory(prefix="k8snet-ctflush-") as folder:
        path = os.path.join(folder, "switch.sock")
        server = socket.socket(socket.AF_UNIX)
        server.bind(path)
        server.listen(1)
        seen: list[bytes] = []

        def switch() -> None:
            conn, _ = server.accept()
            conn.settimeout(5)
            with conn:
                while True:
                    header = conn.recv(8, socket.MSG_WAITALL)
                    if len(header) < 8:
                        return
                    _, kind, length, xid = struct.unpack("!BBHI", header)
                    body = conn.recv(length - 8, socket.MSG_WAITALL) if length > 8 else b""
                    if kind == 0:       # hello: speak OpenFlow 1.3
                        conn.sendall(struct.pack("!BBHI", 4, 0, 8, xid))
                    elif kind == 20:    # barrier request
                        conn.sendall(struct.pack("!BBHI", 4, 21, 8, xid))
                    elif kind == 4:     # experimenter
                        seen.append(body)

        thread = threading.Thread(target=switch, daemon=True)
        thread.start()
        subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "ct-flush", f"unix:{path}", *args], check=True, timeout=15,
                       capture_output=True)
        thread.join(10)
        server.close()
    assert len(seen) == 1
    experimenter, exp_type = struct.unpack("!II", seen[0][:8])
    assert (experimenter, exp_type) == (NX_VENDOR_ID, NXT_CT_FLUSH)
    return seen[0][8:]


@pytest.mark.parametrize("flush", [CtFlush(1, "10.96.0.100", 80, "10.244.1.2"), CtFlush(1, "192.168.56.10", 30080),
                                   CtFlush(3, "10.96.0.5", 53, "10.96.0.5")], ids=str)
def test_encoding_matches_ovs_ofctl(flush):
    assert encode(flush) == ofctl_sends(flush.ofctl_args())
