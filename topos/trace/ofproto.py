"""Reading ``ovs-appctl ofproto/trace``: what one switch did to one packet (pure).

OVS's own tracer is the prediction on each node: it walks the switch's real flow tables,
``ct`` recirculations (each resumed with ``--ct-next`` state, NAT simulated from the
action's own addresses), ``multipath`` picks, ``dec_ttl`` and native VXLAN tunnelling
(``tnl_push`` with the outer header it will write; ``tnl_pop`` where a tunnel packet is
taken off the wire).  This module turns its text into data: the OpenFlow steps with their
tables and cookies, the NAT rewrites, the tunnel header, the headers the packet leaves
with, and where it leaves.

The text format is OVS 3.1's (``ofproto/ofproto-dpif-trace.c``); the unit tests hold
traces recorded from a running cluster (``tests/unit/data/ofproto_trace``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional

#: A table step: `` 4. ct_state=+new+trk,..., priority 200, cookie 0x5...`` (its indent
#: grows inside a resubmit or a ``check_pkt_larger`` branch).
_STEP = re.compile(r"^(?P<indent> *)(?P<table>\d+)\. (?P<match>.*?)(?:, )?priority (?P<prio>\d+)"
                   r"(?:, cookie (?P<cookie>0x[0-9a-f]+))?$")
_NO_MATCH = re.compile(r"^(?P<indent> *)(?P<table>\d+)\. No match\.")
_TUNNEL_FROM = re.compile(r"-> tunneling from (\S+) (\S+) to (\S+) (\S+)")
_PORT_IS = re.compile(r"-> output port is (\d+)")
_MODIFIED = re.compile(r"^ Modified flow: (.+)$")
_INITIAL = re.compile(r"^ Initial flow: (.+)$")


@dataclass
class FlowStep:
    """One OpenFlow rule the packet hit."""

    table: int
    priority: Optional[int]
    cookie: Optional[int]
    match: str
    actions: list[str] = field(default_factory=list)
    #: 0 on the packet's own path; deeper inside a branch OVS translated besides it
    #: (``check_pkt_larger``'s "larger" side), which this packet does not take.
    depth: int = 0
    #: The tunnel's outer packet, walking the bridge again after ``tnl_push``.
    outer: bool = False


@dataclass
class Tunnel:
    """The outer header ``tnl_push`` writes (``-> tunneling from ... to ...``)."""

    src_mac: str
    src_ip: str
    dst_mac: str
    dst_ip: str


@dataclass
class OfTrace:
    text: str
    steps: list[FlowStep]
    #: (fields before, fields after) for each NAT the trace simulated.
    nats: list[tuple[dict[str, str], dict[str, str]]]
    tunnel: Optional[Tunnel]
    #: The packet's fields at the end (``Final flow``, or the first ``Flow`` if unchanged).
    final: dict[str, str]
    #: Where the packet leaves: ``output:N`` (resolved ``output:regN`` too), ``LOCAL``,
    #: ``IN_PORT``, ``CONTROLLER``; for a tunnelled packet, the outer packet's outputs.
    outputs: list[str]
    datapath_actions: str
    ttl_exception: bool

    @property
    def decapsulates(self) -> bool:
        """The switch takes a tunnel packet off the wire here (``tnl_pop``)."""
        return "tnl_pop(" in self.datapath_actions

    @property
    def dropped(self) -> bool:
        return self.datapath_actions.strip() == "drop" or (not self.outputs and not self.decapsulates)

    def deciding_step(self) -> Optional[FlowStep]:
        """The last rule on the packet's own path: for a drop, the one that dropped it."""
        own = [s for s in self.steps if s.depth == 0 and not s.outer]
        return own[-1] if own else None


def fields(flow: str) -> dict[str, str]:
    """``a=1,b=2,tcp`` -> ``{"a": "1", "b": "2", "tcp": ""}`` (values never hold commas here)."""
    out: dict[str, str] = {}
    for part in flow.split(","):
        part = part.strip()
        if part:
            name, _, value = part.partition("=")
            out[name] = value
    return out


def parse(text: str) -> OfTrace:
    """One ``ofproto/trace`` answer, all its recirculation sections together."""
    steps: list[FlowStep] = []
    nats: list[tuple[dict[str, str], dict[str, str]]] = []
    tunnel: Optional[Tunnel] = None
    flow = final = datapath = ""
    outputs: list[str] = []
    ttl_exception = False
    initial: dict[str, str] = {}
    open_steps: list[FlowStep] = []     # the steps an indented action line can belong to
    for line in text.splitlines():
        if line.startswith("recirc(0x"):
            # A recirculation section: what the packet does next is decided here.
            outputs, tunnel, open_steps = [], None, []
        elif line.startswith("Flow: "):
            flow = line[len("Flow: "):]
        elif line.startswith("Final flow: "):
            value = line[len("Final flow: "):]
            final = flow if value == "unchanged" else value
        elif line.startswith("Datapath actions: "):
            datapath = line[len("Datapath actions: "):]
        elif m := _INITIAL.match(line):
            initial = fields(m.group(1))
        elif m := _MODIFIED.match(line):
            after = fields(m.group(1))
            if initial and after and initial != after:
                nats.append((initial, after))
        elif (m := _STEP.match(line)) or (m := _NO_MATCH.match(line)):
            groups = m.groupdict()
            no_match = "No match" in line
            step = FlowStep(table=int(groups["table"]),
                            priority=int(groups["prio"]) if groups.get("prio") else None,
                            cookie=int(groups["cookie"], 16) if groups.get("cookie") else None,
                            match="no match" if no_match else groups["match"],
                            depth=len(groups["indent"]) // 4, outer=tunnel is not None)
            if no_match:
                step.actions.append("drop")
            steps.append(step)
            open_steps = [s for s in open_steps if s.depth < step.depth] + [step]
        elif line.strip() and open_steps:
            indent = len(line) - len(line.lstrip(" "))
            owners = [s for s in open_steps if 4 * s.depth + 4 <= indent]
            if not owners:
                continue
            step, action = owners[-1], line.strip()
            if action.startswith("-> "):
                port, tun = _PORT_IS.search(action), _TUNNEL_FROM.search(action)
                if port and outputs and outputs[-1].startswith("output:NXM"):
                    outputs[-1] = f"output:{port.group(1)}"
                elif tun:
                    tunnel, outputs = Tunnel(*tun.groups()), []
            elif action.startswith(">>"):
                ttl_exception = ttl_exception or "decrement TTL exception" in action
            else:
                step.actions.append(action)
                if step.depth == 0 and (action.startswith(("output:", "CONTROLLER")) or action in ("LOCAL", "IN_PORT")):
                    outputs.append(action)
    return OfTrace(text=text, steps=steps, nats=nats, tunnel=tunnel, final=fields(final or flow),
                   outputs=outputs, datapath_actions=datapath, ttl_exception=ttl_exception)
