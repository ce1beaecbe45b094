"""Node leases over the underlay: each node renews, the control plane watches (no project imports).

    python3 lease.py renew --to IP --port P --interval S --node NAME=PID [--node ...]
        what each node's kubelet does with its Lease (kube-node-lease): a UDP datagram
        "NAME SEQ" every S seconds, sent from a socket made in that node's network
        namespace (the one process PID is in), so it leaves by the node's own stack
        and uplink.  Nothing comes back; a renewal that cannot leave the node (its
        switch is dead, its uplink is down, its rack gateway has failed) is lost.  One
        process renews for every node (one Python per node would cost ~10 MB each).
    python3 lease.py watch --port P --grace S --period S --nodes a,b,c
        what the node lifecycle controller does with them: a node whose last renewal is
        older than the grace period is NotReady, and Ready again at its next renewal.
        Prints one JSON line per change, flushed: {"node": NAME, "ready": BOOL, "t": TIME,
        "silent_s": SECONDS_SINCE_ITS_LAST_RENEWAL}.  Every node counts as renewed when the
        watcher starts (Kubernetes gives a new node a startup grace period instead), and
        after the watcher itself was kept from running for longer than half the grace
        period (a loaded machine must not make every node NotReady at once).
"""

import argparse
import ctypes
import json
import os
import select
import socket
import sys
import time

CLONE_NEWNET = 0x40000000


def _socket_in(pid: int) -> socket.socket:
    """A UDP socket that belongs to process ``pid``'s network namespace (setns(2) for the
    moment of its creation; a socket stays in the namespace it was made in)."""
    libc = ctypes.CDLL(None, use_errno=True)
    own = os.open("/proc/self/ns/net", os.O_RDONLY)
    target = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
    try:
        if libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into the namespace of pid {pid}")
        try:
            return socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        finally:
            if libc.setns(own, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")
    finally:
        os.close(own)
        os.close(target)


def renew(to: str, port: int, nodes: list, interval: float) -> None:
    socks = [(name, _socket_in(int(pid))) for name, pid in (n.split("=", 1) for n in nodes)]
    seq = 0
    while True:
        for name, sock in socks:
            try:
                sock.sendto(f"{name} {seq}".encode(), (to, port))
            except OSError:
                pass  # no route or no neighbour now: this renewal is lost, the next may not be
        seq += 1
        time.sleep(interval)


def watch(port: int, grace: float, period: float, nodes: list) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", port))
    start = time.time()
    last = {n: start for n in nodes}
    ready = {n: True for n in nodes}
    print(json.dumps({"watching": nodes, "t": start}), flush=True)

    def say(node: str, now: float) -> None:
        print(json.dumps({"node": node, "ready": ready[node], "t": now, "silent_s": round(now - last[node], 3)}),
              flush=True)

    awake = start
    while True:
        readable, _, _ = select.select([sock], [], [], period)
        now = time.time()
        if now - awake > grace / 2:  # we were not running: we cannot tell who was silent
            last = {n: max(t, now - period) for n, t in last.items()}
        awake = now
        if readable:
            data, _ = sock.recvfrom(512)
            name = data.decode(errors="replace").split(" ", 1)[0]
            if name in last:
                silent = now - last[name]
                last[name] = now
                if not ready[name]:
                    ready[name] = True
                    print(json.dumps({"node": name, "ready": True, "t": now, "silent_s": round(silent, 3)}),
                          flush=True)
        for name in nodes:
            if ready[name] and now - last[name] > grace:
                ready[name] = False
                say(name, now)


def main() -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("renew")
    r.add_argument("--to", required=True)
    r.add_argument("--port", type=int, required=True)
    r.add_argument("--node", action="append", required=True, metavar="NAME=PID")
    r.add_argument("--interval", type=float, required=True)
    w = sub.add_parser("watch")
    w.add_argument("--port", type=int, required=True)
    w.add_argument("--grace", type=float, required=True)
    w.add_argument("--period", type=float, required=True)
    w.add_argument("--nodes", required=True)
    args = parser.parse_args()
    try:
        if args.cmd == "renew":
            renew(args.to, args.port, args.node, args.interval)
        else:
            watch(args.port, args.grace, args.period, args.nodes.split(","))
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
