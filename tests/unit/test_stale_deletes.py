"""A replay's stale-flow deletes reach exactly the flows of other generations
(controllers.pipeline.stale_deletes), judged as OpenFlow judges a cookie mask."""

from __future__ import annotations

from hypothesis import given, strategies as st

from controllers.pipeline import (
    SERVICE_AFFINITY, TABLES, Feature, cookie, generation_of, stale_deletes, with_generation,
)

GENERATIONS = st.integers(min_value=1, max_value=0xFFFF)


def deleted(table: int, flow_cookie: int, generation: int) -> bool:
    return any((d.table is None or d.table == table) and flow_cookie & d.mask == d.cookie & d.mask
               for d in stale_deletes(generation))


@given(ours=GENERATIONS, other=st.integers(min_value=0, max_value=0xFFFF), obj=st.integers(0, 0xFFFFFFFF))
def test_a_flow_goes_exactly_when_its_generation_is_not_ours(ours, other, obj):
    flow_cookie = with_generation(cookie(Feature.SERVICES, obj), other)
    for table in TABLES:
        if table.id == SERVICE_AFFINITY:
            # Only the bit-by-bit deletes for bits we lack reach this table (learned flows
            # have generation 0 and must stay): a stamped flow there goes when it has one.
            assert deleted(table.id, flow_cookie, ours) == bool(other & ~ours), hex(flow_cookie)
        else:
            assert deleted(table.id, flow_cookie, ours) == (other != ours), (table.name, hex(flow_cookie))


@given(ours=GENERATIONS, obj=st.integers(0, 0xFFFFFFFF))
def test_learned_affinity_survives_and_ours_stays(ours, obj):
    learned = cookie(Feature.SERVICES, obj)  # the learn action's cookie has no generation
    assert generation_of(learned) == 0
    assert not deleted(SERVICE_AFFINITY, learned, ours)
    assert not deleted(SERVICE_AFFINITY, with_generation(learned, ours), ours)


def test_the_deletes_only_look_at_generation_bits():
    for d in stale_deletes(0x8001):
        assert d.mask.bit_count() == 1 and generation_of(d.mask) and d.cookie in (0, d.mask)
