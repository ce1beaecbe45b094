"""NetworkPolicy flows traced through OVS itself (``ofproto/trace``, no traffic): the
conjunctive layout, the own-node exemption, egress and ingress, and the stateful bypass.

The model is the e2e one of tests/unit/test_policy.py; on node-0 live x/a, y/a and z/a.
Every verdict asserted here is also asked of the evaluator, so flows and prediction are
checked against each other, not against a number written twice.
"""

from __future__ import annotations

import pytest

from controllers.compiler import compile_node
from controllers.pipeline import POLICY_INGRESS
from k8snet.model.apply import apply_text
from k8snet.model.policy_eval import evaluate
from tests.helpers import FlowSim
from tests.unit.test_policy import BASE, policy

CLUSTER = apply_text(BASE, "---\n".join([
    policy("podSelector: {}", "deny-all"),
    policy("""
        podSelector: {matchLabels: {pod: a}}
        ingress:
        - from: [{namespaceSelector: {matchLabels: {ns: y}}}, {podSelector: {matchLabels: {pod: c}}}]
          ports: [{port: 80}, {protocol: UDP, port: 5000, endPort: 5010}]
    """, "a-from-y"),
    policy("""
        podSelector: {matchLabels: {pod: a}}
        policyTypes: [Egress]
        egress: [{to: [{namespaceSelector: {matchLabels: {ns: y}}}], ports: [{port: serve-81-tcp}]}]
    """, "a-to-y", namespace="z"),
]))
XA, YA, ZA = CLUSTER.pod("a", "x"), CLUSTER.pod("a", "y"), CLUSTER.pod("a", "z")
NODE = CLUSTER.node(XA.node)
assert XA.node == YA.node == ZA.node


@pytest.fixture(scope="module")
def sim():
    with FlowSim() as s:
        s.load(CLUSTER, NODE.name, compile_node(CLUSTER, NODE.name))
        yield s


def packet(src, dst, proto: str, port: int) -> str:
    l4 = f"{proto},{proto}_src=40000,{proto}_dst={port}" if proto in ("tcp", "udp") else "icmp"
    return (f"in_port={src.ofport},dl_src={src.mac},dl_dst={NODE.gateway_mac},{l4},nw_src={src.ip},"
            f"nw_dst={dst.ip},nw_ttl=64")


@pytest.mark.parametrize("src, dst, proto, port", [
    (YA, XA, "tcp", 80), (YA, XA, "tcp", 81), (ZA, XA, "tcp", 80), (YA, XA, "udp", 5004), (YA, XA, "udp", 5011),
    (YA, XA, "icmp", 0), (ZA, YA, "tcp", 81), (ZA, YA, "tcp", 80), (ZA, XA, "tcp", 81), (XA, YA, "tcp", 80),
], ids=lambda v: getattr(v, "name", None) and f"{v.namespace}/{v.name}")
def test_a_new_connection_gets_what_the_evaluator_predicts(sim, src, dst, proto, port):
    verdict = evaluate(CLUSTER, src, dst, port if proto != "icmp" else None, proto.upper())
    trace = sim.trace(packet(src, dst, proto, port))
    assert trace.outputs == ([f"output:{dst.ofport}"] if verdict.allowed else []), (str(verdict), trace.text)
    if verdict.allowed:
        # Committed once judged, so its replies are replies.
        assert "ct(commit,zone=1" in trace.text


def test_the_rule_is_one_conjunction_of_peers_and_ports(sim):
    flows = [line for line in sim.dump() if "conjunction(" in line and f"table={POLICY_INGRESS}," in line]
    # a-from-y: 3 pods of y + x/c as peers (clause 1), TCP 80 and UDP 5000-5010 (clause 2):
    # 4 + 1 + 2 flows (5000-5007, 5008-5010 as masks: 0x1388/0xfff8, 0x1390/0xfffe, 5010).
    peers = [l for l in flows if ",1/2)" in l]
    ports = [l for l in flows if ",2/2)" in l]
    assert len(peers) == 4 and len(ports) == 1 + 3, flows
    assert len({line.rsplit("conjunction(", 1)[1].split(",")[0] for line in flows}) == 1
    assert any("conj_id=" in line and f"table={POLICY_INGRESS}," in line for line in sim.dump())


def test_established_packets_and_replies_pass_without_being_judged(sim):
    denied = packet(ZA, XA, "tcp", 81)
    assert sim.trace(denied).outputs == []
    assert sim.trace(denied, "trk,est").outputs == [f"output:{XA.ofport}"]
    assert sim.trace(denied, "trk,est,rpl").outputs == [f"output:{XA.ofport}"]


def test_a_pods_own_node_always_reaches_it(sim):
    from_node = (f"in_port=LOCAL,dl_src={NODE.mac},dl_dst={NODE.gateway_mac},tcp,tcp_src=40000,tcp_dst=9999,"
                 f"nw_src={NODE.ip},nw_dst={XA.ip},nw_ttl=64")
    assert evaluate(CLUSTER, NODE.ip, XA, 9999).allowed
    assert sim.trace(from_node).outputs == [f"output:{XA.ofport}"]


def test_without_policies_the_tables_pass_everything_and_commit_nothing():
    with FlowSim() as s:
        s.load(BASE, NODE.name, compile_node(BASE, NODE.name))
        trace = s.trace(packet(ZA, XA, "tcp", 81))
        assert trace.outputs == [f"output:{XA.ofport}"] and "ct(" not in trace.text
