"""The stratified sample of the reachability matrix (k8snet/model/sampling.py)."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, strategies as st

from k8snet.model.reach import pairs
from k8snet.model.sampling import SampleError, allocate, sample_pairs, strata, summary
from k8snet.model.resolver import Overrides
from topos.specs import load


@pytest.fixture(scope="module")
def racks():
    # host-gw across racks: the pairs that must fail are a path type of their own.
    return load("racks", Overrides(backend="host-gw", pods_per_node=2))


def test_every_path_type_is_in_the_sample_and_the_size_is_exact(racks):
    everything = pairs(racks)
    groups = strata(racks, everything)
    assert any(name.endswith("/not-carried") for name in groups)
    assert any("/cross-segment/" in name for name in groups) and any("/same-node/" in name for name in groups)
    picked = sample_pairs(racks, everything, len(groups) + 5, seed=3)
    assert len(picked) == len(groups) + 5 and len(set(picked)) == len(picked)
    assert set(strata(racks, picked)) == set(groups)
    assert picked == [p for p in everything if p in set(picked)]  # original order
    assert sample_pairs(racks, everything, len(groups) + 5, seed=3) == picked  # seeded
    counts = summary(racks, picked, everything)
    assert sum(c["probed"] for c in counts.values()) == len(picked)
    assert all(1 <= c["probed"] <= c["pairs"] for c in counts.values())


def test_a_sample_as_large_as_the_matrix_is_the_matrix(racks):
    everything = pairs(racks)
    assert sample_pairs(racks, everything, len(everything)) == everything
    assert sample_pairs(racks, everything, 10 ** 6) == everything


def test_too_small_a_sample_names_the_path_types_and_the_minimum(racks):
    everything = pairs(racks)
    k = len(strata(racks, everything))
    with pytest.raises(SampleError, match=f"--sample {k} or more"):
        sample_pairs(racks, everything, k - 1)


@given(sizes=st.dictionaries(st.text("abcdef", min_size=1, max_size=3), st.integers(1, 500), min_size=1, max_size=8),
       extra=st.integers(0, 2000))
def test_allocation_is_exact_bounded_and_proportional(sizes, extra):
    n = min(len(sizes) + extra, sum(sizes.values()))
    share = allocate(sizes, n)
    assert all(1 <= share[k] <= sizes[k] for k in sizes)
    # Exact unless capping at a type's size took some away (then it is below n, never above).
    assert sum(share.values()) <= n
    if all(share[k] < sizes[k] for k in sizes):
        assert sum(share.values()) == n


def test_the_larger_type_gets_the_larger_share():
    share = allocate({"big": 901, "small": 101}, 102)
    assert share == {"big": 91, "small": 11} and Counter(share).most_common(1)[0][0] == "big"
