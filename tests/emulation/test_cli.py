"""The k8snet command as a user runs it: exit codes, JSON, interruption, clean, up."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from k8snet.rundir import RUN_PREFIX, RUN_ROOT, leftover_runs
from tests.emulation.conftest import K8SNET, k8snet_env
from tests.helpers import Snapshot
from topos.cluster import ClusterNet
from topos.manifests import default_spec_text, load_text


def k8snet(*args: str, timeout: float = 120, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*K8SNET, *args], capture_output=True, text=True, timeout=timeout,
                          env=k8snet_env(), input=input, stdin=None if input is not None else subprocess.DEVNULL)


def test_check_writes_json_and_exits_zero(tmp_path, no_leaks):
    out = tmp_path / "check.json"
    result = k8snet("check", "--nodes", "2", "--pods-per-node", "2", "--json", str(out))
    assert result.returncode == 0, result.stderr + result.stdout
    doc = json.loads(out.read_text())
    assert doc["ok"] is True and len(doc["results"]) == 4 * 3 + 2 * 2 * 4
    assert doc["environment"]["datapath_type"] == "netdev" and doc["environment"]["ovs"]
    assert {r["kind"] for r in doc["results"]} == {"pod-pod-same-node", "pod-pod-cross-node",
                                                   "node-pod", "pod-node"}
    assert all(r["reachable"] and r["ok"] for r in doc["results"])
    assert "all 28 pairs reachable" in result.stdout


def test_invalid_spec_exits_2_names_the_field_and_starts_nothing(tmp_path, no_leaks):
    spec = tmp_path / "bad.yaml"
    spec.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {nodeName: node-7}\n")
    before = Snapshot.take()
    result = k8snet("check", str(spec))
    assert result.returncode == 2
    assert "document 1 (Pod 'x'): spec.nodeName: node 'node-7' does not exist" in result.stderr
    assert not Snapshot.take().leaks_since(before)
    assert k8snet("check", str(tmp_path / "missing.yaml")).returncode == 2
    assert k8snet("up", "--backend", "carrier-pigeon").returncode == 2


def _wait_for_run_dir(proc: subprocess.Popen, known: set[str], timeout: float = 30) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        new = [p for p in leftover_runs() if str(p) not in known]
        if new:
            return new[0]
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    raise AssertionError("k8snet never created its run directory")


@pytest.mark.parametrize("when", ["while building", "once nodes run OVS"])
def test_sigint_midway_leaves_nothing_behind(when, no_leaks):
    known = {str(p) for p in leftover_runs()}
    proc = subprocess.Popen([*K8SNET, "check", "--nodes", "6", "--pods-per-node", "4"], env=k8snet_env(),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        run_dir = _wait_for_run_dir(proc, known)
        if when == "once nodes run OVS":
            deadline = time.monotonic() + 30
            while not list(run_dir.glob("n*/ovs-vswitchd.pid")) and time.monotonic() < deadline:
                time.sleep(0.02)
            assert list(run_dir.glob("n*/ovs-vswitchd.pid")), "no OVS started in time"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert not run_dir.exists()


def test_clean_removes_a_killed_runs_remains_and_spares_a_live_run(no_leaks):
    known = {str(p) for p in leftover_runs()}
    with ClusterNet(load_text(default_spec_text())) as live:
        proc = subprocess.Popen([*K8SNET, "check", "--nodes", "3", "--pods-per-node", "2"], env=k8snet_env(),
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        known.add(str(live.run.path))
        run_dir = _wait_for_run_dir(proc, known)
        deadline = time.monotonic() + 30
        while len(list(run_dir.glob("n*/ovs-vswitchd.pid"))) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.kill()  # SIGKILL: no chance to clean up
        proc.wait()
        assert run_dir.exists()
        result = k8snet("clean")
        assert result.returncode == 0
        assert f"{run_dir}: removed" in result.stdout
        assert f"{live.run.path}: a running k8snet owns it; left alone" in result.stdout
        assert not run_dir.exists() and live.run.path.exists()
        # The live cluster still works after the clean.
        web0 = live.pod("web-0")
        assert " 0% packet loss" in web0.ns("ping", "-c", "2", "-W", "2", "10.244.1.2")
    assert "nothing of k8snet's to clean" in k8snet("clean").stdout


def test_up_opens_a_cli_where_pods_are_named_as_in_kubernetes(no_leaks):
    result = k8snet("up", "--nodes", "2", "--pods-per-node", "1",
                    input="web-0 ping -c 1 -W 2 web-1\nnode-1 ping -c 1 -W 2 web-0\n")
    assert result.returncode == 0, result.stderr
    text = result.stdout + result.stderr  # Mininet prints command output on stderr
    assert text.count("1 received") == 2, text
