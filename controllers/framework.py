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
