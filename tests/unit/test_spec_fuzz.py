"""No spec, however malformed, ends in a traceback: it loads, or it is refused with the
document and field (or the reason the file cannot be read), exit status 2.

Property-based (hypothesis): generated documents whose keys are the schema's own field
names (so the values reach deep into validation), mutations of every shipped example,
raw text and bytes, and ``kubectl apply`` documents against a running model -- through
the Python API and through the ``k8snet flows`` entry point, which also compiles every
node's flows.  In CI the examples are derandomized (tests/conftest.py): the same specs
every run.  Explicit cases below pin the shapes that crashed before.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from k8snet.cli import main
from k8snet.model import policy_schema, schema
from k8snet.model.apply import apply_text
from k8snet.model.cluster import Cluster
from k8snet.model.manifests import SpecError, load_path, load_text
from topos.specs import default_spec_text, embedded_spec_text, embedded_specs

ROOT = Path(__file__).resolve().parents[2]


def _field_names() -> list[str]:
    names = set()
    for obj in [*vars(schema).values(), *vars(policy_schema).values()]:
        if isinstance(obj, type) and issubclass(obj, BaseModel):
            names |= {f.alias or n for n, f in obj.model_fields.items()}
    return sorted(names | {"apiVersion", "kind", "metadata", "spec", "clusterIP", "podCIDR"})


FIELDS = _field_names()
WORDS = ["v1", "apps/v1", "k8snet.io/v1alpha1", "Cluster", "Pod", "Deployment", "Service", "Endpoints",
         "host-gw", "vxlan", "directrouting", "flat", "routed", "10.244.0.0/16", "192.168.56.0/24", "10.96.0.10",
         "node-0", "node-1", "web", "app", "TCP", "UDP", "SCTP", "ClientIP", "None", "Local", "Cluster",
         "NodePort", "LoadBalancer", "ExternalName", "http", "30000-32767", "tso", "auto", "netdev",
         "networking.k8s.io/v1", "NetworkPolicy", "Namespace", "In", "NotIn", "Exists", "DoesNotExist",
         "Ingress", "Egress", "10.0.0.0/8", "10.244.1.0/24"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2 ** 70, max_value=2 ** 70),
                    st.integers(min_value=-2, max_value=70000), st.floats(), st.text(max_size=12),
                    st.sampled_from(WORDS))
keys = st.one_of(st.sampled_from(FIELDS), st.sampled_from(FIELDS), st.text(max_size=6), st.integers(-3, 3),
                 st.booleans(), st.none())
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(keys, inner, max_size=5)), max_leaves=25)
KINDS = [("k8snet.io/v1alpha1", "Cluster"), ("v1", "Pod"), ("apps/v1", "Deployment"), ("v1", "Service"),
         ("v1", "Namespace"), ("networking.k8s.io/v1", "NetworkPolicy")]
documents = st.builds(
    lambda api_kind, api, kind, meta, spec, extra: {**extra, "apiVersion": api if api is not None else api_kind[0],
                                                    "kind": kind if kind is not None else api_kind[1],
                                                    "metadata": meta, "spec": spec},
    st.sampled_from(KINDS), st.one_of(st.none(), st.none(), values), st.one_of(st.none(), st.none(), values),
    st.one_of(st.fixed_dictionaries({"name": st.one_of(st.sampled_from(["web", "a", "node-0"]), values)},
                                    optional={"namespace": values, "labels": values, "annotations": values}),
              values),
    st.one_of(st.dictionaries(st.sampled_from(FIELDS), values, max_size=6), values),
    st.dictionaries(keys, values, max_size=2))


def dump(docs: list[Any]) -> str:
    try:
        return yaml.safe_dump_all(docs, sort_keys=False)
    except (yaml.YAMLError, TypeError, ValueError):
        assume(False)
        raise AssertionError("unreachable")


def loads_or_explains(text: str) -> Cluster | None:
    """The property: a Cluster, or a SpecError whose every problem renders."""
    try:
        return load_text(text)
    except SpecError as exc:
        assert exc.problems and all(str(p) for p in exc.problems)
        return None


def through_the_cli(text: str | bytes) -> int:
    """``k8snet flows FILE`` in-process: 0 (it loaded and every node compiled) or 2."""
    with tempfile.NamedTemporaryFile("wb", suffix=".yaml") as handle:
        handle.write(text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text)
        handle.flush()
        sink = io.StringIO()
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            status = main(["flows", handle.name])
    assert status in (0, 2), sink.getvalue()[-2000:]
    return status


@settings(max_examples=300)
@given(st.lists(documents, min_size=1, max_size=4))
def test_generated_documents_load_or_are_explained(docs):
    loads_or_explains(dump(docs))


@settings(max_examples=120)
@given(st.lists(documents, min_size=1, max_size=3))
def test_generated_documents_through_the_command_line(docs):
    through_the_cli(dump(docs))


def _paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, prefix + (i,))
    return out


def _mutated(docs: list[Any], data: st.DataObject) -> list[Any]:
    docs = yaml.safe_load_all(yaml.safe_dump_all(docs))  # a deep copy
    docs = list(docs)
    for _ in range(data.draw(st.integers(1, 3))):
        d = data.draw(st.integers(0, len(docs) - 1))
        path = data.draw(st.sampled_from(_paths(docs[d])))
        action = data.draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        if not path:
            docs[d] = data.draw(values) if action == "replace" else docs[d]
            continue
        parent = docs[d]
        for part in path[:-1]:
            parent = parent[part]
        if action == "replace":
            parent[path[-1]] = data.draw(values)
        elif action == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[data.draw(keys)] = data.draw(values)
        else:
            parent.append(data.draw(values))
    return docs


@pytest.mark.parametrize("name", embedded_specs())
@settings(max_examples=150)
@given(data=st.data())
def test_mutations_of_every_shipped_example_load_or_are_explained(name, data):
    docs = list(yaml.safe_load_all(embedded_spec_text(name)))
    text = dump(_mutated(docs, data))
    if data.draw(st.booleans()):
        loads_or_explains(text)
    else:
        through_the_cli(text)


#: Every NetworkPolicy field in use (not a shipped example: a cluster with policies is
#: refused until the switches enforce them; its mutations must still be explained).
POLICY_EXAMPLE = """\
apiVersion: v1
kind: Namespace
metadata: {name: x, labels: {team: blue}}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {app: a}}
spec: {containers: [{name: c, ports: [{name: http, containerPort: 80}]}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: x}
spec:
  podSelector: {matchLabels: {app: a}, matchExpressions: [{key: tier, operator: NotIn, values: [db]}]}
  policyTypes: [Ingress, Egress]
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {team: blue}}
      podSelector: {matchExpressions: [{key: app, operator: Exists}]}
    - ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}
    ports: [{port: http}, {protocol: UDP, port: 53, endPort: 60}]
  egress:
  - to: [{podSelector: {}}]
    ports: [{protocol: TCP}]
"""


@settings(max_examples=150)
@given(data=st.data())
def test_mutations_of_a_policy_example_load_or_are_explained(data):
    assert loads_or_explains(POLICY_EXAMPLE) is not None
    text = dump(_mutated(list(yaml.safe_load_all(POLICY_EXAMPLE)), data))
    if data.draw(st.booleans()):
        loads_or_explains(text)
    else:
        through_the_cli(text)


@settings(max_examples=100)
@given(st.one_of(st.text(max_size=200), st.binary(max_size=200).map(lambda b: b.decode("latin-1"))))
def test_any_text_loads_or_is_explained(text):
    loads_or_explains(text)


@settings(max_examples=60)
@given(st.binary(max_size=300))
def test_any_bytes_through_the_command_line(data):
    through_the_cli(data)


@settings(max_examples=150)
@given(st.lists(documents, min_size=1, max_size=3), st.booleans())
def test_apply_and_delete_against_a_running_model_answer_or_explain(docs, delete):
    current = load_text(embedded_spec_text("services"))
    try:
        after = apply_text(current, dump(docs), delete=delete)
    except SpecError as exc:
        assert exc.problems and all(str(p) for p in exc.problems)
        return
    assert isinstance(after, Cluster) and [n.name for n in after.nodes] == [n.name for n in current.nodes]


# ---------------------------------------------------------------------- the shapes that crashed
DEFAULT_CLUSTER = default_spec_text().split("---")[0]
CASES = {
    "kind is a list": "apiVersion: v1\nkind: [1, 2]\nmetadata: {name: x}\n",
    "apiVersion is a mapping": "apiVersion: {a: 1}\nkind: Pod\nmetadata: {name: x}\n",
    "kind is a nested list": "apiVersion: a b\nkind: [[[]]]\n",
    "apiVersion is a nested list": "apiVersion: [[[]]]\nkind: Cluster\n",
    "non-string keys": "apiVersion: v1\nkind: Pod\nmetadata: {name: x, 1: 2, null: 3, true: 4}\n",
    "metadata is a list": "apiVersion: v1\nkind: Pod\nmetadata: [name, x]\n",
    "an alias bomb": "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(8)) +
        "apiVersion: v1\nkind: Pod\nmetadata: {name: x, labels: *i}\n",
    "an alias refers to itself": "apiVersion: v1\nkind: Pod\nmetadata: &m {name: x, labels: *m}\n",
    "deep nesting": "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: " + "[" * 5000 + "]" * 5000 + "\n",
    "deep nesting in a mapping": "a: " + "{b: " * 200 + "1" + "}" * 200 + "\n",
    "huge replicas": "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: w}\nspec:\n  replicas: "
                     "1000000000000000000000\n  selector: {matchLabels: {a: b}}\n  template: {metadata: "
                     "{labels: {a: b}}}\n",
    "huge node count": DEFAULT_CLUSTER.replace("nodes: 3", "nodes: 99999999999999"),
    "a huge float": "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {terminationGracePeriodSeconds: 1e999}\n",
    "only empty documents": "---\n---\n...\n",
    "a NUL byte": "apiVersion: v1\nkind: Pod\x00\n",
    "binary junk": "\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
    "a set": "apiVersion: v1\nkind: Pod\nmetadata: !!set {name, x}\n",
    "a timestamp name": "apiVersion: v1\nkind: Pod\nmetadata: {name: 2001-12-14}\n",
    "binary data": "apiVersion: v1\nkind: Pod\nmetadata: {name: !!binary aGVsbG8=}\n",
    "a Cluster with an odd type everywhere": "apiVersion: k8snet.io/v1alpha1\nkind: Cluster\nspec:\n"
                                              "  nodes: [1, 2]\n  backend: [x]\n  underlay: 5\n  datapath: []\n",
}


@pytest.mark.parametrize("text", list(CASES.values()), ids=list(CASES))
def test_shapes_that_crashed_are_refused_with_a_reason(text):
    with pytest.raises(SpecError) as refused:
        load_text(text)
    assert all(str(p) for p in refused.value.problems)
    assert through_the_cli(text) == 2


def test_the_messages_name_the_document_and_field():
    with pytest.raises(SpecError, match=r"document 1: kind: must be a kind name such as Pod \(got \[1, 2\]\)"):
        load_text(CASES["kind is a list"])
    with pytest.raises(SpecError, match=r"document 1 \(Pod 'x'\): apiVersion: must be a string such as v1"):
        load_text(CASES["apiVersion is a mapping"])
    with pytest.raises(SpecError, match=r"document 1: holds more than 100000 values once its YAML aliases"):
        load_text(CASES["an alias bomb"])
    with pytest.raises(SpecError, match=r"spec.replicas: Input should be less than or equal to 10000"):
        load_text(CASES["huge replicas"])
    with pytest.raises(SpecError, match=r"99999999999999 nodes: k8snet emulates at most 4096"):
        load_text(CASES["huge node count"])


@pytest.mark.parametrize("what", ["not UTF-8", "a folder", "missing", "a dangling link"])
def test_files_that_cannot_be_read_say_why(tmp_path, what):
    path = tmp_path / "spec.yaml"
    expected = {"not UTF-8": "not UTF-8 text (byte 0xff at offset 9)", "a folder": "Is a directory",
                "missing": "No such file or directory", "a dangling link": "No such file or directory"}[what]
    if what == "not UTF-8":
        path.write_bytes(b"kind: Pod\xff\xfe\n")
    elif what == "a folder":
        path.mkdir()
    elif what == "a dangling link":
        path.symlink_to(tmp_path / "gone" / "spec.yaml")
    with pytest.raises(SpecError, match=re.escape(f"cannot read {path}: {expected}")):
        load_path(str(path))
    result = subprocess.run([sys.executable, "-m", "k8snet.cli", "flows", str(path)], capture_output=True, text=True,
                            timeout=60, cwd=ROOT, env={**os.environ, "COLUMNS": "300"})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"cannot read {path}: {expected}" in result.stderr
