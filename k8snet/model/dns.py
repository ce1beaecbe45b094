"""Cluster DNS as the model sees it: the kube-dns pod and Service, and what it answers.

kubeadm runs CoreDNS as pods labelled ``k8s-app: kube-dns`` in ``kube-system`` behind the
ClusterIP 10.96.0.10 (the tenth address of the Service CIDR).  What it answers for
``cluster.local`` follows from the model alone, so it lives here; the daemon that
serves it (unbound) is configured in :mod:`topos.dns`.
"""

from __future__ import annotations

import ipaddress

from k8snet.model.cluster import Cluster, Pod

DNS_IP = ipaddress.IPv4Address("10.96.0.10")
DNS_NAME, DNS_NAMESPACE = "kube-dns", "kube-system"
DOMAIN = "cluster.local"
TTL = 5


def records(cluster: Cluster) -> list[str]:
    """One resource record per answer, in zone-file syntax, for every Service:
    ``<svc>.<ns>.svc.cluster.local`` -> the ClusterIP; headless -> the ready pods' IPs;
    ExternalName -> a CNAME."""
    out = []
    for svc in sorted(cluster.services, key=lambda s: s.key):
        name = f"{svc.name}.{svc.namespace}.svc.{DOMAIN}."
        if svc.external_name:
            out.append(f"{name} {TTL} IN CNAME {svc.external_name.rstrip('.')}.")
        elif svc.cluster_ip is not None:
            out.append(f"{name} {TTL} IN A {svc.cluster_ip}")
        elif svc.selector is not None:
            ips = sorted({int(p.ip) for p in cluster.pods if p.namespace == svc.namespace and p.ready
                          and p.matches(svc.selector)})
            out += [f"{name} {TTL} IN A {ipaddress.IPv4Address(ip)}" for ip in ips]
    return out


def resolv_conf(pod: Pod) -> str:
    """The resolv.conf a kubelet writes for a pod with ``dnsPolicy: ClusterFirst``."""
    return (f"search {pod.namespace}.svc.{DOMAIN} svc.{DOMAIN} {DOMAIN}\n"
            f"nameserver {DNS_IP}\noptions ndots:5\n")
