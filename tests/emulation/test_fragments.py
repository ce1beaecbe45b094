"""Large UDP datagrams -- IP fragments -- through pods, nodes and Services, answered whole.

The pieces are reassembled by each node's OVS conntrack and must all take the same way:
the Service flows recognise a new datagram by conntrack's original tuple, which every
fragment gets, and a fragmented datagram picks its endpoint by addresses alone
(controllers/services.py).  With VXLAN, what comes from outside at the underlay's full
size is fragmented again to the pod MTU on its way into the tunnel or a pod
(controllers/egress.py).  40,000 bytes is 28 fragments at a 1,500-byte MTU; OVS 3.1's
userspace reassembly passes at most 32 fragments of one datagram on at once (see
bench/fragments.py and the README's known limits), so 60,000 bytes is not asked here,
and from outside into VXLAN (each fragment cut in two) 20,000 is the largest asked.
"""

from __future__ import annotations

import pytest

from k8snet.model.manifests import load_text
from topos.cluster import ClusterNet

SPEC = """\
apiVersion: k8snet.io/v1alpha1
kind: Cluster
metadata: {name: fragments}
spec:
  nodes: 3
  backend: BACKEND
  underlay: UNDERLAY
  dns: true
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
SIZES = (1473, 2000, 8000, 20000, 40000)
#: From outside into VXLAN every 1,500-byte fragment is cut in two, and the receiving OVS
#: passes at most 32 fragments of a datagram on: 16 of them, ~23 KB (README, known limits).
OUTSIDE_INTO_VXLAN_MAX = 20000
BACKENDS = {"host-gw": "{type: flat}", "vxlan": "{type: flat}", "directrouting": "{type: routed, racks: 2}"}


@pytest.fixture(scope="module", params=list(BACKENDS))
def net(request):
    text = SPEC.replace("BACKEND", request.param).replace("UNDERLAY", BACKENDS[request.param])
    with ClusterNet(load_text(text)) as running:
        running.serve("server", 5353, "udp")
        yield running


def paths(net: ClusterNet) -> dict[str, tuple[str, str, int]]:
    svc, server = net.cluster.service("big"), net.cluster.pod("server")
    return {"pod-ip": ("client", str(server.ip), 5353), "clusterip": ("client", str(svc.cluster_ip), 5353),
            "node-pod": ("node-0", str(server.ip), 5353), "node-clusterip": ("node-0", str(svc.cluster_ip), 5353),
            # From outside, at the underlay's full MTU: with VXLAN, larger than the pod MTU.
            "nodeport": ("external", str(net.cluster.nodes[0].ip), svc.ports[0].node_port),
            "loadbalancer": ("external", str(svc.load_balancer_ip), 5353)}


@pytest.mark.parametrize("size", SIZES)
def test_large_datagrams_are_answered_whole_on_every_path(net, size):
    lost = {}
    for path, (host, ip, port) in paths(net).items():
        if host == "external" and net.cluster.encapsulates and size > OUTSIDE_INTO_VXLAN_MAX:
            continue
        answer = net.ask(host, ip, port, "udp", count=2, timeout=1.5, size=size)
        if not any(a.get("ok") and a.get("bytes") == size for a in answer):
            lost[path] = answer
    assert not lost, f"{net.cluster.backend.value}, {size} bytes: {lost}"


def test_with_vxlan_what_exceeds_the_pod_mtu_was_fragmented_on_its_way_in(net):
    """The external host's 1,500-byte fragments did not fit the 1,450-byte pod MTU: the
    switches sent them to the controller, which cut them (controllers/egress.py)."""
    host, ip, port = paths(net)["nodeport"]
    assert net.ask(host, ip, port, "udp", count=1, timeout=1.5, size=3000)[0]["bytes"] == 3000
    switches = net.api.status()["switches"]
    fragmented = sum(s["fragmented"] for s in switches.values())
    assert (fragmented > 0) == net.cluster.encapsulates, switches
    assert sum(s["mtu_drops"] for s in switches.values()) == 0, switches


def test_a_dns_answer_over_1472_bytes_through_the_cluster_dns_clusterip(net):
    """A headless Service with 100 endpoints: 100 A records, ~1,650 bytes, one UDP answer."""
    many = ("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: many}\nspec:\n  replicas: 100\n"
            "  selector: {matchLabels: {app: many}}\n  template: {metadata: {labels: {app: many}}}\n---\n"
            "apiVersion: v1\nkind: Service\nmetadata: {name: many}\nspec:\n  clusterIP: None\n"
            "  selector: {app: many}\n  ports: [{port: 80}]\n")
    from k8snet.model.apply import apply_text

    before = net.cluster
    net.apply(apply_text(before, many))
    try:
        out = net.net["client"].ns("dig", "+bufsize=4096", "+ignore", "+tries=2", "+time=2", "@10.96.0.10",
                                   "many.default.svc.cluster.local", timeout=30)
    finally:
        net.apply(apply_text(net.cluster, many, delete=True))
    size = int(out.split("MSG SIZE  rcvd: ")[1].split()[0])
    assert "ANSWER: 100," in out and " tc " not in out.split("flags:")[1].split(";")[0] and size > 1472, out


#: A sender that forbids fragmentation (IP_PMTUDISC_DO), sends ``size`` bytes of UDP twice,
#: and prints what happened: the answer's length, or the error the kernel gave -- EMSGSIZE
#: once an ICMP "fragmentation needed" for the path arrived -- and the socket's path MTU.
DF_SENDER = r"""
import json, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, 10, 2)             # IP_MTU_DISCOVER = IP_PMTUDISC_DO
s.connect((sys.argv[1], int(sys.argv[2])))
s.settimeout(1.5)
out = []
for _ in range(2):
    try:
        s.send(b"x" * int(sys.argv[3]))
        out.append(len(s.recv(65535)))
    except socket.timeout:
        out.append("timeout")
    except OSError as exc:
        out.append(exc.errno)
print(json.dumps({"results": out, "path_mtu": s.getsockopt(socket.IPPROTO_IP, 14)}))   # IP_MTU
"""
EMSGSIZE = 90


def test_dont_fragment_from_outside_learns_the_pod_mtu_as_from_a_linux_node(net):
    """A full-size datagram with Don't Fragment from outside, to a NodePort and a
    LoadBalancer VIP.  host-gw: it fits the pod MTU and is answered.  VXLAN: as Flannel's
    node would, the switch refuses it with ICMP fragmentation needed, MTU 1,450, which
    reaches the sender with the addresses it used (conntrack undid the NodePort's and the
    load balancer's NAT in the quoted header), so its kernel lowers the path MTU: the next
    send fails at once with EMSGSIZE."""
    import json

    ext = net.cluster.underlay.external
    try:
        for path in ("nodeport", "loadbalancer"):
            _, ip, port = paths(net)[path]
            out = json.loads(net.net[ext.name].ns("python3", "-c", DF_SENDER, ip, str(port), "1472", timeout=30))
            if net.cluster.pod_mtu < net.cluster.underlay.mtu:
                assert out == {"results": [EMSGSIZE, EMSGSIZE], "path_mtu": net.cluster.pod_mtu}, (path, out)
            else:
                assert out == {"results": [1472, 1472], "path_mtu": net.cluster.underlay.mtu}, (path, out)
    finally:  # (the learnt path MTU would make the external host fragment for the next tests)
        net.net[ext.name].ns("ip", "route", "flush", "cache")
