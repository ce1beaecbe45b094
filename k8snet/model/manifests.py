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


def read_spec_file(path: str) -> str:
    """A spec file's text, or SpecError saying why it cannot be read (missing, a folder,
    not readable, not UTF-8 text)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise SpecError([Problem(None, "", "", f"cannot read {path}: {exc.strerror}")]) from exc
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError([Problem(None, "", "", f"cannot read {path}: not UTF-8 text (byte {data[exc.start]:#04x} "
                                 f"at offset {exc.start}); save the spec as UTF-8 YAML")]) from None


def load_path(path: str, overrides: Overrides = Overrides()) -> Cluster:
    """Load a spec file (a name of a shipped example is :func:`topos.specs.load_file`'s job)."""
    return load_text(read_spec_file(path), overrides)


__all__ = ["CLUSTER_API", "SERVICE_CIDR", "Overrides", "Problem", "SpecError", "load_path", "load_text",
           "read_spec_file"]
