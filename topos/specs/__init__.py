"""The cluster specs shipped as examples, by name: ``default``, ``racks``, ``services``, ``three-tier``.

Each is a Kubernetes-style YAML file beside this module.  A SPEC given on the command
line (or to the pytest plugin) is a file path, or the name of one of these.
"""

from __future__ import annotations

import os
from importlib import resources

from k8snet.model.cluster import Cluster
from k8snet.model.manifests import Overrides, load_path, load_text, read_spec_file
from k8snet.model.schema import Problem, SpecError


def embedded_specs() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files(__name__).iterdir() if p.name.endswith(".yaml"))


def embedded_spec_text(name: str) -> str:
    """An example spec shipped with k8snet (``topos/specs/<name>.yaml``)."""
    if name not in embedded_specs():
        raise SpecError([Problem(None, "", "", f"no spec file {name!r} and no embedded spec of that "
                                 f"name; embedded specs: {', '.join(embedded_specs())}")])
    return resources.files(__name__).joinpath(f"{name}.yaml").read_text()


def default_spec_text() -> str:
    """The embedded default cluster: 3 nodes, 2 pods per node, flat underlay, host-gw."""
    return embedded_spec_text("default")


def is_embedded_name(spec: str) -> bool:
    """A bare word that is not a file names an embedded spec (``racks``, not ``racks.yaml``)."""
    return not os.path.exists(spec) and "/" not in spec and not spec.endswith((".yaml", ".yml"))


def spec_text(spec: str) -> str:
    """The YAML of a spec file or embedded spec (SpecError when neither can be read)."""
    return embedded_spec_text(spec) if is_embedded_name(spec) else read_spec_file(spec)


def load_file(spec: str, overrides: Overrides = Overrides()) -> Cluster:
    """Load a spec file; a bare name that is not a file names an embedded spec."""
    if is_embedded_name(spec):
        return load_text(embedded_spec_text(spec), overrides)
    return load_path(spec, overrides)


def load(spec: "str | None", overrides: Overrides = Overrides()) -> Cluster:
    """A spec file or name, or the embedded default when ``spec`` is None."""
    return load_file(spec, overrides) if spec else load_text(default_spec_text(), overrides)
