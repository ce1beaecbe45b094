"""OpenFlow flows and groups as plain, hashable data, with two renderings.

The compiler builds :class:`Flow` values; they render to

* ``ovs-ofctl`` text (:meth:`Flow.ofctl`), which the flow tests load into a
  throwaway OVS and trace, and which a human can review; and
* os-ken (or Ryu) messages (:func:`flow_mod`), which the controller sends.

Both renderings come from the same data, so what is tested is what is installed.
Match fields use the OXM names that both ``ovs-ofctl`` and os-ken's ``OFPMatch``
accept (``eth_type``, ``ipv4_dst``, ``arp_tpa``, ``reg0`` ...); a masked value is
written ``value/mask`` (``10.244.1.0/24``, ``0x1/0xf``).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Iterable, Union

OFPP_IN_PORT = 0xFFFFFFF8
OFPP_LOCAL = 0xFFFFFFFE
OFPP_CONTROLLER = 0xFFFFFFFD
_PORT_NAMES = {OFPP_IN_PORT: "IN_PORT", OFPP_LOCAL: "LOCAL", OFPP_CONTROLLER: "CONTROLLER"}

#: Nicira NAT flags (nicira-ext.h), the same in os-ken and Ryu.
NX_NAT_F_SRC, NX_NAT_F_DST = 1 << 0, 1 << 1

ETH_TYPE_IP = 0x0800
ETH_TYPE_ARP = 0x0806

#: Widths of the fields that ``move`` actions copy (whole-field moves only).
FIELD_BITS = {
    "eth_src": 48, "eth_dst": 48, "arp_sha": 48, "arp_tha": 48,
    "arp_spa": 32, "arp_tpa": 32, "ipv4_src": 32, "ipv4_dst": 32,
    **{f"reg{i}": 32 for i in range(8)},
}
_INT_FIELDS = {"in_port", "eth_type", "arp_op", "ip_proto", "tcp_src", "tcp_dst",
               "udp_src", "udp_dst", "icmpv4_type", "icmpv4_code", "tunnel_id",
               "ct_nw_proto", "ct_tp_src", "ct_tp_dst", "conj_id"}
_IP_FIELDS = {"ipv4_src", "ipv4_dst", "arp_spa", "arp_tpa", "tun_ipv4_src", "tun_ipv4_dst",
              "ct_nw_src", "ct_nw_dst"}
#: ``ip_frag`` (ovs-ofctl's ``nw_frag``) by name: (value, mask) of its two bits.
IP_FRAG = {"yes": (1, 1), "no": (0, 3), "first": (1, 3), "later": (2, 2), "not_later": (0, 2)}
#: ovs-ofctl spells a few OXM fields its own way.
_OFCTL_NAMES = {"ipv4_src": "nw_src", "ipv4_dst": "nw_dst", "ip_proto": "nw_proto",
                "tunnel_id": "tun_id", "tun_ipv4_src": "tun_src", "tun_ipv4_dst": "tun_dst", "ip_frag": "nw_frag"}


def ofctl_name(name: str) -> str:
    return _OFCTL_NAMES.get(name, name)

Value = Union[int, str]


def port_text(port: int) -> str:
    return _PORT_NAMES.get(port, str(port))


@dataclass(frozen=True)
class Match:
    """An OpenFlow match: field name -> value, immutable and ordered for stable output."""

    fields: tuple[tuple[str, Value], ...] = ()

    @classmethod
    def of(cls, **fields: Value) -> "Match":
        return cls(tuple(sorted(fields.items())))

    def get(self, name: str) -> Value | None:
        return dict(self.fields).get(name)

    def ofctl(self) -> str:
        parts = []
        for name, value in self.fields:
            if name == "in_port":
                parts.append(f"in_port={port_text(int(value))}")
            elif isinstance(value, int) and name not in _INT_FIELDS:
                parts.append(f"{ofctl_name(name)}={value:#x}")
            elif name == "eth_type":
                parts.append(f"eth_type={int(value):#06x}")
            else:
                parts.append(f"{ofctl_name(name)}={value}")
        return ",".join(parts)

    def osken_fields(self) -> list[tuple[str, Any]]:
        """``OFPMatch(_ordered_fields=...)``: the fields in an order that puts every
        prerequisite first (OVS checks them as it reads: ``eth_type`` before an address,
        ``ct_state`` before the conntrack tuple, ``ct_nw_proto`` before ``ct_tp_dst``).
        os-ken's own order sorts Nicira fields before OpenFlow's basic ones."""
        return sorted(self.osken_kwargs().items(), key=lambda item: _field_rank(item[0]))

    def osken_kwargs(self) -> dict[str, Any]:
        """Arguments for ``OFPMatch(**kwargs)`` (os-ken and Ryu alike)."""
        out: dict[str, Any] = {}
        for name, value in self.fields:
            if name == "ip_frag":
                out[name] = IP_FRAG[str(value)]
            elif isinstance(value, str) and "/" in value:
                base, mask = value.split("/", 1)
                if name in _IP_FIELDS:
                    net = ipaddress.IPv4Network(value, strict=False)
                    out[name] = (str(net.network_address), str(net.netmask))
                else:
                    out[name] = (int(base, 0), int(mask, 0))
            else:
                out[name] = value
        return out


_PREREQUISITES = ("in_port", "eth_type", "ip_proto", "ct_state", "ct_nw_proto")


def _field_rank(name: str) -> tuple[int, str]:
    return (_PREREQUISITES.index(name), "") if name in _PREREQUISITES else (len(_PREREQUISITES), name)


# --------------------------------------------------------------------------- actions
@dataclass(frozen=True)
class Output:
    port: int

    def ofctl(self) -> str:
        return f"output:{port_text(self.port)}" if self.port not in _PORT_NAMES else port_text(self.port)

    def osken(self, parser: Any, ofp: Any) -> Any:
        return parser.OFPActionOutput(self.port, 0xFFFF)


@dataclass(frozen=True)
class SetField:
    name: str
    value: Value

    def ofctl(self) -> str:
        value = f"{self.value:#x}" if isinstance(self.value, int) and self.name not in _INT_FIELDS else self.value
        return f"set_field:{value}->{ofctl_name(self.name)}"

    def osken(self, parser: Any, ofp: Any) -> Any:
        return parser.OFPActionSetField(**{self.name: self.value})


@dataclass(frozen=True)
class ClearInPort:
    """Forget the ingress port (``load:0->NXM_OF_IN_PORT[]``), so the packet may leave by
    it.  OVS refuses an OXM set_field on in_port (OFPBAC_BAD_SET_ARGUMENT); the Nicira
    register load on the 16-bit NXM field is the accepted way."""

    def ofctl(self) -> str:
        return "load:0->NXM_OF_IN_PORT[]"

    def osken(self, parser: Any, ofp: Any) -> Any:
        return parser.NXActionRegLoad(ofs_nbits=15, dst="in_port_nxm", value=0)


@dataclass(frozen=True)
class Move:
    """Copy one whole field into another (``move:src[]->dst[]``)."""

    src: str
    dst: str

    def ofctl(self) -> str:
        return f"move:{ofctl_name(self.src)}[]->{ofctl_name(self.dst)}[]"

    def osken(self, parser: Any, ofp: Any) -> Any:
        bits = FIELD_BITS[self.src]
        if FIELD_BITS[self.dst] != bits:
            raise ValueError(f"move {self.src}->{self.dst}: widths differ")
        return parser.NXActionRegMove(src_field=self.src, dst_field=self.dst, n_bits=bits)


@dataclass(frozen=True)
class DecTtl:
    def ofctl(self) -> str:
        return "dec_ttl"

    def osken(self, parser: Any, ofp: Any) -> Any:
        return parser.OFPActionDecNwTtl()


@dataclass(frozen=True)
class GroupAction:
    group_id: int

    def ofctl(self) -> str:
        return f"group:{self.group_id}"

    def osken(self, parser: Any, ofp: Any) -> Any:
        return parser.OFPActionGroup(self.group_id)


@dataclass(frozen=True)
class Nat:
    """The ``nat`` inside ``ct``: bare (undo/apply an existing mapping), or to one address."""

    kind: str = ""             # "", "dst" or "src"
    ip: str | None = None
    port: int | None = None

    def ofctl(self) -> str:
        if not self.kind:
            return "nat"
        target = self.ip or ""
        if self.port is not None:
            target += f":{self.port}"
        return f"nat({self.kind}={target})"

    def osken(self, parser: Any, ofp: Any) -> Any:
        cls = _padded_nat(parser)
        if not self.kind:
            return cls(flags=0)
        flags = NX_NAT_F_DST if self.kind == "dst" else NX_NAT_F_SRC
        kwargs: dict[str, Any] = {"range_ipv4_min": self.ip, "range_ipv4_max": self.ip}
        if self.port is not None:
            kwargs.update(range_proto_min=self.port, range_proto_max=self.port)
        return cls(flags=flags, **kwargs)


_PADDED: dict[Any, Any] = {}


def _padded_nat(parser: Any) -> Any:
    """os-ken's (and Ryu's) NXActionNAT declares a length rounded up to 8 bytes but does
    not write the padding, so a NAT with an address and a port (28 bytes) inside a
    ``ct()`` makes OVS refuse the whole message (OFPBRC_BAD_LEN).  This subclass pads."""
    if parser not in _PADDED:
        class PaddedNAT(parser.NXActionNAT):
            def serialize_body(self) -> bytes:
                body = super().serialize_body()
                # experimenter header (8) + subtype (2) + body must fill whole 8-byte words
                return bytes(body) + b"\0" * (-(10 + len(body)) % 8)

        _PADDED[parser] = PaddedNAT
    return _PADDED[parser]


@dataclass(frozen=True)
class Ct:
    """Send the packet through conntrack in ``zone``; continue in ``table`` (recirculation)."""

    zone: int
    table: int | None = None
    commit: bool = False
    nat: Nat | None = None
    #: actions run on the committed connection (set_field on ct_mark)
    exec: tuple["SetField", ...] = ()

    def ofctl(self) -> str:
        parts = ["commit"] if self.commit else []
        parts.append(f"zone={self.zone}")
        if self.exec:
            parts.append(f"exec({','.join(a.ofctl() for a in self.exec)})")
        if self.nat is not None:
            parts.append(self.nat.ofctl())
        if self.table is not None:
            parts.append(f"table={self.table}")
        return f"ct({','.join(parts)})"

    def osken(self, parser: Any, ofp: Any) -> Any:
        actions = [a.osken(parser, ofp) for a in self.exec]
        if self.nat:
            actions.append(self.nat.osken(parser, ofp))
        return parser.NXActionCT(flags=1 if self.commit else 0, zone_src="", zone_ofs_nbits=self.zone,
                                 recirc_table=255 if self.table is None else self.table, alg=0,
                                 actions=actions)


@dataclass(frozen=True)
class Multipath:
    """Pick one of ``links`` by hashing the 5-tuple into ``dst`` (low 16 bits).

    ``symmetric_l3l4+udp`` hashes addresses, protocol and ports -- UDP ports included,
    which a select group's default ``dp_hash`` leaves out in the userspace datapath
    (every UDP flow of a client would land on one endpoint).  ``hrw`` (rendezvous
    hashing) moves as few flows as possible when ``links`` changes."""

    links: int
    dst: str
    fields: str = "symmetric_l3l4+udp"
    algorithm: str = "hrw"
    basis: int = 0

    #: OVS's enum nx_hash_fields.
    _FIELDS = {"eth_src": 0, "symmetric_l4": 1, "symmetric_l3l4": 2, "symmetric_l3l4+udp": 3, "nw_src": 4,
               "nw_dst": 5, "symmetric_l3": 6}
    _ALGORITHMS = {"modulo_n": 0, "hash_threshold": 1, "hrw": 2, "iter_hash": 3}

    def ofctl(self) -> str:
        return (f"multipath({self.fields},{self.basis},{self.algorithm},{self.links},0,"
                f"{ofctl_name(self.dst)}[0..15])")

    def osken(self, parser: Any, ofp: Any) -> Any:
        return parser.NXActionMultipath(fields=self._FIELDS[self.fields], basis=self.basis,
                                        algorithm=self._ALGORITHMS[self.algorithm], max_link=self.links - 1,
                                        arg=0, ofs_nbits=15, dst=self.dst)


@dataclass(frozen=True)
class Resubmit:
    """Run ``table`` now and come back (Nicira ``resubmit(,table)``)."""

    table: int

    def ofctl(self) -> str:
        return f"resubmit(,{self.table})"

    def osken(self, parser: Any, ofp: Any) -> Any:
        return parser.NXActionResubmitTable(in_port=0xFFF8, table_id=self.table)  # 16-bit IN_PORT


#: os-ken's names for the NXM fields ``learn`` reads and writes, and their widths.
_NXM = {"eth_type": ("eth_type_nxm", 16), "ip_proto": ("ip_proto_nxm", 8), "ipv4_src": ("ipv4_src_nxm", 32),
        "ipv4_dst": ("ipv4_dst_nxm", 32), "tcp_src": ("tcp_src_nxm", 16), "tcp_dst": ("tcp_dst_nxm", 16),
        "udp_src": ("udp_src_nxm", 16), "udp_dst": ("udp_dst_nxm", 16),
        **{f"reg{i}": (f"reg{i}", 32) for i in range(8)}}


@dataclass(frozen=True)
class Learn:
    """Add a flow to ``table`` built from this packet (Nicira ``learn``).

    ``match_values``: the new flow matches these fields on these constants;
    ``match_fields``: ... and these fields on this packet's values;
    ``copies``: (src, dst, bits) -- its actions load this packet's src into dst;
    ``loads``: (value, dst, bit offset, bits) -- ... and load constants."""

    table: int
    priority: int
    hard_timeout: int = 0
    cookie: int = 0
    match_values: tuple[tuple[str, int], ...] = ()
    match_fields: tuple[str, ...] = ()
    copies: tuple[tuple[str, str, int], ...] = ()
    loads: tuple[tuple[int, str, int, int], ...] = ()

    def ofctl(self) -> str:
        parts = [f"table={self.table}", f"hard_timeout={self.hard_timeout}", f"priority={self.priority}",
                 f"cookie={self.cookie:#x}"]
        parts += [f"{ofctl_name(f)}={v:#x}" if f == "eth_type" else f"{ofctl_name(f)}={v}"
                  for f, v in self.match_values]
        parts += [f"{ofctl_name(f)}[]" for f in self.match_fields]
        parts += [f"load:{ofctl_name(src)}[]->{ofctl_name(dst)}[0..{bits - 1}]" for src, dst, bits in self.copies]
        parts += [f"load:{value:#x}->{ofctl_name(dst)}[{ofs}..{ofs + bits - 1}]"
                  for value, dst, ofs, bits in self.loads]
        return f"learn({','.join(parts)})"

    def osken(self, parser: Any, ofp: Any) -> Any:
        specs = []
        for field_name, value in self.match_values:
            name, bits = _NXM[field_name]
            specs.append(parser.NXFlowSpecMatch(src=value, dst=(name, 0), n_bits=bits))
        for field_name in self.match_fields:
            name, bits = _NXM[field_name]
            specs.append(parser.NXFlowSpecMatch(src=(name, 0), dst=(name, 0), n_bits=bits))
        for src, dst, bits in self.copies:
            specs.append(parser.NXFlowSpecLoad(src=(_NXM[src][0], 0), dst=(_NXM[dst][0], 0), n_bits=bits))
        for value, dst, ofs, bits in self.loads:
            specs.append(parser.NXFlowSpecLoad(src=value, dst=(_NXM[dst][0], ofs), n_bits=bits))
        return parser.NXActionLearn(table_id=self.table, specs=specs, hard_timeout=self.hard_timeout,
                                    priority=self.priority, cookie=self.cookie)


Action = Union[Output, SetField, Move, DecTtl, GroupAction, Ct, Multipath, Resubmit, Learn, ClearInPort]


@dataclass(frozen=True)
class Flow:
    """One flow entry. ``goto`` is the OpenFlow goto-table instruction (after actions)."""

    table: int
    priority: int
    match: Match
    actions: tuple[Action, ...] = ()
    goto: int | None = None
    cookie: int = 0

    @property
    def key(self) -> tuple[int, int, Match]:
        """What OpenFlow uses to tell flows apart (an ADD with the same key replaces)."""
        return (self.table, self.priority, self.match)

    def action_text(self) -> str:
        parts = [a.ofctl() for a in self.actions]
        if self.goto is not None:
            parts.append(f"goto_table:{self.goto}")
        return ",".join(parts) if parts else "drop"

    def ofctl(self, with_cookie: bool = True) -> str:
        head = f"cookie={self.cookie:#x}," if with_cookie else ""
        match = self.match.ofctl()
        match = f",{match}" if match else ""
        return f"{head}table={self.table},priority={self.priority}{match} actions={self.action_text()}"


@dataclass(frozen=True)
class Bucket:
    actions: tuple[Action, ...]
    weight: int = 100


@dataclass(frozen=True)
class Group:
    group_id: int
    type: str = "select"
    buckets: tuple[Bucket, ...] = ()

    def ofctl(self) -> str:
        buckets = ",".join(f"bucket=weight:{b.weight},actions={','.join(a.ofctl() for a in b.actions)}"
                           for b in self.buckets)
        return f"group_id={self.group_id},type={self.type}" + (f",{buckets}" if buckets else "")


@dataclass(frozen=True)
class Desired:
    """Everything one switch should hold."""

    flows: tuple[Flow, ...] = ()
    groups: tuple[Group, ...] = ()

    def flows_by_key(self) -> dict[tuple[int, int, Match], Flow]:
        out: dict[tuple[int, int, Match], Flow] = {}
        for flow in self.flows:
            if flow.key in out:
                raise ValueError(f"two flows share table/priority/match: {flow.ofctl()} and "
                                 f"{out[flow.key].ofctl()}")
            out[flow.key] = flow
        return out

    def ofctl_lines(self) -> list[str]:
        return [f.ofctl() for f in self.flows]

    def group_lines(self) -> list[str]:
        return [g.ofctl() for g in self.groups]


# --------------------------------------------------------------------------- os-ken rendering
def instructions(flow: Flow, parser: Any, ofp: Any) -> list[Any]:
    inst = []
    if flow.actions:
        inst.append(parser.OFPInstructionActions(
            ofp.OFPIT_APPLY_ACTIONS, [a.osken(parser, ofp) for a in flow.actions]))
    if flow.goto is not None:
        inst.append(parser.OFPInstructionGotoTable(flow.goto))
    return inst


def flow_mod(datapath: Any, flow: Flow, command: str, cookie: int | None = None) -> Any:
    """An ``OFPFlowMod`` for ``add`` or ``delete_strict`` of ``flow``."""
    parser, ofp = datapath.ofproto_parser, datapath.ofproto
    commands = {"add": ofp.OFPFC_ADD, "delete_strict": ofp.OFPFC_DELETE_STRICT}
    match = parser.OFPMatch(_ordered_fields=flow.match.osken_fields())
    return parser.OFPFlowMod(
        datapath=datapath, cookie=flow.cookie if cookie is None else cookie, cookie_mask=0,
        table_id=flow.table, command=commands[command], priority=flow.priority,
        out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY, match=match,
        instructions=instructions(flow, parser, ofp) if command == "add" else [])


def group_mod(datapath: Any, group: Group, command: str) -> Any:
    parser, ofp = datapath.ofproto_parser, datapath.ofproto
    commands = {"add": ofp.OFPGC_ADD, "modify": ofp.OFPGC_MODIFY, "delete": ofp.OFPGC_DELETE}
    types = {"select": ofp.OFPGT_SELECT, "all": ofp.OFPGT_ALL, "indirect": ofp.OFPGT_INDIRECT}
    buckets = [parser.OFPBucket(weight=b.weight, watch_port=ofp.OFPP_ANY, watch_group=ofp.OFPG_ANY,
                                actions=[a.osken(parser, ofp) for a in b.actions])
               for b in group.buckets] if command != "delete" else []
    return parser.OFPGroupMod(datapath, commands[command], types[group.type], group.group_id, buckets)


def merge(*parts: Iterable[Flow]) -> tuple[Flow, ...]:
    out: list[Flow] = []
    for part in parts:
        out.extend(part)
    return tuple(out)
