"""NetworkPolicy: documents -> model, and the evaluator against hand-written truth tables.

The model is sig-network's e2e one (``test/e2e/network/netpol``): namespaces x, y, z,
pods a, b, c in each, servers on 80 and 81 over TCP and UDP with ports named
``serve-80-tcp`` and so on.  A truth table is drawn as the e2e suite prints it: a row per
source, a column per destination, ``.`` allowed, ``X`` denied, ``-`` a pod to itself
(not judged), in the order x/a x/b x/c y/a y/b y/c z/a z/b z/c.
"""

from __future__ import annotations

import ipaddress
import textwrap

import pytest

from k8snet.model.apply import apply_text
from k8snet.model.manifests import load_text
from k8snet.model.policy import NAME_LABEL
from k8snet.model.policy_eval import endpoint, evaluate, truth_table

NAMESPACES = ("x", "y", "z")
PODS = ("a", "b", "c")


def model_spec() -> str:
    docs = ["apiVersion: k8snet.io/v1alpha1\nkind: Cluster\nmetadata: {name: netpol}\nspec: {nodes: 3}\n"]
    for ns in NAMESPACES:
        docs.append(f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}, labels: {{ns: {ns}}}}}\n")
    ports = ", ".join(f"{{name: serve-{p}-{proto.lower()}, containerPort: {p}, protocol: {proto}}}"
                      for p in (80, 81) for proto in ("TCP", "UDP"))
    for ns in NAMESPACES:
        for pod in PODS:
            docs.append(f"apiVersion: v1\nkind: Pod\nmetadata: {{name: {pod}, namespace: {ns}, "
                        f"labels: {{pod: {pod}}}}}\nspec: {{containers: [{{name: c, ports: [{ports}]}}]}}\n")
    return "---\n".join(docs)


BASE = load_text(model_spec())


def policy(body: str, name: str = "p", namespace: str = "x") -> str:
    return (f"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}, "
            f"namespace: {namespace}}}\nspec:\n" + textwrap.indent(textwrap.dedent(body).strip("\n"), "  ") + "\n")


def with_policies(*docs: str):
    return apply_text(BASE, "---\n".join(docs))


def grid(cluster, port=80, protocol="TCP") -> str:
    order = [f"{ns}/{p}" for ns in NAMESPACES for p in PODS]
    table = truth_table(cluster, port, protocol)
    rows = []
    for src in order:
        rows.append("".join("-" if src == dst else "." if table[(src, dst)].allowed else "X" for dst in order))
    return "\n".join(rows)


def expect(text: str) -> str:
    return "\n".join(line.split()[-1] for line in textwrap.dedent(text).strip().splitlines())


ALL = expect("""
    x/a -........
    x/b .-.......
    x/c ..-......
    y/a ...-.....
    y/b ....-....
    y/c .....-...
    z/a ......-..
    z/b .......-.
    z/c ........-
""")

DENY_ALL_INGRESS_X = policy("podSelector: {}")


def test_no_policy_allows_everything_and_the_namespaces_carry_their_name_label():
    assert grid(BASE) == ALL
    assert BASE.namespace("x").labels == {"ns": "x", NAME_LABEL: "x"}
    assert BASE.namespace("nowhere").labels == {NAME_LABEL: "nowhere"}  # implicit
    assert [n.name for n in BASE.all_namespaces()] == ["default", "x", "y", "z"]


CASES = {
    # Deny all ingress to x: every column of x is denied (from x too).
    "deny all ingress in x": ((DENY_ALL_INGRESS_X,), 80, "TCP", """
        x/a -XX......
        x/b X-X......
        x/c XX-......
        y/a XXX-.....
        y/b XXX.-....
        y/c XXX..-...
        z/a XXX...-..
        z/b XXX....-.
        z/c XXX.....-
    """),
    # An empty rule allows everything; policies add up.
    "deny all plus allow all": ((DENY_ALL_INGRESS_X, policy("podSelector: {}\ningress: [{}]", "open")), 80, "TCP",
                                ALL),
    # podSelector alone: pods of the policy's own namespace.
    "x/a from pod b (same namespace only)": ((policy("""
        podSelector: {matchLabels: {pod: a}}
        ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}]}]
    """),), 80, "TCP", """
        x/a -........
        x/b .-.......
        x/c X.-......
        y/a X..-.....
        y/b X...-....
        y/c X....-...
        z/a X.....-..
        z/b X......-.
        z/c X.......-
    """),
    "x/a from namespace y": ((policy("""
        podSelector: {matchLabels: {pod: a}}
        ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}}]}]
    """),), 80, "TCP", """
        x/a -........
        x/b X-.......
        x/c X.-......
        y/a ...-.....
        y/b ....-....
        y/c .....-...
        z/a X.....-..
        z/b X......-.
        z/c X.......-
    """),
    # Both selectors in one peer: AND.
    "x/a from pod b in namespace y": ((policy("""
        podSelector: {matchLabels: {pod: a}}
        ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}, podSelector: {matchLabels: {pod: b}}}]}]
    """),), 80, "TCP", """
        x/a -........
        x/b X-.......
        x/c X.-......
        y/a X..-.....
        y/b ....-....
        y/c X....-...
        z/a X.....-..
        z/b X......-.
        z/c X.......-
    """),
    # Two peers: OR.
    "x/a from namespace y or pod b": ((policy("""
        podSelector: {matchLabels: {pod: a}}
        ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}}, {podSelector: {matchLabels: {pod: b}}}]}]
    """),), 80, "TCP", """
        x/a -........
        x/b .-.......
        x/c X.-......
        y/a ...-.....
        y/b ....-....
        y/c .....-...
        z/a X.....-..
        z/b X......-.
        z/c X.......-
    """),
    # matchExpressions: NotIn on the automatic name label; In on pods.
    "x/a from outside x, pods b or c": ((policy(f"""
        podSelector: {{matchExpressions: [{{key: pod, operator: In, values: [a]}}]}}
        ingress:
        - from:
          - namespaceSelector: {{matchExpressions: [{{key: {NAME_LABEL}, operator: NotIn, values: [x]}}]}}
            podSelector: {{matchExpressions: [{{key: pod, operator: In, values: [b, c]}}]}}
    """),), 80, "TCP", """
        x/a -........
        x/b X-.......
        x/c X.-......
        y/a X..-.....
        y/b ....-....
        y/c .....-...
        z/a X.....-..
        z/b .......-.
        z/c ........-
    """),
    # Exists / DoesNotExist: pods in namespaces with (without) a label.
    "Exists and DoesNotExist": ((policy("""
        podSelector: {matchLabels: {pod: a}}
        ingress: [{from: [{namespaceSelector: {}, podSelector: {matchExpressions: [{key: pod, operator: Exists}]}}]}]
    """), policy("""
        podSelector: {matchLabels: {pod: b}}
        ingress: [{from: [{namespaceSelector: {matchExpressions: [{key: ns, operator: DoesNotExist}]}}]}]
    """, "b-from-unlabelled")), 80, "TCP", """
        x/a -X.......
        x/b .-.......
        x/c .X-......
        y/a .X.-.....
        y/b .X..-....
        y/c .X...-...
        z/a .X....-..
        z/b .X.....-.
        z/c .X......-
    """),
    # ipBlock with except (pod IPs are matched too).
    "x/a from 10.244.0.0/16 except y/b": ((policy(f"""
        podSelector: {{matchLabels: {{pod: a}}}}
        ingress: [{{from: [{{ipBlock: {{cidr: 10.244.0.0/16, except: ['{BASE.pod("b", "y").ip}/32']}}}}]}}]
    """),), 80, "TCP", """
        x/a -........
        x/b .-.......
        x/c ..-......
        y/a ...-.....
        y/b X...-....
        y/c .....-...
        z/a ......-..
        z/b .......-.
        z/c ........-
    """),
    # Ports: only 81 is opened, so 80 stays denied into x.
    "x ingress on 81 only, probed on 80": ((policy("podSelector: {}\ningress: [{ports: [{port: 81}]}]"),), 80, "TCP",
                                           "from deny all ingress in x"),
    "x ingress on 81 only, probed on 81": ((policy("podSelector: {}\ningress: [{ports: [{port: 81}]}]"),), 81, "TCP",
                                           ALL),
    "x ingress on named port serve-81-tcp, probed on 81": ((policy(
        "podSelector: {}\ningress: [{ports: [{port: serve-81-tcp}]}]"),), 81, "TCP", ALL),
    "x ingress on named port serve-81-tcp, probed on 81/UDP": ((policy(
        "podSelector: {}\ningress: [{ports: [{port: serve-81-tcp}]}]"),), 81, "UDP", "from deny all ingress in x"),
    "x ingress on 80-81 UDP, probed on 81/UDP": ((policy(
        "podSelector: {}\ningress: [{ports: [{protocol: UDP, port: 80, endPort: 81}]}]"),), 81, "UDP", ALL),
    "x ingress on 80-81 UDP, probed on 81/TCP": ((policy(
        "podSelector: {}\ningress: [{ports: [{protocol: UDP, port: 80, endPort: 81}]}]"),), 81, "TCP",
        "from deny all ingress in x"),
    "x ingress on every UDP port, probed on 80/TCP": ((policy(
        "podSelector: {}\ningress: [{ports: [{protocol: UDP}]}]"),), 80, "TCP", "from deny all ingress in x"),
    # Egress: deny all from x (its rows), Ingress untouched.
    "deny all egress from x": ((policy("podSelector: {}\npolicyTypes: [Egress]"),), 80, "TCP", """
        x/a -XXXXXXXX
        x/b X-XXXXXXX
        x/c XX-XXXXXX
        y/a ...-.....
        y/b ....-....
        y/c .....-...
        z/a ......-..
        z/b .......-.
        z/c ........-
    """),
    # Egress to namespace y on port 80 (egress rules imply policyTypes Egress as well as Ingress).
    "x/a egress to y on 80": ((policy("""
        podSelector: {matchLabels: {pod: a}}
        egress: [{to: [{namespaceSelector: {matchLabels: {ns: y}}}], ports: [{port: 80}]}]
    """),), 80, "TCP", """
        x/a -XX...XXX
        x/b X-.......
        x/c X.-......
        y/a X..-.....
        y/b X...-....
        y/c X....-...
        z/a X.....-..
        z/b X......-.
        z/c X.......-
    """),
    "x/a egress to y on 80, probed on 81": ((policy("""
        podSelector: {matchLabels: {pod: a}}
        policyTypes: [Egress]
        egress: [{to: [{namespaceSelector: {matchLabels: {ns: y}}}], ports: [{port: 80}]}]
    """),), 81, "TCP", """
        x/a -XXXXXXXX
        x/b .-.......
        x/c ..-......
        y/a ...-.....
        y/b ....-....
        y/c .....-...
        z/a ......-..
        z/b .......-.
        z/c ........-
    """),
    # A named port on egress is the destination pod's.
    "x/a egress on named port serve-81-udp, probed on 81/UDP": ((policy("""
        podSelector: {matchLabels: {pod: a}}
        policyTypes: [Egress]
        egress: [{ports: [{protocol: UDP, port: serve-81-udp}]}]
    """),), 81, "UDP", ALL),
    # policyTypes [Ingress, Egress] with no rules: isolated both ways.
    "x/a isolated both ways": ((policy("podSelector: {matchLabels: {pod: a}}\npolicyTypes: [Ingress, Egress]"),),
                               80, "TCP", """
        x/a -XXXXXXXX
        x/b X-.......
        x/c X.-......
        y/a X..-.....
        y/b X...-....
        y/c X....-...
        z/a X.....-..
        z/b X......-.
        z/c X.......-
    """),
    # 'egress: []' without policyTypes does not isolate for egress (defaulting).
    "empty egress list is not Egress": ((policy("podSelector: {}\ningress: [{}]\negress: []"),), 80, "TCP", ALL),
    # A policy selects pods of its own namespace only.
    "deny all in y leaves x alone": ((policy("podSelector: {}", namespace="y"),), 80, "TCP", """
        x/a -..XXX...
        x/b .-.XXX...
        x/c ..-XXX...
        y/a ...-XX...
        y/b ...X-X...
        y/c ...XX-...
        z/a ...XXX-..
        z/b ...XXX.-.
        z/c ...XXX..-
    """),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_truth_tables(case: str):
    docs, port, protocol, table = CASES[case]
    if table.startswith("from "):
        table = CASES[table.removeprefix("from ")][3]
    assert grid(with_policies(*docs), port, protocol) == expect(table)


def test_icmp_is_allowed_only_by_rules_without_ports():
    with_ports = with_policies(policy("podSelector: {}\ningress: [{ports: [{port: 80}]}]"))
    without = with_policies(policy("podSelector: {}\ningress: [{from: [{namespaceSelector: {}}]}]"))
    a, b = BASE.pod("a", "y"), BASE.pod("a", "x")
    assert not evaluate(with_ports, a, b, None, "ICMP").allowed
    assert evaluate(without, a, b, None, "ICMP").allowed


def test_own_node_always_reaches_its_pods_other_nodes_only_by_ip_block():
    cluster = with_policies(DENY_ALL_INGRESS_X)
    pod = cluster.pod("a", "x")
    own = cluster.node(pod.node)
    other = next(n for n in cluster.nodes if n.name != pod.node)
    assert evaluate(cluster, own.ip, pod, 80).allowed
    assert evaluate(cluster, own.gateway_ip, pod, 80).allowed
    verdict = evaluate(cluster, other.ip, pod, 80)
    assert not verdict.allowed and "x/p" in verdict.ingress.reason
    opened = apply_text(cluster, policy(f"podSelector: {{}}\ningress: [{{from: [{{ipBlock: {{cidr: "
                                        f"'{other.ip}/32'}}}}]}}]", "nodes"))
    assert evaluate(opened, other.ip, pod, 80).allowed
    # External addresses: ipBlock only; selectors never match them.
    outside = ipaddress.IPv4Address("203.0.113.7")
    assert not evaluate(opened, outside, pod, 80).allowed


def test_the_verdict_names_the_deciding_policy_and_rule():
    cluster = with_policies(DENY_ALL_INGRESS_X, policy("""
        podSelector: {matchLabels: {pod: a}}
        ingress:
        - from: [{podSelector: {matchLabels: {pod: c}}}]
        - from: [{namespaceSelector: {matchLabels: {ns: y}}}]
          ports: [{port: 80}]
    """, "web"))
    yes = evaluate(cluster, endpoint(cluster, "y/b"), endpoint(cluster, "x/a"), 80)
    assert yes.allowed and (yes.ingress.policy, yes.ingress.rule) == ("x/web", 1)
    assert yes.as_dict()["deciding"] == "x/web ingress[1]"
    no = evaluate(cluster, endpoint(cluster, "b.y"), endpoint(cluster, "x/a"), 81)
    assert not no.allowed and no.deciding is no.ingress
    assert no.ingress.reason == ("no rule of the 2 policies selecting x/a for ingress (x/p, x/web) allows y/b "
                                 "on 81/TCP")
    assert str(no).startswith("denied: egress: y/b is not isolated for egress")
    assert evaluate(cluster, endpoint(cluster, "x/a"), endpoint(cluster, "x/a"), 80).allowed  # itself
    with pytest.raises(ValueError, match="no pod 'q'"):
        endpoint(cluster, "q")
    with pytest.raises(ValueError, match="needs the destination port"):
        evaluate(cluster, BASE.pods[0], BASE.pods[1])


def test_defaulting_of_policy_types():
    only_ingress = with_policies(policy("podSelector: {}\ningress: [{}]")).policies[0]
    with_egress = with_policies(policy("podSelector: {}\negress: [{}]")).policies[0]
    explicit = with_policies(policy("podSelector: {}\npolicyTypes: [Egress]")).policies[0]
    assert only_ingress.policy_types == ("Ingress",)
    assert with_egress.policy_types == ("Ingress", "Egress")
    assert explicit.policy_types == ("Egress",)


def test_run_time_changes_policies_pod_labels_and_namespace_labels():
    cluster = with_policies(policy("""
        podSelector: {matchLabels: {pod: a}}
        ingress: [{from: [{namespaceSelector: {matchLabels: {team: blue}}}]}]
    """))
    yb, xa = cluster.pod("b", "y"), cluster.pod("a", "x")
    assert not evaluate(cluster, yb, xa, 80).allowed
    # Namespace y gets the label: its pods are let in.
    blue = apply_text(cluster, "apiVersion: v1\nkind: Namespace\nmetadata: {name: y, labels: {team: blue}}\n")
    assert evaluate(blue, blue.pod("b", "y"), blue.pod("a", "x"), 80).allowed
    assert blue.namespace("y").labels == {"team": "blue", NAME_LABEL: "y"}
    # x/a is relabelled: no policy selects it any more.
    relabelled = apply_text(cluster, "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: x, "
                                     "labels: {pod: z}}\n")
    assert evaluate(relabelled, relabelled.pod("b", "y"), relabelled.pod("a", "x"), 80).allowed
    # The policy changes, then goes.
    changed = apply_text(cluster, policy("podSelector: {matchLabels: {pod: a}}\ningress: [{}]"))
    assert len(changed.policies) == 1 and evaluate(changed, yb, xa, 80).allowed
    gone = apply_text(cluster, policy("podSelector: {}"), delete=True)
    assert gone.policies == () and evaluate(gone, yb, xa, 80).allowed
    # A deleted namespace takes its pods and policies along.
    emptied = apply_text(cluster, "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n", delete=True)
    assert emptied.policies == () and {p.namespace for p in emptied.pods} == {"y", "z"}
    assert "x" not in {n.name for n in emptied.namespaces}


def test_k8snet_flows_shows_the_policy_flows(tmp_path, capsys):
    """``k8snet flows`` prints what each switch holds, policies included."""
    from k8snet import cli

    path = tmp_path / "spec.yaml"
    path.write_text(model_spec() + "---\n" + DENY_ALL_INGRESS_X)
    node = BASE.pod("a", "x").node
    assert cli.main(["flows", str(path), "--node", node]) == 0
    out = capsys.readouterr().out
    assert f"nw_dst={BASE.pod('a', 'x').ip} actions=drop" in out.replace("\n", " ")
    # A later fragment has no ports to judge: it passes (its first fragment was judged).
    assert f"priority=150,eth_type=0x0800,nw_frag=later,nw_dst={BASE.pod('a', 'x').ip} actions=goto_table" in out, out


def test_selector_operators_follow_apimachinery():
    """labels.Requirement.Matches: NotIn and DoesNotExist match a label set without the key."""
    from k8snet.model.policy import Requirement, Selector

    req = lambda op, *values: Requirement(key="k", operator=op, values=values)
    cases = [(req("In", "a", "b"), {"k": "b"}, True), (req("In", "a"), {}, False), (req("In", "a"), {"k": "c"}, False),
             (req("NotIn", "a"), {}, True), (req("NotIn", "a"), {"k": "a"}, False), (req("NotIn", "a"), {"k": "c"}, True),
             (req("Exists"), {"k": ""}, True), (req("Exists"), {}, False),
             (req("DoesNotExist"), {}, True), (req("DoesNotExist"), {"k": "a"}, False)]
    for requirement, labels, matches in cases:
        assert requirement.matches(labels) is matches, (requirement, labels)
    both = Selector(match_labels={"app": "web"}, match_expressions=(req("NotIn", "x"),))
    assert both.matches({"app": "web"}) and not both.matches({"app": "web", "k": "x"}) and not both.matches({})
    assert Selector().matches({}) and Selector().empty


def test_every_counter_has_a_cookie_of_its_own():
    """Rules and refusals are told apart by cookie alone (``topos.checks.policy_counters``)."""
    from controllers.compiler import compile_node
    from controllers.pipeline import FEATURE_MASK, OBJECT_MASK
    from controllers.policy import counter_names

    cluster = with_policies(DENY_ALL_INGRESS_X, *[d for docs, *_ in CASES.values() for d in docs
                                                  if "name: p," not in d])
    names = counter_names(cluster)
    rules = sum(len(p.ingress) + len(p.egress) for p in cluster.policies)
    assert len(names) == rules + 2 * len(cluster.pods)  # no two share a cookie
    counted = {f.cookie & (FEATURE_MASK | OBJECT_MASK) for n in cluster.nodes
               for f in compile_node(cluster, n.name).flows if f.cookie in names}
    dropping = {k for k, v in names.items() if v["verdict"] == "dropped"}
    isolated = {(p.namespace, p.name) for p in cluster.pods for p2 in cluster.policies
                if p2.namespace == p.namespace and p2.pod_selector.matches(p.labels)}
    assert len(counted & dropping) >= len(isolated) > 0
