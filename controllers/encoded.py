"""Flow mods encoded once and sent, as bytes, to every switch that needs them.

Why: a replay sends every flow of a node in one bundle (~2,300 flow mods on 4 nodes x 16
pods x 100 Services), and most of them are the same on every node -- Service flows are
written alike everywhere, as kube-proxy writes the same rules on every node (94 % of that
cluster's flows are common to all four nodes). os-ken builds and serializes each message in
Python, ~0.15 s per switch there, and a controller restart replays the switches one after
another. Encoding each distinct (flow, command, cookie) once and copying its bytes for the
next switch saves that work for every switch after the first, and for every switch but one
when an ``apply`` sends the same change everywhere.

The bytes are os-ken's own serialization (:func:`controllers.flows.flow_mod`), so nothing
here writes OpenFlow by hand; only the header's transaction id differs between copies,
and the bundle wrapper sets it (OF 1.3 bundle extension: the inner message carries the
outer message's xid).
"""

from __future__ import annotations

import struct
from typing import Any, Optional

from controllers.flows import Flow, flow_mod

#: Bytes 4..8 of an OpenFlow header: the transaction id.
_XID = struct.Struct("!I")
_XID_OFFSET = 4


class Encoded:
    """A flow mod already in wire form.  It offers what os-ken's ``ONFBundleAddMsg`` and a
    datapath's send path use of a message: ``xid``, ``set_xid``, ``serialize`` and
    ``buf``."""

    __slots__ = ("wire", "xid", "buf")

    def __init__(self, wire: bytes) -> None:
        self.wire = wire
        self.xid: Optional[int] = None
        self.buf: bytearray = bytearray()

    def set_xid(self, xid: int) -> None:
        self.xid = xid

    def serialize(self) -> None:
        self.buf = bytearray(self.wire)
        _XID.pack_into(self.buf, _XID_OFFSET, self.xid or 0)


class Encoder:
    """Remembers the wire form of every flow mod it has built.

    Flows are immutable and hashable, and the bytes depend on nothing else but the
    command and the cookie (every switch speaks OpenFlow 1.3), so an entry never goes
    stale; the memory is bounded by forgetting everything past ``limit`` entries (a few
    hundred bytes each)."""

    def __init__(self, limit: int = 100_000) -> None:
        self.limit = limit
        self._wire: dict[tuple[Flow, str, Optional[int]], bytes] = {}
        self.built = 0
        self.reused = 0

    def flow_mod(self, datapath: Any, flow: Flow, command: str, cookie: Optional[int] = None) -> Encoded:
        key = (flow, command, cookie)
        wire = self._wire.get(key)
        if wire is None:
            if len(self._wire) >= self.limit:
                self._wire.clear()
            msg = flow_mod(datapath, flow, command, cookie=cookie)
            msg.set_xid(0)
            msg.serialize()
            wire = self._wire[key] = bytes(msg.buf)
            self.built += 1
        else:
            self.reused += 1
        return Encoded(wire)
