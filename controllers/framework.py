"""Import the OpenFlow framework the app runs under: os-ken (default) or Ryu.

The app uses only the API the two share (os-ken is Ryu's maintained fork, renamed).
Ryu is chosen when ``K8SNET_FRAMEWORK=ryu`` or when Ryu's manager is already loaded
(``ryu-manager controllers.app``).
"""

from __future__ import annotations

import os
import sys

NAME = "ryu" if (os.environ.get("K8SNET_FRAMEWORK") == "ryu" or "ryu.cmd.manager" in sys.modules) \
    else "os_ken"

if NAME == "ryu":  # pragma: no cover - exercised by the Ryu emulation test in its own process
    from ryu.base import app_manager  # noqa: F401
    from ryu.controller import controller, ofp_event  # noqa: F401
    from ryu.controller.handler import (  # noqa: F401
        CONFIG_DISPATCHER, DEAD_DISPATCHER, MAIN_DISPATCHER, set_ev_cls,
    )
    from ryu.ofproto import ofproto_v1_3  # noqa: F401
    from ryu.lib import hub  # noqa: F401
    from ryu.lib import packet as packet_lib  # noqa: F401
    import ryu.lib.packet.ethernet, ryu.lib.packet.icmp, ryu.lib.packet.ipv4  # noqa: E401,F401
    import ryu.lib.packet.packet, ryu.lib.packet.tcp, ryu.lib.packet.udp  # noqa: E401,F401
    BaseApp = app_manager.RyuApp

    def make_lock():
        """A lock green threads can wait on (a real lock would block the whole hub)."""
        import eventlet.semaphore
        return eventlet.semaphore.Semaphore(1)
else:
    from os_ken.base import app_manager  # noqa: F401  (import before os_ken.controller)
    from os_ken.controller import controller, ofp_event  # noqa: F401
    from os_ken.controller.handler import (  # noqa: F401
        CONFIG_DISPATCHER, DEAD_DISPATCHER, MAIN_DISPATCHER, set_ev_cls,
    )
    from os_ken.ofproto import ofproto_v1_3  # noqa: F401
    from os_ken.lib import hub  # noqa: F401
    from os_ken.lib import packet as packet_lib  # noqa: F401
    import os_ken.lib.packet.ethernet, os_ken.lib.packet.icmp, os_ken.lib.packet.ipv4  # noqa: E401,F401
    import os_ken.lib.packet.packet, os_ken.lib.packet.tcp, os_ken.lib.packet.udp  # noqa: E401,F401
    BaseApp = app_manager.OSKenApp

    def make_lock():
        import threading
        return threading.Lock()


def _teach_conntrack_tuple_fields() -> None:
    """Let ``OFPMatch`` take the conntrack original-direction tuple (OVS's NXM_NX_CT_*).

    OVS matches ``ct_nw_proto``, ``ct_nw_src``/``ct_nw_dst`` and ``ct_tp_src``/``ct_tp_dst``
    (the connection's tuple as conntrack saw it first) since 2.8; neither os-ken 4 nor
    Ryu 4.34 lists them.  The Service flows need them: after conntrack reassembles an IP
    fragment train, every fragment carries the datagram's tuple there, while only the
    first fragment has the UDP/TCP header.  Added to the framework's OXM table the way
    its own modules build it (field numbers from OVS's meta-flow.h, checked against
    ``ovs-ofctl``'s encoding in tests/flows)."""
    from importlib import import_module

    root = "ryu" if NAME == "ryu" else "os_ken"
    ofp = import_module(f"{root}.ofproto.ofproto_v1_3")
    fields = import_module(f"{root}.ofproto.oxm_fields")
    types = import_module(f"{root}.lib.type_desc")
    known = {f.name for f in ofp.oxm_types}
    wanted = [("ct_nw_proto", 119, types.Int1), ("ct_nw_src", 120, types.IPv4Addr),
              ("ct_nw_dst", 121, types.IPv4Addr), ("ct_tp_src", 124, types.Int2), ("ct_tp_dst", 125, types.Int2)]
    extra = [fields.NiciraExtended1(name, num, kind) for name, num, kind in wanted if name not in known]
    if extra:
        ofp.oxm_types.extend(extra)
        fields.generate(ofp.__name__)


_teach_conntrack_tuple_fields()
