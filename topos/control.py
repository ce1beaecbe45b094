"""The running cluster's own API, served by the process that owns it (``k8snet up``).

Only that process can add or remove pod namespaces (they are its Mininet hosts), so
``k8snet apply -f FILE`` sends the documents here, over ``<run dir>/cluster.sock``
(newline-delimited JSON, like the controller's API).  The documents are resolved
against the running model (:func:`k8snet.model.apply.apply_text`) and applied through
:meth:`topos.cluster.ClusterNet.apply`, the same path the Python API uses.

Requests: ``{"op": "apply"|"delete", "text": YAML}``, ``{"op": "status"}``, ``{"op": "trace",
"src", "dst", "proto", "sport", "ttl", "size", "observe"}`` (:mod:`topos.trace`), ``{"op": "loss",
"link", "loss", "direction"}`` and ``{"op": "links"}`` (:mod:`topos.impair`), ``{"op": "fault", "kind",
"action", "target", "how"}`` and ``{"op": "faults"}`` (:mod:`topos.faults`).
"""

from __future__ import annotations

import json
from typing import Any

from controllers.api import ApiServer
from k8snet.model.apply import apply_text
from k8snet.model.manifests import SpecError

SOCKET_NAME = "cluster.sock"


def summarize(before: Any, after: Any) -> dict[str, Any]:
    old, new = {p.host_name for p in before.pods}, {p.host_name for p in after.pods}
    services = {s.key: s for s in after.services}
    was, now = {p.key: p for p in before.policies}, {p.key: p for p in after.policies}
    return {"pods_added": sorted(new - old), "pods_removed": sorted(old - new),
            "policies_added": sorted(now.keys() - was.keys()), "policies_removed": sorted(was.keys() - now.keys()),
            "policies_changed": sorted(k for k in now.keys() & was.keys() if now[k] != was[k]),
            "load_balancers": {k: str(s.load_balancer_ip) for k, s in services.items() if s.load_balancer_ip},
            "pods": len(new), "not_ready": sorted(p.host_name for p in after.pods if not p.ready),
            "nodes_not_ready": [n.name for n in after.nodes if not n.ready],
            "services": {k: {"clusterIP": str(s.cluster_ip) if s.cluster_ip else None,
                             "ports": [{"port": p.port, "protocol": p.protocol, "nodePort": p.node_port,
                                        "endpoints": [f"{e.ip}:{e.port}" for e in after.endpoints(s, p)]}
                                       for p in s.ports]}
                         for k, s in services.items()}}


class ClusterControl:
    def __init__(self, net: Any):
        self.net = net
        assert net.run is not None
        self.server = ApiServer(str(net.run.path / SOCKET_NAME), self.handle)

    def trace(self, request: dict[str, Any]) -> dict[str, Any]:
        return _trace(self.net, request)

    def start(self) -> "ClusterControl":
        self.server.start()
        return self

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op == "status":
            return {"ok": True, **summarize(self.net.cluster, self.net.cluster)}
        if op == "trace":
            return self.trace(request)
        if op in ("loss", "links"):
            return _loss(self.net, request)
        if op in ("fault", "faults"):
            return _fault(self.net, request)
        if op not in ("apply", "delete"):
            return {"ok": False, "error": f"unknown op {op!r}; allowed: apply, delete, fault, faults, links, loss, "
                                          "status, trace"}
        before = self.net.cluster
        try:
            after = apply_text(before, request.get("text", ""), delete=op == "delete")
        except SpecError as exc:
            return {"ok": False, "error": "invalid documents", "problems": [str(p) for p in exc.problems]}
        self.net.apply(after)
        return {"ok": True, **summarize(before, after)}


def dumps(reply: dict[str, Any]) -> str:
    return json.dumps(reply, indent=1)


def _trace(net: Any, request: dict[str, Any]) -> dict[str, Any]:
    from k8snet.model.trace_ends import TraceInputError
    from topos.trace import trace

    try:
        size = request.get("size")
        result = trace(net, str(request.get("src", "")), str(request.get("dst", "")), str(request.get("proto", "icmp")),
                       request.get("sport"), int(request.get("ttl", 64)), bool(request.get("observe", True)),
                       int(size) if size is not None else None)
    except TraceInputError as exc:
        return {"ok": False, "error": str(exc), "argument": exc.argument}
    return {"ok": True, "trace": result.to_json()}


def _loss(net: Any, request: dict[str, Any]) -> dict[str, Any]:
    """Set one link's loss (op ``loss``), then answer what ``links`` answers: every
    underlay link, its loss now and what its rules counted."""
    from k8snet.model.faults import FaultInputError
    from k8snet.model.links import underlay_links
    from topos.datapath import LOSSY
    from topos.faults import perform

    if request.get("op") == "loss":
        try:
            perform(net, request)
        except FaultInputError as exc:
            return {"ok": False, "error": str(exc), "argument": exc.argument}
    cluster = net.cluster
    note = f"offload tso: {LOSSY}" if cluster.offload == "tso" and cluster.underlay.impairments else ""
    return {"ok": True, "note": note, "links": [{"name": l.name, "kind": l.kind, "at": f"{l.host}:{l.device}"}
                                  for l in underlay_links(cluster).values()],
            "impairments": [i.model_dump(mode="json") for i in cluster.underlay.impairments],
            "counters": [c.to_json() for c in net.impairments.counters()]}


def _fault(net: Any, request: dict[str, Any]) -> dict[str, Any]:
    """Do one fault (op ``fault``), then answer what ``faults`` answers: what is down now,
    which nodes are NotReady, and the faults done so far."""
    from k8snet.model.faults import FaultInputError
    from topos.faults import perform

    done = None
    if request.get("op") == "fault":
        try:
            done = perform(net, request)
        except FaultInputError as exc:
            return {"ok": False, "error": str(exc), "argument": exc.argument}
    return {"ok": True, "done": done, **net.faults.status(), "node_events": net.monitor.events}
