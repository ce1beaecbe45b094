"""``k8snet trace``: one packet followed across the running cluster, predicted and observed.

    from topos.trace import trace
    t = trace(net, "web-0", "svc/web", protocol="tcp")      # net: a running ClusterNet
    t.verdict, [h.where for h in t.hops], t.agrees

* :mod:`topos.trace.walk` predicts the walk: OVS's ``ofproto/trace`` on each node's live
  flows, the kernel's routing on each router, the wiring between them;
* :mod:`topos.trace.observe` sends the packet and captures it on every interface of the
  predicted path, marking each hop where what was seen differs;
* :mod:`topos.trace.hops` is the result, the same for the terminal and for ``--json``.
"""

from __future__ import annotations

from typing import Any, Optional

from k8snet.model.trace_ends import Question, question
from topos.trace.hops import Trace


def ask(net: Any, src: str, dst: str, protocol: str = "icmp", sport: Optional[int] = None, ttl: int = 64,
        observe: bool = True, size: Optional[int] = None) -> Question:
    """The question, resolved (TraceInputError on a mistake).  An observed TCP or UDP trace
    gets a fresh source port unless one is given: a port a recent trace used could meet its
    conntrack entry, and the packet would no longer be a new connection."""
    from topos.probe import fresh_ports

    if sport is None and observe and protocol != "icmp":
        sport = fresh_ports(1)
    return question(net.cluster, src, dst, protocol, sport, ttl, size)


def trace(net: Any, src: str, dst: str, protocol: str = "icmp", sport: Optional[int] = None, ttl: int = 64,
          observe: bool = True, size: Optional[int] = None) -> Trace:
    """Predict (and, with ``observe``, send and capture) one packet from ``src`` to ``dst``;
    ``size``: its IP length, Don't Fragment set."""
    from topos.trace.observe import observe as run_observe
    from topos.trace.walk import Walker

    q = ask(net, src, dst, protocol, sport, ttl, observe, size)
    predicted = Walker(net).predict(q)
    return run_observe(net, q, predicted) if observe else predicted
