"""Large UDP datagrams (IP fragments) through every Service path, on every backend.

    .venv/bin/python bench/fragments.py [--backends host-gw,vxlan,directrouting]
                                        [--sizes 1400,1473,2000,8000,40000,60000] [--out FILE]

For each backend a cluster (3 nodes on a flat underlay; directrouting on 2 racks so that
its VXLAN half is used) with one UDP Service of type LoadBalancer: a client pod asks the
ClusterIP, the external host asks the NodePort of the first node and the load balancer's
VIP, and, as the reference, the client asks the server pod's IP directly.  The server
answers each datagram with one as large.  A cell is answered (with the right length) or
not; the OVS fragment-reassembly counters of every node are recorded with it, so a
failure says where the fragments stopped (``dpctl/ipf-get-status``).

Printed as a table and written as JSON.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import environment, write  # noqa: E402
from k8snet.model.manifests import load_text  # noqa: E402
from topos.cluster import ClusterNet  # noqa: E402
from topos.datapath import settle  # noqa: E402

SPEC = """\
apiVersion: k8snet.io/v1alpha1
kind: Cluster
metadata: {name: fragments}
spec:
  nodes: 3
  backend: BACKEND
  underlay: UNDERLAY
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec: {nodeName: node-0}
---
apiVersion: v1
kind: Pod
metadata: {name: server, labels: {app: server}}
spec: {nodeName: node-2}
---
apiVersion: v1
kind: Service
metadata: {name: big}
spec:
  type: LoadBalancer
  selector: {app: server}
  ports: [{port: 5353, protocol: UDP, targetPort: 5353}]
"""
UNDERLAYS = {"directrouting": "{type: routed, racks: 2}"}


def ipf(net: ClusterNet) -> dict[str, dict[str, str]]:
    out = {}
    for node in net.cluster.nodes:
        lines = net.node(node.name).ovs.appctl("dpctl/ipf-get-status").splitlines()
        out[node.name] = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in lines)
                          if v.strip() and k.strip().startswith("v4 frags")}
    return out


def measure(backend: str, sizes: list[int]) -> list[dict[str, Any]]:
    text = SPEC.replace("BACKEND", backend).replace("UNDERLAY", UNDERLAYS.get(backend, "{type: flat}"))
    rows = []
    with ClusterNet(load_text(text), progress=lambda m: None) as net:
        net.serve("server", 5353, "udp")
        svc, server = net.cluster.service("big"), net.cluster.pod("server")
        paths = {"pod-ip": ("client", str(server.ip), 5353),
                 "clusterip": ("client", str(svc.cluster_ip), 5353),
                 "nodeport": ("external", str(net.cluster.nodes[0].ip), svc.ports[0].node_port),
                 "loadbalancer": ("external", str(svc.load_balancer_ip), 5353)}
        for size in sizes:
            for path, (host, ip, port) in paths.items():
                before = ipf(net)
                answer = net.ask(host, ip, port, "udp", count=1, timeout=1.5, size=size)[0]
                ok = bool(answer.get("ok")) and answer.get("bytes") == size
                rows.append({"backend": backend, "path": path, "size": size, "ok": ok,
                             "bytes": answer.get("bytes"), "error": answer.get("error"),
                             "ipf_before": before, "ipf_after": ipf(net)})
                print(f"  {backend:14} {path:13} {size:6} {'answered' if ok else 'LOST'}", file=sys.stderr,
                      flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", default="host-gw,vxlan,directrouting")
    parser.add_argument("--sizes", default="1400,1473,2000,8000,40000,60000")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/fragments.py needs root", file=sys.stderr)
        return 2
    sizes = [int(s) for s in args.sizes.split(",")]
    started = datetime.now(timezone.utc)
    rows = [row for backend in args.backends.split(",") for row in measure(backend, sizes)]
    paths = list(dict.fromkeys(r["path"] for r in rows))
    print(f"\n{'backend':14} {'size':>6}  " + "  ".join(f"{p:>12}" for p in paths))
    for backend in dict.fromkeys(r["backend"] for r in rows):
        for size in sizes:
            cells = {r["path"]: r for r in rows if r["backend"] == backend and r["size"] == size}
            print(f"{backend:14} {size:6}  " + "  ".join(f"{'ok' if cells[p]['ok'] else 'lost':>12}" for p in paths))
    doc = {"kind": "k8snet.bench.fragments", "started": started.isoformat(),
           "finished": datetime.now(timezone.utc).isoformat(), "command": sys.argv,
           "environment": environment(settle([load_text(SPEC.replace("BACKEND", "host-gw")
                                                        .replace("UNDERLAY", "{type: flat}"))])[0]),
           "rows": rows}
    write("fragments", doc, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
