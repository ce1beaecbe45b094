"""NetworkPolicy and Namespace as the model holds them once validated (pure).

These mirror ``networking.k8s.io/v1`` closely enough that the evaluator
(:mod:`k8snet.model.policy_eval`) can follow the Kubernetes API reference sentence by
sentence.  Defaulting is done when a document is read
(:mod:`k8snet.model.policy_schema`), as the API server does it, so a policy here always
has its effective ``policy_types``.
"""

from __future__ import annotations

import ipaddress
from typing import Optional

from pydantic import BaseModel, ConfigDict

#: The label the API server puts on every namespace (Kubernetes 1.21+), set to its name.
NAME_LABEL = "kubernetes.io/metadata.name"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class Namespace(_Frozen):
    name: str
    #: Always holds ``kubernetes.io/metadata.name: <name>`` (the API server overwrites
    #: whatever a document says for that key).
    labels: dict[str, str] = {}
    #: Declared by a Namespace document (False: it exists because pods name it).
    declared: bool = False

    @staticmethod
    def of(name: str, labels: Optional[dict[str, str]] = None, declared: bool = False) -> "Namespace":
        return Namespace(name=name, labels={**(labels or {}), NAME_LABEL: name}, declared=declared)


class Requirement(_Frozen):
    """One ``matchExpressions`` entry."""

    key: str
    operator: str  # In, NotIn, Exists, DoesNotExist
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        # As k8s.io/apimachinery's labels.Requirement.Matches: NotIn and DoesNotExist
        # match a set that lacks the key.
        if self.operator == "In":
            return self.key in labels and labels[self.key] in self.values
        if self.operator == "NotIn":
            return self.key not in labels or labels[self.key] not in self.values
        if self.operator == "Exists":
            return self.key in labels
        return self.key not in labels


class Selector(_Frozen):
    """A LabelSelector: ``matchLabels`` and ``matchExpressions`` ANDed; empty selects all."""

    match_labels: dict[str, str] = {}
    match_expressions: tuple[Requirement, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.match_labels.items()) and \
            all(r.matches(labels) for r in self.match_expressions)

    @property
    def empty(self) -> bool:
        return not self.match_labels and not self.match_expressions

    def __str__(self) -> str:
        parts = [f"{k}={v}" for k, v in sorted(self.match_labels.items())]
        for r in self.match_expressions:
            if r.operator in ("In", "NotIn"):
                parts.append(f"{r.key} {r.operator.lower()} ({','.join(r.values)})")
            else:
                parts.append(r.key if r.operator == "Exists" else f"!{r.key}")
        return ",".join(parts) if parts else "(all)"


class IPBlock(_Frozen):
    cidr: ipaddress.IPv4Network | ipaddress.IPv6Network
    excepted: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    def contains(self, ip: ipaddress.IPv4Address) -> bool:
        return ip in self.cidr and not any(ip in e for e in self.excepted)


class Peer(_Frozen):
    """One ``from``/``to`` entry: pods by selector (in the policy's namespace, or in the
    namespaces a namespaceSelector picks), or an ipBlock."""

    pod_selector: Optional[Selector] = None
    namespace_selector: Optional[Selector] = None
    ip_block: Optional[IPBlock] = None


class PolicyPort(_Frozen):
    protocol: str = "TCP"
    #: None: every port of the protocol; an int (with ``end_port``: a range); a name: the
    #: destination pod's container port of that name and protocol.
    port: Optional[int | str] = None
    end_port: Optional[int] = None

    def __str__(self) -> str:
        if self.port is None:
            return f"any/{self.protocol}"
        if self.end_port is not None:
            return f"{self.port}-{self.end_port}/{self.protocol}"
        return f"{self.port}/{self.protocol}"


class Rule(_Frozen):
    """An ingress or egress rule.  ``peers`` None: the field was absent or empty, which
    allows every peer; ``ports`` empty likewise allows every port (and protocol)."""

    peers: Optional[tuple[Peer, ...]] = None
    ports: tuple[PolicyPort, ...] = ()


class NetworkPolicy(_Frozen):
    name: str
    namespace: str = "default"
    pod_selector: Selector = Selector()
    #: Effective, after the API server's defaulting: Ingress always unless given; Egress
    #: when given, or when the policy has egress rules.
    policy_types: tuple[str, ...] = ("Ingress",)
    ingress: tuple[Rule, ...] = ()
    egress: tuple[Rule, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def rules(self, direction: str) -> tuple[Rule, ...]:
        return self.ingress if direction == "ingress" else self.egress

    def governs(self, direction: str) -> bool:
        return direction.capitalize() in self.policy_types
