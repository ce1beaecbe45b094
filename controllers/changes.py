"""The change plan: what to send to move a switch from what it holds to what it should hold (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field

from controllers.flows import Desired, Flow, Group


@dataclass
class Plan:
    """What to send to move a switch from ``installed`` to ``desired``, in the order
    OpenFlow needs: deletes first (flows, then the groups no flow points at any more),
    then group adds and modifies (so that new flows find their groups), then flow adds."""

    flow_deletes: list[Flow] = field(default_factory=list)
    group_deletes: list[Group] = field(default_factory=list)
    group_adds: list[Group] = field(default_factory=list)
    group_modifies: list[Group] = field(default_factory=list)
    flow_adds: list[Flow] = field(default_factory=list)

    def __len__(self) -> int:
        return (len(self.flow_deletes) + len(self.group_deletes) + len(self.group_adds)
                + len(self.group_modifies) + len(self.flow_adds))


def plan(installed: Desired, desired: Desired) -> Plan:
    """The difference between two states as an ordered list of changes (pure)."""
    have, want = installed.flows_by_key(), desired.flows_by_key()
    result = Plan()
    result.flow_deletes = [f for k, f in have.items() if k not in want]
    result.flow_adds = [f for k, f in want.items() if have.get(k) != f]
    have_groups = {g.group_id: g for g in installed.groups}
    want_groups = {g.group_id: g for g in desired.groups}
    result.group_adds = [g for i, g in want_groups.items() if i not in have_groups]
    result.group_modifies = [g for i, g in want_groups.items() if i in have_groups and have_groups[i] != g]
    result.group_deletes = [g for i, g in have_groups.items() if i not in want_groups]
    return result
