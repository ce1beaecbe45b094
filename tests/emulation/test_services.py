"""Services the way kube-proxy does them, on a running cluster (embedded spec "services").

web-0, web-1, web-2 (web-2 lands on node-0 beside web-0: "client" is pinned to node-2
first and ties go to the first node), each serving its own name on 8080/TCP, 8080/UDP
and 9090/TCP; Service web (80/TCP, 80/UDP, 9000/TCP), Service empty (no endpoints),
sticky and sticky-day (ClientIP affinity, 4 s and a day) and local (internalTrafficPolicy
Local).
"""

from __future__ import annotations

import collections
import time

import pytest

from controllers.compiler import compile_node
from controllers.pipeline import SERVICE_AFFINITY, Feature, cookie
from controllers.services import service_object
from tests.helpers import FlowSim, normalized_dump
from topos.cluster import ClusterNet
from k8snet.model.manifests import load_text
from topos.specs import embedded_spec_text

CLUSTER = load_text(embedded_spec_text("services"))
WEB = [p for p in CLUSTER.pods if p.name.startswith("web-")]
VIP = str(CLUSTER.service("web").cluster_ip)
EMPTY = str(CLUSTER.service("empty").cluster_ip)
# Chi-square critical values at p = 1e-5 (df 2: -2 ln p = 23.03; df 1: 19.51): four tests
# use it, so a fair spread fails the suite less than once in 10,000 runs.  An endpoint that
# gets nothing out of 240 scores 120.
CHI2_CRITICAL_P1E5 = {1: 19.51, 2: 23.03}


def chi_square(counts: dict[str, int], names: list[str]) -> float:
    total = sum(counts.get(n, 0) for n in names)
    expected = total / len(names)
    return sum((counts.get(n, 0) - expected) ** 2 / expected for n in names)


def start_servers(net: ClusterNet, pods=WEB) -> None:
    for pod in pods:
        net.serve(pod.host_name, 8080)
        net.serve(pod.host_name, 8080, "udp")
        net.serve(pod.host_name, 9090)


@pytest.fixture(scope="module")
def net():
    with ClusterNet(CLUSTER) as running:
        start_servers(running)
        yield running


@pytest.fixture
def restore(net):
    yield
    where = lambda cluster: {(p.host_name, p.node, p.ip, p.ofport) for p in cluster.pods}
    if where(CLUSTER) <= where(net.cluster):  # the original pods are all still there (maybe more)
        net.apply(CLUSTER)
    else:  # pods were recreated elsewhere: keep them, restore the Services and readiness
        pods = tuple(p.model_copy(update={"ready": True}) for p in net.cluster.pods)
        net.apply(net.cluster.model_copy(update={"pods": pods, "services": CLUSTER.services}))


@pytest.mark.parametrize("proto", ["tcp", "udp"])
@pytest.mark.parametrize("client", ["client", "web-0"])
def test_traffic_spreads_over_all_ready_endpoints(net, client, proto):
    results = net.ask(client, VIP, 80, proto=proto, count=240)
    assert all(r["ok"] for r in results), [r for r in results if not r["ok"]][:3]
    counts = collections.Counter(r["server"] for r in results)
    names = [p.host_name for p in WEB]
    assert set(counts) == set(names), counts
    assert chi_square(counts, names) < CHI2_CRITICAL_P1E5[2], counts


def test_replies_come_from_the_vip_and_the_backend_sees_the_client_pod_ip(net):
    client = CLUSTER.pod("client")
    for r in net.ask("client", VIP, 80, count=12) + net.ask("client", VIP, 80, proto="udp", count=12):
        assert r["from"] == VIP and r["seen_as"] == str(client.ip), r


def test_a_pod_reaching_its_own_service_lands_on_itself_and_works(net):
    results = net.ask("web-0", VIP, 80, count=60)
    assert all(r["ok"] for r in results)
    itself = [r for r in results if r["server"] == "web-0"]
    assert itself, "in 60 connections web-0 never reached itself"
    gateway = str(CLUSTER.node("node-0").gateway_ip)
    # Hairpin: the pod sees its own connection come from the gateway (SNAT), as with kube-proxy.
    assert all(r["seen_as"] == gateway for r in itself)
    assert all(r["seen_as"] == str(CLUSTER.pod("web-0").ip) for r in results if r["server"] != "web-0")


def test_node_host_network_reaches_the_service(net):
    results = net.ask("node-1", VIP, 80, count=60)
    assert all(r["ok"] and r["from"] == VIP for r in results)
    assert len({r["server"] for r in results}) == 3  # one missing by chance: 3 (2/3)^60 < 1e-10


def test_multi_port_service_and_the_same_port_over_tcp_and_udp(net):
    tcp = net.ask("client", VIP, 80, count=6)
    udp = net.ask("client", VIP, 80, proto="udp", count=6)
    admin = net.ask("client", VIP, 9000, count=6)
    assert all(r["ok"] for r in tcp + udp + admin)
    # Each Service port lands on its named targetPort: http (80/TCP and 80/UDP) on 8080,
    # admin (9000) on 9090 -- the server says which port answered.
    assert {r["port"] for r in tcp} == {r["port"] for r in udp} == {8080} and {r["port"] for r in admin} == {9090}
    assert net.ask("client", VIP, 9001, count=1, timeout=0.5)[0]["error"] in ("TimeoutError", "timeout")


@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_no_ready_endpoints_refuses_the_client_at_once(net, proto):
    port = 80 if proto == "tcp" else 53
    results = net.ask("client", EMPTY, port, proto=proto, count=3, timeout=3)
    # Refused (TCP reset / ICMP port unreachable), not left to time out.
    assert [r["error"] for r in results] == ["ConnectionRefusedError"] * 3, results


def readiness(cluster, ready: set[str]):
    return cluster.with_pods(tuple(p.model_copy(update={"ready": p.name in ready or not p.name.startswith("web")})
                                   for p in cluster.pods))


def servers(net, count: int = 60) -> collections.Counter:
    results = net.ask("client", VIP, 80, count=count)
    assert all(r["ok"] for r in results), [r for r in results if not r["ok"]][:3]
    return collections.Counter(r["server"] for r in results)


def test_endpoint_changes_are_followed_and_established_connections_survive(net, restore):
    holder = net.hold("client", VIP, 80, seconds=3)
    kept = holder.established()
    # The other two endpoints go while the held connection runs: it must not notice.
    net.apply(readiness(CLUSTER, {kept}))
    assert set(servers(net)) == {kept}
    held = holder.result()
    assert held["ok"] and held["server"] == kept and held["exchanges"] > 20, held
    others = sorted({"web-0", "web-1", "web-2"} - {kept})
    net.apply(readiness(CLUSTER, {kept, others[0]}))
    assert set(servers(net)) == {kept, others[0]}
    net.apply(readiness(CLUSTER, set()))
    assert [r["error"] for r in net.ask("client", VIP, 80, count=2)] == ["ConnectionRefusedError"] * 2
    net.apply(CLUSTER)
    assert set(servers(net)) == {"web-0", "web-1", "web-2"}


def test_a_connection_to_an_endpoint_that_stays_survives_every_kind_of_change(net, restore):
    """Established first (the agent says so), then: other endpoints not ready, deleted
    (scaled down) and added back; the held connection runs through all of it."""
    from k8snet.model.apply import apply_text

    holder = net.hold("client", VIP, 80, seconds=6)
    kept = holder.established()
    net.apply(readiness(CLUSTER, {kept}))
    net.apply(CLUSTER)
    scale = ("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: N\n"
             "  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n"
             "    spec: {containers: [{name: web, ports: [{name: http, containerPort: 8080}, "
             "{name: http-udp, containerPort: 8080, protocol: UDP}, {name: admin, containerPort: 9090}]}]}\n")
    net.apply(apply_text(net.cluster, scale.replace("N", "5")))
    held = holder.result()
    assert held["ok"] and held["server"] == kept and held["exchanges"] > 60, held


def test_switches_hold_exactly_the_compiled_flows_and_groups(net):
    with FlowSim() as sim:
        for node in CLUSTER.nodes:
            desired = compile_node(CLUSTER, node.name)
            sim.load(CLUSTER, node.name, desired)
            ovs = net.node(node.name).ovs
            assert normalized_dump(ovs.ofctl("dump-flows", "br-k8s", "--no-stats")) == sim.dump()
            assert sorted(ovs.ofctl("dump-groups", "br-k8s").splitlines()[1:]) == \
                sorted(sim.ovs.ofctl("dump-groups", sim.BRIDGE).splitlines()[1:])


def test_controller_restart_replays_groups_without_breaking_service_traffic(net):
    net.stop_controller()
    assert set(servers(net, 30)) == {"web-0", "web-1", "web-2"}, "installed flows keep serving"
    net.start_controller()
    status = net.api.wait_synced([n.name for n in CLUSTER.nodes], 30)
    assert not status["errors"], status["errors"]
    assert set(servers(net, 30)) == {"web-0", "web-1", "web-2"}


STICKY = str(CLUSTER.service("sticky").cluster_ip)
STICKY_DAY = str(CLUSTER.service("sticky-day").cluster_ip)
LOCAL = str(CLUSTER.service("local").cluster_ip)


def affinity_flows(net, node: str, service: str = "") -> list[str]:
    """Flows learned into the affinity table (the table's own miss flow has priority 0), of
    one Service when named (a learned flow carries its Service's cookie)."""
    wanted = f"cookie={service_cookie(service):#x}," if service else ""
    return [l for l in net.node(node).ovs.ofctl("dump-flows", "br-k8s", f"table={SERVICE_AFFINITY}").splitlines()
            if "priority=200" in l and wanted in l]


def service_cookie(name: str) -> int:
    return cookie(Feature.SERVICES, service_object(CLUSTER.service(name)))


@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_client_ip_affinity_keeps_one_endpoint_then_expires(net, proto):
    first = net.ask("client", STICKY, 80, proto=proto, count=15)
    assert all(r["ok"] for r in first)
    assert len({r["server"] for r in first}) == 1, first
    assert affinity_flows(net, "node-2"), "no affinity was learned"
    time.sleep(5.5)  # timeoutSeconds is 4 (the learned flow's hard_timeout)
    assert affinity_flows(net, "node-2") == [], "learned affinity outlived its timeout"
    # Once it has expired a client may move: over several rounds, each after the learned
    # flow is gone (removed here rather than waited for), it does.
    seen = set()
    for _ in range(20):  # the same one 20 times by chance: (1/3)^19 < 1e-9
        seen |= {r["server"] for r in net.ask("client", STICKY, 80, proto=proto, count=1)}
        net.node("node-2").ovs.ofctl("del-flows", "br-k8s", f"table={SERVICE_AFFINITY},"
                                     f"cookie={service_cookie('sticky'):#x}/-1,ip,nw_src={CLUSTER.pod('client').ip}")
    assert len(seen) > 1, seen


def test_affinity_longer_than_openflow_timeouts_is_learned_without_one(net):
    results = net.ask("client", STICKY_DAY, 80, count=15)
    assert len({r["server"] for r in results}) == 1
    learned = affinity_flows(net, "node-2", "sticky-day")
    assert learned and all("hard_timeout" not in l for l in learned), learned


def test_switching_affinity_off_and_on(net, restore):
    def without_affinity(cluster):
        services = tuple(s.model_copy(update={"session_affinity": "None"}) if s.name == "sticky" else s
                         for s in cluster.services)
        return cluster.model_copy(update={"services": services})

    assert len({r["server"] for r in net.ask("client", STICKY, 80, count=15)}) == 1
    net.apply(without_affinity(CLUSTER))
    assert len({r["server"] for r in net.ask("client", STICKY, 80, count=60)}) == 3
    net.apply(CLUSTER)
    assert len({r["server"] for r in net.ask("client", STICKY, 80, count=15)}) == 1


def test_internal_traffic_policy_local_reaches_only_this_nodes_endpoints(net):
    local = {n.name: {p.host_name for p in WEB if p.node == n.name} for n in CLUSTER.nodes}
    assert local["node-0"] == {"web-0", "web-2"} and local["node-1"] == {"web-1"} and not local["node-2"]
    for client in ("web-0", "web-1"):
        node = CLUSTER.pod(client).node
        results = net.ask(client, LOCAL, 80, count=20)
        assert {r.get("server") for r in results} == local[node], results
    assert {r["server"] for r in net.ask("node-1", LOCAL, 80, count=10)} == {"web-1"}
    # node-2 has no endpoint of its own: its clients' traffic is dropped, not sent elsewhere.
    assert [r["error"] for r in net.ask("client", LOCAL, 80, count=2, timeout=0.5)] == ["TimeoutError"] * 2


DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: REPLICAS
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - name: web
          ports: [{name: http, containerPort: 8080}, {name: http-udp, containerPort: 8080, protocol: UDP},
                  {name: admin, containerPort: 9090}]
"""


def test_scaling_3_5_1_0_2_creates_and_deletes_pods_and_traffic_follows(net, restore):
    from k8snet.model.apply import apply_text

    for replicas in (5, 1, 0, 2):
        cluster = apply_text(net.cluster, DEPLOYMENT.replace("REPLICAS", str(replicas)))
        net.apply(cluster)
        names = {f"web-{i}" for i in range(replicas)}
        assert {p.name for p in cluster.pods if p.owner == "web"} == names
        start_servers(net, [p for p in cluster.pods if p.name in names and p.host_name not in net._spawned_in])
        results = net.ask("client", VIP, 80, count=90, timeout=1)  # 5 (4/5)^90 < 1e-8 to miss one
        if replicas:
            assert all(r["ok"] for r in results), [r for r in results if not r["ok"]][:3]
            assert {r["server"] for r in results} == names
        else:
            assert {r["error"] for r in results} == {"ConnectionRefusedError"}
    net.apply(apply_text(net.cluster, DEPLOYMENT.replace("REPLICAS", "3")))
    start_servers(net, [p for p in net.cluster.pods if p.owner == "web" and p.host_name not in net._spawned_in])


def test_a_pod_marked_not_ready_or_deleted_stops_getting_connections(net, restore):
    from k8snet.model.apply import apply_text

    not_ready = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web-1\n  annotations: {k8snet.io/ready: 'false'}\n"
    net.apply(apply_text(net.cluster, not_ready))
    assert "web-1" not in servers(net)
    net.apply(apply_text(net.cluster, not_ready.replace("'false'", "'true'")))
    assert "web-1" in servers(net, 90)
    gone = apply_text(net.cluster, "apiVersion: v1\nkind: Pod\nmetadata: {name: web-2}\n", delete=True)
    net.apply(gone)
    assert "web-2" not in net.net.nameToNode
    assert set(servers(net)) == {"web-0", "web-1"}
    net.apply(apply_text(net.cluster, DEPLOYMENT.replace("REPLICAS", "3")))
    start_servers(net, [p for p in net.cluster.pods if p.owner == "web" and p.host_name not in net._spawned_in])
    assert set(servers(net, 90)) == {"web-0", "web-1", "web-2"}


EXTERNAL = CLUSTER.underlay.external


def live_web(net) -> list:
    """The web pods as they are now (scaling tests may have recreated them elsewhere)."""
    return [p for p in net.cluster.pods if p.owner == "web"]


@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_node_port_cluster_policy_from_outside_on_every_node(net, proto):
    for node in CLUSTER.nodes:
        results = net.ask(EXTERNAL.name, str(node.ip), 30080, proto=proto, count=60)
        assert all(r["ok"] for r in results), (node.name, [r for r in results if not r["ok"]][:3])
        # Any endpoint answers; it sees the node's IP (SNAT), the client sees the node's.
        assert {r["server"] for r in results} == {p.host_name for p in live_web(net)}, node.name
        assert {r["seen_as"] for r in results} == {str(node.ip)}
        assert {r["from"] for r in results} == {str(node.ip)}


def test_node_port_local_policy_keeps_the_client_ip_and_drops_where_no_endpoint(net):
    for node in CLUSTER.nodes:
        local = {p.host_name for p in live_web(net) if p.node == node.name}
        results = net.ask(EXTERNAL.name, str(node.ip), 30081, count=12, timeout=0.5)
        if local:
            assert {r.get("server") for r in results} == local, (node.name, results[:3])
            assert {r["seen_as"] for r in results} == {str(EXTERNAL.ip)}
        else:
            assert {r["error"] for r in results} == {"TimeoutError"}, (node.name, results[:3])


def test_node_port_from_pods_and_node_host_networks(net):
    n0 = str(CLUSTER.node("node-0").ip)
    # node-0 itself included: its own connections to its own NodePort go through its switch.
    for client in ("client", "web-0", "node-0", "node-1", "node-2"):
        results = net.ask(client, n0, 30080, count=12)
        assert all(r["ok"] and r["from"] == n0 for r in results), (client, [r for r in results if not r["ok"]][:3])
        assert len({r["server"] for r in results}) > 1, client
    for proto in ("tcp", "udp"):
        for node in CLUSTER.nodes:
            own = net.ask(node.name, str(node.ip), 30080, proto=proto, count=6)
            assert all(r["ok"] for r in own), (node.name, proto, [r for r in own if not r["ok"]][:3])


def test_a_client_reaches_an_endpoint_through_a_node_port_then_directly_from_the_same_source_port(net):
    """The masqueraded NodePort connection's DNAT entry (OVS: one NAT per entry, its reply
    tuple web-0:8080 -> client:S is from before the masquerade) must not claim web-0's
    SYN-ACK to the same client port reaching it through the ClusterIP: in the Service zone
    it did ("from node-0:30080"; 2 in 9 of these pairs meet on one of node-0's endpoints;
    controllers/pipeline.py, ZONE_NODEPORT_DNAT)."""
    n0 = str(CLUSTER.node("node-0").ip)
    on_node_0 = {p.host_name for p in live_web(net) if p.node == "node-0"}
    pairs = []
    for sport in range(20000, 20040):  # below the ephemeral range: no other connection uses them
        via_node_port = net.ask("client", n0, 30080, sport=sport)[0]
        via_vip = net.ask("client", VIP, 80, sport=sport)[0]
        pairs.append((sport, via_node_port, via_vip))
    failed = [p for p in pairs if not (p[1]["ok"] and p[2]["ok"])]
    assert failed == [], failed
    same = [s for s, a, b in pairs if a["server"] == b["server"] and a["server"] in on_node_0]
    # (None at all would happen once in 20,000 runs: (7/9) ** 40.)
    assert same, pairs


@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_a_client_reaches_an_endpoint_through_the_clusterip_and_directly_from_the_same_source_port(net, proto):
    """The ClusterIP connection's entry (reply tuple endpoint -> client:S, in TIME_WAIT for
    30 s after a TCP close) must not take the replies of a direct connection from the same
    port to the same endpoint; the switch commits the direct one, whose entry then answers
    (controllers/services.py, commit_direct).  Before, the direct SYN-ACK was un-DNATed to
    the VIP and the connection hung (found as an ingress pod's curl to a shop-web pod that
    its nginx had just proxied to through the ClusterIP timing out after 30 s)."""
    ips = {p.host_name: str(p.ip) for p in live_web(net)}
    base = 20100 if proto == "tcp" else 20200  # below the ephemeral range: no other connection uses them
    failed = []
    for client in ("client", "node-1"):  # a pod, and a node's host network
        for sport in range(base + (0 if client == "client" else 50), base + (6 if client == "client" else 56)):
            via_vip = net.ask(client, VIP, 80, proto=proto, sport=sport)[0]
            if not via_vip["ok"]:
                failed.append((client, sport, "vip", via_vip))
                continue
            direct = net.ask(client, ips[via_vip["server"]], 8080, proto=proto, sport=sport)[0]
            if not (direct["ok"] and direct["server"] == via_vip["server"]
                    and direct["from"] == ips[via_vip["server"]]):
                failed.append((client, sport, via_vip["server"], direct))
    # The other order: straight to the pod first, then through a ClusterIP from the same
    # port, landing on the same pod (ClientIP affinity sees to it): now the Service
    # connection's reply tuple is taken, and its DNAT remaps the source port (the kernel's
    # DNAT does the same).
    sticky = str(net.cluster.service("sticky").cluster_ip)
    for client in ("client", "node-1"):
        mine = net.ask(client, sticky, 80, proto=proto)[0]
        assert mine["ok"], (client, mine)
        for sport in range(base + (200 if client == "client" else 250), base + (206 if client == "client" else 256)):
            direct = net.ask(client, ips[mine["server"]], 8080, proto=proto, sport=sport)[0]
            via_vip = net.ask(client, sticky, 80, proto=proto, sport=sport)[0]
            if not (direct["ok"] and via_vip["ok"] and via_vip["server"] == mine["server"]
                    and via_vip["from"] == sticky):
                failed.append((client, sport, mine["server"], direct, via_vip))
    assert failed == [], failed


def test_load_balancer_spreads_over_every_nodes_node_port_and_reports_its_vip(net):
    svc = CLUSTER.service("web-lb")
    vip = str(svc.load_balancer_ip)
    assert vip.startswith("198.51.100.")
    results = net.ask(EXTERNAL.name, vip, 80, count=60)
    assert all(r["ok"] and r["from"] == vip for r in results), [r for r in results if not r["ok"]][:5]
    # Every node's NodePort got traffic (Cluster policy: the endpoint sees the node's IP).
    assert {r["seen_as"] for r in results} == {str(n.ip) for n in CLUSTER.nodes}
    assert {r["server"] for r in results} == {p.host_name for p in live_web(net)}
    rules = net.net["lb"].ns("nft", "list", "table", "ip", "k8snet_lb")
    assert f"ip daddr {vip} tcp dport 80 dnat to numgen random mod 3" in rules and ":30090" in rules


def test_load_balancer_with_local_policy_targets_only_nodes_with_endpoints(net):
    vip = str(CLUSTER.service("web-lb-local").load_balancer_ip)
    with_endpoints = {p.node for p in live_web(net)}
    rules = net.net["lb"].ns("nft", "list", "table", "ip", "k8snet_lb")
    line = next(l for l in rules.splitlines() if vip in l)
    assert {n.name for n in CLUSTER.nodes if str(n.ip) in line} == with_endpoints
    results = net.ask(EXTERNAL.name, vip, 80, count=40, timeout=1)
    assert all(r["ok"] for r in results), [r for r in results if not r["ok"]][:3]
    # Local keeps the source: the endpoints see the load balancer, not a node.
    assert {r["seen_as"] for r in results} == {str(CLUSTER.underlay.lb.ip)}


def dig(net, name: str, qtype: str = "A") -> list[str]:
    out = net.pod("client").ns("dig", "+short", "+time=2", "+tries=1", name, qtype)
    return sorted(l for l in out.splitlines() if l)


def test_cluster_dns_answers_services_headless_and_external_names(net):
    assert dig(net, "web.default.svc.cluster.local") == [VIP]
    ready = sorted(str(p.ip) for p in live_web(net))
    assert dig(net, "web-headless.default.svc.cluster.local") == ready
    assert dig(net, "docs.default.svc.cluster.local", "CNAME") == ["kubernetes.io."]
    assert dig(net, "kube-dns.kube-system.svc.cluster.local") == ["10.96.0.10"]
    # Nothing is resolved outside the cluster: no query leaves the emulation.
    assert dig(net, "example.com") == []


def test_pods_resolve_service_names_with_their_ordinary_resolver(net):
    client = net.pod("client")
    assert "nameserver 10.96.0.10" in client.ns("cat", "/etc/resolv.conf")
    assert "search default.svc.cluster.local svc.cluster.local cluster.local" in client.ns("cat", "/etc/resolv.conf")
    assert client.ns("getent", "hosts", "web").split()[0] == VIP   # short name, via the search path
    for pod in live_web(net):
        net.spawn(pod.host_name, ["/usr/bin/python3", "-m", "http.server", "8090"], f"http {pod.host_name}")
    time.sleep(0.5)
    # Service "web" maps 9000 -> the pods' "admin" port 9090; use a Service on 8090 via apply.
    from k8snet.model.apply import apply_text
    net.apply(apply_text(net.cluster, "apiVersion: v1\nkind: Service\nmetadata: {name: www}\nspec:\n"
                                      "  selector: {app: web}\n  ports: [{port: 80, targetPort: 8090}]\n"))
    www = str(net.cluster.service("www").cluster_ip)
    assert dig(net, "www.default.svc.cluster.local") == [www], "the zone did not follow the new Service"
    out = client.ns("curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{remote_ip}",
                    "http://www.default.svc.cluster.local/", timeout=20)
    assert out == f"200 {www}"


def test_the_host_resolver_is_untouched():
    assert "10.96.0.10" not in open("/etc/resolv.conf").read()


def test_affinity_survives_other_endpoints_changing_and_moves_when_its_endpoint_goes(net, restore):
    from k8snet.model.apply import apply_text

    names = {p.host_name for p in live_web(net)}
    first = {r["server"] for r in net.ask("client", STICKY_DAY, 80, count=10)}
    assert len(first) == 1
    mine = first.pop()
    other = sorted(names - {mine})[0]
    mark = lambda pod, ready: (f"apiVersion: v1\nkind: Pod\nmetadata:\n  name: {pod}\n"
                               f"  annotations: {{k8snet.io/ready: '{str(ready).lower()}'}}\n")
    # Another endpoint leaves and comes back: the client keeps its endpoint.
    net.apply(apply_text(net.cluster, mark(other, False)))
    assert {r["server"] for r in net.ask("client", STICKY_DAY, 80, count=10)} == {mine}
    net.apply(apply_text(net.cluster, mark(other, True)))
    assert {r["server"] for r in net.ask("client", STICKY_DAY, 80, count=10)} == {mine}
    # Its own endpoint leaves: it moves, and sticks to the new one even when the old returns.
    net.apply(apply_text(net.cluster, mark(mine, False)))
    moved = {r["server"] for r in net.ask("client", STICKY_DAY, 80, count=10)}
    assert len(moved) == 1 and mine not in moved
    net.apply(apply_text(net.cluster, mark(mine, True)))
    assert {r["server"] for r in net.ask("client", STICKY_DAY, 80, count=10)} == moved
