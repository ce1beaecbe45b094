"""Kubernetes-style YAML in, a resolved :class:`k8snet.model.cluster.Cluster` out, or precise errors.

A cluster spec is one multi-document YAML file:

1. optionally first, ``apiVersion: k8snet.io/v1alpha1, kind: Cluster`` (nodes, pod CIDR,
   backend, underlay); without it the defaults apply;
2. then ordinary ``v1 Pod``, ``apps/v1 Deployment`` and ``v1 Service`` documents.

The steps are :func:`k8snet.model.documents.parse_yaml` (text -> documents) and
:class:`k8snet.model.resolver.Resolver` (documents -> addresses).  Specs shipped as
examples, loaded by name, are in :mod:`topos.specs`.
"""

from __future__ import annotations

from k8snet.model.cluster import SERVICE_CIDR, Cluster
from k8snet.model.documents import CLUSTER_API, parse_yaml
from k8snet.model.resolver import Overrides, Resolver
from k8snet.model.schema import Problem, SpecError


def load_text(text: str, overrides: Overrides = Overrides()) -> Cluster:
    """Parse, validate and resolve a spec; raise :class:`SpecError` with every problem."""
    return Resolver(parse_yaml(text), overrides).resolve()


def load_path(path: str, overrides: Overrides = Overrides()) -> Cluster:
    """Load a spec file (a name of a shipped example is :func:`topos.specs.load_file`'s job)."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise SpecError([Problem(None, "", "", f"cannot read {path}: {exc.strerror}")]) from exc
    return load_text(text, overrides)


__all__ = ["CLUSTER_API", "SERVICE_CIDR", "Overrides", "Problem", "SpecError", "load_path", "load_text"]
