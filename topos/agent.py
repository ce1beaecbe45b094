"""A tiny workload for pods, run by path with the system Python (no project imports).

    python3 agent.py serve --name NAME --port P [--proto tcp|udp]
        answers every TCP connection / UDP datagram with "NAME CLIENT_IP" (the backend's
        name and the source address it saw), so a client learns who served it and the
        server's view of who asked.
    python3 agent.py ask --ip IP --port P [--proto tcp|udp] [--count N] [--timeout S] [--interval S]
        makes N connections (or datagrams) one after another and prints one JSON list:
        [{"ok": true, "server": NAME, "seen_as": IP, "from": REPLY_SOURCE, "ms": 1.2} |
         {"ok": false, "error": "ConnectionRefusedError", "ms": 0.4}, ...]
"""

import argparse
import json
import socket
import sys
import time


def serve(name: str, port: int, proto: str) -> None:
    if proto == "udp":
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("0.0.0.0", port))
        while True:
            _, addr = sock.recvfrom(2048)
            sock.sendto(f"{name} {addr[0]}".encode(), addr)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", port))
    sock.listen(128)
    while True:
        conn, addr = sock.accept()
        try:
            conn.sendall(f"{name} {addr[0]}".encode())
        finally:
            conn.close()


def ask_once(ip: str, port: int, proto: str, timeout: float) -> dict:
    t0 = time.monotonic()
    try:
        if proto == "udp":
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.settimeout(timeout)
            sock.connect((ip, port))
            sock.send(b"?")
            data, peer = sock.recvfrom(2048)
        else:
            sock = socket.create_connection((ip, port), timeout=timeout)
            peer = sock.getpeername()
            data = b""
            while True:
                chunk = sock.recv(2048)
                if not chunk:
                    break
                data += chunk
        sock.close()
        server, seen_as = data.decode().split()
        return {"ok": True, "server": server, "seen_as": seen_as, "from": peer[0],
                "ms": round((time.monotonic() - t0) * 1000, 2)}
    except (OSError, ValueError) as exc:
        return {"ok": False, "error": type(exc).__name__, "ms": round((time.monotonic() - t0) * 1000, 2)}


def main() -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--name", required=True)
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--proto", choices=["tcp", "udp"], default="tcp")
    a = sub.add_parser("ask")
    a.add_argument("--ip", required=True)
    a.add_argument("--port", type=int, required=True)
    a.add_argument("--proto", choices=["tcp", "udp"], default="tcp")
    a.add_argument("--count", type=int, default=1)
    a.add_argument("--timeout", type=float, default=2.0)
    a.add_argument("--interval", type=float, default=0.0)
    args = parser.parse_args()
    if args.cmd == "serve":
        serve(args.name, args.port, args.proto)
        return 0
    results = []
    for i in range(args.count):
        if i and args.interval:
            time.sleep(args.interval)
        results.append(ask_once(args.ip, args.port, args.proto, args.timeout))
    json.dump(results, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
