"""The k8snet command as a user runs it: exit codes, JSON, interruption, clean, up."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from k8snet.rundir import leftover_runs
from tests.emulation.conftest import K8SNET, k8snet_env
from tests.helpers import Snapshot
from topos.cluster import ClusterNet
from k8snet.model.manifests import load_text
from topos.specs import default_spec_text
from tests import patient


def k8snet(*args: str, timeout: float = 120, input: str | None = None) -> subprocess.CompletedProcess:
    return patient.run([*K8SNET, *args], capture_output=True, text=True, timeout=timeout,
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
    # Every field the README lists, per pair and for the run.
    assert set(doc["results"][0]) >= {"src", "dst", "kind", "predicted", "reason", "reachable", "ok", "sent",
                                      "received", "rtt_avg_ms"}
    assert set(doc["environment"]) >= {"k8snet", "ovs", "kernel", "python", "datapath_type", "offload", "fping",
                                       "framework"}
    assert doc["cluster"]["nodes"][1]["name"] == "node-1" and len(doc["cluster"]["pods"]) == 4
    assert set(doc["timings_s"]) == {"hosts", "nodes", "pods", "synced", "probe"}
    assert doc["summary"]["pod-node"] == {"pairs": 8, "reachable": 8, "predicted": 8, "as_predicted": 8}


def test_check_probes_a_stratified_sample_when_asked(tmp_path, no_leaks):
    """``--sample N``: N pairs, every path type among them (host-gw across racks: the pairs
    that must fail too), and the JSON says what was left out."""
    out = tmp_path / "check.json"
    result = k8snet("check", "racks", "--backend", "host-gw", "--sample", "12", "--seed", "7", "--json", str(out))
    doc = json.loads(out.read_text())
    assert result.returncode == 1, result.stdout  # host-gw cannot cross the racks: the sample holds such pairs
    assert len(doc["results"]) == 12 and doc["sample"]["pairs"] == 12 and doc["sample"]["seed"] == 7
    assert doc["sample"]["of"] == 44 and sum(t["probed"] for t in doc["sample"]["path_types"].values()) == 12
    assert any(not r["predicted"] for r in doc["results"]) and any(r["predicted"] for r in doc["results"])
    assert doc["as_predicted"] is True, [r for r in doc["results"] if r["reachable"] != r["predicted"]]
    assert "12 of 44 pairs" in result.stdout + result.stderr
    too_few = k8snet("check", "racks", "--backend", "host-gw", "--sample", "2")
    assert too_few.returncode == 2 and "--sample 2 is fewer than the" in too_few.stdout + too_few.stderr


def test_check_under_ryu_on_the_userspace_datapath_from_the_command_line(tmp_path, no_leaks):
    out = tmp_path / "check.json"
    result = k8snet("check", "--nodes", "2", "--pods-per-node", "1", "--framework", "ryu", "--datapath", "netdev",
                    "--json", str(out))
    assert result.returncode == 0, result.stderr
    env = json.loads(out.read_text())["environment"]
    assert env["framework"] == "ryu" and env["datapath_type"] == "netdev"
    assert "datapath netdev" in result.stderr


def test_the_kernel_datapath_is_refused_where_the_module_is_missing(no_leaks):
    from topos.datapath import has_kernel_module

    if has_kernel_module():  # a machine with the module builds it: nothing to refuse there
        assert k8snet("flows", "--datapath", "system", "--nodes", "1").returncode == 0
        return
    before = Snapshot.take()
    result = k8snet("check", "--datapath", "system", "--nodes", "1")
    assert result.returncode == 2 and "kernel module" in result.stderr, result.stderr
    assert not Snapshot.take().leaks_since(before)


def test_flows_prints_every_nodes_flows_without_building_anything(no_leaks):
    from controllers.compiler import compile_node
    from k8snet.model.manifests import Overrides
    from topos.specs import load_file

    before = Snapshot.take()
    result = k8snet("flows", "services", "--node", "node-1")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    count = len(compile_node(load_file("services", Overrides()), "node-1").flows)
    assert lines[0] == f"# node-1: {count} flows" and len(lines) == count + 1
    assert any("ct_nw_dst=" in line and "ct(commit" not in line for line in lines)
    assert not Snapshot.take().leaks_since(before)
    every = k8snet("flows", "racks")
    assert [line for line in every.stdout.splitlines() if line.startswith("# ")] == \
        [f"# node-{i}: {len(compile_node(load_file('racks', Overrides()), f'node-{i}').flows)} flows"
         for i in range(4)]
    wrong = k8snet("flows", "--node", "node-9")
    assert wrong.returncode == 2 and "no node 'node-9'; nodes are: node-0, node-1, node-2" in wrong.stderr


def test_run_exits_1_when_a_scenario_cannot_run(tmp_path, no_leaks):
    broken = tmp_path / "scenarios"
    broken.mkdir()
    (broken / "fails.py").write_text(
        "from k8snet.scenario import Scenario\n\n"
        "class Fails(Scenario):\n    name = 'fails'\n    description = 'raises half way'\n\n"
        "    def steps(self, targets):\n        return 1\n\n"
        "    def run(self, targets, rec):\n        rec.step('about to fail')\n"
        "        raise RuntimeError('this scenario cannot run')\n")
    env = {**k8snet_env(), "K8SNET_SCENARIOS": str(broken)}
    result = patient.run([*K8SNET, "run", "fails", "--nodes", "1", "--pods-per-node", "1", "--out",
                             str(tmp_path / "out")], capture_output=True, text=True, timeout=300, env=env,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 1, result.stderr[-2000:]
    (run_dir,) = (tmp_path / "out").glob("2*")
    doc = json.loads((run_dir / "fails.json").read_text())
    assert doc["status"] == "failed" and "this scenario cannot run" in doc["status_reason"]


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


def test_apply_and_delete_against_a_running_up(tmp_path, no_leaks):
    """`k8snet apply -f` and `k8snet delete -f` change the cluster `k8snet up` runs."""
    from topos.control import SOCKET_NAME

    known = {str(p) for p in leftover_runs()}
    up = subprocess.Popen([*K8SNET, "up", "services"], env=k8snet_env(), stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        run_dir = _wait_for_run_dir(up, known)
        deadline = time.monotonic() + 60
        while not (run_dir / SOCKET_NAME).exists() and time.monotonic() < deadline:
            assert up.poll() is None, up.communicate()
            time.sleep(0.05)
        scale = tmp_path / "scale.yaml"
        scale.write_text("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 5\n"
                         "  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n"
                         "    spec: {containers: [{name: web, ports: [{name: http, containerPort: 8080}]}]}\n"
                         "---\napiVersion: v1\nkind: Service\nmetadata: {name: web-lb}\nspec:\n"
                         "  type: LoadBalancer\n  selector: {app: web}\n  ports: [{port: 80, targetPort: http}]\n")
        result = k8snet("apply", "-f", str(scale))
        assert result.returncode == 0, result.stderr
        assert "pod/web-3 created" in result.stdout and "pod/web-4 created" in result.stdout
        assert "service/default/web 10.96.0.100: 80/TCP -> 5 endpoints" in result.stdout
        # The LoadBalancer's VIP, as status.loadBalancer.ingress[0].ip would report it.
        assert re.search(r"service/default/web-lb 10\.96\.\d+\.\d+ ingress 198\.51\.100\.\d+: "
                         r"80/TCP \(nodePort 3\d{4}\) -> 5 endpoints", result.stdout), result.stdout
        shells = {p["what"]: p["pid"] for p in json.loads((run_dir / "processes.json").read_text())}
        addr = subprocess.run(["mnexec", "-a", str(shells["PodHost web-4 shell"]), "ip", "-4", "-o", "addr", "show",
                               "eth0"], capture_output=True, text=True, timeout=10).stdout
        assert "10.244." in addr
        # `k8snet trace` asks the running cluster through its socket, a pod added a moment ago included.
        walk = k8snet("trace", "client", "web-4", "--run", str(run_dir), "--json", str(tmp_path / "walk.json"))
        assert walk.returncode == 0 and "delivered to pod default/web-4" in walk.stdout, walk.stdout + walk.stderr
        assert json.loads((tmp_path / "walk.json").read_text())["agrees"] is True
        wrong = k8snet("trace", "client", "svc/nope", "--proto", "tcp", "--run", str(run_dir))
        assert wrong.returncode == 2 and "DST: no Service default/nope" in wrong.stdout + wrong.stderr
        shaped = k8snet("trace", "client", "web-4", "--backend", "vxlan", "--run", str(run_dir))
        assert shaped.returncode == 2 and "--backend: shape a cluster built for the trace" in shaped.stderr
        # `k8snet fault`: a link made lossy at run time, its loss measured, mistakes refused, cleared.
        lossy = k8snet("fault", "loss", "node-1", "20", "--direction", "egress", "--run", str(run_dir))
        assert lossy.returncode == 0 and re.search(r"node-1 .*egress .*20 %", lossy.stdout), lossy.stdout
        assert "note: offload tso: a lossy link drops whole frames" in lossy.stderr  # (up took tso)
        # (Not more loss: ARP is lost too, and a neighbour whose 3 ARP tries all fail makes
        # ping fail locally for a while, sending nothing.)
        pinged = subprocess.run(["mnexec", "-a", str(shells["K8sNode node-1 shell"]), "ping", "-q", "-c", "300", "-i",
                                 "0.005", "-W", "1", "192.168.56.10"], capture_output=True, text=True, timeout=60)
        links = k8snet("fault", "links", "--json", "--run", str(run_dir))
        counted = next(c for c in json.loads(links.stdout)["counters"] if c["link"] == "node-1")
        assert counted["frames"] >= 250 and 10 <= counted["achieved_percent"] <= 30, (counted, pinged.stdout)
        for args, needle in ((["node-9", "5"], "LINK: no underlay link 'node-9'"),
                             (["node-1", "100"], "PERCENT: 100 is outside [0, 100)"),
                             (["node-1", "5", "--direction", "up"], "--direction: 'up' is not a direction")):
            wrong = k8snet("fault", "loss", *args, "--run", str(run_dir))
            assert wrong.returncode == 2 and needle in wrong.stdout + wrong.stderr, wrong
        assert k8snet("fault", "loss", "node-1", "0", "--run", str(run_dir)).returncode == 0
        restarted = k8snet("fault", "switch", "restart", "node-1", "--run", str(run_dir))
        assert restarted.returncode == 0 and "switch node-1 restart" in restarted.stdout, restarted
        assert "nothing is down; every node is Ready" in k8snet("fault", "status", "--run", str(run_dir)).stdout
        flat = k8snet("fault", "router", "down", "core", "--run", str(run_dir))
        assert flat.returncode == 2 and "TARGET: no router 'core'; a flat underlay has none" in flat.stderr, flat
        deny = tmp_path / "deny.yaml"
        deny.write_text("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny-web}\n"
                        "spec: {podSelector: {matchLabels: {app: web}}}\n")
        created = k8snet("apply", "-f", str(deny))
        assert created.returncode == 0 and "networkpolicy/default/deny-web created" in created.stdout, created
        gone = k8snet("delete", "-f", str(deny))
        assert gone.returncode == 0 and "networkpolicy/default/deny-web deleted" in gone.stdout, gone
        bad = tmp_path / "bad.yaml"
        bad.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {nodeName: node-9}\n")
        refused = k8snet("apply", "-f", str(bad))
        assert refused.returncode == 2 and "node 'node-9' does not exist" in refused.stderr
        deleted = k8snet("delete", "-f", str(scale))
        assert deleted.returncode == 0 and "pod/web-0 deleted" in deleted.stdout
        assert "80/TCP -> 0 endpoints" in deleted.stdout
        up.stdin.write("exit\n")
        up.stdin.flush()
        up.communicate(timeout=60)
        assert up.returncode == 0
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
            k8snet("clean")
    assert k8snet("apply", "-f", str(scale)).returncode == 2  # nothing runs any more
    assert k8snet("fault", "links").returncode == 2
