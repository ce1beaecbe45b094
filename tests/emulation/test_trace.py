"""``k8snet trace``: predicted walks checked hop by hop, and each one sent for real and
captured, the captures agreeing with the prediction."""

from __future__ import annotations

import json

import pytest

from k8snet.model.manifests import load_text
from k8snet.model.resolver import Overrides
from k8snet.model.trace_ends import TraceInputError
from topos.cluster import ClusterNet
from topos.control import ClusterControl
from topos.specs import default_spec_text, embedded_spec_text
from topos.trace import trace

from tests.emulation.conftest import K8SNET, ROOT, k8snet_env
from tests import patient

FLAT = """\
apiVersion: k8snet.io/v1alpha1
kind: Cluster
metadata: {name: trace}
spec: {nodes: 3, backend: host-gw}
---
apiVersion: v1
kind: Pod
metadata: {name: a, labels: {app: web}}
spec: {nodeName: node-0, containers: [{name: c, ports: [{name: http, containerPort: 8080}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: b}
spec: {nodeName: node-0}
---
apiVersion: v1
kind: Pod
metadata: {name: c, labels: {app: web}}
spec: {nodeName: node-1, containers: [{name: c, ports: [{name: http, containerPort: 8080}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: d, labels: {app: solo}}
spec: {nodeName: node-2, containers: [{name: c, ports: [{name: http, containerPort: 8080}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: empty}
spec:
  selector: {app: nothing}
  ports: [{name: http, port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: solo}
spec:
  type: NodePort
  selector: {app: solo}
  ports: [{name: http, port: 80, targetPort: http, nodePort: 30080}]
---
apiVersion: v1
kind: Service
metadata: {name: solo-local}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  selector: {app: solo}
  ports: [{name: http, port: 80, targetPort: http, nodePort: 30081}]
"""


@pytest.fixture(scope="module")
def flat():
    with ClusterNet(load_text(FLAT)) as net:
        yield net


@pytest.fixture(scope="module")
def racks():
    with ClusterNet(load_text(embedded_spec_text("racks"))) as net:
        yield net


def roles(t) -> list[str]:
    return [h.role for h in t.hops]


def agrees(t) -> None:
    assert t.kind == "observed" and t.agrees, [(h.where, h.mismatch) for h in t.hops if h.mismatch]


def test_same_node_pods_are_bridged_without_a_ttl_change(flat):
    t = trace(flat, "a", "b")
    assert t.verdict == "delivered" and roles(t) == ["pod", "switch", "pod"]
    pod_b = flat.cluster.pod("b")
    assert t.hops[0].left.eth_dst == pod_b.mac                       # on-link: ARP answered for b itself
    assert t.hops[-1].arrived.ttl == 64 and t.hops[-1].seen_in.ttl == 64
    agrees(t)


def test_host_gw_across_nodes_rewrites_macs_to_the_peer_node_and_routes_twice(flat):
    t = trace(flat, "a", "c")
    n0, n1 = flat.cluster.node("node-0"), flat.cluster.node("node-1")
    assert roles(t) == ["pod", "switch", "segment", "switch", "pod"]
    out = t.hops[1].left
    assert (out.eth_src, out.eth_dst, out.ttl) == (n0.mac, n1.mac, 63)
    assert "host-gw route to node-1" in " ".join(d.why for d in t.hops[1].decisions)
    assert t.hops[-1].arrived.ttl == 62 and t.hops[2].where == "underlay fabric"
    assert t.reply_kind == "echo reply" and t.reply.ip_src == str(flat.cluster.pod("c").ip) and t.reply.ttl == 62
    agrees(t)


def test_clusterip_is_dnated_to_the_picked_endpoint_named_after_the_service(flat):
    t = trace(flat, "b", "svc/web", protocol="tcp")
    pod = next(p for p in flat.cluster.pods if p.host_name == t.hops[-1].host)
    nat = next(d for d in t.hops[1].decisions if "DNAT" in d.why)
    assert nat.why.startswith("Service default/web port http 80/TCP: DNAT ") and f"endpoint default/{pod.name}" in nat.why
    assert pod.name in ("a", "c") and (t.hops[-1].arrived.ip_dst, t.hops[-1].arrived.dport) == (str(pod.ip), 8080)
    # Nothing listens on 8080: the pod resets, and the reset comes back from the VIP, not the pod.
    vip = str(flat.cluster.service("web").cluster_ip)
    assert t.reply_kind == "reset" and (t.reply.ip_src, t.reply.sport) == (vip, 80)
    agrees(t)


def test_a_pod_reaching_itself_through_its_service_is_hairpinned_from_the_gateway(flat):
    t = trace(flat, "d", "svc/solo", protocol="tcp")
    d, n2 = flat.cluster.pod("d"), flat.cluster.node("node-2")
    assert roles(t) == ["pod", "switch", "pod"] and t.hops[-1].host == d.host_name
    assert (t.hops[-1].arrived.ip_src, t.hops[-1].arrived.ip_dst) == (str(n2.gateway_ip), str(d.ip))
    assert any(x.why.startswith("hairpin: SNAT to the pod gateway") for x in t.hops[1].decisions)
    agrees(t)


def test_a_service_without_endpoints_is_rejected_by_the_controller(flat):
    t = trace(flat, "a", "svc/empty", protocol="tcp")
    assert t.verdict == "rejected" and "default/empty" in t.reason and "TCP reset" in t.reason
    assert t.reply_kind == "reset" and t.reply.ip_src == str(flat.cluster.service("empty").cluster_ip)
    agrees(t)


def test_external_to_a_node_port_is_snated_to_the_node_on_its_way_to_the_endpoint(flat):
    n0 = flat.cluster.node("node-0")
    t = trace(flat, "external", "node-0:30080", protocol="tcp")
    assert t.verdict == "delivered" and t.hops[-1].host == flat.cluster.pod("d").host_name
    arrived = t.hops[-1].arrived
    assert (arrived.ip_src, arrived.dport) == (str(n0.ip), 8080)       # externalTrafficPolicy Cluster
    assert any("SNAT" in d.why for d in t.hops[2].decisions)
    agrees(t)


def test_external_to_a_local_node_port_keeps_the_client_ip(flat):
    t = trace(flat, "external", "node-2:30081", protocol="tcp")          # Local: the endpoint is on node-2
    assert t.verdict == "delivered" and t.hops[-1].host == flat.cluster.pod("d").host_name
    assert t.hops[-1].arrived.ip_src == str(flat.cluster.underlay.external.ip)
    assert not any("SNAT" in d.why for h in t.hops for d in h.decisions)
    agrees(t)


def test_external_to_a_load_balancer_is_masqueraded_by_it_and_sent_to_the_one_node_with_an_endpoint(flat):
    t = trace(flat, "external", "lb/solo-local", protocol="tcp")
    lb = flat.cluster.underlay.lb
    assert [d.where for d in next(h for h in t.hops if h.host == lb.name).decisions][:2] == ["nftables", "nftables"]
    assert t.verdict == "delivered" and t.hops[-1].arrived.ip_src == str(lb.ip)   # masqueraded by the LB
    agrees(t)


def test_a_source_without_a_route_is_a_mistake_in_the_question(flat):
    with pytest.raises(TraceInputError, match="DST: external has no route to 10.244.0.2"):
        trace(flat, "external", "a")


def test_a_ttl_limited_packet_dies_at_the_first_routing_step(flat):
    t = trace(flat, "a", "c", ttl=1)
    assert t.verdict == "dropped" and "TTL 1 expires" in t.reason and len(t.hops) == 2
    agrees(t)


def test_vxlan_across_racks_carries_the_outer_header_through_the_gateways(racks):
    t = trace(racks, "web-0", "web-2")
    gateways = [h for h in t.hops if h.role == "router"]
    assert [h.host for h in gateways] == ["gw-rack-0", "core", "gw-rack-1"]
    for hop in gateways:
        assert hop.arrived.outer is not None and hop.arrived.outer.udp_dst == 8472
        assert hop.arrived.ip_src == str(racks.cluster.pod("web-0").ip)     # the inner packet, untouched
    assert [h.arrived.outer.ttl for h in gateways] == [64, 63, 62]
    assert t.hops[-1].arrived.ttl == 62 and t.verdict == "delivered"
    agrees(t)


def test_a_ttl_2_packet_across_racks_dies_at_the_far_node_not_at_the_gateways(racks):
    t = trace(racks, "web-0", "web-2", ttl=2)
    assert t.verdict == "dropped" and t.reason.startswith("node-2: TTL 1 expires")
    agrees(t)


def test_a_denied_packet_names_the_isolation_that_dropped_it(racks):
    deny = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all}
spec: {podSelector: {}, policyTypes: [Ingress]}
"""
    from k8snet.model.apply import apply_text

    racks.apply(apply_text(racks.cluster, deny))
    try:
        t = trace(racks, "web-0", "web-2")
        assert t.verdict == "dropped" and t.hops[-1].host == "node-2"
        assert "isolated for ingress" in t.reason and "web-2" in t.reason and "default/deny-all" in t.reason
        agrees(t)
    finally:
        racks.apply(apply_text(racks.cluster, deny, delete=True))


def test_a_packet_larger_than_the_pod_mtu_with_df_never_leaves_the_pod(racks):
    t = trace(racks, "web-0", "web-2", size=1451)                # VXLAN: the pod MTU is 1450
    assert t.verdict == "dropped" and len(t.hops) == 1 and "EMSGSIZE" in t.reason
    agrees(t)
    fits = trace(racks, "web-0", "web-2", size=1450)
    assert fits.verdict == "delivered" and fits.hops[-1].arrived.length == 1450
    agrees(fits)


def test_a_full_size_datagram_from_outside_with_df_is_refused_where_it_would_enter_the_tunnel(racks):
    from k8snet.model.apply import apply_text

    doc = """\
apiVersion: v1
kind: Service
metadata: {name: big}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{name: dns, port: 53, protocol: UDP, targetPort: 5353, nodePort: 30053}]
"""
    racks.apply(apply_text(racks.cluster, doc))
    try:
        t = trace(racks, "external", "node-0:30053", protocol="udp", size=1500)
        assert t.verdict == "rejected" and t.hops[-1].host == "node-0"
        assert "larger than 1464" in t.reason and "Don't Fragment" in t.reason
        assert "ICMP fragmentation needed, MTU 1450" in t.reason
        agrees(t)
    finally:
        racks.apply(apply_text(racks.cluster, doc, delete=True))


def test_the_running_clusters_socket_answers_traces_and_refuses_mistakes(racks):
    control = ClusterControl.__new__(ClusterControl)
    control.net = racks
    reply = control.handle({"op": "trace", "src": "web-0", "dst": "node-3", "observe": False})
    assert reply["ok"] and reply["trace"]["verdict"] == "delivered" and reply["trace"]["kind"] == "predicted"
    bad = control.handle({"op": "trace", "src": "web-0", "dst": "svc/nope", "proto": "tcp"})
    assert not bad["ok"] and bad["argument"] == "DST" and "no Service default/nope" in bad["error"]


def test_host_gw_across_racks_ends_at_the_first_node_like_flannels(no_leaks):
    cluster = load_text(embedded_spec_text("racks"), Overrides(backend="host-gw"))
    with ClusterNet(cluster) as net:
        t = trace(net, "web-0", "web-2")
        assert t.verdict == "dropped" and t.hops[-1].host == "node-0"
        assert "no L2 next hop for 10.244.2.0/24" in t.reason
        agrees(t)
        # Pod IPs are not routed outside the cluster: the core has no route for them.
        outside = trace(net, "external", "web-0", observe=False)
        assert outside.verdict == "dropped" and outside.reason.startswith("core has no route to 10.244.0.")


def test_bgp_across_racks_is_routed_by_both_gateways_and_the_core(no_leaks):
    cluster = load_text(embedded_spec_text("racks"), Overrides(backend="bgp"))
    with ClusterNet(cluster) as net:
        t = trace(net, "web-0", "web-2")
        assert t.verdict == "delivered" and t.hops[-1].arrived.ttl == 59, [h.where for h in t.hops]
        assert {"gw-rack-0", "core", "gw-rack-1"} <= {h.host for h in t.hops}
        agrees(t)


def test_routed_veth_routes_even_to_a_pod_on_the_same_node(no_leaks):
    cluster = load_text(default_spec_text(), Overrides(access="routed-veth"))
    with ClusterNet(cluster) as net:
        t = trace(net, "web-0", "web-3")
        assert t.verdict == "delivered" and t.hops[-1].arrived.ttl == 63
        assert "169.254.1.1" in t.hops[0].decisions[0].what
        agrees(t)


@pytest.mark.parametrize("args, words", [
    (["nobody", "web-0"], "SRC: 'nobody' is no pod"),
    (["web-0", "web-1:80"], "DST: ICMP has no ports"),
    (["web-0", "web-1", "--ttl", "0"], "--ttl: 0 is outside 1-255"),
    (["web-0", "svc/web", "--proto", "tcp"], "DST: no Service default/web"),
])
def test_bad_questions_exit_2_before_anything_starts(args, words, no_leaks, tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(embedded_spec_text("default"))
    r = patient.run([*K8SNET, "trace", *args, "--spec", str(spec)], capture_output=True, text=True,
                       cwd=ROOT, env=k8snet_env(), timeout=60)
    assert r.returncode == 2 and words in r.stdout + r.stderr, r.stdout + r.stderr


def test_the_command_prints_the_walk_and_writes_json(no_leaks, tmp_path):
    out = tmp_path / "t.json"
    svg = tmp_path / "t.svg"
    r = patient.run([*K8SNET, "trace", "web-0", "web-1", "--spec", "default", "--json", str(out), "--svg", str(svg)],
                       capture_output=True, text=True, cwd=ROOT, env=k8snet_env(), timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "delivered" in r.stdout and "captures agree with the prediction" in r.stdout
    doc = json.loads(out.read_text())
    assert doc["kind"] == "observed" and doc["agrees"] and [h["role"] for h in doc["hops"]][0] == "pod"
    assert "<svg" in svg.read_text() and "delivered" in svg.read_text()


def test_directrouting_routes_within_a_rack_and_tunnels_across(no_leaks):
    cluster = load_text(embedded_spec_text("racks"), Overrides(backend="directrouting"))
    with ClusterNet(cluster) as net:
        near, far = trace(net, "web-0", "web-1"), trace(net, "web-0", "web-2")
        assert near.verdict == far.verdict == "delivered"
        assert all(h.left is None or h.left.outer is None for h in near.hops)          # host-gw within the rack
        assert "router" not in roles(near) and near.hops[-1].arrived.ttl == 62
        assert any(h.left is not None and h.left.outer is not None for h in far.hops)  # VXLAN across
        assert [h.host for h in far.hops if h.role == "router"] == ["gw-rack-0", "core", "gw-rack-1"]
        agrees(near)
        agrees(far)


def test_macvlan_pods_cross_the_wire_and_never_reach_their_own_node(no_leaks):
    cluster = load_text(default_spec_text(), Overrides(access="macvlan"))
    with ClusterNet(cluster) as net:
        t = trace(net, "web-0", "web-1")  # node-0 -> node-1: the fabric, no switch, no router
        assert t.verdict == "delivered" and roles(t) == ["pod", "segment", "pod"]
        assert t.hops[-1].arrived.ttl == 64
        agrees(t)
        t = trace(net, "web-0", "web-3")  # siblings on node-0: inside the kernel
        assert t.verdict == "delivered" and roles(t) == ["pod", "pod"]
        agrees(t)
        t = trace(net, "node-1", "web-0")  # a node reaches another node's macvlan pod by its MAC
        assert t.verdict == "delivered" and roles(t) == ["node", "switch", "segment", "pod"]
        agrees(t)
        t = trace(net, "web-0", "node-0")
        assert t.verdict == "dropped" and "macvlan child and its parent" in t.reason
        agrees(t)
