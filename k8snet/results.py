"""What a scenario run writes: one JSON document and one tidy CSV per scenario.

The JSON's shape is :class:`ScenarioResult`; its JSON Schema is generated from these
models into ``k8snet/schema/scenario-result.schema.json`` (kept in the repo, checked by
the tests to match) so that a notebook or another tool can validate results without
k8snet.  Every measurement is one row of the tidy table (:class:`Measurement`), the
CSV holds exactly those rows, and the summary, figures and report are all computed
from them -- never the other way round.

A failed measurement is a row with ``ok: false``, no value and the reason in
``error``: never a zero, never a blank.
"""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path
from typing import Any, Iterable, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

from k8snet.model.cluster import to_json

SCHEMA_VERSION = "k8snet.scenario/1"
SCHEMA_PATH = Path(__file__).resolve().parent / "schema" / "scenario-result.schema.json"


def label(backend: str, underlay: str, access: str = "bridge") -> str:
    """How figures and tables name a cluster: ``backend/underlay``, with the access mode
    when it is not the default bridge (``host-gw/flat/macvlan``); ``reference`` for the
    machine's references."""
    if backend == "reference":
        return "reference"
    return f"{backend}/{underlay}" + ("" if access == "bridge" else f"/{access}")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Measurement(_Model):
    """One observation: a row of the tidy CSV."""

    id: str = Field(description="unique within the file, e.g. throughput/host-gw/cross-node/tcp/1/r0")
    scenario: str
    backend: str = Field(description="the pod network backend, or 'reference' for the machine's references")
    underlay: str = Field(description="flat | routed | '-' (references)")
    access: str = Field(default="bridge", description="how pods meet their node (spec.access): bridge | routed-veth "
                        "| macvlan | '-' (references)")
    path: str = Field(description="what was crossed: same-node, cross-node, clusterip, nodeport, veth, ...")
    src: str
    dst: str
    protocol: str = Field(description="tcp | udp | icmp | http | dns | -")
    streams: Optional[int] = Field(default=None, description="parallel streams (iperf3 -P)")
    repeat: int = Field(ge=0, description="which repetition or sample (0-based)")
    metric: str = Field(description="throughput | rtt | reachable | connections | convergence | ...")
    value: Optional[float] = Field(description="null exactly when ok is false")
    unit: str = Field(description="Gbit/s | ms | bool | count | s | %")
    ok: bool = Field(description="the measurement itself succeeded (a pair measured unreachable is ok)")
    error: Optional[str] = Field(default=None, description="why the measurement failed")
    note: str = Field(default="", description="context: the predicted reason, the endpoint that answered, ...")
    t: float = Field(description="seconds since the scenario started")
    raw: Optional[str] = Field(default=None, description="key into the document's 'raw' map")

    @property
    def label(self) -> str:
        return label(self.backend, self.underlay, self.access)

    @model_validator(mode="after")
    def _failed_has_reason(self) -> "Measurement":
        if self.ok and self.value is None:
            raise ValueError(f"{self.id}: a successful measurement needs a value")
        if not self.ok and (self.value is not None or not self.error):
            raise ValueError(f"{self.id}: a failed measurement has no value and says why in 'error'")
        return self


CSV_COLUMNS = list(Measurement.model_fields)


class SummaryRow(_Model):
    """Measurements grouped by everything but ``repeat``: n, median, min and max."""

    backend: str
    underlay: str
    access: str = "bridge"
    path: str
    protocol: str
    streams: Optional[int]
    metric: str
    unit: str
    n: int = Field(description="successful measurements")
    failed: int
    median: Optional[float]
    min: Optional[float]
    max: Optional[float]
    ratios: dict[str, float] = Field(default_factory=dict,
                                     description="median / the named reference's median, same run")
    errors: list[str] = Field(default_factory=list)

    @property
    def label(self) -> str:
        return label(self.backend, self.underlay, self.access)


class Figure(_Model):
    name: str = Field(description="file stem; the files are <name>.png and <name>.svg")
    title: str
    caption: str = Field(description="what the figure shows and how to read it")
    files: list[str]


class ClusterInfo(_Model):
    label: str = Field(description="backend/underlay[/access] as shown in figures")
    backend: str
    underlay: str
    access: str = "bridge"
    spec: dict[str, Any] = Field(description="the full cluster model the run built")
    workloads: list[str] = Field(default_factory=list, description="YAML the scenario applied")


class Metadata(_Model):
    command: list[str]
    started: str
    finished: Optional[str]
    environment: dict[str, Any] = Field(description="k8snet, OVS, kernel, Python, iperf3 versions, datapath")
    options: dict[str, Any]
    clusters: list[ClusterInfo]


class ScenarioResult(_Model):
    schema_version: Literal["k8snet.scenario/1"] = SCHEMA_VERSION
    scenario: str
    run_id: str
    description: str
    status: Literal["complete", "interrupted", "failed"]
    status_reason: Optional[str] = None
    metadata: Metadata
    measurements: list[Measurement]
    summary: list[SummaryRow]
    figures: list[Figure] = Field(default_factory=list)
    raw: dict[str, Any] = Field(default_factory=dict, description="raw tool output (iperf3 -J as it came)")


def schema() -> dict[str, Any]:
    doc = ScenarioResult.model_json_schema()
    doc["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    doc["$id"] = "https://k8snet.io/schema/scenario-result/1"
    return doc


def schema_text() -> str:
    return json.dumps(schema(), indent=1, sort_keys=True) + "\n"


def summarize(rows: Iterable[Measurement]) -> list[SummaryRow]:
    """Group by (backend, underlay, access, path, protocol, streams, metric); keep first-seen order."""
    groups: dict[tuple, list[Measurement]] = {}
    for m in rows:
        groups.setdefault((m.backend, m.underlay, m.access, m.path, m.protocol, m.streams, m.metric, m.unit),
                          []).append(m)
    out = []
    for (backend, underlay, access, path, protocol, streams, metric, unit), ms in groups.items():
        values = [m.value for m in ms if m.ok and m.value is not None]
        out.append(SummaryRow(backend=backend, underlay=underlay, access=access, path=path, protocol=protocol,
                              streams=streams,
                              metric=metric, unit=unit, n=len(values), failed=sum(not m.ok for m in ms),
                              median=statistics.median(values) if values else None,
                              min=min(values) if values else None, max=max(values) if values else None,
                              errors=sorted({m.error for m in ms if m.error})))
    return out


def write(result: ScenarioResult, directory: Path) -> tuple[Path, Path]:
    """``<scenario>.json`` and ``<scenario>.csv`` in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    jpath, cpath = directory / f"{result.scenario}.json", directory / f"{result.scenario}.csv"
    tmp = jpath.with_suffix(".json.tmp")
    tmp.write_text(to_json(result, indent=1))
    tmp.replace(jpath)
    with open(cpath, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for m in result.measurements:
            writer.writerow({k: ("" if v is None else v) for k, v in m.model_dump().items()})
    return jpath, cpath


def read(path: Path) -> ScenarioResult:
    return ScenarioResult.model_validate_json(Path(path).read_text())


def read_run(directory: Path) -> list[ScenarioResult]:
    """Every scenario result in a run directory, in the order the run ran them (its
    ``run.json``), else by name."""
    found = [read(p) for p in sorted(Path(directory).glob("*.json")) if p.name != "run.json"]
    try:
        order = list(json.loads((Path(directory) / "run.json").read_text()).get("scenarios", []))
    except (OSError, ValueError, AttributeError):
        order = []
    return sorted(found, key=lambda r: (order.index(r.scenario) if r.scenario in order else len(order), r.scenario))
