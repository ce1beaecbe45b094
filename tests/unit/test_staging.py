"""A change that adds or removes pods is applied in two steps (k8snet/model/staging.py)."""

from __future__ import annotations

from k8snet.model.apply import apply_text
from k8snet.model.manifests import load_text
from k8snet.model.staging import stages

SPEC = """\
apiVersion: k8snet.io/v1alpha1
kind: Cluster
spec: {nodes: 2}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, ports: [{name: http, containerPort: 8080}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
"""
BEFORE = load_text(SPEC)
SVC = BEFORE.service("web")


def endpoints(cluster) -> list[str]:
    return [e.pod for e in cluster.endpoints(SVC, SVC.ports[0])]


def test_no_pods_coming_or_going_is_one_step():
    flipped = apply_text(BEFORE, "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web-0\n"
                                 "  annotations: {k8snet.io/ready: 'false'}\n")
    assert stages(BEFORE, flipped) == [flipped]


def test_a_new_pod_gets_its_flows_before_it_becomes_an_endpoint():
    after = apply_text(BEFORE, SPEC.split("---\n")[1].replace("replicas: 2", "replicas: 3"))
    first, second = stages(BEFORE, after)
    assert [p.name for p in first.pods] == ["web-0", "web-1", "web-2"]
    assert endpoints(first) == ["web-0", "web-1"] and not first.pod("web-2").ready
    assert second == after and endpoints(second) == ["web-0", "web-1", "web-2"]


def test_a_departing_pod_stops_being_an_endpoint_everywhere_before_its_flows_go():
    after = apply_text(BEFORE, SPEC.split("---\n")[1].replace("replicas: 2", "replicas: 1"))
    first, second = stages(BEFORE, after)
    assert "web-1" in [p.name for p in first.pods] and endpoints(first) == ["web-0"]
    assert second == after and [p.name for p in second.pods] == ["web-0"]
    # Addresses and ports are those of the model before and after: nothing moves.
    assert first.pod("web-1").ip == BEFORE.pod("web-1").ip
