"""Launcher: ``python -m controllers --of-socket PATH [--switch PATH ...] [--api-socket PATH] [--state FILE]``.

os-ken 4 no longer ships ``osken-manager``, so this starts the app itself.  The cluster's
switches listen and the controller dials each ``--switch`` socket (controllers/dialer.py
says why).  It also listens on ``--of-socket`` for switches that dial it (``unix:PATH``
from inside their OVS rundir, which is where vswitchd allows it); two things make os-ken
accept OpenFlow over a Unix domain socket:

1. os-ken's StreamServer picks AF_UNIX when the listen "host" is a path whose
   directory exists -- but with ``--ofp-tcp-listen-port`` unset it *also* starts its
   legacy 6633 loop on the same "host" (the same path): the second bind fails with
   EADDRINUSE in a thread that dies silently, and ``run_apps`` then crashes with
   "'HubThread' object has no attribute 'kill'".  So we always pass a non-zero port
   (it only selects the code path; nothing listens on TCP).
2. os-ken sets TCP_NODELAY on every accepted socket; AF_UNIX refuses TCP options
   (EOPNOTSUPP) and the connection is dropped.  We wrap accepted Unix sockets so TCP
   options are a no-op (``dialer.UnixSocket``).
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from typing import Any

from controllers.dialer import UnixSocket


def patch_unix_sockets(controller_module: Any) -> None:
    original = controller_module.datapath_connection_factory

    def factory(sock: Any, address: Any) -> Any:
        if sock.family == socket.AF_UNIX:
            sock, address = UnixSocket(sock), ("unix", 0)
        return original(sock, address)

    controller_module.datapath_connection_factory = factory


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m controllers", description=__doc__.split("\n")[0])
    parser.add_argument("--of-socket", required=True, help="Unix socket path switches may connect to")
    parser.add_argument("--switch", action="append", default=[], metavar="PATH",
                        help="a switch's passive OpenFlow socket to dial (repeatable; controllers/dialer.py)")
    parser.add_argument("--api-socket", help="Unix socket path for the state API")
    parser.add_argument("--state", help="cluster model JSON (desired state; updated by apply)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.state:
        os.environ["K8SNET_STATE"] = os.path.abspath(args.state)
    if args.api_socket:
        os.environ["K8SNET_API"] = os.path.abspath(args.api_socket)
    os.environ["K8SNET_SWITCHES"] = os.pathsep.join(os.path.abspath(p) for p in args.switch)
    if not os.path.isdir(os.path.dirname(os.path.abspath(args.of_socket))):
        print(f"--of-socket: directory of {args.of_socket} does not exist", file=sys.stderr)
        return 2
    if os.path.exists(args.of_socket):
        os.unlink(args.of_socket)

    from os_ken import cfg
    from os_ken.base import app_manager
    from os_ken.controller import controller

    patch_unix_sockets(controller)
    cfg.CONF(args=["--ofp-listen-host", os.path.abspath(args.of_socket),
                   "--ofp-tcp-listen-port", "6653"], project="os_ken")
    app_manager.AppManager.run_apps(["controllers.app"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
