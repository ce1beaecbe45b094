"""A schedule of faults for a scenario to play (``k8snet run faults --schedule FILE``), pure.

The file is a YAML list; times are seconds from the moment the traffic starts::

    - {at: 2, for: 4, fault: node, target: node-2}             # cut off (how: uplink|switch)
    - {at: 8, for: 2, fault: controller}                       # killed, started 2 s later
    - {at: 12, fault: switch, target: node-1}                  # vswitchd crash + restart
    - {at: 14, for: 3, fault: loss, target: node-1, loss: 5}   # direction: both|egress|ingress
    - {at: 18, for: 3, fault: router, target: gw-rack-1}
    - {at: 22, for: 2, fault: link, target: gw-rack-0}

Each entry becomes two actions, the fault at ``at`` and its undoing at ``at + for``
(a switch restart is one).  Two entries on the same target may not overlap: the
second would find the target in a state the first left it in, and the undoing of one
would undo the other half way.  Every mistake is named (``schedule[3].target``) before
anything starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import yaml

from k8snet.model.cluster import Cluster, UnderlayType
from k8snet.model.faults import FaultInputError, check_fault, check_loss

#: Longest schedule accepted (seconds): a scenario's traffic runs this long.
MAX_SECONDS = 600
KINDS = ("link", "router", "node", "switch", "controller", "loss")
FIELDS = {"at", "for", "fault", "target", "how", "loss", "direction"}
#: The action that starts each fault (topos.faults' words).
KINDS_ACTION = {"link": "down", "router": "down", "node": "down", "switch": "restart", "controller": "kill"}


class ScheduleError(ValueError):
    def __init__(self, problems: list[tuple[str, str]]):
        super().__init__("; ".join(f"{field}: {message}" for field, message in problems))
        self.problems = problems


@dataclass(frozen=True)
class ScheduledFault:
    """One entry: ``kind`` on ``target`` from ``at`` for ``seconds`` (0: instantaneous)."""

    at: float
    seconds: float
    kind: str
    target: str = ""
    how: str = "uplink"
    loss: float = 0.0
    direction: str = "both"

    @property
    def end(self) -> float:
        return self.at + self.seconds

    @property
    def label(self) -> str:
        return {"node": f"node {self.target} down ({self.how})", "link": f"link {self.target} down",
                "router": f"router {self.target} down", "switch": f"vswitchd of {self.target} restarted",
                "controller": "controller killed",
                "loss": f"{self.loss:g} % loss on {self.target} ({self.direction})"}[self.kind]

    def actions(self) -> list[tuple[float, dict[str, Any]]]:
        """(time, request) pairs: what the player does, in the cluster socket's ``fault``/``loss`` terms."""
        if self.kind == "loss":
            return [(self.at, {"op": "loss", "link": self.target, "loss": self.loss, "direction": self.direction}),
                    (self.end, {"op": "loss", "link": self.target, "loss": 0, "direction": self.direction})]
        if self.kind == "switch":
            return [(self.at, {"op": "fault", "kind": "switch", "action": "restart", "target": self.target})]
        if self.kind == "controller":
            return [(self.at, {"op": "fault", "kind": "controller", "action": "kill"}),
                    (self.end, {"op": "fault", "kind": "controller", "action": "start"})]
        return [(self.at, {"op": "fault", "kind": self.kind, "action": "down", "target": self.target,
                           "how": self.how}),
                (self.end, {"op": "fault", "kind": self.kind, "action": "up", "target": self.target})]

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at, "for": self.seconds, "fault": self.kind, "target": self.target, "label": self.label,
                **({"how": self.how} if self.kind == "node" else {}),
                **({"loss": self.loss, "direction": self.direction} if self.kind == "loss" else {})}


def _number(value: Any) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _entry(cluster: Cluster, i: int, raw: Any, problems: list[tuple[str, str]]) -> Optional[ScheduledFault]:
    where = f"schedule[{i}]"
    if not isinstance(raw, dict):
        problems.append((where, "each entry is a mapping such as {at: 2, for: 4, fault: node, target: node-2}"))
        return None
    unknown = sorted(str(k) for k in raw if k not in FIELDS)
    if unknown:
        problems.append((f"{where}.{unknown[0]}", f"unknown field; allowed: {', '.join(sorted(FIELDS))}"))
        return None
    kind = raw.get("fault")
    if kind not in KINDS:
        problems.append((f"{where}.fault", f"{kind!r} is not a fault; allowed: {', '.join(KINDS)}"))
        return None
    at, seconds = _number(raw.get("at")), _number(raw.get("for", 0))
    if at is None or not 0 <= at <= MAX_SECONDS:
        problems.append((f"{where}.at", f"seconds from the start of the traffic, 0 to {MAX_SECONDS} "
                                        f"(got {raw.get('at')!r})"))
        return None
    if seconds is None or seconds < 0 or at + seconds > MAX_SECONDS:
        problems.append((f"{where}.for", f"a duration in seconds that ends by {MAX_SECONDS} (got {raw.get('for')!r})"))
        return None
    if kind == "switch" and seconds:
        problems.append((f"{where}.for", "a switch restart has no duration (use fault: node, how: switch for a "
                                         "switch that stays down)"))
        return None
    if kind != "switch" and not seconds:
        problems.append((f"{where}.for", f"how long the {kind} fault lasts, in seconds (> 0)"))
        return None
    target = str(raw.get("target", "")) if kind != "controller" else ""
    entry = ScheduledFault(at=at, seconds=seconds, kind=kind, target=target, how=str(raw.get("how", "uplink")),
                           loss=_number(raw.get("loss", 0)) or 0.0, direction=str(raw.get("direction", "both")))
    try:
        if kind == "loss":
            check_loss(cluster, target, 0, entry.direction)  # the link and the direction, as at run time
        else:
            check_fault(cluster, kind, KINDS_ACTION[kind], target, entry.how)
    except FaultInputError as exc:
        field = {"TARGET": "target", "LINK": "target", "--how": "how", "--direction": "direction"}.get(
            exc.argument, "fault")
        problems.append((f"{where}.{field}", str(exc)))
        return None
    if kind == "loss" and (_number(raw.get("loss")) is None or not 0 < entry.loss < 100):
        problems.append((f"{where}.loss", f"percent of the frames dropped, above 0 and below 100 "
                                          f"(got {raw.get('loss')!r})"))
        return None
    return entry


def parse_schedule(text: str, cluster: Cluster) -> list[ScheduledFault]:
    """The schedule in ``text``, checked against ``cluster``; :class:`ScheduleError` lists
    every problem found."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScheduleError([("schedule", f"not valid YAML: {exc}")]) from None
    if not isinstance(raw, list) or not raw:
        raise ScheduleError([("schedule", "a YAML list of faults, e.g. - {at: 2, for: 4, fault: node, "
                                          "target: node-2}")])
    problems: list[tuple[str, str]] = []
    entries = [(i, _entry(cluster, i, item, problems)) for i, item in enumerate(raw)]
    placed = [(i, e) for i, e in entries if e is not None]
    for n, (i, a) in enumerate(placed):
        for j, b in placed[n + 1:]:
            if _same_target(a, b) and a.at <= b.end and b.at <= a.end:
                problems.append((f"schedule[{j}]", f"overlaps schedule[{i}] on {a.target or 'the controller'} "
                                                   f"({a.at:g}-{a.end:g} s and {b.at:g}-{b.end:g} s); one fault "
                                                   "per target at a time"))
    if problems:
        raise ScheduleError(problems)
    return sorted((e for _, e in placed), key=lambda e: e.at)


def _same_target(a: ScheduledFault, b: ScheduledFault) -> bool:
    if a.kind == "controller" or b.kind == "controller":
        return a.kind == b.kind
    return a.target == b.target


def default_schedule(cluster: Cluster) -> list[ScheduledFault]:
    """The one ``k8snet run faults`` plays without ``--schedule``: every kind of fault once,
    on the last node (and the last rack's gateway on a routed underlay), with time
    between them for the cluster to recover and the figures to show it."""
    last = cluster.nodes[-1].name
    grace = cluster.node_monitor_grace
    down = max(3.0, grace + 2.0)
    plan = [{"at": 1.5, "for": down, "fault": "node", "target": last},
            {"at": 3.0 + down, "for": 2, "fault": "controller"},
            {"at": 6.0 + down, "fault": "switch", "target": cluster.nodes[0].name},
            {"at": 8.0 + down, "for": 2, "fault": "loss", "target": cluster.nodes[0].name, "loss": 5}]
    if cluster.underlay.type is UnderlayType.ROUTED and cluster.underlay.racks:
        plan.append({"at": 11.5 + down, "for": down, "fault": "router",
                     "target": cluster.underlay.racks[-1].host_name})
    return parse_schedule(yaml.safe_dump(plan), cluster)
