"""A stratified sample of the reachability matrix, for clusters too large to probe whole.

A 100-node cluster with 4 pods per node has 240,000 ordered pairs; ``k8snet check
--sample N`` probes N of them.  A plain random sample of a routed host-gw cluster would
be almost all cross-rack pairs (predicted unreachable) and few same-node ones, so the
sample is stratified: every *path type* -- the pair's kind (pod-pod on one node, pod-pod
across nodes, node-pod, pod-node), whether the two nodes share an underlay segment, and
what the model predicts (reachable, not carried by the backend, denied by a
NetworkPolicy) -- gets at least one pair, and the rest of N is shared out in proportion
to the types' sizes (largest remainders).  Seeded, so a run can be repeated exactly.

Pure: the probe (:mod:`topos.probe`) measures whatever pairs it is given.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from typing import Any

from k8snet.model.cluster import Cluster
from k8snet.model.reach import Pair, pairs as matrix_pairs


class SampleError(ValueError):
    """A sample size that cannot cover the matrix's path types."""


@dataclass(frozen=True)
class Sample:
    """A sample drawn once (:func:`draw`): checked before anything is built, then probed."""

    cluster: Cluster
    pairs: list[Pair]
    everything: list[Pair]
    seed: int

    @classmethod
    def full(cls, cluster: Cluster) -> "Sample":
        """The whole matrix, as a sample of itself (what is probed without ``--sample``)."""
        everything = matrix_pairs(cluster)
        return cls(cluster, everything, everything, 0)

    @property
    def partial(self) -> bool:
        return len(self.pairs) < len(self.everything)

    def document(self) -> dict[str, Any]:
        """What a matrix's JSON says about it: how many of how many, the seed, per path type."""
        return {"pairs": len(self.pairs), "of": len(self.everything), "seed": self.seed,
                "path_types": summary(self.cluster, self.pairs, self.everything)}


def draw(cluster: Cluster, n: int, seed: int = 0) -> Sample:
    """``n`` pairs of ``cluster``'s matrix (:func:`sample_pairs`); raises :class:`SampleError`."""
    everything = matrix_pairs(cluster)
    return Sample(cluster, sample_pairs(cluster, everything, n, seed), everything, seed)


def stratum(cluster: Cluster, pair: Pair, node_of: dict[str, str]) -> str:
    """The path type of ``pair``: ``kind/segment/prediction``."""
    a, b = cluster.node(node_of[pair.src]), cluster.node(node_of[pair.dst])
    segment = "same-node" if a.name == b.name else ("same-segment" if a.subnet == b.subnet else "cross-segment")
    verdict = "reachable" if pair.predicted else ("denied" if pair.denied_by else "not-carried")
    return f"{pair.kind}/{segment}/{verdict}"


def strata(cluster: Cluster, pairs: list[Pair]) -> dict[str, list[int]]:
    """Path type -> indices of its pairs in ``pairs``."""
    node_of = {n.name: n.name for n in cluster.nodes} | {p.host_name: p.node for p in cluster.pods}
    out: dict[str, list[int]] = {}
    for i, pair in enumerate(pairs):
        out.setdefault(stratum(cluster, pair, node_of), []).append(i)
    return out


def sample_pairs(cluster: Cluster, pairs: list[Pair], n: int, seed: int = 0) -> list[Pair]:
    """``n`` of ``pairs``, stratified by path type (all of them when ``n`` covers them),
    in their original order."""
    if n >= len(pairs):
        return list(pairs)
    groups = strata(cluster, pairs)
    if n < len(groups):
        raise SampleError(f"--sample {n} is fewer than the {len(groups)} path types of this matrix "
                          f"({', '.join(sorted(groups))}); use --sample {len(groups)} or more")
    share = allocate({name: len(members) for name, members in groups.items()}, n)
    rng = random.Random(seed)
    chosen = [i for name in sorted(groups) for i in rng.sample(groups[name], share[name])]
    return [pairs[i] for i in sorted(chosen)]


def allocate(sizes: dict[str, int], n: int) -> dict[str, int]:
    """One per type, then the rest of ``n`` in proportion to what each type has left
    (largest remainders; ties by name), never more than a type has."""
    share = {name: 1 for name in sizes}
    rest = n - len(sizes)
    left = {name: size - 1 for name, size in sizes.items()}
    total = sum(left.values())
    if rest <= 0 or total == 0:
        return share
    exact = {name: rest * size / total for name, size in left.items()}
    for name, value in exact.items():
        share[name] += int(value)
    remaining = rest - sum(int(v) for v in exact.values())
    for name in sorted(exact, key=lambda k: (-(exact[k] - int(exact[k])), k))[:remaining]:
        share[name] += 1
    return {name: min(count, sizes[name]) for name, count in share.items()}


def summary(cluster: Cluster, sampled: list[Pair], pairs: list[Pair]) -> dict[str, dict[str, int]]:
    """Per path type: how many pairs the full matrix has and how many were probed."""
    everything = Counter({name: len(members) for name, members in strata(cluster, pairs).items()})
    probed = Counter({name: len(members) for name, members in strata(cluster, sampled).items()})
    return {name: {"pairs": everything[name], "probed": probed.get(name, 0)} for name in sorted(everything)}
