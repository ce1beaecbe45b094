"""Service documents: allocation, endpoints, and every invalid field named precisely."""

from __future__ import annotations

import pytest

from k8snet.model.manifests import Overrides, SpecError, load_text

BASE = """\
apiVersion: k8snet.io/v1alpha1
kind: Cluster
spec: {nodes: 2}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: c, ports: [{name: http, containerPort: 8080}, {name: dns, containerPort: 53, protocol: UDP}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: client, labels: {app: client}}
"""


def svc(body: str, name: str = "web") -> str:
    return f"apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n{body}"


def load(*services: str):
    return load_text(BASE + "".join("---\n" + s for s in services))


def test_cluster_ips_are_allocated_in_order_and_endpoints_resolve_named_ports():
    cluster = load(svc("  selector: {app: web}\n  ports: [{port: 80, targetPort: http}]\n"),
                   svc("  selector: {app: web}\n  ports: [{port: 53, protocol: UDP, targetPort: dns}]\n", "dns"))
    web, dns = cluster.service("web"), cluster.service("dns")
    assert (str(web.cluster_ip), str(dns.cluster_ip)) == ("10.96.0.100", "10.96.0.101")
    eps = cluster.endpoints(web, web.ports[0])
    assert sorted(e.pod for e in eps) == ["web-0", "web-1", "web-2"] and {e.port for e in eps} == {8080}
    assert {e.port for e in cluster.endpoints(dns, dns.ports[0])} == {53}


def test_not_ready_pods_and_pods_without_the_named_port_are_not_endpoints():
    cluster = load(svc("  selector: {app: web}\n  ports: [{port: 80, targetPort: http}]\n"),
                   svc("  selector: {app: client}\n  ports: [{port: 80, targetPort: http}]\n", "nope"))
    web = cluster.service("web")
    pods = tuple(p.model_copy(update={"ready": p.name != "web-1"}) for p in cluster.pods)
    assert sorted(e.pod for e in cluster.with_pods(pods).endpoints(web, web.ports[0])) == ["web-0", "web-2"]
    nope = cluster.service("nope")
    assert cluster.endpoints(nope, nope.ports[0]) == ()


def test_node_ports_default_target_port_and_given_addresses():
    cluster = load(svc("  type: NodePort\n  clusterIP: 10.96.5.5\n  selector: {app: web}\n"
                       "  ports: [{name: a, port: 80}, {name: b, port: 81, nodePort: 30000}]\n"))
    web = cluster.service("web")
    assert str(web.cluster_ip) == "10.96.5.5" and web.external_traffic_policy == "Cluster"
    assert [(p.target_port, p.node_port) for p in web.ports] == [(80, 30001), (81, 30000)]


def test_headless_external_name_and_affinity():
    cluster = load(svc("  clusterIP: None\n  selector: {app: web}\n", "db"),
                   svc("  type: ExternalName\n  externalName: example.org\n", "ext"),
                   svc("  selector: {app: web}\n  ports: [{port: 80}]\n  sessionAffinity: ClientIP\n"
                       "  sessionAffinityConfig: {clientIP: {timeoutSeconds: 30}}\n"))
    assert cluster.service("db").cluster_ip is None and not cluster.service("db").proxied
    assert cluster.service("ext").external_name == "example.org"
    web = cluster.service("web")
    assert (web.session_affinity, web.affinity_timeout) == ("ClientIP", 30)


def test_apply_keeps_existing_addresses():
    from k8snet.model.manifests import SERVICE_CIDR
    from k8snet.model.schema import ServiceDoc
    from k8snet.model.services import resolve_services
    import yaml

    first = load(svc("  type: NodePort\n  selector: {app: web}\n  ports: [{port: 80}]\n", "a"))
    docs = [(1, "Service 'b'", ServiceDoc.model_validate(yaml.safe_load(svc("  type: NodePort\n  ports: [{port: 80}]\n", "b")))),
            (2, "Service 'a'", ServiceDoc.model_validate(yaml.safe_load(svc("  type: NodePort\n  ports: [{port: 80}]\n", "a"))))]
    again = resolve_services(docs, SERVICE_CIDR, previous=first)
    by = {s.name: s for s in again.services}
    assert by["a"].cluster_ip == first.service("a").cluster_ip
    assert by["a"].ports[0].node_port == first.service("a").ports[0].node_port
    assert by["b"].cluster_ip != by["a"].cluster_ip and by["b"].ports[0].node_port != by["a"].ports[0].node_port


BAD = {
    "bad service name": (svc("  ports: [{port: 80}]\n", "9web"), "metadata.name", "DNS-1035"),
    "unknown type": (svc("  type: Ingress\n  ports: [{port: 80}]\n"), "spec.type", "allowed: ClusterIP, NodePort"),
    "no ports": (svc("  selector: {app: web}\n"), "spec.ports", "at least one port"),
    "port out of range": (svc("  ports: [{port: 0}]\n"), "spec.ports.0.port", "greater than or equal to 1"),
    "bad protocol": (svc("  ports: [{port: 80, protocol: SCTP}]\n"), "spec.ports.0.protocol", "allowed: TCP, UDP"),
    "target port out of range": (svc("  ports: [{port: 80, targetPort: 70000}]\n"), "spec.ports.0.targetPort",
                                 "not a port"),
    "node port out of range": (svc("  type: NodePort\n  ports: [{port: 80, nodePort: 80}]\n"),
                               "spec.ports[0].nodePort", "outside the NodePort range 30000-32767"),
    "node port on ClusterIP": (svc("  ports: [{port: 80, nodePort: 30080}]\n"), "spec.ports[0].nodePort",
                               "only for type NodePort or LoadBalancer"),
    "unnamed ports": (svc("  ports: [{port: 80}, {port: 81}]\n"), "spec.ports[0].name", "more than one port"),
    "duplicate port": (svc("  ports: [{name: a, port: 80}, {name: b, port: 80}]\n"), "spec.ports[1].port",
                       "80/TCP is already"),
    "cluster ip outside cidr": (svc("  clusterIP: 10.1.2.3\n  ports: [{port: 80}]\n"), "spec.clusterIP",
                                "not a usable address of the Service CIDR"),
    "cluster ip not an ip": (svc("  clusterIP: web\n  ports: [{port: 80}]\n"), "spec.clusterIP",
                             "not an IPv4 address"),
    "headless node port": (svc("  type: NodePort\n  clusterIP: None\n  ports: [{port: 80}]\n"), "spec.clusterIP",
                           "only allowed for type ClusterIP"),
    "affinity timeout too long": (svc("  ports: [{port: 80}]\n  sessionAffinity: ClientIP\n"
                                      "  sessionAffinityConfig: {clientIP: {timeoutSeconds: 86401}}\n"),
                                  "spec.sessionAffinityConfig.clientIP.timeoutSeconds", "less than or equal to 86400"),
    "affinity config without affinity": (svc("  ports: [{port: 80}]\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 5}}\n"),
                                         "spec.sessionAffinityConfig", "only with sessionAffinity: ClientIP"),
    "bad affinity": (svc("  ports: [{port: 80}]\n  sessionAffinity: Sticky\n"), "spec.sessionAffinity",
                     "allowed: None, ClientIP"),
    "external policy on ClusterIP": (svc("  ports: [{port: 80}]\n  externalTrafficPolicy: Local\n"),
                                     "spec.externalTrafficPolicy", "only for type NodePort or LoadBalancer"),
    "bad internal policy": (svc("  ports: [{port: 80}]\n  internalTrafficPolicy: Nearby\n"),
                            "spec.internalTrafficPolicy", "allowed: Cluster, Local"),
    "external name missing": (svc("  type: ExternalName\n"), "spec.externalName", "required for type ExternalName"),
    "unknown service field": (svc("  ports: [{port: 80}]\n  loadBalancerIP: 1.2.3.4\n"), "spec.loadBalancerIP",
                              "unknown field"),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_service_fields(case: str):
    text, field, needle = BAD[case]
    with pytest.raises(SpecError) as info:
        load(text)
    assert any(p.doc == 4 and p.field == field and needle in p.message for p in info.value.problems), \
        info.value.problems


def test_clashing_node_ports_and_duplicate_services():
    with pytest.raises(SpecError) as info:
        load(svc("  type: NodePort\n  ports: [{port: 80, nodePort: 30080}]\n", "a"),
             svc("  type: NodePort\n  ports: [{port: 80, nodePort: 30080}]\n", "b"),
             svc("  ports: [{port: 80}]\n", "a"))
    text = str(info.value)
    assert "document 5 (Service 'b'): spec.ports[0].nodePort: 30080 is already used by default/a" in text
    assert "document 6 (Service 'a'): metadata.name: Service default/a is already defined in document 4" in text


def test_node_port_range_is_the_clusters_and_can_be_widened():
    ingress = svc("  type: NodePort\n  ports: [{port: 80, nodePort: 23456}]\n")
    with pytest.raises(SpecError) as info:
        load(ingress)
    assert "widen the Cluster's spec.serviceNodePortRange" in str(info.value.problems)
    wide = BASE.replace("spec: {nodes: 2}", "spec: {nodes: 2, serviceNodePortRange: 20000-32767}", 1)
    cluster = load_text(wide + "---\n" + ingress)
    assert cluster.service("web").ports[0].node_port == 23456
    assert cluster.node_port_range == (20000, 32767)
    # dynamic allocation still starts at 30000; the widened low end is for ports asked by number
    auto = load_text(wide + "---\n" + svc("  type: NodePort\n  ports: [{port: 80}]\n"))
    assert auto.service("web").ports[0].node_port == 30000
    low = load_text(BASE.replace("spec: {nodes: 2}", "spec: {nodes: 2, serviceNodePortRange: 20000-20001}") +
                    "---\n" + svc("  type: NodePort\n  ports: [{port: 80}]\n"))
    assert low.service("web").ports[0].node_port == 20000
    narrow = load_text(BASE + "---\n" + ingress, Overrides(node_port_range=(23000, 24000)))
    assert narrow.service("web").ports[0].node_port == 23456


@pytest.mark.parametrize("bad", ["30000", "a-b", "40000-30000", "0-10", "1-70000"])
def test_bad_node_port_range_names_the_field(bad: str):
    with pytest.raises(SpecError) as info:
        load_text(BASE.replace("spec: {nodes: 2}", f"spec: {{nodes: 2, serviceNodePortRange: '{bad}'}}", 1))
    assert any(p.field == "spec.serviceNodePortRange" and ("LOW-HIGH" in p.message or "LOW < HIGH" in p.message)
               for p in info.value.problems), info.value.problems


def test_a_node_port_taken_by_a_running_service_is_refused_on_apply():
    from k8snet.model.apply import apply_text

    running = load(svc("  type: NodePort\n  ports: [{port: 80}]\n", "first"))
    taken = running.service("first").ports[0].node_port
    with pytest.raises(SpecError) as info:
        apply_text(running, svc(f"  type: NodePort\n  ports: [{{port: 80, nodePort: {taken}}}]\n", "second"))
    assert f"{taken} is already used by default/first" in str(info.value.problems)
