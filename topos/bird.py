"""BIRD 2 configuration for one BGP speaker, written from the model (k8snet/model/bgp.py).

Pure text.  The timers are a lab's, not BIRD's defaults (hold 240 s, connect retry 120 s,
startup hold 240 s, error wait 60-300 s, which would make one flap cost minutes):

* ``hold time 3`` / ``keepalive time 1``: a dead peer is noticed within 3 s (RFC 4271's
  smallest hold time);
* ``connect delay time 1`` / ``connect retry time 1`` / ``error wait time 1, 2``: a session
  comes (back) up within a second or so of its peer being reachable;
* ``scan time 1`` on the device protocol: an interface that comes back is seen at once.

A node installs what it learned into its own table (``NODE_ROUTE_TABLE``), which no rule
of the node's looks up: the node's OVS forwards, programmed from that table by the
controller; a router installs into its main table, and its kernel forwards.
"""

from __future__ import annotations

from pathlib import Path

from k8snet.model.bgp import Peer, Speaker

LAB_TIMERS = ("hold time 3; keepalive time 1; connect delay time 1; connect retry time 1; "
              "error wait time 1, 2; error forget time 10;")


def config(speaker: Speaker, log: Path) -> str:
    """The whole ``bird.conf`` of ``speaker``."""
    table = speaker.installs_into_kernel_table
    lines = [f'log "{log}" all;', f"router id {speaker.router_id};", "",
             "protocol device { scan time 1; }", "",
             "protocol kernel {",
             "    ipv4 { import none; export where source = RTS_BGP; };",
             *([f"    kernel table {table};"] if table is not None else []),
             "    scan time 1;",
             "}", ""]
    if speaker.originates:
        lines += ["protocol static originated {", "    ipv4;",
                  *[f"    route {prefix} blackhole;" for prefix in speaker.originates], "}", ""]
    for peer in speaker.peers:
        lines += _session(speaker, peer)
    return "\n".join(lines) + "\n"


def _session(speaker: Speaker, peer: Peer) -> list[str]:
    ibgp = peer.asn == speaker.asn
    # A node announces its own CIDR; a router passes on what BGP gave it (a reflector to
    # its clients with the originating node kept as next hop, except for routes from the
    # core, for which it is the next hop itself: ``next hop self ebgp``).
    export = "where source = RTS_STATIC" if speaker.role == "node" else "where source = RTS_BGP"
    channel = [f"export {export};", "import all;"]
    if speaker.role == "gateway" and ibgp:
        channel.append("next hop self ebgp;")
    return [f"protocol bgp {peer.protocol} {{",
            f"    description \"{speaker.name} <-> {peer.name}\";",
            f"    local {peer.local_ip} as {speaker.asn};",
            f"    neighbor {peer.ip} as {peer.asn};",
            *(["    rr client;"] if peer.rr_client else []),
            # One hop: next hops are on the segment (iBGP would resolve them recursively
            # through an IGP this fabric does not run).
            *(["    direct;"] if ibgp else []),
            f"    {LAB_TIMERS}",
            "    ipv4 { " + " ".join(channel) + " };",
            "}", ""]
