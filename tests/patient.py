"""``subprocess.run`` for children that build clusters: a Ctrl-C or a timeout lets them clean up.

A child of pytest is in its process group, so a Ctrl-C reaches it too, and k8snet then
tears its cluster down before it exits.  ``subprocess.run`` waits 0.25 s for that and
then SIGKILLs it (and SIGKILLs at once on a timeout): an interrupted CI run left a
bench's controller (a session of its own, which the Ctrl-C does not reach) and its run
directory behind that way.  Here the child gets SIGINT (again) and up to ``PATIENCE``
seconds to finish, and only then SIGKILL.
"""

from __future__ import annotations

import signal
import subprocess
from typing import Any, Optional, Sequence

PATIENCE = 60.0


def _end(proc: subprocess.Popen) -> tuple[Any, Any]:
    """SIGINT, then what the child still writes until it exits (or SIGKILL after PATIENCE)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        return proc.communicate(timeout=PATIENCE)
    except (subprocess.TimeoutExpired, KeyboardInterrupt):
        proc.kill()
        return proc.communicate()


def run(args: Sequence[str], *, input: Optional[str] = None, timeout: Optional[float] = None,
        check: bool = False, capture_output: bool = False, **kwargs: Any) -> subprocess.CompletedProcess:
    """As ``subprocess.run`` (the arguments these tests use), ending the child patiently."""
    if capture_output:
        kwargs["stdout"] = kwargs["stderr"] = subprocess.PIPE
    if input is not None:
        kwargs["stdin"] = subprocess.PIPE
    with subprocess.Popen(args, **kwargs) as proc:
        try:
            out, err = proc.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            out, err = _end(proc)
            raise subprocess.TimeoutExpired(proc.args, timeout or 0, output=out, stderr=err) from None
        except KeyboardInterrupt:
            _end(proc)
            raise
    result = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    if check:
        result.check_returncode()
    return result
