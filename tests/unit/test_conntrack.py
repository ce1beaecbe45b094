"""Which UDP conntrack entries a change must delete (controllers.conntrack, pure)."""

from __future__ import annotations

from controllers.conntrack import CtFlush, udp_flushes
from controllers.pipeline import ZONE_NODEPORT_DNAT, ZONE_SERVICE
from k8snet.model.apply import apply_text
from k8snet.model.manifests import load_text

SPEC = """\
apiVersion: k8snet.io/v1alpha1
kind: Cluster
spec: {nodes: 2}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: dns}
spec:
  replicas: 2
  selector: {matchLabels: {app: dns}}
  template: {metadata: {labels: {app: dns}}}
---
apiVersion: v1
kind: Service
metadata: {name: dns}
spec:
  type: NodePort
  selector: {app: dns}
  ports: [{name: udp, port: 53, protocol: UDP}, {name: tcp, port: 53, protocol: TCP}]
"""
BEFORE = load_text(SPEC)
VIP = str(BEFORE.service("dns").cluster_ip)
NODE_PORT = BEFORE.service("dns").ports[0].node_port
NODE0 = BEFORE.node("node-0")
IP = {p.name: str(p.ip) for p in BEFORE.pods}


def flushes(after, before=BEFORE):
    return udp_flushes(before, after, NODE0)


def test_an_endpoint_that_goes_has_its_entries_deleted_at_every_frontend():
    after = apply_text(BEFORE, "apiVersion: v1\nkind: Pod\nmetadata:\n  name: dns-1\n"
                               "  annotations: {k8snet.io/ready: 'false'}\n")
    # The NodePort (externalTrafficPolicy Cluster: masqueraded) keeps its DNAT in a zone of its own.
    assert flushes(after) == sorted([CtFlush(ZONE_SERVICE, VIP, 53, IP["dns-1"]),
                                     CtFlush(ZONE_NODEPORT_DNAT, str(NODE0.ip), NODE_PORT, IP["dns-1"])])


def test_a_local_node_port_keeps_its_dnat_in_the_service_zone():
    local = apply_text(BEFORE, SPEC.split("---\n")[2].replace("type: NodePort", "type: NodePort\n  "
                                                              "externalTrafficPolicy: Local"))
    after = apply_text(local, "apiVersion: v1\nkind: Pod\nmetadata:\n  name: dns-1\n"
                              "  annotations: {k8snet.io/ready: 'false'}\n")
    assert flushes(after, before=local) == sorted([CtFlush(ZONE_SERVICE, VIP, 53, IP["dns-1"]),
                                                   CtFlush(ZONE_SERVICE, str(NODE0.ip), NODE_PORT, IP["dns-1"])])


def test_nothing_to_delete_when_endpoints_only_join_or_nothing_changes():
    assert flushes(BEFORE) == []
    more = apply_text(BEFORE, SPEC.split("---\n")[1].replace("replicas: 2", "replicas: 3"))
    assert flushes(more) == []


def test_tcp_is_left_alone():
    tcp_only = BEFORE.model_copy(update={"services": tuple(
        s.model_copy(update={"ports": tuple(p for p in s.ports if p.protocol == "TCP")}) for s in BEFORE.services)})
    gone = apply_text(tcp_only, "apiVersion: v1\nkind: Pod\nmetadata: {name: dns-0}\n", delete=True)
    assert flushes(gone, before=tcp_only) == []


def test_the_last_endpoint_going_deletes_nothing_yet_the_first_returning_clears_unanswered_entries():
    empty = apply_text(BEFORE, SPEC.split("---\n")[1].replace("replicas: 2", "replicas: 0"))
    assert flushes(empty) == []  # kube-proxy leaves a port without endpoints alone
    back = apply_text(empty, SPEC.split("---\n")[1].replace("replicas: 2", "replicas: 1"))
    assert flushes(back, before=empty) == sorted([
        CtFlush(ZONE_SERVICE, VIP, 53, VIP),                              # entries that got no DNAT
        CtFlush(ZONE_SERVICE, str(NODE0.ip), NODE_PORT, str(NODE0.ip))])


def test_a_deleted_service_or_port_clears_its_frontends_entirely():
    gone = apply_text(BEFORE, SPEC.split("---\n")[2], delete=True)
    assert flushes(gone) == sorted([CtFlush(ZONE_SERVICE, VIP, 53), CtFlush(ZONE_SERVICE, str(NODE0.ip), NODE_PORT),
                                    CtFlush(ZONE_NODEPORT_DNAT, str(NODE0.ip), NODE_PORT)])
    renumbered = apply_text(BEFORE, SPEC.split("---\n")[2].replace("port: 53, protocol: UDP", "port: 54, protocol: UDP"))
    assert CtFlush(ZONE_SERVICE, VIP, 53) in flushes(renumbered)


def test_ofctl_form():
    assert CtFlush(1, "10.96.0.5", 53, "10.244.0.2").ofctl_args() == [
        "zone=1", "ct_nw_proto=17,ct_nw_dst=10.96.0.5,ct_tp_dst=53", "ct_nw_src=10.244.0.2"]
