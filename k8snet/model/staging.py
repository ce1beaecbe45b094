"""A change to a running cluster, cut into steps that every switch can take safely (pure).

Each node's switch gets its own atomic bundle, but the switches do not commit at the same
instant.  A pod that comes or goes touches two kinds of flows on different switches:
its own (delivery to its port, on its node) and the Service flows that send new
connections to it (on every node).  Changed in one step, a client's node may already send
a new connection to a new endpoint whose node cannot deliver to it yet -- or keep sending
to a deleted one whose node no longer can.  (Seen: 4 of ~3,000 connections lost while a
Deployment was scaled up under load, each DNATed to the new pod and never answered.)

So a change that adds or removes pods goes in two steps, the first one applied on every
switch before the second starts:

1. every pod of before and after exists, the new ones and the departing ones not ready:
   new pods get their flows, departing pods stop being endpoints everywhere;
2. the change as asked: new pods become endpoints, departing pods' flows go.
"""

from __future__ import annotations

from k8snet.model.cluster import Cluster


def stages(before: Cluster, after: Cluster) -> list[Cluster]:
    """The models to apply in order to get from ``before`` to ``after`` (the last is ``after``)."""
    old = {(p.namespace, p.name): p for p in before.pods}
    new = {(p.namespace, p.name): p for p in after.pods}
    if old.keys() == new.keys():
        return [after]
    departing = [p.model_copy(update={"ready": False}) for key, p in old.items() if key not in new]
    pods = tuple(p if key in old else p.model_copy(update={"ready": False}) for key, p in new.items())
    return [after.model_copy(update={"pods": pods + tuple(departing)}), after]
