"""The pytest plugin as a user meets it: the examples, a wrong expectation, one test per
pair with JUnit XML, the cluster's scope, and the refusal when no cluster can be built.

Each case runs a real pytest in a subprocess (``pytester``), which loads the plugin
through its entry point as a user's pytest would.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.helpers import Snapshot
from tests import patient

pytest_plugins = ["pytester"]
ROOT = Path(__file__).resolve().parents[2]


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    before = Snapshot.take()
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=600)
    assert not Snapshot.take().leaks_since(before), "the user's pytest run left something behind"
    return result


def test_the_examples_pass(pytester):
    for name in ("test_flat.py", "test_racks.py"):
        pytester.makepyfile(**{name[:-3]: (ROOT / "examples" / name).read_text()})
    result = run(pytester, "-v")
    result.assert_outcomes(passed=7)
    result.stdout.fnmatch_lines(["*test_racks.py::test_host_gw_reaches_only_within_a_rack PASSED*"])


def test_a_wrong_expectation_fails_with_a_diff_of_the_pairs(pytester):
    pytester.makepyfile(test_wrong='''
        import pytest

        @pytest.mark.k8snet(spec="racks", backend="host-gw")
        def test_all_reachable(k8snet_cluster):
            k8snet_cluster.assert_matrix("all")

        @pytest.mark.k8snet(spec="racks", backend="host-gw")
        def test_as_predicted(k8snet_cluster):
            k8snet_cluster.assert_matrix("predicted")
    ''')
    result = run(pytester)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*24 of 44 pairs are not as expected (4 nodes, 4 pods, backend host-gw, underlay routed*",
        "*web-0 -> web-2 [[]pod-pod-cross-node, 10.244.2.2[]]: expected reachable, was unreachable "
        "(0 of 4 answered); predicted unreachable: host-gw needs node-0 and node-2 on one L2 segment*",
    ])
    assert "web-0 -> web-1 " not in result.stdout.str()  # a pair as expected is not listed


def test_one_test_per_pair_in_the_report_and_in_junit_xml(pytester):
    junit = pytester.path / "junit.xml"
    result = run(pytester, "--k8snet-spec", "racks", "--k8snet-backend", "host-gw", f"--junitxml={junit}")
    result.assert_outcomes(passed=20, failed=24)
    result.stdout.fnmatch_lines(["FAILED racks.yaml::host-gw::test_reach[[]web-0->web-2[]] - web-0 -> web-2*"])
    cases = {case.get("name"): case for case in ET.parse(junit).getroot().iter("testcase")}
    assert len(cases) == 44
    assert cases["test_reach[web-0->web-1]"].find("failure") is None
    failure = cases["test_reach[web-0->web-2]"].find("failure")
    assert failure is not None and "host-gw needs node-0 and node-2 on one L2 segment" in failure.get("message")
    assert cases["test_reach[web-0->web-2]"].get("classname") == "racks.yaml.host-gw"


def test_predicted_expectations_and_two_backends_side_by_side(pytester):
    spec = pytester.path / "mine.yaml"
    spec.write_text("apiVersion: k8snet.io/v1alpha1\nkind: Cluster\nmetadata: {name: mine}\nspec:\n"
                    "  nodes: 2\n  underlay: {type: routed, racks: 2}\n---\napiVersion: v1\nkind: Pod\n"
                    "metadata: {name: a}\nspec: {nodeName: node-0}\n---\napiVersion: v1\nkind: Pod\n"
                    "metadata: {name: b}\nspec: {nodeName: node-1}\n")
    result = run(pytester, "--k8snet-spec", str(spec), "--k8snet-backend", "host-gw,vxlan",
                 "--k8snet-expect", "predicted", "-v")
    result.assert_outcomes(passed=2 * (2 + 4 + 4))
    result.stdout.fnmatch_lines(["*mine.yaml::host-gw::test_reach[[]a->b[]] PASSED*",
                                 "*mine.yaml::vxlan::test_reach[[]a->b[]] PASSED*"])


def test_a_cluster_lives_as_long_as_its_scope(pytester, monkeypatch):
    pytester.makepyfile(test_scope='''
        import os

        import pytest

        seen = []

        @pytest.mark.k8snet(nodes=1, pods_per_node=1)
        def test_one(k8snet_cluster):
            seen.append(k8snet_cluster.run.path)

        @pytest.mark.k8snet(nodes=1, pods_per_node=1)
        def test_two(k8snet_cluster):
            seen.append(k8snet_cluster.run.path)

        @pytest.mark.k8snet(nodes=1, pods_per_node=2)
        def test_another_cluster(k8snet_cluster):
            seen.append(k8snet_cluster.run.path)
            assert len(k8snet_cluster.cluster.pods) == 2

        def test_shared_by_equal_markers():
            assert (seen[0] == seen[1]) == (os.environ["SHARED"] == "yes") and seen[2] != seen[0]
    ''')
    for scope, shared in (("module", "yes"), ("function", "no")):
        monkeypatch.setenv("SHARED", shared)
        result = run(pytester, "--k8snet-scope", scope)
        result.assert_outcomes(passed=4)


def test_a_spec_in_the_marker_can_be_yaml_text_or_a_file_beside_the_test(pytester):
    (pytester.path / "two.yaml").write_text("apiVersion: k8snet.io/v1alpha1\nkind: Cluster\nspec: {nodes: 2}\n")
    pytester.makepyfile(test_specs='''
        import pytest

        @pytest.mark.k8snet(spec="two.yaml", pods_per_node=1)
        def test_file(k8snet_cluster):
            assert len(k8snet_cluster.cluster.nodes) == 2

        @pytest.mark.k8snet(spec="""
        apiVersion: v1
        kind: Pod
        metadata: {name: solo}
        """)
        def test_text(k8snet_cluster):
            assert [p.name for p in k8snet_cluster.cluster.pods] == ["solo"]
            assert k8snet_cluster.reachable("solo", "node-0")

        @pytest.mark.k8snet(spec="apiVersion: v1\\nkind: Pod\\nspec: {nodeName: node-9}\\n")
        def test_invalid(k8snet_cluster):
            pass
    ''')
    result = run(pytester)
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*invalid cluster spec (YAML text):*",
                                 "*document 1 (Pod): metadata: required field is missing*"])


def test_refuses_with_exit_2_when_not_root():
    """As the unprivileged user ``nobody``, in a folder it may read (pytester's is root's)."""
    with tempfile.TemporaryDirectory(prefix="k8snet-plugin-test-") as folder:
        os.chmod(folder, 0o755)
        (Path(folder) / "test_needs.py").write_text("def test_x(k8snet_cluster):\n    pass\n\n"
                                                   "def test_plain():\n    pass\n")
        result = patient.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable,
                                 "-m", "pytest", "-p", "no:cacheprovider", folder], cwd=folder,
                                capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": folder})
    assert result.returncode == 2, result.stdout + result.stderr
    assert "k8snet needs root" in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_refuses_with_exit_2_when_open_vswitch_is_missing(pytester, monkeypatch):
    pytester.makepyfile(test_needs="def test_x(k8snet_cluster):\n    pass\n")
    bare = pytester.path / "bin"
    bare.mkdir()
    for tool in ("mnexec", "fping", "ethtool", "ip"):  # everything but Open vSwitch
        found = shutil.which(tool)
        assert found, tool
        (bare / tool).symlink_to(found)
    monkeypatch.setenv("PATH", str(bare))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=120)
    assert result.ret == 2
    result.stdout.fnmatch_lines(["*k8snet: missing tools: ovs-vswitchd, ovsdb-server, ovs-vsctl*make setup*"])


def test_collect_only_needs_no_cluster_and_no_root(pytester):
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--collect-only", "-q",
                                           "--k8snet-spec", "default", timeout=120)
    assert result.ret == 0
    result.stdout.fnmatch_lines(["default.yaml::host-gw::test_reach[[]web-0->web-1[]]", "*66 tests collected*"])
