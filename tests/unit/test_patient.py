"""tests/patient.py: a child that outlives its timeout is interrupted and may clean up."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests import patient

CHILD = """
import sys, time
try:
    print("started", flush=True)
    time.sleep(30)
except KeyboardInterrupt:
    time.sleep(0.5)          # tearing a cluster down takes a while
    print("cleaned up", flush=True)
    sys.exit(130)
"""


def test_a_timeout_interrupts_the_child_and_waits_for_its_cleanup():
    with pytest.raises(subprocess.TimeoutExpired) as caught:
        patient.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=1.0)
    assert caught.value.output.split() == ["started", "cleaned", "up"]


def test_as_subprocess_run_otherwise():
    done = patient.run([sys.executable, "-c", "import sys; print(sys.stdin.read().upper())"], input="ok",
                       capture_output=True, text=True, timeout=10)
    assert (done.returncode, done.stdout) == (0, "OK\n")
    with pytest.raises(subprocess.CalledProcessError):
        patient.run([sys.executable, "-c", "raise SystemExit(3)"], check=True)
