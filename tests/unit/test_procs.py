"""Process ownership and signal deferral: the pieces cleanup relies on."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from k8snet.procs import CommandError, OwnedProcess, deferred_signals, run, stop_all


def test_a_signal_inside_the_block_is_raised_after_it():
    done = []
    with pytest.raises(KeyboardInterrupt):
        with deferred_signals():
            os.kill(os.getpid(), signal.SIGINT)
            done.append("the block finished")
    assert done == ["the block finished"]


def test_children_started_in_the_block_do_not_inherit_blocked_signals():
    with deferred_signals():
        child = subprocess.Popen(["sleep", "30"])
    try:
        status = open(f"/proc/{child.pid}/status").read()
        blocked = int(next(l for l in status.splitlines() if l.startswith("SigBlk:")).split()[1], 16)
        assert blocked & (1 << (signal.SIGTERM - 1)) == 0
        proc = OwnedProcess.of(child.pid, "sleep")
        stop_all([proc], timeout=2)
        assert not proc.alive()
    finally:
        child.kill()
        child.wait()


def test_a_recycled_pid_is_not_ours():
    child = subprocess.Popen(["sleep", "30"])
    try:
        stranger = OwnedProcess(child.pid, OwnedProcess.of(child.pid, "x").started + 1, "not ours")
        assert not stranger.alive()
        stranger.stop()
        assert child.poll() is None, "a process that is not the one we recorded was signalled"
    finally:
        child.kill()
        child.wait()


def test_commands_time_out_and_fail_with_their_output():
    with pytest.raises(CommandError, match="timed out after 0.2s"):
        run(["sleep", "5"], timeout=0.2)
    with pytest.raises(CommandError, match="exit 3"):
        run(["sh", "-c", "echo oops >&2; exit 3"])
    with pytest.raises(CommandError, match="command not found"):
        run(["no-such-command-k8snet"])
