"""The layout stays as ../shared/DESIGN.md draws it: floors, no upward import, no circle,
no module over 500 lines.

Floors, lowest first; a module may import its own floor and the floors below::

    base         k8snet (the package), k8snet.procs, k8snet.rundir: processes, run dirs
    model        k8snet.model.*: Kubernetes objects -> the resolved cluster; pure
    controllers  controllers.*: model -> flows; the os-ken/Ryu adapter
    topos        topos.*: Mininet topologies, the running cluster, probes, references
    kit          k8snet.results, k8snet.scenario, k8snet.workloads: what scenarios use
    scenarios    scenarios.*: one file per scenario
    top          k8snet.cli, runner, report, plots, pytest plugin

Every import counts, also one inside a function: a lazy import still runs upward.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("k8snet", "topos", "controllers", "scenarios")
FLOORS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("base", ("k8snet", "k8snet.procs", "k8snet.rundir")),
    ("model", ("k8snet.model",)),
    ("controllers", ("controllers",)),
    ("topos", ("topos",)),
    ("kit", ("k8snet.results", "k8snet.scenario", "k8snet.workloads")),
    ("scenarios", ("scenarios",)),
    ("top", ("k8snet.cli", "k8snet.check", "k8snet.term", "k8snet.runner", "k8snet.report", "k8snet.plots", "k8snet.plot_base",
             "k8snet.plots_policy", "k8snet.trace_cmd", "k8snet.trace_figure", "k8snet.fault_cmd", "k8snet.plots_faults",
             "k8snet.pytest_plugin", "k8snet.grid")),
)
#: Old homes kept so users' imports keep working; the project itself must not use them.
SHIMS = {"topos.model", "topos.manifests", "topos.apply"}
MAX_LINES = 500


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def our_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def floor_of(module: str) -> int:
    """The highest-numbered floor whose entries name the module or a package holding it
    (``k8snet.model.cluster`` is on ``model``, not on ``base`` with ``k8snet``)."""
    best, best_len = -1, -1
    for index, (_, entries) in enumerate(FLOORS):
        for entry in entries:
            exact = module == entry
            inside = module.startswith(entry + ".") and entry != "k8snet"
            if (exact or inside) and len(entry) > best_len:
                best, best_len = index, len(entry)
    return best


def imports_of(path: Path, module: str, known: set[str]) -> set[str]:
    """Modules of ours that ``path`` imports, anywhere in the file."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def resolve(name: str) -> None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name:
            found.add(name)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in PACKAGES:
                    resolve(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            if base.split(".")[0] not in PACKAGES:
                continue
            for alias in node.names:
                child = f"{base}.{alias.name}"
                resolve(child if child in known else base)
    found.discard(module)
    return found


def graph() -> dict[str, set[str]]:
    modules = our_modules()
    known = set(modules)
    return {m: imports_of(p, m, known) for m, p in modules.items()}


def test_every_module_has_a_floor():
    unplaced = [m for m in our_modules() if floor_of(m) < 0]
    assert not unplaced, f"modules with no floor (add them to FLOORS in {__file__}): {unplaced}"


def upward_edges(edges: dict[str, set[str]]) -> list[str]:
    upward = []
    for module, targets in sorted(edges.items()):
        for target in sorted(targets):
            if floor_of(target) > floor_of(module):
                upward.append(f"{module} ({FLOORS[floor_of(module)][0]}) imports {target} "
                              f"({FLOORS[floor_of(target)][0]})")
    return upward


def test_no_import_runs_upward():
    upward = upward_edges(graph())
    assert not upward, "imports from a lower floor to a higher one:\n" + "\n".join(upward)


def test_the_checker_sees_an_upward_import():
    assert upward_edges({"k8snet.rundir": {"topos.ovs"}, "topos.ovs": {"k8snet.procs"}}) == [
        "k8snet.rundir (base) imports topos.ovs (topos)"]


def strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm; components with more than one module are import circles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_no_import_circle():
    circles = strongly_connected(graph())
    assert not circles, f"modules that import each other in a circle: {circles}"


def test_the_circle_finder_finds_circles():
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert strongly_connected({"a": {"b"}, "b": set()}) == []


def test_floor_rules_place_modules_as_drawn():
    assert FLOORS[floor_of("k8snet.procs")][0] == "base"
    assert FLOORS[floor_of("k8snet.model.cluster")][0] == "model"
    assert FLOORS[floor_of("k8snet.cli")][0] == "top"
    assert FLOORS[floor_of("scenarios.ingress")][0] == "scenarios"
    assert floor_of("k8snet.something_new") == -1  # a new module must be placed on purpose


def test_the_project_does_not_use_its_own_compatibility_names():
    users = {m: sorted(t & SHIMS) for m, t in graph().items() if t & SHIMS and m not in SHIMS}
    assert not users, f"import the new homes, not the compatibility modules: {users}"


@pytest.mark.parametrize("shim", sorted(SHIMS))
def test_old_import_paths_still_work(shim):
    module = __import__(shim, fromlist=["*"])
    wanted = {"topos.model": ["Cluster", "Pod", "UPLINK_OFPORT"],
              "topos.manifests": ["load_text", "load_file", "Overrides", "SpecError", "default_spec_text"],
              "topos.apply": ["apply_text"]}[shim]
    assert all(hasattr(module, name) for name in wanted)


def test_no_module_is_over_500_lines():
    files = [p for d in (*PACKAGES, "tests", "bench", "examples") for p in (ROOT / d).rglob("*.py")]
    assert len(files) > 50
    long = {str(p.relative_to(ROOT)): n for p in files if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (split them by what they do): {long}"
