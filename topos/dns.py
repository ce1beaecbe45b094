"""Cluster DNS: what CoreDNS answers for ``cluster.local``, served by unbound from the model.

A ``kube-dns`` pod (namespace ``kube-system``) runs unbound on the ClusterIP 10.96.0.10,
like kubeadm's CoreDNS.  Its zone is written from the model, so it follows every change:

* ``<svc>.<ns>.svc.cluster.local`` -> the ClusterIP; a headless Service -> its ready
  pods' IPs; an ExternalName Service -> a CNAME to its external name;
* nothing else: unbound does not recurse (``local-zone: "." refuse``), so no query ever
  leaves the emulated cluster (an ExternalName's target therefore does not resolve here).

Each pod gets its own ``/etc/resolv.conf`` as the kubelet writes it (search
``<ns>.svc.cluster.local svc.cluster.local cluster.local``, ``ndots:5``), bind-mounted
over the host's file inside the pod's private mount namespace, so ``curl
http://web.default.svc.cluster.local/`` and plain ``web`` resolve with the ordinary resolver.
"""

from __future__ import annotations

import ipaddress

from topos.model import Cluster, Pod

DNS_IP = ipaddress.IPv4Address("10.96.0.10")
DNS_NAME, DNS_NAMESPACE = "kube-dns", "kube-system"
DOMAIN = "cluster.local"
TTL = 5


def records(cluster: Cluster) -> list[str]:
    """unbound ``local-data`` lines for every Service."""
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


def unbound_conf(cluster: Cluster, directory: str) -> str:
    return authoritative_conf(directory, DOMAIN, records(cluster))


def authoritative_conf(directory: str, zone: str, data_records: list[str], interface: str = "0.0.0.0") -> str:
    """unbound answering ``zone`` from ``data_records`` only: no recursion, so no query ever
    leaves the namespaces of ours (the cluster DNS, and the ingress example's public DNS)."""
    data = "\n".join(f'  local-data: "{r}"' for r in data_records)
    return f"""server:
  interface: {interface}
  port: 53
  do-ip6: no
  do-daemonize: no
  chroot: ""
  username: ""
  directory: "{directory}"
  pidfile: "{directory}/unbound.pid"
  use-syslog: no
  logfile: ""
  verbosity: 0
  access-control: 0.0.0.0/0 allow
  module-config: "iterator"
  local-zone: "." refuse
  local-zone: "{zone.rstrip('.')}." static
{data}
remote-control:
  control-enable: no
"""


def resolv_conf(pod: Pod) -> str:
    return (f"search {pod.namespace}.svc.{DOMAIN} svc.{DOMAIN} {DOMAIN}\n"
            f"nameserver {DNS_IP}\noptions ndots:5\n")
