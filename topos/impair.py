"""Lossy underlay links on a running cluster: rules installed, changed, counted.

The rules are written by :func:`k8snet.model.links.nft_scripts` and loaded with ``nft -f``
in the segment side's namespace (the flat underlay, a rack gateway, the core); they go
away with that namespace, so teardown has nothing extra to remove.  Counters are read
with ``nft -j list counters``: a result says how many frames crossed a lossy link and
how many it dropped, so the loss it reports is the one achieved.
"""

from __future__ import annotations

import json
from typing import Any

from k8snet.model.cluster import Cluster
from k8snet.model.faults import check_loss
from k8snet.model.links import TABLE, LossCount, LossMap, impairments_of, loss_map, nft_scripts, read_counters, \
    underlay_links


class Impairments:
    """The loss rules of one running cluster (``ClusterNet.impairments``): the Python API
    is :meth:`set_loss` and :meth:`counters`.  ``installed`` holds every (link, way) that
    has a chain, with its loss now (0 once cleared: the chain keeps counting)."""

    def __init__(self, net: Any):
        self.net = net
        self.installed: LossMap = {}

    def install(self, cluster: Cluster) -> None:
        """The spec's impairments, at build time."""
        self._load(cluster, loss_map(cluster.underlay.impairments))

    def set_loss(self, link: str, loss: Any, direction: Any = "both") -> None:
        """Make one link drop ``loss`` percent of its frames from now on (0 clears it),
        in ``direction`` as seen from the link's host; the cluster's model says so after.
        A request that names no link or no loss raises ``FaultInputError``."""
        with self.net._lock:
            cluster = self.net.cluster
            percent, way = check_loss(cluster, link, loss, direction)
            losses = loss_map(cluster.underlay.impairments)
            change = {(link, w): percent for w in way.ways()}
            self._load(cluster, change)
            losses.update(change)
            impaired = impairments_of(losses, underlay_links(cluster))
            self.net.cluster = cluster.model_copy(
                update={"underlay": cluster.underlay.model_copy(update={"impairments": impaired})})

    def reload(self, link: str) -> None:
        """``link``'s rules again, as they are: its device was made anew (a node's uplink
        tap, after its vswitchd restarted; topos/attach.py), and a netdev chain goes with
        the device it hooks.  Its counters restart."""
        mine = {key: loss for key, loss in self.installed.items() if key[0] == link}
        if mine:
            self._load(self.net.cluster, mine)

    def counters(self) -> list[LossCount]:
        """Frames seen and dropped by every loss rule installed so far, per link and way."""
        cluster = self.net.cluster
        hosts = {underlay_links(cluster)[name].host for name, _ in self.installed}
        listed = {}
        for host in sorted(hosts):
            text = self.net.net[host].ns("nft", "-j", "list", "counters", "table", "netdev", TABLE, timeout=10)
            listed[host] = json.loads(text)
        return read_counters(cluster, self.installed, listed)

    def _load(self, cluster: Cluster, losses: LossMap) -> None:
        for host, script in nft_scripts(cluster, losses).items():
            self.net.net[host].ns("nft", "-f", "-", input=script, timeout=10)
        self.installed.update(losses)
