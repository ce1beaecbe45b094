"""Every flow's cookie reads as the Kubernetes object it is about (controllers/cookies.py)."""

from __future__ import annotations

import pytest

from controllers import cookies
from controllers.compiler import compile_node
from controllers.pipeline import Feature, cookie, with_generation
from k8snet import cli
from topos.specs import embedded_specs, load


@pytest.mark.parametrize("name", embedded_specs())
def test_every_compiled_flow_names_its_object(name):
    cluster = load(name)
    known = cookies.names(cluster)
    assert len(set(known.values())) == len(known)  # no two objects read alike
    for node in cluster.nodes:
        for flow in compile_node(cluster, node.name).flows:
            assert cookies.key(flow.cookie) in known, (node.name, flow.ofctl())


def test_what_the_names_say():
    cluster = load("three-tier")
    say = lambda value: cookies.describe(cluster, with_generation(value, 7))
    from controllers.policy import rule_cookie
    from controllers.services import service_object

    db = next(p for p in cluster.policies if p.key == "shop/db")
    assert say(rule_cookie(db, "ingress", 0)) == "NetworkPolicy shop/db ingress[0]"
    assert say(cookie(Feature.SERVICES, service_object(cluster.service("api", "shop")))) == "Service shop/api"
    node = cluster.nodes[1]
    assert say(cookie(Feature.HOSTGW, cookies.zlib.crc32(f"node/{node.name}".encode()))) == \
        f"host-gw route to {node.name}'s pods ({node.pod_cidr})"
    assert say(cookie(Feature.SERVICES, 12345)).endswith("not in this cluster (stale?)")
    assert say(0x42 << 56).startswith("not k8snet's")


def test_k8snet_flows_explain_puts_a_comment_before_each_object(capsys):
    assert cli.main(["flows", "three-tier", "--node", "node-2", "--explain"]) == 0
    lines = capsys.readouterr().out.splitlines()
    comments = [line for line in lines if line.startswith("#")]
    assert "# Service shop/db" in comments and "# NetworkPolicy shop/db ingress[0]" in comments
    flows = [line for line in lines if not line.startswith("#")]
    assert flows and all(line.startswith("cookie=") for line in flows)
    # Without --explain: the same flows, the node's header the only comment.
    assert cli.main(["flows", "three-tier", "--node", "node-2"]) == 0
    plain = capsys.readouterr().out.splitlines()
    assert [line for line in plain if not line.startswith("#")] == flows
