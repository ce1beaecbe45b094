"""NetworkPolicy on a running cluster: the full 72-pair truth table of sig-network's e2e
model (namespaces x, y, z; pods a, b, c; servers on 80 and 81 over TCP and UDP), probed
with real connections for each policy case and compared with the evaluator's prediction
(k8snet.model.policy_eval), pair by pair; then policy, pod-label and namespace-label
changes at run time, Services through a policy, and VXLAN across racks.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from k8snet.model.apply import apply_text
from k8snet.model.policy_eval import evaluate
from tests.unit.test_policy import BASE, CASES, DENY_ALL_INGRESS_X, NAMESPACES, PODS, expect, policy
from topos.cluster import ClusterNet
from topos.probe import fresh_ports

PORTS = ((80, "tcp"), (81, "tcp"), (80, "udp"), (81, "udp"))


@pytest.fixture(scope="module")
def net(no_leaks_module):
    with ClusterNet(BASE) as running:
        for pod in BASE.pods:
            for port, proto in PORTS:
                running.serve(pod.host_name, port, proto)
        yield running


def probe(net: ClusterNet, port: int, proto: str) -> dict[tuple[str, str], bool]:
    """Every ordered pair of distinct pods: did one new connection get an answer?"""
    pods = list(net.cluster.pods)
    pairs = [(a, b) for a in pods for b in pods if a is not b]

    def one(pair):
        a, b = pair
        # A fresh UDP source port each time: a repeated 5-tuple is an established connection.
        sport = fresh_ports(1) if proto == "udp" else 0
        result = net.ask(a.host_name, str(b.ip), port, proto, count=1, timeout=0.6, sport=sport)[0]
        return (f"{a.namespace}/{a.name}", f"{b.namespace}/{b.name}"), bool(result["ok"])

    with ThreadPoolExecutor(max_workers=12) as pool:
        return dict(pool.map(one, pairs))


def grid(observed: dict[tuple[str, str], bool]) -> str:
    order = [f"{ns}/{p}" for ns in NAMESPACES for p in PODS]
    return "\n".join("".join("-" if s == d else "." if observed[(s, d)] else "X" for d in order) for s in order)


def assert_as_predicted(net: ClusterNet, port: int, proto: str, expected: str | None = None) -> None:
    observed = probe(net, port, proto)
    predicted = {pair: evaluate(net.cluster, net.cluster.pod(*reversed(pair[0].split("/"))),
                                net.cluster.pod(*reversed(pair[1].split("/"))), port, proto.upper()).allowed
                 for pair in observed}
    wrong = {pair: ("reachable" if seen else "unreachable") for pair, seen in observed.items()
             if seen != predicted[pair]}
    assert not wrong, (f"{len(wrong)} of {len(observed)} pairs differ from the prediction on {port}/{proto}: "
                       f"{wrong}\nobserved:\n{grid(observed)}")
    if expected is not None:
        assert grid(observed) == expected


def set_policies(net: ClusterNet, *docs: str) -> None:
    cluster = BASE if not docs else apply_text(BASE, "---\n".join(docs))
    net.apply(net.cluster.model_copy(update={"policies": cluster.policies, "namespaces": cluster.namespaces,
                                             "pods": BASE.pods}))


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_truth_table_as_predicted(net, case):
    docs, port, protocol, table = CASES[case]
    if table.startswith("from "):
        table = CASES[table.removeprefix("from ")][3]
    set_policies(net, *docs)
    assert_as_predicted(net, port, protocol.lower(), expect(table))


def test_no_policy_everything_reaches_everything(net):
    set_policies(net)
    for port, proto in PORTS:
        assert_as_predicted(net, port, proto)


def test_relabelling_a_pod_or_a_namespace_at_run_time_is_followed(net):
    set_policies(net, policy("""
        podSelector: {matchLabels: {pod: a}}
        ingress:
        - from: [{namespaceSelector: {}, podSelector: {matchLabels: {role: client}}}]
        - from: [{namespaceSelector: {matchLabels: {team: blue}}}]
    """))
    assert_as_predicted(net, 80, "tcp")
    # y/b becomes a client: it is let in (and only it, of y).
    net.apply(apply_text(net.cluster, "apiVersion: v1\nkind: Pod\nmetadata: {name: b, namespace: y, "
                                      "labels: {pod: b, role: client}}\n"))
    assert evaluate(net.cluster, net.cluster.pod("b", "y"), net.cluster.pod("a", "x"), 80).allowed
    assert_as_predicted(net, 80, "tcp")
    # Namespace z joins team blue: all of z is let in; y/b stops being a client.
    net.apply(apply_text(net.cluster, "apiVersion: v1\nkind: Namespace\nmetadata: {name: z, labels: {ns: z, "
                                      "team: blue}}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: b, "
                                      "namespace: y, labels: {pod: b}}\n"))
    assert evaluate(net.cluster, net.cluster.pod("c", "z"), net.cluster.pod("a", "x"), 80).allowed
    assert not evaluate(net.cluster, net.cluster.pod("b", "y"), net.cluster.pod("a", "x"), 80).allowed
    assert_as_predicted(net, 80, "tcp")
    net.apply(apply_text(net.cluster, "apiVersion: v1\nkind: Namespace\nmetadata: {name: z, labels: {ns: z}}\n"))


def test_a_policy_change_leaves_established_connections_open(net):
    """Kubernetes leaves open connections to the implementation; k8snet judges new
    connections only, so a connection that stood before a deny-all keeps going, while a
    new one is refused."""
    set_policies(net)
    src, dst = net.cluster.pod("b", "y"), net.cluster.pod("a", "x")
    held = net.hold(src.host_name, str(dst.ip), 80, seconds=3)
    assert held.established() == dst.host_name
    set_policies(net, DENY_ALL_INGRESS_X)
    fresh = net.ask(src.host_name, str(dst.ip), 80, count=1, timeout=0.6)[0]
    assert not fresh["ok"], fresh
    result = held.result()
    assert result["ok"] and result["exchanges"] > 10, result


SERVICES = """\
apiVersion: v1
kind: Service
metadata: {name: web, namespace: x}
spec:
  type: NodePort
  selector: {pod: a}
  ports: [{port: 8080, targetPort: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: web-local, namespace: x}
spec:
  type: NodePort
  externalTrafficPolicy: Local
  selector: {pod: a}
  ports: [{port: 8081, targetPort: 80}]
"""
FROM_Y = policy("""
    podSelector: {matchLabels: {pod: a}}
    ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}}], ports: [{port: 80}]}]
""", "a-from-y")


def test_services_are_judged_on_the_endpoint_after_dnat(no_leaks):
    """ClusterIP: the client pod's IP against the endpoint pod's policy, on the targetPort.
    NodePort with externalTrafficPolicy Cluster: the endpoint sees the SNATed node IP (its
    own node: always allowed; another node: only an ipBlock lets it in); Local keeps the
    client's IP.  A refused Service connection stays refused through its SYN retransmits."""
    cluster = apply_text(BASE, SERVICES + "---\n" + FROM_Y)
    a = cluster.pod("a", "x")
    web, local = cluster.service("web", "x"), cluster.service("web-local", "x")
    other = next(n for n in cluster.nodes if n.name != a.node)
    external = cluster.underlay.external
    with ClusterNet(cluster) as running:
        running.serve(a.host_name, 80)
        ok = lambda host, ip, port, timeout=2.5: running.ask(host, ip, port, count=1, timeout=timeout)[0]["ok"]
        vip = str(web.cluster_ip)
        assert ok(cluster.pod("b", "y").host_name, vip, 8080)
        assert evaluate(cluster, cluster.pod("b", "y"), a, 80).allowed
        # Refused, and still refused 1 s later when the SYN is sent again (DNAT committed
        # the connection; it has seen no reply, so it is still judged as new).
        assert not evaluate(cluster, cluster.pod("b", "z"), a, 80).allowed
        assert not ok(cluster.pod("b", "z").host_name, vip, 8080)
        node_port, local_port = web.ports[0].node_port, local.ports[0].node_port
        # NodePort, Cluster: through a's own node (SNAT to it): allowed; through another
        # node: the endpoint sees that node's IP, which the policy does not name.
        assert evaluate(cluster, cluster.node(a.node).ip, a, 80).allowed
        assert ok(external.name, str(cluster.node(a.node).ip), node_port)
        assert not evaluate(cluster, other.ip, a, 80).allowed
        assert not ok(external.name, str(other.ip), node_port)
        # NodePort, Local: the client's own IP is judged.
        assert not evaluate(cluster, external.ip, a, 80).allowed
        assert not ok(external.name, str(cluster.node(a.node).ip), local_port)
        opened = apply_text(running.cluster, policy(f"""
            podSelector: {{matchLabels: {{pod: a}}}}
            ingress: [{{from: [{{ipBlock: {{cidr: '{external.ip}/32'}}}}, {{ipBlock: {{cidr: '{other.ip}/32'}}}}]}}]
        """, "outside"))
        running.apply(opened)
        assert evaluate(opened, external.ip, a, 80).allowed and evaluate(opened, other.ip, a, 80).allowed
        assert ok(external.name, str(cluster.node(a.node).ip), local_port)
        assert ok(external.name, str(other.ip), node_port)


@pytest.mark.parametrize("backend", ["vxlan"])
def test_policies_hold_across_racks(backend, no_leaks):
    """Across rack gateways on VXLAN: each node judges its own pods, whatever the path."""
    from k8snet.model.manifests import load_text
    from tests.unit.test_policy import model_spec

    text = model_spec().replace("spec: {nodes: 3}", f"spec: {{nodes: 3, backend: {backend}, "
                                                      "underlay: {type: routed, racks: 2}}")
    cluster = apply_text(load_text(text), "---\n".join([DENY_ALL_INGRESS_X, FROM_Y, policy(
        "podSelector: {}\npolicyTypes: [Egress]\negress: [{to: [{namespaceSelector: {matchLabels: {ns: x}}}]}]",
        "z-only-to-x", namespace="z")]))
    assert len({n.rack for n in cluster.nodes}) == 2
    with ClusterNet(cluster) as running:
        for pod in cluster.pods:
            running.serve(pod.host_name, 80)
        assert_as_predicted(running, 80, "tcp")


def test_a_udp_flow_allowed_before_a_deny_stays_allowed_a_new_one_is_denied(net):
    """UDP is judged per 5-tuple, as conntrack sees it: datagrams repeating one that a
    policy allowed pass after a deny as an established flow, a new source port does not.
    (Why every probe here sends from a fresh port: topos.probe.fresh_ports.)"""
    set_policies(net, policy("podSelector: {matchLabels: {pod: a}}\ningress: [{ports: [{port: 81}]}]", "unrelated"))
    src, dst = net.cluster.pod("c", "x"), net.cluster.pod("b", "z")
    old = fresh_ports(2)
    new = old + 1
    assert net.ask(src.host_name, str(dst.ip), 80, "udp", timeout=0.6, sport=old)[0]["ok"]
    set_policies(net, policy("podSelector: {}\npolicyTypes: [Egress]", "deny-out"))
    assert not net.ask(src.host_name, str(dst.ip), 80, "udp", timeout=0.6, sport=new)[0]["ok"]
    assert net.ask(src.host_name, str(dst.ip), 80, "udp", timeout=0.6, sport=old)[0]["ok"]


def test_a_fragmented_datagram_is_judged_by_its_first_fragment(net):
    """Only the first fragment of a UDP datagram carries its ports: it is judged, and the
    later fragments pass the policy tables (alone they can never be reassembled), so a
    datagram larger than the MTU reaches an allowed port, and nothing of it reaches a
    denied one.  The answer, as large, comes back fragmented as a reply."""
    set_policies(net, policy("podSelector: {matchLabels: {pod: a}}\ningress: [{ports: [{port: 81, protocol: UDP}]}]",
                             "udp-81"))
    from k8snet.model.cluster import BRIDGE_NAME

    # The controller asked every switch to parse first fragments' ports (pipeline.FRAG_NX_MATCH).
    assert {net.node(n.name).ovs.ofctl("get-frags", BRIDGE_NAME).strip() for n in net.cluster.nodes} == {"nx-match"}
    src, dst = net.cluster.pod("b", "y"), net.cluster.pod("a", "x")
    for size in (1000, 4000, 12000):
        allowed = net.ask(src.host_name, str(dst.ip), 81, "udp", timeout=1.0, size=size, sport=fresh_ports(1))[0]
        assert allowed["ok"] and allowed["bytes"] == size, (size, allowed)
        denied = net.ask(src.host_name, str(dst.ip), 80, "udp", timeout=0.6, size=size, sport=fresh_ports(1))[0]
        assert not denied["ok"], (size, denied)


def test_k8snet_check_probes_every_declared_port_and_names_the_deciding_rule(tmp_path, no_leaks):
    """Deny all into x, then let y into x/a on 80/TCP only: ping from y to x/a is denied
    while 80/TCP gets through, which only an L4 probe can show."""
    from tests.emulation.test_cli import k8snet
    from tests.unit.test_policy import model_spec

    spec, out = tmp_path / "netpol.yaml", tmp_path / "check.json"
    spec.write_text(model_spec() + "---\n" + DENY_ALL_INGRESS_X + "---\n" + FROM_Y)
    result = k8snet("check", str(spec), "--json", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    doc = json.loads(out.read_text())
    assert doc["ok"] and doc["as_predicted"], doc["port_summary"]
    rows = doc["results"]
    denied = [r for r in rows if not r["required"]]
    # Into x: from the 6 pods of y and z, from x's other two pods, from the 2 other nodes.
    assert len(denied) == 3 * (6 + 2 + 2), len(denied)
    assert all(not r["reachable"] and r["as_predicted"] and r["ok"] and r["denied_by"].startswith("NetworkPolicy")
               and r["verdict"]["ingress"]["selecting"] for r in denied)
    assert all(r["reachable"] for r in rows if r["required"])
    ports = [(r, p) for r in rows for p in r["ports"]]
    assert len(ports) == (9 * 8 + 3 * 9) * 4  # every pair into a pod (pods and nodes), 4 ports each
    assert all(p["as_predicted"] and "verdict" in p for _, p in ports)
    from_y = {(r["src"], p["port"], p["protocol"]): p for r, p in ports
              if r["src"].endswith(".y") and r["dst"] == "a.x"}
    assert len(from_y) == 12
    for (src, port, proto), p in from_y.items():
        if (port, proto) == (80, "TCP"):
            assert p["reachable"] and p["verdict"]["deciding"] == "x/a-from-y ingress[0]", (src, p)
        else:
            assert not p["reachable"] and p["verdict"]["deciding"] is None and f"{port}/{proto}" in p["reason"]
    denied_ports = sum(not p["required"] for _, p in ports)
    assert denied_ports == 3 * (6 + 2 + 2) * 4 - 3, denied_ports
    assert f"the other {len(denied) + denied_ports} denied by NetworkPolicy, as predicted" in result.stdout
    assert "declared ports" in result.stdout


def test_k8snet_check_three_tier_example(tmp_path, no_leaks):
    """The shipped example, with the real cluster DNS (unbound answers the UDP and TCP
    probes of port 53): every declared port as predicted, 37 of 63 allowed."""
    from tests.emulation.test_cli import k8snet

    out = tmp_path / "check.json"
    result = k8snet("check", "three-tier", "--json", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    doc = json.loads(out.read_text())
    ports = [(r["src"], r["dst"], p) for r in doc["results"] for p in r["ports"]]
    assert len(ports) == 63 and all(p["as_predicted"] for _, _, p in ports)
    assert sum(p["reachable"] for _, _, p in ports) == 37
    dns = [p for _, dst, p in ports if dst == "kube-dns.kube-system" and p["protocol"] == "UDP"]
    assert len(dns) == 9 and all(p["reachable"] for p in dns)   # every pod and node asks the DNS
    assert "◐" in result.stdout and "declared ports" in result.stdout


def test_the_matrix_flags_a_port_the_switch_lets_through_against_the_policy(net):
    """The check can fail: a flow slipped into one switch ahead of the ingress rules (a
    policy not enforced) makes every denied probe into x/a a surprise, ping and ports."""
    from controllers.pipeline import COMMIT, POLICY_INGRESS
    from k8snet.model.cluster import BRIDGE_NAME

    set_policies(net, DENY_ALL_INGRESS_X)
    target = net.cluster.pod("a", "x")
    ovs = net.node(target.node).ovs
    bypass = f"table={POLICY_INGRESS},priority=65000,ip,nw_dst={target.ip}"
    ovs.ofctl("add-flow", BRIDGE_NAME, f"{bypass},actions=goto_table:{COMMIT}")
    try:
        ovs.appctl("revalidator/purge")
        doc = net.matrix()
    finally:
        ovs.ofctl("del-flows", "--strict", BRIDGE_NAME, bypass)
        ovs.appctl("revalidator/purge")
    assert not doc["as_predicted"]
    wrong = {(r["src"], p["port"], p["protocol"]) for r in doc["results"] for p in r["ports"]
             if not p["as_predicted"]}
    wrong_icmp = {r["src"] for r in doc["results"] if not r["as_predicted"]}
    sources = {p.host_name for p in net.cluster.pods if p is not target}
    others = {n.name for n in net.cluster.nodes if n.name != target.node}
    assert {src for src, _, _ in wrong} == sources | others
    assert len(wrong) == len(sources | others) * 4
    assert wrong_icmp == sources | others
    assert all(dst == "a.x" for dst in {r["dst"] for r in doc["results"] if not r["as_predicted"]})


def test_every_rule_and_every_refusal_is_counted(net):
    """Flow statistics name the rule that let each new connection in, and count what each
    isolated pod's policies refused (one SYN per connection attempt here: no retransmit
    fits in the probe's 0.6 s)."""
    from topos.checks import policy_counters

    set_policies(net, DENY_ALL_INGRESS_X, FROM_Y)
    key = lambda r: (r["node"], r.get("policy") or r.get("pod"), r["direction"], r.get("rule"))
    before = {key(r): r["packets"] for r in policy_counters(net)}
    assert_as_predicted(net, 80, "tcp")
    after = {key(r): r["packets"] for r in policy_counters(net)}
    grew = {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}
    a_node = net.cluster.pod("a", "x").node
    assert grew.pop((a_node, "x/a-from-y", "ingress", 0)) == 3  # y/a, y/b, y/c
    refused = {k[1]: v for k, v in grew.items() if k[3] is None}
    # x/a: refused x/b, x/c and the three of z; x/b and x/c: everyone else but themselves.
    assert refused == {"x/a": 5, "x/b": 8, "x/c": 8}, grew
    assert all(k[3] is None for k in grew), grew
