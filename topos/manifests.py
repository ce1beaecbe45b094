"""Moved: loading is :mod:`k8snet.model.manifests`, the shipped examples by name are
:mod:`topos.specs`; this name keeps existing imports working."""

from k8snet.model.manifests import SERVICE_CIDR, Overrides, Problem, SpecError, load_path, load_text  # noqa: F401
from topos.specs import default_spec_text, embedded_spec_text, embedded_specs, load_file  # noqa: F401
