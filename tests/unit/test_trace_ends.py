"""``k8snet trace SRC DST[:PORT]``: names resolved against the model, mistakes refused
with the argument and the fix before anything starts."""

from __future__ import annotations

import pytest

from k8snet.model.manifests import load_text
from k8snet.model.trace_ends import DEFAULT_SOURCE_PORT, TraceInputError, question
from topos.specs import embedded_spec_text

CLUSTER = load_text(embedded_spec_text("services"))


def test_pod_to_service_takes_the_first_port_of_the_protocol():
    q = question(CLUSTER, "client", "svc/web", "tcp")
    assert q.src.kind == "pod" and q.src.host == CLUSTER.pod("client").host_name
    assert q.dst.ip == CLUSTER.service("web").cluster_ip and q.dport == 80
    assert q.dst.service_port.name == "http" and q.sport == DEFAULT_SOURCE_PORT


def test_a_service_port_by_name_and_udp():
    q = question(CLUSTER, "client", "svc/web:admin", "tcp")
    assert q.dport == 9000
    assert question(CLUSTER, "client", "svc/default/web", "udp").dst.service_port.name == "http-udp"


def test_pods_nodes_ips_and_external():
    web0 = CLUSTER.pod("web-0")
    assert question(CLUSTER, "node-0", f"{web0.ip}", "icmp").dst.name == "default/web-0"
    assert question(CLUSTER, "external", "node/node-1:30080", "tcp").dst.kind == "node"
    assert question(CLUSTER, "client", "default/web-0", "tcp").dport == 8080   # its first declared TCP port
    assert question(CLUSTER, "client", "203.0.113.9", "icmp").dst.kind == "ip"
    assert question(CLUSTER, "client", "node-2", "icmp", None).dport is None


@pytest.mark.parametrize("src, dst, proto, sport, argument, words", [
    ("nobody", "web-0", "icmp", None, "SRC", "is no pod, node"),
    ("client", "svc/nope", "tcp", None, "DST", "no Service default/nope"),
    ("client", "web-0:80", "icmp", None, "DST", "ICMP has no ports"),
    ("client", "svc/web:nope", "tcp", None, "DST", "neither a number nor a TCP port name"),
    ("client", "web-0:70000", "tcp", None, "DST", "outside 1-65535"),
    ("client", "web-0", "sctp", None, "--proto", "not one of icmp, tcp, udp"),
    ("client", "web-0", "icmp", 5000, "--sport", "ICMP has no ports"),
    ("svc/web", "web-0", "icmp", None, "SRC", "cannot send"),
    ("client", "client", "icmp", None, "DST", "the source itself"),
    ("client", "svc/web-headless", "tcp", None, "DST", "has no ClusterIP"),
    ("client", "10.96.0.250", "tcp", None, "DST", "needs a port"),
])
def test_mistakes_name_the_argument(src, dst, proto, sport, argument, words):
    with pytest.raises(TraceInputError) as exc:
        question(CLUSTER, src, dst, proto, sport)
    assert exc.value.argument == argument and words in str(exc.value)


def test_size_is_for_payload_carrying_probes_within_ip_limits():
    assert question(CLUSTER, "client", "web-0", "icmp", size=1500).size == 1500
    for proto, size, words in (("tcp", 1500, "a TCP SYN carries no payload"), ("udp", 20, "outside 46-65535")):
        with pytest.raises(TraceInputError) as exc:
            question(CLUSTER, "client", "web-0:8080", proto, size=size)
        assert exc.value.argument == "--size" and words in str(exc.value)
