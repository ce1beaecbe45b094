"""Manifest loading: good specs resolve to the expected addresses; bad ones fail precisely."""

from __future__ import annotations

import ipaddress
import textwrap

import pytest

from k8snet.model.manifests import Overrides, SpecError, load_text

from topos.specs import default_spec_text

CLUSTER = """\
apiVersion: k8snet.io/v1alpha1
kind: Cluster
metadata: {name: lab}
spec:
  nodes: 3
"""


def spec(*docs: str) -> str:
    return "\n---\n".join(textwrap.dedent(d) for d in docs)


def deployment(name: str = "web", replicas: int = 2, extra: str = "", labels: str = "{app: web}",
               selector: str = "{app: web}") -> str:
    return f"""\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {selector}}}
  template:
    metadata: {{labels: {labels}}}
    spec:
{extra or "      containers: [{name: c, image: busybox}]"}
"""


def pod(name: str, node: str | None = None, namespace: str | None = None) -> str:
    lines = ["apiVersion: v1", "kind: Pod", "metadata:", f"  name: {name}"]
    if namespace:
        lines.append(f"  namespace: {namespace}")
    lines.append("spec:")
    lines.append(f"  nodeName: {node}" if node else "  containers: [{name: c}]")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- good input
def test_default_spec_is_three_nodes_two_pods_each_host_gw_flat():
    cluster = load_text(default_spec_text())
    assert [n.name for n in cluster.nodes] == ["node-0", "node-1", "node-2"]
    assert cluster.backend.value == "host-gw" and cluster.underlay.type.value == "flat"
    per_node = {n.name: len(cluster.pods_on(n.name)) for n in cluster.nodes}
    assert per_node == {"node-0": 2, "node-1": 2, "node-2": 2}


def test_addresses_follow_flannel_and_cni_conventions():
    cluster = load_text(spec(CLUSTER, deployment(replicas=4)))
    n1 = cluster.node("node-1")
    assert n1.pod_cidr == ipaddress.IPv4Network("10.244.1.0/24")
    assert str(n1.gateway_ip) == "10.244.1.1" and n1.gateway_mac == "0a:58:0a:f4:01:01"
    assert str(n1.ip) == "192.168.56.11" and n1.mac == "02:00:c0:a8:38:0b"
    web1 = next(p for p in cluster.pods if p.name == "web-1")
    assert web1.node == "node-1" and str(web1.ip) == "10.244.1.2" and web1.mac == "0a:58:0a:f4:01:02"
    web3 = next(p for p in cluster.pods if p.name == "web-3")
    assert web3.node == "node-0" and str(web3.ip) == "10.244.0.3" and web3.ofport == 101


def test_node_name_pins_and_spread_fills_the_emptiest_node():
    cluster = load_text(spec(CLUSTER, pod("a", "node-2"), pod("b", "node-2"), deployment(replicas=3)))
    placement = {p.name: p.node for p in cluster.pods}
    assert placement["a"] == placement["b"] == "node-2"
    assert sorted(placement[f"web-{i}"] for i in range(3)) == ["node-0", "node-0", "node-1"]


def test_node_list_with_racks_and_custom_cidrs():
    text = spec("""\
        apiVersion: k8snet.io/v1alpha1
        kind: Cluster
        spec:
          nodes: [{name: alpha, rack: r1}, {name: beta, rack: r2}]
          podCIDR: 10.10.0.0/16
          underlay: {cidr: 172.20.0.0/24, mtu: 9000}
        """)
    cluster = load_text(text)
    assert [(n.name, n.rack, str(n.pod_cidr)) for n in cluster.nodes] == [
        ("alpha", "r1", "10.10.0.0/24"), ("beta", "r2", "10.10.1.0/24")]
    assert cluster.underlay.mtu == 9000 and str(cluster.nodes[0].ip) == "172.20.0.10"


def test_overrides_replace_node_count_and_workloads():
    cluster = load_text(default_spec_text(), Overrides(nodes=4, pods_per_node=3))
    assert len(cluster.nodes) == 4 and len(cluster.pods) == 12
    assert all(len(cluster.pods_on(n.name)) == 3 for n in cluster.nodes)


def test_pods_outside_default_namespace_get_qualified_host_names():
    cluster = load_text(spec(CLUSTER, pod("web", namespace="shop"), pod("web")))
    assert sorted(p.host_name for p in cluster.pods) == ["web", "web.shop"]


def test_zero_replicas_is_valid():
    assert load_text(spec(CLUSTER, deployment(replicas=0))).pods == ()


def test_routed_underlay_puts_racks_in_subnets_behind_gateways():
    text = CLUSTER.replace("nodes: 3", "nodes: 4") + "  backend: vxlan\n  underlay: {type: routed, racks: 2}\n"
    cluster = load_text(text)
    racks = cluster.underlay.racks
    assert [(r.name, str(r.cidr), str(r.gateway_ip)) for r in racks] == [
        ("rack-0", "192.168.0.0/24", "192.168.0.1"), ("rack-1", "192.168.1.0/24", "192.168.1.1")]
    assert [(str(r.core_ip), str(r.transit_ip)) for r in racks] == [
        ("192.168.255.1", "192.168.255.2"), ("192.168.255.5", "192.168.255.6")]
    assert [(n.name, n.rack, str(n.ip)) for n in cluster.nodes] == [
        ("node-0", "rack-0", "192.168.0.10"), ("node-1", "rack-0", "192.168.0.11"),
        ("node-2", "rack-1", "192.168.1.10"), ("node-3", "rack-1", "192.168.1.11")]
    assert cluster.pod_mtu == 1450


def test_named_racks_and_node_override_keep_rack_names():
    text = CLUSTER.replace("nodes: 3", "nodes: [{name: a, rack: east}, {name: b, rack: west}]") + \
        "  underlay: {type: routed}\n"
    assert [n.subnet.compressed for n in load_text(text).nodes] == ["192.168.0.0/24", "192.168.1.0/24"]
    more = load_text(text, Overrides(nodes=4))
    assert [n.rack for n in more.nodes] == ["east", "east", "west", "west"]


def test_backend_mapping_follows_flannel():
    cluster = load_text(CLUSTER + "  backend: {type: vxlan, vni: 7, port: 4789, directRouting: true}\n")
    assert (cluster.backend.value, cluster.vni, cluster.vxlan_port) == ("directrouting", 7, 4789)
    plain = load_text(CLUSTER + "  backend: vxlan\n")
    assert (plain.vni, plain.vxlan_port, plain.pod_mtu) == (1, 8472, 1450)
    assert load_text(CLUSTER).pod_mtu == 1500
    assert load_text(CLUSTER, Overrides(backend="directrouting")).backend.value == "directrouting"


def test_routes_between_nodes_per_backend():
    text = CLUSTER.replace("nodes: 3", "nodes: 4") + "  underlay: {type: routed}\n"
    for backend, same_rack, cross_rack in (("host-gw", "direct", "none"), ("vxlan", "vxlan", "vxlan"),
                                          ("directrouting", "direct", "vxlan")):
        cluster = load_text(text, Overrides(backend=backend))
        n0, n1, n2 = cluster.nodes[:3]
        assert cluster.route(n0, n0).kind.value == "local"
        assert cluster.route(n0, n1).kind.value == same_rack, backend
        assert cluster.route(n0, n2).kind.value == cross_rack, backend
    hostgw = load_text(text)
    reason = hostgw.route(hostgw.nodes[0], hostgw.nodes[2]).reason
    assert "not on node-0's subnet 192.168.0.0/24" in reason and "no L2 next hop" in reason
    assert hostgw.underlay_next_hop(hostgw.nodes[0], hostgw.nodes[1]) == hostgw.nodes[1].mac
    assert hostgw.underlay_next_hop(hostgw.nodes[0], hostgw.nodes[2]) == hostgw.underlay.racks[0].gateway_mac


def test_spec_without_cluster_document_uses_defaults():
    cluster = load_text(pod("solo"))
    assert len(cluster.nodes) == 3 and cluster.pods[0].name == "solo"


# --------------------------------------------------------------------------- bad input
BAD = {
    "empty file": ("", None, "", "holds no documents"),
    "only comments": ("# nothing\n---\n", None, "", "holds no documents"),
    "not yaml": ("kind: [Cluster\n", None, "", "not valid YAML at line"),
    "not a mapping": ("- a\n- b\n", 1, "", "must be a mapping"),
    "unknown kind": (spec(CLUSTER, "apiVersion: v1\nkind: Frobnicator\nmetadata: {name: x}\n"), 2, "kind",
                     "unknown kind 'Frobnicator'; allowed: Cluster"),
    "wrong apiVersion": (spec(CLUSTER, "apiVersion: v2\nkind: Pod\nmetadata: {name: x}\n"), 2, "apiVersion",
                         "use apiVersion: v1"),
    "wrong cluster apiVersion": ("apiVersion: k8snet.io/v1\nkind: Cluster\n", 1, "apiVersion",
                                 "use apiVersion: k8snet.io/v1alpha1"),
    "missing kind": ("apiVersion: v1\nmetadata: {name: x}\n", 1, "kind", "required field is missing"),
    "endpoints are computed": (spec(CLUSTER, "apiVersion: v1\nkind: Endpoints\nmetadata: {name: s}\n"), 2,
                               "kind", "computed from Pods and Services"),
    "unknown field in spec": (CLUSTER + "  colour: blue\n", 1, "spec.colour", "unknown field; allowed here:"),
    "unknown field in container": (spec(CLUSTER, deployment(extra="      containers: [{name: c, imag: x}]")),
                                   2, "spec.template.spec.containers.0.imag", "unknown field"),
    "cluster not first": (spec(pod("a"), CLUSTER), 2, "kind", "must be the first document"),
    "pod cidr not a cidr": (CLUSTER + "  podCIDR: 10.244.0.0/33\n", 1, "spec.podCIDR", "not an IPv4 network"),
    "pod cidr host bits": (CLUSTER + "  podCIDR: 10.244.0.1/16\n", 1, "spec.podCIDR", "not an IPv4 network"),
    "pod cidr too small": (CLUSTER + "  podCIDR: 10.244.0.0/25\n", 1, "spec.podCIDR", "too small"),
    "more nodes than subnets": (CLUSTER.replace("nodes: 3", "nodes: 5") + "  podCIDR: 10.244.0.0/22\n",
                                1, "spec.nodes", "holds only 4"),
    "overlapping cidrs": (CLUSTER + "  podCIDR: 192.168.0.0/16\n", 1, "spec.underlay.cidr",
                          "overlaps podCIDR"),
    "overlaps service cidr": (CLUSTER + "  podCIDR: 10.96.0.0/16\n", 1, "spec.podCIDR",
                              "overlaps the Service CIDR"),
    "underlay too small": (CLUSTER + "  underlay: {cidr: 192.168.56.0/29}\n", 1, "spec.underlay.cidr",
                           "has room for 0 node IPs"),
    "duplicate node names": (CLUSTER.replace("nodes: 3", "nodes: [{name: a}, {name: a}]"), 1,
                             "spec.nodes[1].name", "already used"),
    "duplicate pod names": (spec(CLUSTER, pod("x"), pod("x")), 3, "metadata.name", "already used by document 2"),
    "deployment pod clashes with pod": (spec(CLUSTER, pod("web-0"), deployment()), 3, "metadata.name",
                                        "already used"),
    "pod named like a node": (spec(CLUSTER, pod("node-1")), 2, "metadata.name", "also the name of a node"),
    "nodeName does not exist": (spec(CLUSTER, pod("x", "node-9")), 2, "spec.nodeName",
                                "node 'node-9' does not exist; nodes are: node-0, node-1, node-2"),
    "deployment nodeName does not exist": (spec(CLUSTER, deployment(extra="      nodeName: nowhere")), 2,
                                           "spec.template.spec.nodeName", "does not exist"),
    "negative replicas": (spec(CLUSTER, deployment(replicas=-1)), 2, "spec.replicas",
                          "greater than or equal to 0"),
    "replicas not a number": (spec(CLUSTER, deployment(replicas="many")), 2, "spec.replicas",
                              "valid integer"),
    "invalid pod name": (spec(CLUSTER, pod("Web_0")), 2, "metadata.name", "not a valid DNS-1123 subdomain"),
    "invalid namespace": (spec(CLUSTER, pod("x", namespace="a.b")), 2, "metadata.namespace",
                          "not a valid DNS-1123 label"),
    "invalid node name": (CLUSTER.replace("nodes: 3", "nodes: [{name: -bad}]"), 1, "spec.nodes.0.name",
                          "DNS-1123"),
    "unknown backend": (CLUSTER + "  backend: udp\n", 1, "spec.backend", "allowed: host-gw"),
    "unknown underlay": (CLUSTER + "  underlay: {type: mesh}\n", 1, "spec.underlay.type", "allowed: flat"),
    "mtu too small": (CLUSTER + "  underlay: {mtu: 500}\n", 1, "spec.underlay.mtu", "greater than or equal to 1280"),
    "zero nodes": (CLUSTER.replace("nodes: 3", "nodes: 0"), 1, "spec.nodes", "at least 1 node"),
    "nodes neither count nor list": (CLUSTER.replace("nodes: 3", "nodes: many"), 1, "spec.nodes",
                                     "must be a node count"),
    "selector does not match template": (spec(CLUSTER, deployment(selector="{app: api}")), 2,
                                         "spec.template.metadata.labels", "does not match"),
    "missing selector": (spec(CLUSTER, deployment(selector="{}")), 2, "spec.selector.matchLabels", "required"),
    "label value not a string": (spec(CLUSTER, deployment(labels="{app: web, ready: true}")), 2,
                                 "spec.template.metadata.labels.ready", "valid string"),
    "too many pods for a node": (spec(CLUSTER.replace("nodes: 3", "nodes: 1") + "  subnetLen: 29\n",
                                      deployment(replicas=6)), 2, "spec.replicas", "holds 5"),
    "link delay refused": (CLUSTER + "  underlay: {delay: 10ms}\n", 1, "spec.underlay.delay",
                           "needs the kernel's netem qdisc"),
    "link loss of 100 percent": (CLUSTER + "  underlay: {loss: 100}\n", 1, "spec.underlay.loss", "less than 100"),
    "negative link loss": (CLUSTER + "  underlay: {impairments: [{link: node-1, loss: -1}]}\n", 1,
                           "spec.underlay.impairments.0.loss", "greater than or equal to 0"),
    "loss on an unknown link": (CLUSTER + "  underlay: {impairments: [{link: node-7, loss: 1}]}\n", 1,
                                "spec.underlay.impairments[0].link",
                                "no underlay link 'node-7'; links are named by the host at their outer end: "
                                "node-0, node-1, node-2, external, lb"),
    "loss direction unknown": (CLUSTER + "  underlay: {impairments: [{link: node-1, loss: 1, direction: up}]}\n",
                               1, "spec.underlay.impairments.0.direction", "allowed: both, egress"),
    "loss given twice for one way": (CLUSTER + "  underlay: {impairments: [{link: lb, loss: 1}, "
                                     "{link: lb, loss: 2, direction: ingress}]}\n", 1,
                                     "spec.underlay.impairments[1].direction",
                                     "lb's ingress loss is already set by spec.underlay.impairments[0]"),
    "loss without a link": (CLUSTER + "  underlay: {impairments: [{loss: 1}]}\n", 1,
                            "spec.underlay.impairments.0.link", "required field is missing"),
    "bandwidth not positive": (CLUSTER + "  underlay: {bandwidth: 0}\n", 1, "spec.underlay.bandwidth",
                               "greater than 0"),
    "racks on a flat underlay": (CLUSTER + "  underlay: {racks: 2}\n", 1, "spec.underlay.racks",
                                 "need a routed underlay"),
    "more racks than nodes": (CLUSTER + "  underlay: {type: routed, racks: 4}\n", 1, "spec.underlay.racks",
                              "would leave a rack empty"),
    "routed node without rack": (CLUSTER.replace("nodes: 3", "nodes: [{name: a, rack: r1}, {name: b}]")
                                 + "  underlay: {type: routed}\n", 1, "spec.nodes[1].rack", "needs a rack"),
    "racks count disagrees with names": (CLUSTER.replace("nodes: 3", "nodes: [{name: a, rack: r1}, {name: b, rack: r2}]")
                                         + "  underlay: {type: routed, racks: 3}\n", 1, "spec.underlay.racks",
                                         "the nodes name 2"),
    "routed cidr too small for racks": (CLUSTER + "  underlay: {type: routed, cidr: 192.168.0.0/24}\n", 1,
                                        "spec.underlay.rackSubnetLen", "do not fit"),
    "routed cidr holds too few racks": (CLUSTER + "  underlay: {type: routed, racks: 2, cidr: 192.168.0.0/23}\n",
                                        1, "spec.underlay.cidr", "need 3"),
    "node named like the core router": (CLUSTER.replace("nodes: 3", "nodes: [{name: core}, {name: b}]")
                                        + "  underlay: {type: routed}\n", 1, "spec.nodes[0].name",
                                        "name of an underlay host"),
    "vni out of range": (CLUSTER + "  backend: {type: vxlan, vni: 0}\n", 1, "spec.backend.vni",
                         "greater than or equal to 1"),
    "vxlan port out of range": (CLUSTER + "  backend: {type: vxlan, port: 70000}\n", 1, "spec.backend.port",
                                "less than or equal to 65535"),
    "backend neither name nor mapping": (CLUSTER + "  backend: 7\n", 1, "spec.backend",
                                         "must be a backend name"),
    "backend mapping with unknown field": (CLUSTER + "  backend: {type: vxlan, mtu: 9000}\n", 1,
                                           "spec.backend.mtu", "unknown field; allowed here: asNumber, directRouting"),
    "missing pod name": (spec(CLUSTER, "apiVersion: v1\nkind: Pod\nmetadata: {}\n"), 2, "metadata.name",
                         "required field is missing"),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_input_names_document_field_and_fix(case: str):
    text, doc, field, needle = BAD[case]
    with pytest.raises(SpecError) as info:
        load_text(text)
    problems = info.value.problems
    matching = [p for p in problems if p.doc == doc and p.field == field and needle in p.message]
    assert matching, f"no problem at document {doc}, field {field!r} mentioning {needle!r}: {problems}"
    assert str(matching[0]).startswith("spec" if doc is None else f"document {doc}")


def test_all_problems_are_reported_at_once():
    text = spec(CLUSTER, pod("Bad_Name"), pod("x", "node-9"))
    with pytest.raises(SpecError) as info:
        load_text(text)
    fields = {(p.doc, p.field) for p in info.value.problems}
    assert (2, "metadata.name") in fields


def test_bad_command_line_override():
    with pytest.raises(SpecError) as info:
        load_text(default_spec_text(), Overrides(backend="udp"))
    assert "--backend" in str(info.value) and "allowed: host-gw, vxlan, directrouting" in str(info.value)
    with pytest.raises(SpecError):
        load_text(default_spec_text(), Overrides(nodes=0))
