"""What a ``v1 Namespace`` and a ``networking.k8s.io/v1 NetworkPolicy`` document may say.

The checks and their wording follow the API server's own validation
(``pkg/apis/networking/validation`` and apimachinery's ``ValidateLabelSelector`` in
kubernetes/kubernetes), so that a policy k8snet accepts is one a cluster would accept:
operators In/NotIn need values and Exists/DoesNotExist take none; an ipBlock's ``except``
must be a strict subset of its ``cidr``; ``endPort`` needs a numeric ``port`` not above
it; a named port is an IANA service name; a peer names something, and an ipBlock stands
alone.  SCTP is valid Kubernetes but refused here: nothing in this emulation speaks it.

Defaulting is the API server's too (``pkg/apis/networking/v1/defaults.go``): no
``policyTypes`` means Ingress, plus Egress when the policy has egress rules; a port
without a protocol is TCP.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Optional, Union

from pydantic import AfterValidator, Field, field_validator, model_validator

from k8snet.model.policy import (
    IPBlock, Namespace, NetworkPolicy, Peer, PolicyPort, Requirement, Rule, Selector,
)
from k8snet.model.schema import Labels, Metadata, _In, check_labels, dns1123_label

OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")
POLICY_TYPES = ("Ingress", "Egress")
_PORT_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")


def port_name(value: str) -> str:
    """An IANA_SVC_NAME, as apimachinery's ``IsValidPortName`` checks it."""
    if not (1 <= len(value) <= 15 and _PORT_NAME.match(value) and "--" not in value
            and re.search("[a-z]", value)):
        raise ValueError(f"{value!r} is neither a port number (1-65535) nor a port name: a name is at most 15 "
                         "lowercase letters, digits and '-', with at least one letter and no '--' or '-' at "
                         "either end")
    return value


def network(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """A CIDR as Kubernetes parses it (``ParseCIDRSloppy``: host bits may be set)."""
    if "/" not in value:
        raise ValueError(f"{value!r} is not a CIDR: write an address and a prefix length, e.g. 10.0.0.0/16")
    try:
        return ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(f"{value!r} is not a valid CIDR, e.g. 10.0.0.0/16") from None


class RequirementIn(_In):
    key: str
    operator: str
    values: Optional[list[str]] = None

    @field_validator("key")
    @classmethod
    def _key(cls, v: str) -> str:
        check_labels({v: "x"})
        return v

    @field_validator("operator")
    @classmethod
    def _operator(cls, v: str) -> str:
        if v not in OPERATORS:
            raise ValueError(f"{v!r} is not a valid selector operator; allowed: {', '.join(OPERATORS)}")
        return v

    @model_validator(mode="after")
    def _check(self) -> "RequirementIn":
        if self.operator in ("In", "NotIn") and not self.values:
            raise ValueError(f"values: must be non-empty when operator is {self.operator}")
        if self.operator in ("Exists", "DoesNotExist") and self.values:
            raise ValueError(f"values: may not be specified when operator is {self.operator}")
        for v in self.values or ():
            check_labels({self.key: v})
        return self


class SelectorIn(_In):
    match_labels: Labels = {}
    match_expressions: list[RequirementIn] = []

    def model(self) -> Selector:
        return Selector(match_labels=dict(self.match_labels),
                        match_expressions=tuple(Requirement(key=r.key, operator=r.operator,
                                                            values=tuple(r.values or ()))
                                                for r in self.match_expressions))


class IPBlockIn(_In):
    cidr: str
    excepted: list[str] = Field(default=[], alias="except")

    @field_validator("cidr")
    @classmethod
    def _cidr(cls, v: str) -> str:
        network(v)
        return v

    @model_validator(mode="after")
    def _check(self) -> "IPBlockIn":
        cidr = network(self.cidr)
        for i, text in enumerate(self.excepted):
            part = network(text)
            if part.version != cidr.version or not part.subnet_of(cidr) or part.prefixlen <= cidr.prefixlen:
                raise ValueError(f"except[{i}]: {text!r} must be a strict subset of cidr {self.cidr!r}")
        return self

    def model(self) -> IPBlock:
        return IPBlock(cidr=network(self.cidr), excepted=tuple(network(t) for t in self.excepted))


class PeerIn(_In):
    pod_selector: Optional[SelectorIn] = None
    namespace_selector: Optional[SelectorIn] = None
    ip_block: Optional[IPBlockIn] = None

    @model_validator(mode="after")
    def _check(self) -> "PeerIn":
        selectors = self.pod_selector is not None or self.namespace_selector is not None
        if self.ip_block is not None and selectors:
            raise ValueError("ipBlock may not be combined with podSelector or namespaceSelector in one peer; "
                             "write them as two peers")
        if self.ip_block is None and not selectors:
            raise ValueError("a peer must say podSelector, namespaceSelector or ipBlock (an empty peer "
                             "matches nothing; to allow everything, leave the from/to list out)")
        return self

    def model(self) -> Peer:
        return Peer(pod_selector=self.pod_selector.model() if self.pod_selector else None,
                    namespace_selector=self.namespace_selector.model() if self.namespace_selector else None,
                    ip_block=self.ip_block.model() if self.ip_block else None)


class PolicyPortIn(_In):
    protocol: str = "TCP"
    port: Optional[Union[int, str]] = None
    end_port: Optional[int] = None

    @field_validator("protocol")
    @classmethod
    def _protocol(cls, v: str) -> str:
        if v == "SCTP":
            raise ValueError("SCTP is valid Kubernetes but not supported here (nothing in this emulation "
                             "speaks SCTP); use TCP or UDP")
        if v not in ("TCP", "UDP"):
            raise ValueError(f"{v!r} is not a protocol; allowed: TCP, UDP")
        return v

    @field_validator("port")
    @classmethod
    def _port(cls, v: Union[int, str, None]) -> Union[int, str, None]:
        if isinstance(v, int) and not 1 <= v <= 65535:
            raise ValueError(f"{v} is not a port; use 1-65535 or the name of a container port")
        if isinstance(v, str):
            port_name(v)
        return v

    @model_validator(mode="after")
    def _end(self) -> "PolicyPortIn":
        if self.end_port is None:
            return self
        if self.port is None:
            raise ValueError("endPort: may not be specified when port is not specified")
        if isinstance(self.port, str):
            raise ValueError("endPort: may not be specified when port is a name (a range needs numbers)")
        if not self.port <= self.end_port <= 65535:
            raise ValueError(f"endPort: {self.end_port} must be at least port ({self.port}) and at most 65535")
        return self

    def model(self) -> PolicyPort:
        return PolicyPort(protocol=self.protocol, port=self.port, end_port=self.end_port)


class IngressRuleIn(_In):
    peers: Optional[list[PeerIn]] = Field(default=None, alias="from")
    ports: list[PolicyPortIn] = []

    def model(self) -> Rule:
        return Rule(peers=tuple(p.model() for p in self.peers) if self.peers else None,
                    ports=tuple(p.model() for p in self.ports))


class EgressRuleIn(_In):
    peers: Optional[list[PeerIn]] = Field(default=None, alias="to")
    ports: list[PolicyPortIn] = []

    def model(self) -> Rule:
        return Rule(peers=tuple(p.model() for p in self.peers) if self.peers else None,
                    ports=tuple(p.model() for p in self.ports))


def _policy_types(v: list[str]) -> list[str]:
    for t in v:
        if t not in POLICY_TYPES:
            raise ValueError(f"{t!r} is not a policy type; allowed: Ingress, Egress")
    if len(set(v)) != len(v):
        raise ValueError("lists a policy type twice")
    return v


class NetworkPolicySpecIn(_In):
    pod_selector: SelectorIn = SelectorIn()
    policy_types: Optional[Annotated[list[str], AfterValidator(_policy_types)]] = None
    ingress: list[IngressRuleIn] = []
    egress: list[EgressRuleIn] = []


class NetworkPolicyDoc(_In):
    api_version: str
    kind: str
    metadata: Metadata
    spec: NetworkPolicySpecIn = NetworkPolicySpecIn()

    def model(self) -> NetworkPolicy:
        spec = self.spec
        types = tuple(spec.policy_types) if spec.policy_types else \
            ("Ingress", "Egress") if spec.egress else ("Ingress",)
        return NetworkPolicy(name=self.metadata.name, namespace=self.metadata.namespace,
                             pod_selector=spec.pod_selector.model(), policy_types=types,
                             ingress=tuple(r.model() for r in spec.ingress),
                             egress=tuple(r.model() for r in spec.egress))


class NamespaceMetadata(_In):
    name: Annotated[str, AfterValidator(dns1123_label)]
    labels: Labels = {}
    annotations: dict[str, str] = {}


class NamespaceDoc(_In):
    api_version: str
    kind: str
    metadata: NamespaceMetadata
    spec: dict = {}

    def model(self) -> Namespace:
        return Namespace.of(self.metadata.name, self.metadata.labels, declared=True)


__all__ = ["NamespaceDoc", "NetworkPolicyDoc"]
