"""The scenarios of ``k8snet run``: one file each in this folder, found, never listed by hand.

Every module here whose name does not start with ``_`` is imported, and every subclass
of :class:`k8snet.scenario.Scenario` it defines with a ``name`` is a scenario, run by
``k8snet run NAME`` and by ``all`` in the order of their ``order`` (then name).  So a new
file is a new scenario: ``k8snet run --help`` lists it, and nothing else needs editing.

Scenarios kept outside the repository are found the same way in the folders named by
``K8SNET_SCENARIOS`` (separated by ``:``).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import pkgutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Iterable, Optional

from k8snet.scenario import Scenario

ENV_PATH = "K8SNET_SCENARIOS"


class ScenarioError(ValueError):
    """A scenario file that cannot be loaded, or two scenarios with one name (exit 2)."""


def _modules_here() -> Iterable[tuple[str, ModuleType]]:
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        path = str(Path(__path__[0]) / f"{info.name}.py")
        try:
            yield path, importlib.import_module(f"{__name__}.{info.name}")
        except Exception as exc:
            raise ScenarioError(f"scenario file {path} cannot be imported: {type(exc).__name__}: {exc}") from exc


def _modules_in(folder: str) -> Iterable[tuple[str, ModuleType]]:
    directory = Path(folder)
    if not directory.is_dir():
        raise ScenarioError(f"{ENV_PATH}: {folder} is not a folder; name folders of scenario files, "
                            "separated by ':'")
    for path in sorted(directory.glob("*.py")):
        if path.name.startswith("_"):
            continue
        name = f"k8snet_user_scenarios.{path.stem}"
        try:
            spec = importlib.util.spec_from_file_location(name, path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        except Exception as exc:
            sys.modules.pop(name, None)
            raise ScenarioError(f"scenario file {path} cannot be imported: {type(exc).__name__}: {exc}") from exc
        yield str(path), module


def discover(folders: Optional[Iterable[str]] = None) -> dict[str, type[Scenario]]:
    """name -> Scenario class, in run order: this folder's, then ``folders`` (default:
    ``$K8SNET_SCENARIOS``)."""
    if folders is None:
        folders = [f for f in os.environ.get(ENV_PATH, "").split(os.pathsep) if f]
    found: dict[str, tuple[str, type[Scenario]]] = {}
    sources = [_modules_here()] + [_modules_in(f) for f in folders]
    for source in sources:
        for path, module in source:
            for _, cls in inspect.getmembers(module, inspect.isclass):
                if not issubclass(cls, Scenario) or cls is Scenario or not cls.name or cls.__module__ != module.__name__:
                    continue
                if cls.name in found and found[cls.name][1] is not cls:
                    raise ScenarioError(f"two scenarios are named {cls.name!r}: in {found[cls.name][0]} and "
                                        f"in {path}; rename one")
                found[cls.name] = (path, cls)
    ordered = sorted(found.values(), key=lambda pc: (pc[1].order, pc[1].name))
    return {cls.name: cls for _, cls in ordered}


__all__ = ["ENV_PATH", "ScenarioError", "discover"]
