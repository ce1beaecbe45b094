"""Run the k8snet controller under Ryu 4.34 (``make setup`` installs the ``ryu`` extra).

    python -m controllers.ryu_launcher --of-socket PATH [--api-socket PATH] [--state FILE]

which is the same as ``ryu-manager --ofp-listen-host PATH --ofp-tcp-listen-port 6653
controllers.app`` with two fixes applied first:

* Ryu 4.34 imports ``eventlet.wsgi.ALREADY_HANDLED``, which eventlet >= 0.33 removed;
  defining it before ``ryu.cmd.manager`` is imported lets Ryu start on Python 3.11.
* Ryu, like os-ken, sets TCP_NODELAY on accepted sockets; AF_UNIX refuses it
  (see ``controllers/__main__.py``).

Ryu runs on eventlet, which breaks Mininet's ``select.poll`` in the same process, so it
always runs as its own process (the cluster starts it that way).
"""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m controllers.ryu_launcher")
    parser.add_argument("--of-socket", required=True)
    parser.add_argument("--switch", action="append", default=[], metavar="PATH")
    parser.add_argument("--api-socket")
    parser.add_argument("--state")
    args = parser.parse_args(argv)
    os.environ["K8SNET_FRAMEWORK"] = "ryu"
    if args.state:
        os.environ["K8SNET_STATE"] = os.path.abspath(args.state)
    if args.api_socket:
        os.environ["K8SNET_API"] = os.path.abspath(args.api_socket)
    os.environ["K8SNET_SWITCHES"] = os.pathsep.join(os.path.abspath(p) for p in args.switch)
    if os.path.exists(args.of_socket):
        os.unlink(args.of_socket)

    import eventlet.wsgi

    if not hasattr(eventlet.wsgi, "ALREADY_HANDLED"):
        eventlet.wsgi.ALREADY_HANDLED = object()
    from ryu.cmd import manager
    from ryu.controller import controller

    from controllers.__main__ import patch_unix_sockets

    patch_unix_sockets(controller)
    sys.argv = ["ryu-manager", "--ofp-listen-host", os.path.abspath(args.of_socket),
                "--ofp-tcp-listen-port", "6653", "controllers.app"]
    manager.main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
