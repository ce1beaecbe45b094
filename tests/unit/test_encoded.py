"""Flow mods encoded once (controllers/encoded.py) are byte for byte what os-ken sends,
alone and inside a bundle, with each copy's own transaction id."""

from __future__ import annotations

from types import SimpleNamespace

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from controllers import framework  # noqa: F401  (the NXM conntrack tuple fields)
from controllers.compiler import compile_cluster
from controllers.encoded import Encoder
from controllers.flows import flow_mod
from k8snet.model.manifests import load_text
from topos.specs import embedded_spec_text


def datapath() -> SimpleNamespace:
    return SimpleNamespace(ofproto=ofp, ofproto_parser=parser, id=1)


def in_bundle(dp: SimpleNamespace, message, xid: int) -> bytes:
    flags = ofp.ONF_BF_ATOMIC | ofp.ONF_BF_ORDERED
    outer = parser.ONFBundleAddMsg(dp, 3, flags, message, [])
    outer.set_xid(xid)
    outer.serialize()
    return bytes(outer.buf)


def test_every_flow_of_every_node_encodes_as_os_ken_does_alone_and_in_a_bundle():
    cluster = load_text(embedded_spec_text("services"))
    dp, encoder = datapath(), Encoder()
    compiled = compile_cluster(cluster)
    for desired in compiled.values():
        for n, flow in enumerate(desired.flows):
            for command, cookie in (("add", flow.cookie | 0x2A << 32), ("delete_strict", None)):
                reference = flow_mod(dp, flow, command, cookie=cookie)
                reference.set_xid(1000 + n)
                reference.serialize()
                copy = encoder.flow_mod(dp, flow, command, cookie=cookie)
                copy.set_xid(1000 + n)
                copy.serialize()
                assert bytes(copy.buf) == bytes(reference.buf), flow.ofctl()
                fresh = flow_mod(dp, flow, command, cookie=cookie)
                assert in_bundle(dp, encoder.flow_mod(dp, flow, command, cookie=cookie), 77 + n) == \
                    in_bundle(dp, fresh, 77 + n), flow.ofctl()
    # Every node's flows were encoded once; what the nodes share was reused.
    distinct = {(f, c) for d in compiled.values() for f in d.flows for c in ("add", "delete_strict")}
    assert encoder.built == len(distinct)
    assert encoder.reused > encoder.built  # three copies per flow and command, and the nodes share most


def test_the_cookie_and_command_are_part_of_what_is_remembered():
    cluster = load_text(embedded_spec_text("default"))
    flow = next(iter(compile_cluster(cluster).values())).flows[0]
    dp, encoder = datapath(), Encoder()
    a = encoder.flow_mod(dp, flow, "add", cookie=1)
    b = encoder.flow_mod(dp, flow, "add", cookie=2)
    c = encoder.flow_mod(dp, flow, "delete_strict")
    assert len({a.wire, b.wire, c.wire}) == 3 and encoder.built == 3 and encoder.reused == 0


def test_the_memory_is_bounded():
    cluster = load_text(embedded_spec_text("default"))
    flows = next(iter(compile_cluster(cluster).values())).flows[:5]
    dp, encoder = datapath(), Encoder(limit=3)
    for flow in flows:
        encoder.flow_mod(dp, flow, "add")
    assert len(encoder._wire) <= 3 and encoder.built == 5
