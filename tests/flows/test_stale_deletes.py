"""The replay's stale-flow deletes, sent to a real OVS as ``ovs-ofctl del-flows`` with the
same cookie masks: the flows of this generation and learned affinity stay, the rest go."""

from __future__ import annotations

import pytest

from controllers.pipeline import (
    CONNTRACK, SERVICE_AFFINITY, SERVICE_LB, Feature, cookie, stale_deletes, with_generation,
)
from tests.helpers import FlowSim

OURS = 0xA5A5


@pytest.mark.parametrize("stale_generation", [0x0000, 0x5A5A, 0xA5A4, 0xFFFF, 0x0001])
def test_stale_deletes_on_a_real_switch(stale_generation):
    def line(table: int, generation: int, obj: int) -> str:
        c = with_generation(cookie(Feature.SERVICES, obj), generation)
        return f"cookie={c:#x},table={table},priority=10,ip,nw_dst=10.9.{obj}.1 actions=drop"

    keep = [line(SERVICE_LB, OURS, 1), line(CONNTRACK, OURS, 2), line(SERVICE_AFFINITY, 0, 3)]
    stale = [line(SERVICE_LB, stale_generation, 4), line(CONNTRACK, stale_generation, 5)]
    if stale_generation:
        stale.append(line(SERVICE_AFFINITY, stale_generation, 6))
    with FlowSim() as sim:
        sim.ovs.vsctl("add-br", sim.BRIDGE, "--", "set", "bridge", sim.BRIDGE, "datapath_type=dummy",
                      "fail-mode=secure", "protocols=OpenFlow13")
        sim.ovs.ofctl("add-flows", sim.BRIDGE, "-", input="\n".join(keep + stale) + "\n")
        for d in stale_deletes(OURS):
            where = "" if d.table is None else f"table={d.table},"
            sim.ovs.ofctl("del-flows", sim.BRIDGE, f"{where}cookie={d.cookie:#x}/{d.mask:#x}")
        left = sim.ovs.ofctl("dump-flows", sim.BRIDGE, "--no-stats")
    for obj in (1, 2, 3):
        assert f"nw_dst=10.9.{obj}.1" in left, left
    for obj in (4, 5):
        assert f"nw_dst=10.9.{obj}.1" not in left, left
    # A stamped flow in the affinity table whose generation has a bit we lack goes too.
    if stale_generation & ~OURS:
        assert "nw_dst=10.9.6.1" not in left, left
