"""NetworkPolicy and Namespace input that the API server would refuse: each invalid form
gets its exit-2 message with the document and field (k8snet/model/policy_schema.py)."""

from __future__ import annotations

import pytest

from k8snet.model.apply import apply_text
from k8snet.model.manifests import SpecError, load_text
from tests.unit.test_policy import BASE


def pol(spec: str) -> str:
    return f"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: p}}\nspec: {spec}\n"


BAD = {
    "operator": (pol("{podSelector: {matchExpressions: [{key: app, operator: Has, values: [a]}]}}"),
                 "spec.podSelector.matchExpressions.0.operator", "not a valid selector operator"),
    "In without values": (pol("{podSelector: {matchExpressions: [{key: app, operator: In}]}}"),
                          "spec.podSelector.matchExpressions.0", "values: must be non-empty when operator is In"),
    "Exists with values": (pol("{podSelector: {matchExpressions: [{key: app, operator: Exists, values: [a]}]}}"),
                           "spec.podSelector.matchExpressions.0", "may not be specified when operator is Exists"),
    "label key": (pol("{podSelector: {matchLabels: {'-bad': x}}}"), "spec.podSelector.matchLabels",
                  "label key '-bad' is invalid"),
    "expression key": (pol("{podSelector: {matchExpressions: [{key: 'a b', operator: Exists}]}}"),
                       "spec.podSelector.matchExpressions.0.key", "label key 'a b' is invalid"),
    "label value": (pol("{podSelector: {matchExpressions: [{key: app, operator: In, values: ['a b']}]}}"),
                    "spec.podSelector.matchExpressions.0", "value 'a b'"),
    "policy type": (pol("{policyTypes: [Ingres]}"), "spec.policyTypes", "allowed: Ingress, Egress"),
    "policy type twice": (pol("{policyTypes: [Ingress, Ingress]}"), "spec.policyTypes", "twice"),
    "cidr": (pol("{ingress: [{from: [{ipBlock: {cidr: 10.0.0.300/8}}]}]}"), "spec.ingress.0.from.0.ipBlock.cidr",
             "not a valid CIDR"),
    "cidr without prefix": (pol("{ingress: [{from: [{ipBlock: {cidr: 10.0.0.1}}]}]}"),
                            "spec.ingress.0.from.0.ipBlock.cidr", "a prefix length"),
    "except outside cidr": (pol("{ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8, except: [11.0.0.0/16]}}]}]}"),
                            "spec.ingress.0.from.0.ipBlock", "except[0]: '11.0.0.0/16' must be a strict subset"),
    "except equal to cidr": (pol("{ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.0.0.0/8]}}]}]}"),
                             "spec.ingress.0.from.0.ipBlock", "strict subset"),
    "ipBlock with a selector": (pol("{ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}]}]}"),
                                "spec.ingress.0.from.0", "may not be combined"),
    "empty peer": (pol("{egress: [{to: [{}]}]}"), "spec.egress.0.to.0", "a peer must say"),
    "SCTP": (pol("{ingress: [{ports: [{protocol: SCTP, port: 80}]}]}"), "spec.ingress.0.ports.0.protocol",
             "SCTP is valid Kubernetes but not supported here"),
    "protocol": (pol("{ingress: [{ports: [{protocol: ICMP}]}]}"), "spec.ingress.0.ports.0.protocol",
                 "allowed: TCP, UDP"),
    "port number": (pol("{ingress: [{ports: [{port: 70000}]}]}"), "spec.ingress.0.ports.0.port", "1-65535"),
    "port name": (pol("{ingress: [{ports: [{port: Web_Port}]}]}"), "spec.ingress.0.ports.0.port",
                  "neither a port number"),
    "endPort without port": (pol("{ingress: [{ports: [{endPort: 90}]}]}"), "spec.ingress.0.ports.0",
                             "endPort: may not be specified when port is not specified"),
    "endPort below port": (pol("{ingress: [{ports: [{port: 90, endPort: 80}]}]}"), "spec.ingress.0.ports.0",
                           "endPort: 80 must be at least port (90)"),
    "endPort with a named port": (pol("{ingress: [{ports: [{port: http, endPort: 80}]}]}"),
                                  "spec.ingress.0.ports.0", "when port is a name"),
    "unknown field": (pol("{ingres: []}"), "spec.ingres", "allowed here: egress, ingress, podSelector, policyTypes"),
    "from not a list": (pol("{ingress: [{from: {podSelector: {}}}]}"), "spec.ingress.0.from", "valid list"),
    "namespace name": ("apiVersion: v1\nkind: Namespace\nmetadata: {name: X}\n", "metadata.name", "DNS-1123 label"),
    "namespace in a namespace": ("apiVersion: v1\nkind: Namespace\nmetadata: {name: x, namespace: y}\n",
                                 "metadata.namespace", "unknown field"),
    "old apiVersion": ("apiVersion: extensions/v1beta1\nkind: NetworkPolicy\nmetadata: {name: p}\n", "apiVersion",
                       "use apiVersion: networking.k8s.io/v1"),
    "twice": (pol("{}") + "---\n" + pol("{}"), "metadata.name", "'default/p' is defined twice"),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_policy_input_names_document_field_and_fix(case: str):
    text, field, needle = BAD[case]
    with pytest.raises(SpecError) as info:
        load_text(text)
    matching = [p for p in info.value.problems if p.field == field and needle in p.message]
    assert matching, f"no problem at {field!r} mentioning {needle!r}: {info.value.problems}"
    assert str(matching[0]).startswith("document ")


def test_the_same_mistakes_are_refused_at_run_time():
    with pytest.raises(SpecError, match="strict subset"):
        apply_text(BASE, BAD["except outside cidr"][0])
