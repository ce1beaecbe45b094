"""pytest for k8snet users: reachability checks on your own cluster specs, as tests.

Installed with k8snet (a ``pytest11`` entry point), so ``pytest`` finds it by itself.

* The ``k8snet_cluster`` fixture builds a cluster, gives you the running
  :class:`topos.cluster.ClusterNet` (``reachable()``, ``matrix()``, ``assert_matrix()``,
  the Mininet hosts) and tears it down.  Which cluster: the ``k8snet`` marker, on a test,
  a class or a module (``pytestmark``)::

      @pytest.mark.k8snet(spec="racks", backend="vxlan")
      def test_vxlan_crosses_the_gateways(k8snet_cluster):
          k8snet_cluster.assert_matrix("all")

  ``spec`` is a file (relative to the test file, then to the current folder), the name
  of a shipped example (``default``, ``racks``, ``services``) or YAML text; also
  ``backend``, ``nodes``, ``pods_per_node``, ``offload``, ``datapath``, ``attach``, ``framework``.
  Tests that ask for the same cluster share it while its scope lasts: ``scope`` in
  the marker, else ``--k8snet-scope``, else the ``k8snet_scope`` ini option, else
  ``module`` (``function``: a fresh cluster per test; ``session``: one for the run).
* ``pytest --k8snet-spec my.yaml [--k8snet-backend host-gw,vxlan] [--k8snet-expect
  predicted]``: one test per pair of the reachability matrix, named
  ``test_reach[web-0->web-2]``, so a failing pair is a failing test in the report and
  in ``--junitxml``.  ``all`` (the default) expects every pair reachable, as the
  Kubernetes network model requires; ``predicted`` expects what the backend can carry.
* When a selected test needs a cluster and this is not root, or Open vSwitch is missing,
  pytest stops at once with exit status 2 and says why, instead of an error per test.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest

SCOPES = ("function", "module", "session")
EXPECT = ("all", "predicted")
MARKER_FIELDS = ("spec", "backend", "nodes", "pods_per_node", "offload", "datapath", "attach", "framework",
                 "scope")
POOL_KEY = pytest.StashKey["ClusterPool"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("k8snet", "k8snet: reachability checks on emulated Kubernetes clusters")
    group.addoption("--k8snet-spec", action="append", default=[], metavar="SPEC",
                    help="a cluster spec (file or shipped name) to test pair by pair: one test per pair of "
                         "its reachability matrix (repeat for several specs)")
    group.addoption("--k8snet-backend", metavar="B1,B2",
                    help="backends for --k8snet-spec (each its own cluster) and the default backend of the "
                         "k8snet_cluster fixture (default: the spec's)")
    group.addoption("--k8snet-expect", choices=EXPECT, default="all",
                    help="what a --k8snet-spec pair must do: all = be reachable (the Kubernetes network "
                         "model, default), predicted = what the backend can carry on the underlay")
    group.addoption("--k8snet-scope", choices=SCOPES,
                    help="how long a cluster of the k8snet_cluster fixture lives (default: the k8snet_scope "
                         "ini option, else module)")
    parser.addini("k8snet_scope", "default lifetime of k8snet_cluster clusters: function, module or session",
                  default="module")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "k8snet(spec=None, backend=None, nodes=None, pods_per_node=None, offload=None, datapath=None, "
                   "attach=None, framework=None, scope=None): the cluster the k8snet_cluster fixture builds for this test")
    config.stash[POOL_KEY] = ClusterPool(config)


# --------------------------------------------------------------------------- which cluster
@dataclass(frozen=True)
class ClusterKey:
    """Everything that decides which cluster a test gets; equal keys share a cluster."""

    spec_text: str
    spec_label: str
    backend: Optional[str] = None
    nodes: Optional[int] = None
    pods_per_node: Optional[int] = None
    offload: Optional[str] = None
    datapath: Optional[str] = None
    attach: Optional[str] = None
    framework: str = "os-ken"
    scope: str = "module"

    def load(self) -> Any:
        """The resolved model (pytest.fail with the spec's problems when it is invalid)."""
        from k8snet.model.manifests import Overrides, SpecError, load_text
        from topos.datapath import DatapathError, settle

        overrides = Overrides(backend=self.backend, nodes=self.nodes, pods_per_node=self.pods_per_node,
                              offload=self.offload, datapath_type=self.datapath, attach=self.attach)
        try:
            return settle([load_text(self.spec_text, overrides)])[0]
        except SpecError as exc:
            pytest.fail(f"invalid cluster spec ({self.spec_label}):\n" +
                        "\n".join(f"  - {p}" for p in exc.problems), pytrace=False)
        except DatapathError as exc:
            pytest.fail(f"cannot honour the datapath setting ({self.spec_label}): {exc.message}", pytrace=False)


def spec_text(spec: Optional[str], base: Optional[Path]) -> tuple[str, str]:
    """(YAML, label) of a marker's ``spec``: YAML text, a file (relative to ``base``, the
    test file's folder, then to the current folder), or a shipped example's name."""
    from k8snet.model.schema import SpecError
    from topos import specs

    if spec is None:
        return specs.default_spec_text(), "default"
    if "\n" in spec:
        return spec, "YAML text"
    for candidate in ([base / spec] if base else []) + [Path(spec)]:
        if candidate.is_file():
            return candidate.read_text(encoding="utf-8"), str(candidate)
    try:
        return specs.spec_text(spec), spec
    except SpecError as exc:
        pytest.fail(f"k8snet marker: spec={spec!r}: {exc}", pytrace=False)


def key_for(node: pytest.Item, config: pytest.Config, **given: Any) -> ClusterKey:
    """The cluster ``node`` asks for: ``given`` (the pool's ``get``), else its closest
    ``k8snet`` marker, else the command line and ini defaults."""
    marker = node.get_closest_marker("k8snet")
    wanted: dict[str, Any] = dict(marker.kwargs) if marker else {}
    if marker and marker.args:
        wanted.setdefault("spec", marker.args[0])
    wanted.update({k: v for k, v in given.items() if v is not None})
    unknown = sorted(set(wanted) - set(MARKER_FIELDS))
    if unknown:
        pytest.fail(f"k8snet marker: unknown argument(s) {', '.join(unknown)}; allowed: {', '.join(MARKER_FIELDS)}",
                    pytrace=False)
    scope = wanted.get("scope") or config.getoption("k8snet_scope") or config.getini("k8snet_scope")
    if scope not in SCOPES:
        pytest.fail(f"k8snet: scope {scope!r} is not one of {', '.join(SCOPES)}", pytrace=False)
    backends = config.getoption("k8snet_backend")
    text, label = spec_text(wanted.get("spec"), Path(str(node.path)).parent if node.path else None)
    return ClusterKey(spec_text=text, spec_label=label,
                      backend=wanted.get("backend") or (backends.split(",")[0] if backends else None),
                      nodes=wanted.get("nodes"), pods_per_node=wanted.get("pods_per_node"),
                      offload=wanted.get("offload"), datapath=wanted.get("datapath"), attach=wanted.get("attach"),
                      framework=wanted.get("framework") or "os-ken", scope=scope)


# --------------------------------------------------------------------------- the pool
class ClusterPool:
    """The clusters the fixture has built, each kept while its scope lasts.

    A cluster is torn down after the last test of its scope: after the test
    (``function``), when the next test is in another module or there is none
    (``module``), at the end of the run (``session``), and on Ctrl-C or an error."""

    def __init__(self, config: pytest.Config):
        self.config = config
        self.live: dict[ClusterKey, Any] = {}

    def get(self, node: pytest.Item, **given: Any) -> Any:
        from topos.cluster import ClusterNet

        key = key_for(node, self.config, **given)
        net = self.live.get(key)
        if net is None:
            net = ClusterNet(key.load(), framework=key.framework)
            net.start()
            self.live[key] = net
        return net

    def release(self, scope: Optional[str] = None) -> None:
        for key in [k for k in self.live if scope is None or k.scope == scope]:
            self.live.pop(key).stop()


@pytest.fixture
def k8snet_cluster(request: pytest.FixtureRequest) -> Any:
    """A running cluster (``topos.cluster.ClusterNet``) as the ``k8snet`` marker asks."""
    return request.config.stash[POOL_KEY].get(request.node)


@pytest.fixture(scope="session")
def k8snet_pool(request: pytest.FixtureRequest) -> ClusterPool:
    """The pool itself, for fixtures of your own: ``k8snet_pool.get(request.node, spec=..., scope=...)``."""
    return request.config.stash[POOL_KEY]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: Optional[pytest.Item]) -> Iterator[None]:
    yield
    pool = item.config.stash[POOL_KEY]
    if not pool.live:
        return
    pool.release("function")
    if nextitem is None or nextitem.path != item.path:
        pool.release("module")


def pytest_sessionfinish(session: pytest.Session) -> None:
    session.config.stash[POOL_KEY].release()


# --------------------------------------------------------------------------- one test per pair
class ReachFailure(Exception):
    """A pair did not do what the expectation says (shown without a traceback)."""


class SpecFile(pytest.File):
    """A ``--k8snet-spec``: one group of pair tests per backend."""

    def __init__(self, *, text: str, label: str, backends: list[Optional[str]], **kwargs: Any):
        super().__init__(**kwargs)
        self.text, self.label, self.backends = text, label, backends

    def collect(self) -> Iterator[pytest.Collector]:
        from k8snet.model.manifests import Overrides, SpecError, load_text

        for backend in self.backends:
            try:
                model = load_text(self.text, Overrides(backend=backend))
            except SpecError as exc:
                raise SpecCollectError(f"invalid cluster spec ({self.label}):\n" +
                                       "\n".join(f"  - {p}" for p in exc.problems)) from None
            yield SpecCluster.from_parent(self, name=model.backend.value, backend=backend, model=model)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, SpecCollectError):
            return str(excinfo.value)
        return super().repr_failure(excinfo)


class SpecCluster(pytest.Collector):
    """One cluster of a spec: built when its first pair test runs, probed once, torn
    down after its last (pytest's own setup and teardown of a collector)."""

    def __init__(self, *, backend: Optional[str], model: Any, **kwargs: Any):
        super().__init__(**kwargs)
        self.backend = backend
        self.model = model
        self.net: Any = None
        self.matrix: Any = None

    def key(self) -> ClusterKey:
        spec = self.parent
        assert isinstance(spec, SpecFile)
        return ClusterKey(spec_text=spec.text, spec_label=spec.label, backend=self.backend,
                          offload=None, scope="module")

    def collect(self) -> Iterator[pytest.Item]:
        from k8snet.model.reach import pairs

        for pair in pairs(self.model):
            yield ReachItem.from_parent(self, name=f"test_reach[{pair.id}]", pair=pair)

    def setup(self) -> None:
        from topos.cluster import ClusterNet
        from topos.probe import measure

        self.net = ClusterNet(self.key().load())
        self.net.start()
        self.matrix = measure(self.net.net, self.net.cluster, self.net.timings)

    def teardown(self) -> None:
        if self.net is not None:
            self.net.stop()
            self.net = None


class SpecCollectError(Exception):
    """The spec given to --k8snet-spec is invalid (a collection error, exit status 2)."""


class ReachItem(pytest.Item):
    def __init__(self, *, pair: Any, **kwargs: Any):
        super().__init__(**kwargs)
        self.pair = pair

    def runtest(self) -> None:
        from k8snet.model.reach import expectation, mismatch_line

        cluster = self.parent
        assert isinstance(cluster, SpecCluster) and cluster.matrix is not None
        result = next(r for r in cluster.matrix.results if r.pair.id == self.pair.id)
        wanted = expectation(self.config.getoption("k8snet_expect"))(result.pair)
        if result.reachable != wanted:
            raise ReachFailure(mismatch_line(result.pair, wanted, result.reachable,
                                             f"{result.received} of {result.sent} echo requests answered"))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, ReachFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Any, Optional[int], str]:
        return self.path, None, f"{self.name} ({self.pair.kind})"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Add the pair tests of every ``--k8snet-spec`` (before -k and -m select)."""
    from k8snet.model.schema import SpecError
    from topos import specs

    backends: list[Optional[str]] = [b.strip() for b in (config.getoption("k8snet_backend") or "").split(",")
                                     if b.strip()] or [None]
    for spec in config.getoption("k8snet_spec"):
        try:
            text = specs.spec_text(spec)
        except SpecError as exc:
            pytest.exit(f"--k8snet-spec {spec}: {exc}", returncode=2)
        if specs.is_embedded_name(spec):  # a shipped example: named by itself, not by its install path
            path, nodeid = Path(specs.__file__).with_name(f"{spec}.yaml"), f"{spec}.yaml"
        else:
            path, nodeid = Path(spec).resolve(), None
        node = SpecFile.from_parent(session, path=path, nodeid=nodeid, text=text, label=spec, backends=backends)
        items.extend(session.genitems(node))


def needs_cluster(item: pytest.Item) -> bool:
    return isinstance(item, ReachItem) or "k8snet_cluster" in getattr(item, "fixturenames", ())


def pytest_collection_finish(session: pytest.Session) -> None:
    """Refuse at once (exit 2) when a selected test needs a cluster that cannot be built here."""
    if session.config.option.collectonly or not any(needs_cluster(i) for i in session.items):
        return
    from topos.environment import preflight

    problem = preflight()
    if problem:
        pytest.exit(f"k8snet: {problem}; no test that needs a cluster can run", returncode=2)


__all__ = ["ClusterKey", "ClusterPool", "k8snet_cluster", "k8snet_pool"]
