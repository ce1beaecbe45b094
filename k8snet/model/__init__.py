"""The Kubernetes object model: YAML documents in, a resolved cluster out. Pure: no I/O
beyond reading the spec text, no processes, nothing of Mininet or Open vSwitch.

* :mod:`~k8snet.model.cluster`: the resolved model (nodes, pods, Services, addresses);
* :mod:`~k8snet.model.schema`: what each document may say, and the errors;
* :mod:`~k8snet.model.documents`, :mod:`~k8snet.model.resolver`,
  :mod:`~k8snet.model.manifests`: loading a spec (``load_text``);
* :mod:`~k8snet.model.services`: Service validation and address allocation;
* :mod:`~k8snet.model.underlay`: where nodes sit on the underlay;
* :mod:`~k8snet.model.apply`: ``kubectl apply``/``delete`` against a running model;
* :mod:`~k8snet.model.reach`: which pairs the backend can carry (the prediction);
* :mod:`~k8snet.model.dns`: what the cluster DNS answers.

Everything above it (the controller's flow compiler, the topologies, the scenarios)
reads this model; nothing here imports them.
"""

from k8snet.model.apply import apply_text
from k8snet.model.cluster import Backend, Cluster, Node, Pod, Service, ServicePort, ServiceType, UnderlayType
from k8snet.model.manifests import Overrides, Problem, SpecError, load_path, load_text

__all__ = ["Backend", "Cluster", "Node", "Overrides", "Pod", "Problem", "Service", "ServicePort", "ServiceType",
           "SpecError", "UnderlayType", "apply_text", "load_path", "load_text"]
