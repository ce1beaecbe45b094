"""A tiny workload for pods, run by path with the system Python (no project imports).

    python3 agent.py serve --name NAME --port P [--proto tcp|udp]
        answers every TCP connection / UDP datagram with "NAME CLIENT_IP PORT" (the backend's
        name, the source address it saw and the port it answered on), so a client learns who
        served it and the server's view of who asked; a UDP answer is padded to the
        question's length.
        A TCP connection gets the greeting "NAME CLIENT_IP PORT\n", then every byte it
        sends is echoed back until it closes.
    python3 agent.py ask --ip IP --port P [--proto tcp|udp] [--count N] [--timeout S] [--interval S]
                         [--size BYTES] [--sport PORT]
        makes N connections (or datagrams) one after another and prints one JSON list:
        [{"ok": true, "server": NAME, "seen_as": IP, "from": REPLY_SOURCE, "bytes": N, "ms": 1.2,
          "t": UNIX_TIME} | {"ok": false, "error": "ConnectionRefusedError", "ms": 0.4, "t": UNIX_TIME}, ...]
        (--duration S: keep asking for S seconds instead of --count times, or until SIGTERM;
        UDP: --size BYTES per
        datagram, answered with as many; --sport PORT: every connection or datagram from that
        source port)
    python3 agent.py hold --ip IP --port P --seconds S
        one TCP connection kept busy for S seconds (a byte out and back every 50 ms); prints
        {"established": true, "server": NAME} as soon as it stands, then at the end
        {"ok": true, "server": NAME, "exchanges": N} or the error that broke it.
    python3 agent.py rr --ip IP --port P --count N [--timeout S]
        request/response latency (netperf's TCP_RR): one TCP connection, then N times one
        byte out and the echo back; prints {"ok": true, "server": NAME, "ms": [...]} or
        {"ok": false, "error": ..., "ms": [the samples so far]}.
    python3 agent.py connect --ip IP --port P [--proto tcp|udp] [--count N] [--timeout S]
        can a connection be made, whatever serves the port: TCP, the handshake completes
        (nothing is sent); UDP, a datagram is sent and any answer comes back.  Stops at
        the first success; prints {"ok": true, "tries": N, "ms": 0.3} or
        {"ok": false, "tries": N, "error": "ConnectionRefusedError"}.
    python3 agent.py serve-ports --name NAME --listen 80/tcp [--listen 81/udp ...]
        ``serve`` on several ports in one process (a port something else already holds is
        skipped, with a line on stderr).
    python3 agent.py sweep --target IP:PORT/PROTO [--target ...] [--timeout S] [--tries N] [--sport-base P]
        one connection (TCP) or datagram (UDP) to every target at once, each retried up to
        N times while it fails; prints one JSON list, in the targets' order, of
        {"ok": true, "ms": 0.4, "tries": 1} | {"ok": false, "error": ..., "ms": ..., "tries": N}
        (as ``connect``: any server counts; a UDP probe of port 53 is a DNS query).
    python3 agent.py dns --server IP --name NAME [--count N] [--timeout S]
        N DNS queries (type A, over UDP) one after another, timed to the microsecond
        (dig reports whole milliseconds); prints [{"ok": true, "ms": 0.21, "a": [IPs]} |
        {"ok": false, "error": ..., "ms": ...}, ...].
"""

import argparse
import errno
import json
import os
import signal
import socket
import sys
import threading
import time

#: This file, for running it in a namespace with the system Python (``python3 SCRIPT ...``).
SCRIPT = os.path.abspath(__file__)
#: Set by SIGTERM: ``ask --duration`` and ``hold`` stop early and still print what they saw.
STOP = threading.Event()


def serve(name: str, port: int, proto: str) -> None:
    if proto == "udp":
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("0.0.0.0", port))
        while True:
            data, addr = sock.recvfrom(65535)
            answer = f"{name} {addr[0]} {port}\n".encode()
            # As long as the question (padded with '.'), so a large datagram is answered by one
            # as large: both directions then cross whatever fragments and reassembles them.
            sock.sendto(answer + b"." * max(0, len(data) - len(answer)), addr)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", port))
    sock.listen(128)
    while True:
        conn, addr = sock.accept()
        threading.Thread(target=_echo, args=(conn, f"{name} {addr[0]} {port}\n".encode()), daemon=True).start()


def serve_ports(name: str, listen: list) -> None:
    threads = []
    for item in listen:
        port, proto = item.split("/")
        thread = threading.Thread(target=_serve_or_say, args=(name, int(port), proto), daemon=True)
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join()
    # Keep serving while any port does; if every bind failed, exit with an error.
    sys.exit(1)


def _serve_or_say(name: str, port: int, proto: str) -> None:
    try:
        serve(name, port, proto)
    except OSError as exc:
        print(f"{port}/{proto}: {exc}", file=sys.stderr, flush=True)


#: A DNS query (type A for the root), what a UDP probe of port 53 sends: a DNS server
#: ignores a datagram that is not one.
DNS_PROBE = b"\x6b\x38\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x01"


def reach_once(ip: str, port: int, proto: str, timeout: float, sport: int = 0) -> dict:
    """Can a new connection be made, whatever serves the port: TCP, the handshake
    completes; UDP, a datagram gets any answer (a DNS query on port 53), sent from
    ``sport`` when given (so the caller can make every probe a new 5-tuple)."""
    t0 = time.monotonic()
    try:
        if proto == "udp":
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.settimeout(timeout)
                if sport:
                    try:
                        sock.bind(("0.0.0.0", sport))
                    except OSError:
                        pass  # held here: the kernel picks one (connect)
                sock.connect((ip, port))
                sock.send(DNS_PROBE if port == 53 else b"?")
                sock.recv(65535)
        else:
            socket.create_connection((ip, port), timeout=timeout).close()
        return {"ok": True, "ms": round((time.monotonic() - t0) * 1000, 3)}
    except OSError as exc:
        return {"ok": False, "error": type(exc).__name__, "ms": round((time.monotonic() - t0) * 1000, 3)}


def sweep(targets: list, timeout: float, tries: int, sport_base: int = 0) -> list:
    """Every target at once (threads), so a sweep of many denied targets takes one timeout,
    not one per target.  ``sport_base``: UDP try k of target i is sent from port
    ``sport_base + i * tries + k``; a UDP "connection" is its 5-tuple, and one that an
    earlier probe left in conntrack would be let through as established."""
    results: list = [None] * len(targets)

    def one(i: int, target: str) -> None:
        address, proto = target.rsplit("/", 1)
        ip, port = address.rsplit(":", 1)
        for attempt in range(1, tries + 1):
            sport = sport_base + i * tries + attempt - 1 if sport_base and proto == "udp" else 0
            result = reach_once(ip, int(port), proto, timeout, sport)
            result["tries"] = attempt
            if result["ok"]:
                break
            if result["ms"] < timeout * 1000:
                time.sleep(min(0.2, timeout))  # refused at once: give a cold path a moment
        results[i] = result

    threads = [threading.Thread(target=one, args=(i, t), daemon=True) for i, t in enumerate(targets)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def _echo(conn: socket.socket, greeting: bytes) -> None:
    try:
        conn.sendall(greeting)
        while True:
            data = conn.recv(4096)
            if not data:
                break
            conn.sendall(data)
    except OSError:
        pass
    finally:
        conn.close()


def _greeting(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(2048)
        if not chunk:
            break
        data += chunk
    return data


def ask_once(ip: str, port: int, proto: str, timeout: float, size: int = 1, sport: int = 0) -> dict:
    """One exchange; the result names the local port and, on failure, the step that failed
    ("connect" or "answer"), so that a failure can be matched with a conntrack entry."""
    t0 = time.monotonic()
    kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
    step = "connect"
    with socket.socket(socket.AF_INET, kind) as sock:
        try:
            sock.settimeout(timeout)
            if proto == "udp" or sport:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(("0.0.0.0", sport))
            sock.connect((ip, port))
            step = "answer"
            if proto == "udp":
                sock.send(b"?" * size)
                data, peer = sock.recvfrom(65535)
            else:
                peer = sock.getpeername()
                data = _greeting(sock)
            server, seen_as, answered_on = data.split(b"\n", 1)[0].decode().split()
            return {"ok": True, "server": server, "seen_as": seen_as, "port": int(answered_on), "from": peer[0],
                    "bytes": len(data), "ms": round((time.monotonic() - t0) * 1000, 2), "t": time.time(),
                    "sport": _local_port(sock)}
        except (OSError, ValueError) as exc:
            # errno's name says what a bare OSError does not (EADDRNOTAVAIL: the client is out of ports)
            return {"ok": False, "error": type(exc).__name__, "step": step, "sport": _local_port(sock),
                    "errno": errno.errorcode.get(getattr(exc, "errno", None) or 0, ""),
                    "ms": round((time.monotonic() - t0) * 1000, 2), "t": time.time()}


def _local_port(sock: socket.socket) -> int:
    try:
        return sock.getsockname()[1]
    except OSError:
        return 0


def connect(ip: str, port: int, proto: str, count: int, timeout: float) -> dict:
    error = "no try"
    for tries in range(1, count + 1):
        t0 = time.monotonic()
        try:
            if proto == "udp":
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                    sock.settimeout(timeout)
                    sock.connect((ip, port))
                    sock.send(b"?")
                    sock.recv(65535)
            else:
                socket.create_connection((ip, port), timeout=timeout).close()
            return {"ok": True, "tries": tries, "ms": round((time.monotonic() - t0) * 1000, 3)}
        except OSError as exc:
            error = type(exc).__name__
            if tries < count and time.monotonic() - t0 < timeout:
                time.sleep(min(0.2, timeout))  # refused at once: give a cold path a moment
    return {"ok": False, "tries": count, "error": error}


def hold(ip: str, port: int, seconds: float) -> dict:
    exchanges = 0
    try:
        sock = socket.create_connection((ip, port), timeout=2)
        server = _greeting(sock).decode().split()[0]
        # Say at once that the connection stands and who serves it, before the long part.
        print(json.dumps({"established": True, "server": server}), flush=True)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not STOP.is_set():
            sock.sendall(b"x")
            if sock.recv(1) != b"x":
                return {"ok": False, "error": "connection closed", "exchanges": exchanges}
            exchanges += 1
            time.sleep(0.05)
        sock.close()
        return {"ok": True, "server": server, "exchanges": exchanges}
    except (OSError, IndexError) as exc:
        return {"ok": False, "error": type(exc).__name__, "exchanges": exchanges}


def rr(ip: str, port: int, count: int, timeout: float) -> dict:
    samples = []
    try:
        sock = socket.create_connection((ip, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        server = _greeting(sock).decode().split()[0]
        for _ in range(count):
            t0 = time.perf_counter()
            sock.sendall(b"x")
            if sock.recv(1) != b"x":
                return {"ok": False, "error": "connection closed", "ms": samples}
            samples.append(round((time.perf_counter() - t0) * 1000, 4))
        sock.close()
        return {"ok": True, "server": server, "ms": samples}
    except (OSError, IndexError) as exc:
        return {"ok": False, "error": type(exc).__name__, "ms": samples}


def dns_query(server: str, name: str, timeout: float, ident: int) -> dict:
    question = b"".join(bytes([len(label)]) + label.encode() for label in name.rstrip(".").split("."))
    packet = ident.to_bytes(2, "big") + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + question + \
        b"\x00\x00\x01\x00\x01"
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(timeout)
    t0 = time.perf_counter()
    try:
        sock.sendto(packet, (server, 53))
        data = sock.recv(4096)
        ms = round((time.perf_counter() - t0) * 1000, 4)
    except OSError as exc:
        return {"ok": False, "error": type(exc).__name__, "ms": round((time.perf_counter() - t0) * 1000, 4)}
    finally:
        sock.close()
    rcode, answers = data[3] & 0x0F, int.from_bytes(data[6:8], "big")
    if data[:2] != packet[:2] or rcode != 0:
        return {"ok": False, "error": f"rcode {rcode}", "ms": ms}
    # Skip the question, then read each answer's type and data (names may be compressed).
    pos = 12 + len(question) + 1 + 4
    found = []
    for _ in range(answers):
        while data[pos] and data[pos] < 0xC0:
            pos += data[pos] + 1
        pos += 2 if data[pos] >= 0xC0 else 1
        rtype, length = int.from_bytes(data[pos:pos + 2], "big"), int.from_bytes(data[pos + 8:pos + 10], "big")
        if rtype == 1 and length == 4:
            found.append(".".join(str(b) for b in data[pos + 10:pos + 14]))
        pos += 10 + length
    return {"ok": True, "ms": ms, "a": found}


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
    a.add_argument("--duration", type=float, default=0.0, help="keep asking this long (ignores --count)")
    a.add_argument("--size", type=int, default=1, help="UDP: bytes per datagram (answered with as many)")
    a.add_argument("--sport", type=int, default=0, help="connect (TCP) or send (UDP) from this source port")
    h = sub.add_parser("hold")
    h.add_argument("--ip", required=True)
    h.add_argument("--port", type=int, required=True)
    h.add_argument("--seconds", type=float, default=3.0)
    r = sub.add_parser("rr")
    r.add_argument("--ip", required=True)
    r.add_argument("--port", type=int, required=True)
    r.add_argument("--count", type=int, default=100)
    r.add_argument("--timeout", type=float, default=2.0)
    c = sub.add_parser("connect")
    c.add_argument("--ip", required=True)
    c.add_argument("--port", type=int, required=True)
    c.add_argument("--proto", choices=["tcp", "udp"], default="tcp")
    c.add_argument("--count", type=int, default=2)
    c.add_argument("--timeout", type=float, default=1.0)
    sp = sub.add_parser("serve-ports")
    sp.add_argument("--name", required=True)
    sp.add_argument("--listen", action="append", required=True, help="PORT/tcp or PORT/udp, repeated")
    sw = sub.add_parser("sweep")
    sw.add_argument("--target", action="append", required=True, help="IP:PORT/tcp or IP:PORT/udp, repeated")
    sw.add_argument("--timeout", type=float, default=1.0)
    sw.add_argument("--tries", type=int, default=1)
    sw.add_argument("--sport-base", type=int, default=0, help="UDP: send from ports counted up from this one")
    d = sub.add_parser("dns")
    d.add_argument("--server", required=True)
    d.add_argument("--name", required=True)
    d.add_argument("--count", type=int, default=1)
    d.add_argument("--timeout", type=float, default=2.0)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: STOP.set())
    if args.cmd == "dns":
        json.dump([dns_query(args.server, args.name, args.timeout, 0x4B00 + i) for i in range(args.count)],
                  sys.stdout)
        return 0
    if args.cmd == "connect":
        json.dump(connect(args.ip, args.port, args.proto, args.count, args.timeout), sys.stdout)
        return 0
    if args.cmd == "rr":
        json.dump(rr(args.ip, args.port, args.count, args.timeout), sys.stdout)
        return 0
    if args.cmd == "hold":
        json.dump(hold(args.ip, args.port, args.seconds), sys.stdout)
        return 0
    if args.cmd == "serve-ports":
        serve_ports(args.name, args.listen)
    if args.cmd == "sweep":
        json.dump(sweep(args.target, args.timeout, args.tries, args.sport_base), sys.stdout)
        return 0
    if args.cmd == "serve":
        serve(args.name, args.port, args.proto)
        return 0
    results = []
    end = time.monotonic() + args.duration
    i = 0
    while ((i < args.count) if not args.duration else (time.monotonic() < end)) and not STOP.is_set():
        if i and args.interval:
            time.sleep(args.interval)
        results.append(ask_once(args.ip, args.port, args.proto, args.timeout, args.size, args.sport))
        i += 1
    json.dump(results, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
