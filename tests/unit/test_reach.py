"""The matrix a backend predicts, and the expectations a test can state about it (pure)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from k8snet.model.apply import apply_text
from k8snet.model.manifests import Overrides
from k8snet.model.reach import Pair, expectation, mismatch_line, pairs, port_pairs, verdict
from topos.specs import load_file


def racks(backend: str):
    return load_file("racks", Overrides(backend=backend))


def test_pairs_and_predictions_follow_the_backend():
    hostgw, vxlan = pairs(racks("host-gw")), pairs(racks("vxlan"))
    assert len(hostgw) == len(vxlan) == 4 * 3 + 2 * 4 * 4
    assert all(p.predicted for p in vxlan)
    lost = {p.id for p in hostgw if not p.predicted}
    assert "web-0->web-2" in lost and "web-0->web-1" not in lost and "node-3->web-0" in lost
    assert len(lost) == 24
    assert next(p for p in hostgw if p.id == "web-0->web-2").reason.startswith("host-gw needs node-0 and node-2")


@pytest.mark.parametrize("expected, same_rack, across", [
    ("all", True, True), (True, True, True), (False, False, False), ("predicted", True, False),
    ({"*-[01]->*-[23]": False, "*-[23]->*-[01]": False}, True, False),
    ({("web-0", "web-2"): False}, True, False),
    (lambda pair: pair.src == "web-0", True, True),
])
def test_expectations(expected, same_rack, across):
    by_id = {p.id: p for p in pairs(racks("host-gw"))}
    wanted = expectation(expected)
    assert wanted(by_id["web-0->web-1"]) is same_rack
    assert wanted(by_id["web-0->web-2"]) is across


def test_the_last_matching_rule_wins_and_unnamed_pairs_take_the_default():
    pair = Pair("web-0", "web-2", "10.244.2.2", "pod-pod-cross-node", True)
    assert expectation({"web-*->*": False, "*->web-2": True})(pair) is True
    assert expectation({"*->web-2": True, "web-*->*": False})(pair) is False
    assert expectation({"node-*->*": False}, default=False)(pair) is False


@pytest.mark.parametrize("bad", ["everything", {"web-0": True}, {"a->b": "yes"}, 3])
def test_unusable_expectations_are_refused_with_the_choices(bad):
    with pytest.raises(ValueError, match="expected"):
        expectation(bad)


def test_a_mismatch_says_what_was_expected_what_happened_and_why():
    pair = Pair("web-0", "web-2", "10.244.2.2", "pod-pod-cross-node", False, "host-gw needs one segment")
    assert mismatch_line(pair, True, False, "0 of 2 answered") == (
        "web-0 -> web-2 [pod-pod-cross-node, 10.244.2.2]: expected reachable, was unreachable (0 of 2 answered); "
        "predicted unreachable: host-gw needs one segment")


def test_every_declared_port_of_a_destination_pod_is_a_probe_with_its_own_verdict():
    """The three-tier example: ping says nothing about ports when a policy names ports, so
    each declared port of a destination pod is predicted on its own."""
    cluster = load_file("three-tier")
    probes = {p.id: p for p in port_pairs(cluster)}
    # Destinations: 7 pods, each asked by the 6 other pods and the 3 nodes, per declared port
    # (frontend 80, api 8080, db 5432, kube-dns 53 TCP and UDP; the client declares none).
    assert len(probes) == 9 * (2 + 2 + 1 + 2)
    allowed = {i for i, p in probes.items() if p.predicted}
    assert "frontend-0.shop->api-1.shop:8080/tcp" in allowed
    assert "api-0.shop->db.shop:5432/tcp" in allowed
    assert "client->frontend-1.shop:80/tcp" in allowed          # public on its http port
    assert "db.shop->kube-dns.kube-system:53/udp" in allowed     # DNS egress allowed
    assert "node-1->api-0.shop:8080/tcp" in allowed             # a pod's own node: never judged
    for denied in ("client->api-0.shop:8080/tcp", "frontend-0.shop->db.shop:5432/tcp",
                   "api-0.shop->frontend-1.shop:80/tcp", "node-0->api-0.shop:8080/tcp"):
        assert denied not in allowed and probes[denied].denied_by.startswith("NetworkPolicy: "), denied
    assert len(allowed) == 37
    assert probes["client->db.shop:5432/tcp"].denied_by.endswith("allows default/client on 5432/TCP")
    rule = verdict(cluster, probes["api-1.shop->db.shop:5432/tcp"].pair, 5432, "TCP")
    assert rule.as_dict()["deciding"] == "shop/db ingress[0]"
    # Ping from api to db is denied (the rule names a port), the port is not.
    assert not next(p for p in pairs(cluster) if p.id == "api-1.shop->db.shop").predicted


def test_a_port_keeps_the_route_reason_where_the_backend_cannot_carry_the_pair():
    cluster = load_file("racks", Overrides(backend="host-gw"))
    cluster = apply_text(cluster, "apiVersion: v1\nkind: Pod\nmetadata: {name: srv}\nspec: {nodeName: node-3, "
                                  "containers: [{name: c, ports: [{containerPort: 80}, {containerPort: 80, "
                                  "protocol: UDP}]}]}\n")
    probes = {p.id: p for p in port_pairs(cluster)}
    across = probes["web-0->srv:80/udp"]
    assert not across.predicted and across.required and across.reason.startswith("host-gw needs")
    assert probes["web-2->srv:80/tcp"].predicted


def test_a_cell_sums_up_ping_and_ports():
    from k8snet.check import _cell

    def icmp(reachable, predicted, required=True):
        """A ping or a port probe: both are judged the same way (topos.probe.Judged)."""
        return SimpleNamespace(reachable=reachable, as_predicted=reachable == predicted,
                               expected=SimpleNamespace(required=required))

    port = icmp

    assert "✓" in _cell([icmp(True, True), port(True, True)]) and "!" not in _cell([icmp(True, True)])
    assert "⊘" in _cell([icmp(False, False, False), port(False, False, False)])
    assert "◐" in _cell([icmp(False, False, False), port(True, True)])
    assert "✗!" in _cell([icmp(False, False, False), port(False, True)])
    assert "✓!" in _cell([icmp(True, False, False), port(True, True)])
    assert "[red]✗" in _cell([icmp(False, False), port(False, False)])   # carried by nothing: not a policy
