"""Room in the kernel's one ARP table for every emulated node (topos/neighbours.py)."""

from __future__ import annotations

from pathlib import Path

from k8snet.model.resolver import Overrides
from topos.neighbours import MININET_LIMITS, make_room, need, table_fulls, wanted
from topos.specs import load

DEFAULTS = {"gc_thresh1": 128, "gc_thresh2": 512, "gc_thresh3": 1024}


def _sysctl(tmp_path: Path, values: dict[str, int]) -> Path:
    for name, value in values.items():
        (tmp_path / name).write_text(f"{value}\n")
    return tmp_path


def test_the_need_grows_with_the_square_of_the_pods_per_node():
    small, big = load(None, Overrides(nodes=3, pods_per_node=2)), load(None, Overrides(nodes=32, pods_per_node=16))
    assert need(small) < 200
    # 32 x 16: 512 pods each resolving its 15 neighbours and its gateway -- what filled
    # the default 1024 entries (224 same-node pairs unreachable, 2026-12-01).
    assert need(big) >= 32 * 16 * 16


def test_a_small_cluster_changes_nothing_and_a_large_one_raises_to_at_least_mininets_limits(tmp_path):
    assert wanted(150, DEFAULTS) == {}
    raised = wanted(600, DEFAULTS)
    assert raised == MININET_LIMITS
    huge = wanted(20000, DEFAULTS)
    assert huge["gc_thresh3"] == 40000 and huge["gc_thresh2"] == 20000 and huge["gc_thresh1"] == 4096


def test_limits_are_never_lowered():
    high = {"gc_thresh1": 8192, "gc_thresh2": 30000, "gc_thresh3": 60000}
    assert wanted(20000, high) == {}
    mixed = {"gc_thresh1": 8192, "gc_thresh2": 30000, "gc_thresh3": 2048}
    assert wanted(2000, mixed) == {"gc_thresh3": 16384}


def test_make_room_writes_the_sysctls_and_says_what_it_changed(tmp_path):
    cluster = load(None, Overrides(nodes=32, pods_per_node=16))
    said: list[str] = []
    change = make_room(cluster, said.append, _sysctl(tmp_path, DEFAULTS))
    assert change["gc_thresh3"] >= 2 * need(cluster)
    assert int((tmp_path / "gc_thresh3").read_text()) == change["gc_thresh3"]
    assert len(said) == 1 and "gc_thresh3 1024 -> " in said[0] and "32 nodes" in said[0]
    assert make_room(cluster, said.append, tmp_path) == {} and len(said) == 1  # already enough


def test_table_fulls_sums_the_per_cpu_hex_counters(tmp_path):
    stat = tmp_path / "arp_cache"
    stat.write_text("entries  allocs   table_fulls\n00000001 0000000a 00000010\n00000002 0000000b 0000000f\n")
    assert table_fulls(stat) == 31
    assert table_fulls(tmp_path / "missing") is None
    stat.write_text("entries allocs\n1 2\n")
    assert table_fulls(stat) is None
