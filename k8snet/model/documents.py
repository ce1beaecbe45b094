"""Reading a spec's YAML documents, and turning pydantic's errors into located problems.

The first step of loading (:mod:`k8snet.model.manifests`): YAML text -> numbered raw
documents; and, for every document validated against the input schema
(:mod:`k8snet.model.schema`), pydantic's errors -> :class:`~k8snet.model.schema.Problem`
values that name the document, the field path and what is allowed.
"""

from __future__ import annotations

from typing import Any, Optional

import yaml
from pydantic import BaseModel, ValidationError

from k8snet.model.schema import BACKENDS, BackendIn, NodeIn, Problem, SpecError, _In

CLUSTER_API = "k8snet.io/v1alpha1"
_MODEL_NAMES = {cls.__name__ for cls in (NodeIn, BackendIn)}
KNOWN_KINDS = {(CLUSTER_API, "Cluster"), ("v1", "Pod"), ("apps/v1", "Deployment"), ("v1", "Service"),
               ("v1", "Namespace"), ("networking.k8s.io/v1", "NetworkPolicy")}
#: The kinds, as the errors list them.
KINDS_HELP = (f"Cluster ({CLUSTER_API}), Namespace (v1), Pod (v1), Deployment (apps/v1), Service (v1), "
              "NetworkPolicy (networking.k8s.io/v1)")
NOT_YET = {
    "Endpoints": "Endpoints are computed from Pods and Services; do not write them",
    "EndpointSlice": "EndpointSlices are computed from Pods and Services; do not write them",
}


#: Values one document may hold once YAML aliases are expanded, and how deep it may nest.
#: A cluster spec is far smaller; without a bound an alias bomb ("billion laughs": aliases
#: of aliases) would keep validation busy for ever.
MAX_VALUES = 100_000
MAX_DEPTH = 50


def parse_yaml(text: str) -> list[tuple[int, Any]]:
    """YAML text -> ``(document number, document)`` for every non-empty document."""
    try:
        raw = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError([Problem(None, "", "", f"not valid YAML{where}: {problem}")]) from exc
    except RecursionError:
        raise SpecError([Problem(None, "", "", f"nested too deeply to read (a spec needs a few levels; "
                                 f"at most {MAX_DEPTH} are accepted)")]) from None
    docs = [(i + 1, d) for i, d in enumerate(raw) if d is not None]
    if not docs:
        raise SpecError([Problem(None, "", "", "the file holds no documents; start with "
                                 f"'apiVersion: {CLUSTER_API}' and 'kind: Cluster'")])
    problems = [Problem(index, "", "", problem) for index, doc in docs if (problem := size_problem(doc))]
    if problems:
        raise SpecError(problems)
    return docs


def size_problem(doc: Any) -> Optional[str]:
    """Why a document is too big or too deep to validate (aliases counted as expanded), or None."""
    stack, count = [(doc, 0)], 0
    while stack:
        value, depth = stack.pop()
        count += 1
        if count > MAX_VALUES:
            return (f"holds more than {MAX_VALUES} values once its YAML aliases are expanded; a cluster spec "
                    "is far smaller (look for anchors referring to anchors)")
        if depth > MAX_DEPTH:
            return f"is nested more than {MAX_DEPTH} levels deep; a cluster spec needs a few"
        if isinstance(value, dict):
            stack.extend((item, depth + 1) for pair in value.items() for item in pair)
        elif isinstance(value, (list, tuple, set)):
            stack.extend((item, depth + 1) for item in value)
    return None


def shown(value: Any, limit: int = 80) -> str:
    """``repr`` of an input value for a message, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


#: What a ``Union`` field accepts, said once for the error that no branch fits.
UNION_HELP = {
    "spec.nodes": "must be a node count (e.g. 3) or a list of nodes with name and optional rack",
    "spec.backend": f"must be a backend name ({', '.join(BACKENDS)}) or a mapping "
                    "{type, vni, port, directRouting}",
}


def _union_tag_type(part: Any) -> Optional[type]:
    """Pydantic names each branch of a Union in the error location; map the branch
    name to the Python type of input it is for (None: not a branch name)."""
    if not isinstance(part, str):
        return None
    if part in ("int", "str") or part.startswith("function-after["):
        return int if part == "int" else str
    if part.startswith("list["):
        return list
    if part in _MODEL_NAMES:
        return dict
    return None


def _raw_at(raw: Any, loc: tuple) -> Any:
    for part in loc:
        if isinstance(raw, dict):
            raw = raw.get(part)
        elif isinstance(raw, list) and isinstance(part, int) and part < len(raw):
            raw = raw[part]
        else:
            return None
    return raw


def pydantic_problems(doc: int, what: str, exc: ValidationError, model: type[_In],
                       raw: Any) -> list[Problem]:
    """Turn pydantic's errors into located problems.

    A ``Union`` field reports a failure for each branch; keep only the branch the input
    was meant for (the one whose type matches the raw value), or one plain sentence
    when the input fits no branch at all."""
    problems = []
    for err in exc.errors():
        tags = [i for i, p in enumerate(err["loc"]) if _union_tag_type(p) is not None]
        if tags:
            i = tags[0]
            value = _raw_at(raw, err["loc"][:i])
            branches = {_union_tag_type(e["loc"][i]) for e in exc.errors()
                        if len(e["loc"]) > i and e["loc"][:i] == err["loc"][:i]}
            fits = [t for t in branches if t and isinstance(value, t) and not isinstance(value, bool)]
            if not fits:
                field = ".".join(str(p) for p in err["loc"][:i])
                help_text = UNION_HELP.get(field, "has the wrong type")
                problem = Problem(doc, what, field, f"{help_text} (got {shown(value)})")
                if problem not in problems:
                    problems.append(problem)
                continue
            if not isinstance(value, _union_tag_type(err["loc"][i])):
                continue
        loc = [str(p) for p in err["loc"] if _union_tag_type(p) is None]
        field = ".".join(loc)
        kind = err["type"]
        if kind == "extra_forbidden":
            parent = _model_at(model, err["loc"][:-1])
            allowed = ", ".join(sorted(_aliases(parent))) if parent else ""
            message = f"unknown field; allowed here: {allowed}" if allowed else "unknown field"
        elif kind == "missing":
            message = "required field is missing"
        elif kind == "value_error":
            message = str(err["msg"]).removeprefix("Value error, ")
        else:
            message = f"{err['msg']} (got {shown(err.get('input'))})"
        problems.append(Problem(doc, what, field, message))
    return problems


def _aliases(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


def _model_at(model: type[BaseModel], loc: tuple) -> Optional[type[BaseModel]]:
    """Walk a pydantic error location to the model that holds the offending field."""
    current: Any = model
    for part in loc:
        if isinstance(part, int) or _union_tag_type(part) is not None:
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = next((f for n, f in current.model_fields.items() if (f.alias or n) == part), None)
        if field is None:
            return None
        current = _inner_model(field.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _inner_model(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


