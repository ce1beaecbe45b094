"""Scenarios are files: found by discovery, listed by ``k8snet run --help``, never registered."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from scenarios import ENV_PATH, ScenarioError, discover

ROOT = Path(__file__).resolve().parents[2]
NEW = textwrap.dedent('''
    from k8snet.scenario import Scenario

    class Hello(Scenario):
        name = "hello"
        description = "says hello to every cluster"
        order = 5

        def steps(self, targets):
            return len(targets)

        def run(self, targets, rec):
            for target in targets:
                rec.step(f"{target.label}: hello")
                rec.add(target, "none", "hello", "count", src="-", dst="-", value=1.0)
''')


def test_the_shipped_scenarios_are_found_in_run_order():
    assert list(discover(folders=[])) == ["reachability", "walks", "throughput", "latency", "services", "ingress", "policy",
                                             "faults"]


def test_a_new_file_is_a_new_scenario(tmp_path):
    (tmp_path / "hello.py").write_text(NEW)
    (tmp_path / "_helpers.py").write_text("raise RuntimeError('a helper is not a scenario')\n")
    found = discover(folders=[str(tmp_path)])
    assert list(found)[0] == "hello"  # order 5 runs before reachability (10)
    assert found["hello"].description == "says hello to every cluster"


def test_k8snet_run_help_lists_every_scenario_with_its_description(tmp_path):
    (tmp_path / "hello.py").write_text(NEW)
    result = subprocess.run([sys.executable, "-m", "k8snet.cli", "run", "--help"], capture_output=True, text=True,
                            timeout=60, cwd=ROOT, env={"PATH": "/usr/bin:/bin", ENV_PATH: str(tmp_path),
                                                       "COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    for name in ("hello", "reachability", "throughput", "latency", "services", "ingress"):
        assert f"\n  {name} " in result.stdout
    assert "says hello to every cluster" in result.stdout


def test_a_broken_scenario_file_is_named(tmp_path):
    (tmp_path / "broken.py").write_text("import no_such_module\n")
    with pytest.raises(ScenarioError, match=r"broken.py cannot be imported: ModuleNotFoundError"):
        discover(folders=[str(tmp_path)])


def test_two_scenarios_with_one_name_are_refused(tmp_path):
    (tmp_path / "again.py").write_text(NEW.replace('"hello"', '"latency"'))
    with pytest.raises(ScenarioError, match="two scenarios are named 'latency'"):
        discover(folders=[str(tmp_path)])


def test_a_missing_scenario_folder_is_refused(tmp_path):
    with pytest.raises(ScenarioError, match="is not a folder"):
        discover(folders=[str(tmp_path / "nope")])


def test_k8snet_run_exits_2_on_a_broken_scenario_folder(tmp_path):
    result = subprocess.run([sys.executable, "-m", "k8snet.cli", "run", "all"], capture_output=True, text=True,
                            timeout=60, cwd=ROOT, env={"PATH": "/usr/bin:/bin", ENV_PATH: str(tmp_path / "nope"),
                                                       "COLUMNS": "200"})
    assert result.returncode == 2 and "is not a folder" in result.stderr


@pytest.mark.parametrize("args, needle", [
    (["faults", "--schedule", "SCHEDULE"], "schedule[0].target: no node 'node-9'"),
    (["faults", "--schedule", "OVERLAP"], "schedule[1]: overlaps schedule[0] on node-1"),
    (["faults", "--schedule", "MISSING"], "No such file or directory; give a YAML file"),
    (["throughput", "--loss", "0,100"], "--loss '0,100': each loss is a distinct percentage"),
    (["throughput", "--loss", "one"], "--loss 'one': give percentages separated by commas"),
    (["throughput", "--congestion", "no-such-cc"], "--congestion 'no-such-cc': this kernel has"),
])
def test_k8snet_run_refuses_a_bad_schedule_or_loss_before_anything_starts(tmp_path, args, needle):
    files = {"SCHEDULE": "- {at: 1, for: 2, fault: node, target: node-9}\n",
             "OVERLAP": "- {at: 1, for: 4, fault: node, target: node-1}\n- {at: 2, for: 1, fault: link, target: node-1}\n"}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    argv = [str(tmp_path / a) if a in (*files, "MISSING") else a for a in args]
    result = subprocess.run([sys.executable, "-m", "k8snet.cli", "run", *argv, "--nodes", "2", "--out",
                             str(tmp_path / "out")], capture_output=True, text=True, timeout=60, cwd=ROOT,
                            env={**os.environ, "COLUMNS": "300"})
    assert result.returncode == 2 and needle in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()


def test_congestion_control_is_one_the_kernel_has_or_the_default():
    from k8snet.runner import UsageError, parse_congestion
    assert parse_congestion("", available="reno cubic") == ""
    assert parse_congestion("cubic", available="reno cubic") == "cubic"
    with pytest.raises(UsageError, match="--congestion 'bbr': this kernel has reno, cubic; give one of them"):
        parse_congestion("bbr", available="reno cubic")


def test_the_mathis_estimate_names_its_caveat_for_a_flow_that_is_not_loss_based():
    from scenarios.throughput import LOSS_BASED, mathis_caveat
    assert "cubic" in LOSS_BASED and "reno" in LOSS_BASED and "bbr" not in LOSS_BASED
    assert "the flow used bbr, not a loss-based congestion control" in mathis_caveat("bbr")
