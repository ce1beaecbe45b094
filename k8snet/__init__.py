"""k8snet: the Kubernetes network model (Flannel host-gw, kube-proxy Services) emulated
on Mininet, with one userspace Open vSwitch per node and an os-ken controller."""

__version__ = "0.1.0"
