"""NetworkPolicy documents made by the code that measures policies (``bench/policy.py``,
the ``policy`` scenario): YAML text, applied like any other manifest."""

from __future__ import annotations


def policy_doc(name: str, body: str, namespace: str) -> str:
    """One ``networking.k8s.io/v1 NetworkPolicy`` with ``spec: BODY`` (flow-style YAML)."""
    return (f"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}, "
            f"namespace: {namespace}}}\nspec: {body}\n")


def _labels(labels: dict[str, str]) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in labels.items()) + "}"


def rules_for_the_pair(count: int, client: tuple[str, dict[str, str]], server: tuple[str, dict[str, str]],
                       port: int) -> str:
    """``count`` ingress policies on the server and ``count`` egress policies on the client
    (``(namespace, labels)`` each), one rule each; the last of each allows the pair on
    ``port``, the others name addresses (172.16/16) and ports (10000 up) nobody uses, so
    every rule selects the measured pods and only one lets them talk."""
    (client_ns, client_labels), (server_ns, server_labels) = client, server
    to_server = f"{{namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: {server_ns}}}}}, " \
                f"podSelector: {{matchLabels: {_labels(server_labels)}}}}}"
    from_client = f"{{namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: {client_ns}}}}}, " \
                  f"podSelector: {{matchLabels: {_labels(client_labels)}}}}}"
    docs = []
    for i in range(count):
        last = i == count - 1
        other = f"{{ipBlock: {{cidr: 172.16.{i // 250}.{i % 250 + 1}/32}}}}"
        rule_port = port if last else 10000 + i
        docs.append(policy_doc(f"in-{i}", f"{{podSelector: {{matchLabels: {_labels(server_labels)}}}, ingress: "
                                          f"[{{from: [{from_client if last else other}], ports: [{{port: {rule_port}}}]}}]}}",
                               server_ns))
        docs.append(policy_doc(f"out-{i}", f"{{podSelector: {{matchLabels: {_labels(client_labels)}}}, "
                                           f"policyTypes: [Egress], egress: [{{to: [{to_server if last else other}], "
                                           f"ports: [{{port: {rule_port}}}]}}]}}", client_ns))
    return "---\n".join(docs)
