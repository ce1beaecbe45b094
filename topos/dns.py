"""Cluster DNS served by unbound: what CoreDNS answers for ``cluster.local`` (the
records come from :mod:`k8snet.model.dns`).

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

from k8snet.model.cluster import Cluster
from k8snet.model.dns import DOMAIN, records


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
  # Answer up to the size the client's EDNS asks for, as CoreDNS does (unbound's own
  # default caps UDP answers at 1232 bytes and sets TC beyond).
  edns-buffer-size: 4096
  max-udp-size: 4096
  local-zone: "." refuse
  local-zone: "{zone.rstrip('.')}." static
{data}
remote-control:
  control-enable: no
"""

