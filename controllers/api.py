"""The controller's state API: newline-delimited JSON over a Unix domain socket.

No IP address is involved anywhere between the cluster and its controller: the
OpenFlow channel and this API are both Unix sockets in the run directory.

Requests (one JSON object per line, one reply line each):

* ``{"op": "status"}`` -> ``{"ok": true, "generation": G, "switches": {...}, "errors": [...]}``
* ``{"op": "apply", "cluster": {...}}`` -> replaces the desired cluster model; the
  controller diffs and pushes it to every connected switch.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from typing import Any, Callable

Handler = Callable[[dict[str, Any]], dict[str, Any]]


class ApiServer:
    def __init__(self, path: str, handler: Handler, spawn: Callable[..., Any] | None = None):
        """``spawn`` starts a concurrent task: the framework's own (os-ken's native
        threads, or Ryu's green threads), so the API never blocks the OpenFlow loop."""
        self.path = path
        self.handler = handler
        self.spawn = spawn or (lambda fn, *a: threading.Thread(target=fn, args=a, daemon=True).start())
        if os.path.exists(path):
            os.unlink(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(16)

    def start(self) -> None:
        self.spawn(self._serve)

    def _serve(self) -> None:
        while True:
            conn, _ = self.sock.accept()
            self.spawn(self._client, conn)

    def _client(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rwb") as stream:
            for line in stream:
                try:
                    reply = self.handler(json.loads(line))
                except Exception as exc:  # report, never kill the controller
                    reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                stream.write(json.dumps(reply).encode() + b"\n")
                stream.flush()


class ApiClient:
    """Talks to a running controller."""

    def __init__(self, path: str, timeout: float = 10.0):
        self.path = path
        self.timeout = timeout

    def call(self, request: dict[str, Any]) -> dict[str, Any]:
        reply = self.call_raw(request)
        if not reply.get("ok"):
            raise RuntimeError(f"{request.get('op')} refused: {reply.get('error')}")
        return reply

    def call_raw(self, request: dict[str, Any]) -> dict[str, Any]:
        """One request, one reply, whatever it says."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(self.timeout)
            sock.connect(self.path)
            with sock.makefile("rwb") as stream:
                stream.write(json.dumps(request).encode() + b"\n")
                stream.flush()
                line = stream.readline()
        if not line:
            raise ConnectionError(f"{self.path} closed the connection")
        return json.loads(line)

    def status(self) -> dict[str, Any]:
        return self.call({"op": "status"})

    def apply(self, cluster_json: dict[str, Any]) -> dict[str, Any]:
        return self.call({"op": "apply", "cluster": cluster_json})

    def wait_synced(self, switches: list[str], timeout: float, since: float = 0.0) -> dict[str, Any]:
        """Wait until every named switch is connected and holds the desired state; with
        ``since`` (a ``time.time()``), on a connection made after it (a restarted switch's,
        not the one the controller may not yet have seen end)."""
        deadline = time.monotonic() + timeout
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                last = self.status()
            except (OSError, ConnectionError):
                time.sleep(0.05)
                continue
            state = last.get("switches", {})
            if all(state.get(s, {}).get("synced") and state[s].get("connected_at", 0) > since for s in switches):
                return last
            time.sleep(0.05)
        missing = [s for s in switches if not last.get("switches", {}).get(s, {}).get("synced")]
        raise TimeoutError(f"switches not in sync with the controller after {timeout:g}s: "
                           f"{', '.join(missing)}; last status: {last}")
