"""Flow data, the compiler's invariants, the change plan, and the os-ken rendering."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from controllers import framework, pipeline  # noqa: F401  (framework: the NXM conntrack tuple fields)
from controllers.compiler import compile_cluster, compile_node
from controllers.changes import plan
from controllers.flows import (
    OFPP_LOCAL, Bucket, Ct, DecTtl, Desired, Flow, Group, Match, Move, Nat, Output, SetField, flow_mod,
    group_mod,
)
from k8snet.model.manifests import Overrides, load_text
from topos.specs import default_spec_text, load_file


@pytest.fixture
def cluster():
    return load_text(default_spec_text())


def datapath() -> SimpleNamespace:
    """Only what os-ken's message classes read: the protocol modules and an xid."""
    dp = SimpleNamespace(ofproto=ofp, ofproto_parser=parser, id=1)
    dp.set_xid = lambda msg: setattr(msg, "xid", 7)
    return dp


def test_match_renders_ofctl_names_and_osken_tuples():
    m = Match.of(in_port=OFPP_LOCAL, eth_type=0x0800, ipv4_dst="10.244.1.0/24", reg0="0x1/0xf")
    assert m.ofctl() == "eth_type=0x0800,in_port=LOCAL,nw_dst=10.244.1.0/24,reg0=0x1/0xf"
    assert m.osken_kwargs()["ipv4_dst"] == ("10.244.1.0", "255.255.255.0")
    assert m.osken_kwargs()["reg0"] == (1, 0xF)


def test_flow_text_and_identity():
    f = Flow(2, 180, Match.of(eth_type=0x0800, ipv4_dst="10.244.1.0/24"),
             (SetField("eth_dst", "02:00:00:00:00:01"), DecTtl(), Output(1)), cookie=0x20000000000000a)
    assert f.ofctl() == ("cookie=0x20000000000000a,table=2,priority=180,eth_type=0x0800,nw_dst=10.244.1.0/24 "
                         "actions=set_field:02:00:00:00:00:01->eth_dst,dec_ttl,output:1")
    same_key = Flow(2, 180, Match.of(ipv4_dst="10.244.1.0/24", eth_type=0x0800), (Output(3),))
    assert same_key.key == f.key


def test_every_node_gets_a_drop_miss_in_every_table_and_unique_keys(cluster):
    for name, desired in compile_cluster(cluster).items():
        misses = {f.table for f in desired.flows if f.priority == 0 and not f.match.fields}
        assert misses == {t.id for t in pipeline.TABLES}, name
        assert len(desired.flows_by_key()) == len(desired.flows)


def test_cookies_carry_feature_and_no_generation(cluster):
    desired = compile_node(cluster, "node-0")
    features = {f.cookie >> pipeline.FEATURE_SHIFT for f in desired.flows}
    assert features == {pipeline.Feature.PODNET, pipeline.Feature.HOSTGW, pipeline.Feature.NODE_ROUTES}
    assert all(pipeline.generation_of(f.cookie) == 0 for f in desired.flows)
    stamped = pipeline.with_generation(desired.flows[0].cookie, 0xBEEF)
    assert pipeline.generation_of(stamped) == 0xBEEF
    assert stamped >> pipeline.FEATURE_SHIFT == desired.flows[0].cookie >> pipeline.FEATURE_SHIFT


def by_feature(desired, feature):
    return [f for f in desired.flows if f.cookie >> pipeline.FEATURE_SHIFT == feature]


def peer_routes(desired):
    """Node routes to peers (per-peer cookie object), not the blackholes and default route."""
    return [f for f in by_feature(desired, pipeline.Feature.NODE_ROUTES) if f.cookie & pipeline.OBJECT_MASK]


def test_hostgw_has_one_route_per_peer_pod_cidr_and_node(cluster):
    desired = compile_node(cluster, "node-0")
    hostgw = by_feature(desired, pipeline.Feature.HOSTGW)
    assert sorted(str(f.match.get("ipv4_dst")) for f in hostgw) == ["10.244.1.0/24", "10.244.2.0/24"]
    nodes = peer_routes(desired)
    assert sorted(str(f.match.get("ipv4_dst")) for f in nodes) == ["192.168.56.11", "192.168.56.12"]
    peer = cluster.node("node-1")
    route = next(f for f in hostgw if f.match.get("ipv4_dst") == "10.244.1.0/24")
    assert SetField("eth_dst", peer.mac) in route.actions and DecTtl() in route.actions


ROUTED = """\
apiVersion: k8snet.io/v1alpha1
kind: Cluster
spec:
  nodes: 4
  backend: BACKEND
  underlay: {type: routed, racks: 2}
"""


@pytest.mark.parametrize("backend,direct,tunnelled", [
    ("host-gw", ["10.244.1.0/24"], []),
    ("vxlan", [], ["10.244.1.0/24", "10.244.2.0/24", "10.244.3.0/24"]),
    ("directrouting", ["10.244.1.0/24"], ["10.244.2.0/24", "10.244.3.0/24"]),
])
def test_routed_underlay_routes_per_backend(backend, direct, tunnelled):
    cluster = load_text(ROUTED.replace("BACKEND", backend))
    desired = compile_node(cluster, "node-0")
    assert sorted(f.match.get("ipv4_dst") for f in by_feature(desired, pipeline.Feature.HOSTGW)) == direct
    vx = by_feature(desired, pipeline.Feature.VXLAN)
    routes = [f for f in vx if f.table == pipeline.L3_FORWARDING]
    assert sorted(f.match.get("ipv4_dst") for f in routes) == tunnelled
    for f in routes:
        peer = next(n for n in cluster.nodes if str(n.pod_cidr) == f.match.get("ipv4_dst"))
        assert SetField("tun_ipv4_dst", str(peer.ip)) in f.actions and SetField("tunnel_id", 1) in f.actions
    decap = [f for f in vx if f.table == pipeline.CLASSIFIER]
    assert len(decap) == (1 if tunnelled else 0)
    # Peer node IPs: straight to node-1 (same rack), via rack-0's gateway to the others.
    gw = cluster.underlay.racks[0].gateway_mac
    hops = {f.match.get("ipv4_dst"): next(a.value for a in f.actions if getattr(a, "name", "") == "eth_dst")
            for f in peer_routes(desired)}
    assert hops == {"192.168.0.11": cluster.nodes[1].mac, "192.168.1.10": gw, "192.168.1.11": gw}


def test_compilation_is_pure_and_deterministic(cluster):
    assert compile_node(cluster, "node-1") == compile_node(cluster, "node-1")


def test_plan_orders_deletes_groups_adds_and_skips_unchanged(cluster):
    old = compile_node(cluster, "node-0")
    bigger = load_text(default_spec_text(), Overrides(pods_per_node=3))
    new = compile_node(bigger, "node-0")
    changes = plan(old, new)
    assert not changes.flow_deletes
    assert changes.flow_adds and all(f not in old.flows for f in changes.flow_adds)
    back = plan(new, old)
    assert back.flow_deletes and not back.flow_adds
    assert len(plan(old, old)) == 0
    g1 = Group(1, "select", (Bucket((Output(1),)),))
    g1b = Group(1, "select", (Bucket((Output(2),)),))
    g2 = Group(2, "select", (Bucket((Output(1),)),))
    p = plan(Desired(groups=(g1, g2)), Desired(groups=(g1b,)))
    assert p.group_modifies == [g1b] and p.group_deletes == [g2] and not p.group_adds


def test_changed_actions_are_re_added_not_deleted(cluster):
    f = Flow(0, 10, Match.of(in_port=1), (Output(2),))
    g = Flow(0, 10, Match.of(in_port=1), (Output(3),))
    p = plan(Desired(flows=(f,)), Desired(flows=(g,)))
    assert p.flow_adds == [g] and p.flow_deletes == []


def test_duplicate_keys_are_rejected():
    f = Flow(0, 10, Match.of(in_port=1), (Output(2),))
    with pytest.raises(ValueError, match="share table/priority/match"):
        Desired(flows=(f, Flow(0, 10, Match.of(in_port=1), (Output(3),)))).flows_by_key()


@pytest.mark.parametrize("spec, backend", [("services", "host-gw"), ("services", "vxlan"),
                                           ("racks", "directrouting")])
def test_what_the_switch_receives_is_what_the_ofctl_text_says(spec, backend):
    """Matches *and* actions: every flow of a node, rendered through os-ken into OpenFlow
    1.3 bytes and decoded by OVS itself (``ovs-ofctl ofp-print``), reads exactly as OVS's
    own encoding of the ofctl text the flow tests load (``ovs-ofctl parse-flows``) --
    Services, learn, multipath, conntrack tuple fields and VXLAN included."""
    import dataclasses
    import re
    import subprocess

    assert_switch_receives_the_ofctl_text(load_file(spec, Overrides(backend=backend)))


def test_what_the_switch_receives_with_network_policies():
    """The same for NetworkPolicy's conjunctive matches, port ranges and commit."""
    from k8snet.model.apply import apply_text
    from tests.unit.test_policy import BASE, policy

    cluster = apply_text(BASE, policy("""
        podSelector: {matchLabels: {pod: a}}
        ingress:
        - from: [{namespaceSelector: {matchLabels: {ns: y}}}, {ipBlock: {cidr: 10.0.0.0/8, except: [10.244.2.0/24]}}]
          ports: [{port: 80}, {protocol: UDP, port: 80, endPort: 90}, {port: serve-81-tcp}]
        egress:
        - to: [{podSelector: {matchLabels: {pod: b}}}]
          ports: [{port: serve-80-udp, protocol: UDP}]
    """))
    flows = assert_switch_receives_the_ofctl_text(cluster, cluster.pod("a", "x").node)
    assert any("conjunction(" in f.action_text() for f in flows)


def assert_switch_receives_the_ofctl_text(cluster, node=None):
    import dataclasses
    import re
    import subprocess

    flows = [dataclasses.replace(f, cookie=0) for f in compile_node(cluster, node or cluster.nodes[0].name).flows]
    assert len(flows) > 30
    dp = datapath()
    decoded = []
    for flow in flows:
        msg = flow_mod(dp, flow, "add")
        msg.serialize()
        decoded.append(subprocess.run(["ovs-ofctl", "ofp-print", bytes(msg.buf).hex()], capture_output=True,
                                      text=True, timeout=10, check=True).stdout.strip())
    text = "".join(f.ofctl() + "\n" for f in flows)
    parsed = subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "parse-flows", "/dev/stdin"], input=text,
                            capture_output=True, text=True, timeout=30, check=True).stdout
    expected = [line for line in parsed.splitlines() if line.startswith("OFPT_FLOW_MOD")]
    normal = lambda line: re.sub(r"\(xid=0x[0-9a-f]+\)", "", line).strip()  # noqa: E731
    assert sorted(map(normal, decoded)) == sorted(map(normal, expected))
    return flows


def test_every_compiled_flow_serializes_as_openflow_13(cluster):
    """Render through os-ken and parse the bytes back: what the switch would receive."""
    dp = datapath()
    for desired in compile_cluster(cluster).values():
        for flow in desired.flows:
            msg = flow_mod(dp, flow, "add", cookie=flow.cookie | 0x1234 << 32)
            msg.serialize()
            back = parser.OFPFlowMod.parser(dp, ofp.OFP_VERSION, ofp.OFPT_FLOW_MOD, len(msg.buf),
                                             0, bytes(msg.buf))
            assert back.table_id == flow.table and back.priority == flow.priority
            assert back.cookie == flow.cookie | 0x1234 << 32
            assert dict(back.match.items()) == dict(parser.OFPMatch(**flow.match.osken_kwargs()).items())
            delete = flow_mod(dp, flow, "delete_strict")
            delete.serialize()
            assert delete.command == ofp.OFPFC_DELETE_STRICT and not delete.instructions


def test_move_and_group_render():
    assert Move("eth_src", "eth_dst").ofctl() == "move:eth_src[]->eth_dst[]"
    assert Move("ipv4_src", "arp_tpa").ofctl() == "move:nw_src[]->arp_tpa[]"
    dp = datapath()
    msg = group_mod(dp, Group(5, "select", (Bucket((Output(1),)), Bucket((Output(2),), 50))), "add")
    msg.serialize()
    import subprocess

    printed = subprocess.run(["ovs-ofctl", "ofp-print", bytes(msg.buf).hex()], capture_output=True, text=True,
                             timeout=10, check=True).stdout
    assert "weight:100,actions=output:1" in printed and "weight:50,actions=output:2" in printed, printed
    assert Group(5, "select", (Bucket((Output(1),)),)).ofctl() == \
        "group_id=5,type=select,bucket=weight:100,actions=output:1"


@pytest.mark.parametrize("nat", [Nat(), Nat("dst", "10.244.1.2", 8080), Nat("dst", "10.244.1.2"),
                                 Nat("src", "10.244.0.1")])
def test_ct_nat_serializes_as_ovs_expects(nat):
    """OVS itself decodes the bytes (os-ken leaves NAT padding out; we add it)."""
    import subprocess

    dp = datapath()
    group = Group(5, "select", (Bucket((Ct(zone=1, table=5, commit=True, nat=nat),)),))
    msg = group_mod(dp, group, "add")
    msg.serialize()
    out = subprocess.run(["ovs-ofctl", "ofp-print", bytes(msg.buf).hex()], capture_output=True, text=True,
                         timeout=10)
    assert "decode error" not in out.stdout + out.stderr, out.stdout + out.stderr
    assert nat.ofctl() in out.stdout.replace(":8080", ":8080"), out.stdout
    # (OVS accepts a NAT with an address only in a committing ct)
    flow = Flow(3, 100, Match.of(eth_type=0x0800), (Ct(zone=1, table=4, commit=bool(nat.kind), nat=nat),))
    fm = flow_mod(dp, flow, "add")
    fm.serialize()
    out = subprocess.run(["ovs-ofctl", "ofp-print", bytes(fm.buf).hex()], capture_output=True, text=True,
                         timeout=10)
    assert "decode error" not in out.stdout + out.stderr and "ct(" in out.stdout, out.stdout


def test_expired_affinity_judges_by_age_and_service():
    from controllers.app import expired_affinity

    entry = lambda cookie, age: SimpleNamespace(cookie=cookie, duration_sec=age)
    day = 0x0500000000ABCDEF
    entries = [entry(day, 86399), entry(day, 86400), entry(0x0500000000000001, 999999)]
    assert expired_affinity(entries, {0xABCDEF: 86400}) == [entries[1]]


def test_affinity_learn_uses_hard_timeout_only_when_openflow_can_hold_it():
    from controllers.services import affinity_learn
    from k8snet.model.cluster import Service, ServicePort

    port = ServicePort(name="p", protocol="UDP", port=53, target_port=53)
    short = affinity_learn(Service(name="s", session_affinity="ClientIP", affinity_timeout=30), port, 7)
    long = affinity_learn(Service(name="s", session_affinity="ClientIP", affinity_timeout=86400), port, 7)
    assert (short.hard_timeout, long.hard_timeout) == (30, 0)
    assert "nw_src[],reg2[]" in short.ofctl() and "load:udp_src[]->reg5[0..15]" in short.ofctl()
