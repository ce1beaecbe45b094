"""Moved to :mod:`k8snet.model.apply`; this name keeps existing imports working."""

from k8snet.model.apply import apply_text  # noqa: F401
from k8snet.model.schema import Problem, SpecError  # noqa: F401
