"""``k8snet run``: build one cluster per backend, run the scenarios, write the results.

Layout of a run (``<out>/<run-id>/``, the id sortable by time)::

    run.json                      the run: command, scenarios, status, clusters
    <scenario>.json / .csv        per scenario (k8snet/results.py; schema in k8snet/schema/)
    <figure>.png / .svg           per figure (k8snet/plots.py)
    report.html                   one offline page: summary, figures, metadata

Every cluster is built before the first measurement (all backends side by side, so a
scenario can interleave them), and all are torn down at the end, on an error, or on
Ctrl-C; whatever was measured by then is written, marked ``interrupted``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional

from rich.console import Console
from rich.progress import (
    BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn,
)

from k8snet import results
from topos.environment import environment
from k8snet.procs import run as run_cmd
from k8snet.model.cluster import Cluster, to_json
from k8snet.model.manifests import Overrides, SpecError
from k8snet.scenario import Options, Recorder, Scenario, Target
from topos import specs
from topos.cluster import ClusterNet
from topos.datapath import settle


class UsageError(ValueError):
    """Bad command-line input: the message names the option and the fix (exit 2)."""


def parse_scenarios(names: list[str], known: list[str]) -> list[str]:
    """The scenarios asked for (names, comma lists, ``all``), in ``known``'s order."""
    chosen: list[str] = []
    for name in names:
        for part in name.split(","):
            if part == "all":
                chosen += known
            elif part in known:
                chosen.append(part)
            else:
                raise UsageError(f"SCENARIO: no scenario {part!r}; choose from {', '.join(known)} or all")
    return sorted(set(chosen), key=known.index)


def parse_list(text: Optional[str], option: str, example: str, noun: str = "values") -> list[Optional[str]]:
    """``--backend host-gw,vxlan`` and the like: distinct names, each validated when its
    cluster loads (SpecError names the choices); [None] when not given (the spec's)."""
    if not text:
        return [None]
    names = [b.strip() for b in text.split(",")]
    if any(not b for b in names) or len(set(names)) != len(names):
        raise UsageError(f"{option} {text!r}: give distinct {noun} separated by commas, e.g. {example}")
    return names


def parse_backends(text: Optional[str]) -> list[Optional[str]]:
    return parse_list(text, "--backend", "host-gw,vxlan", "backends")


def parse_losses(text: str) -> tuple[float, ...]:
    """``--loss 0,0.1,1,5``: distinct percentages in [0, 100)."""
    if not text:
        return ()
    try:
        losses = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise UsageError(f"--loss {text!r}: give percentages separated by commas, e.g. 0,0.1,1,5") from None
    if any(not 0 <= x < 100 for x in losses) or len(set(losses)) != len(losses):
        raise UsageError(f"--loss {text!r}: each loss is a distinct percentage from 0 up to (not including) 100")
    return losses


#: Where the kernel lists the TCP congestion control algorithms a socket may ask for.
AVAILABLE_CONGESTION = Path("/proc/sys/net/ipv4/tcp_available_congestion_control")


def parse_congestion(text: str, available: Optional[str] = None) -> str:
    """``--congestion cubic``: a TCP congestion control algorithm this kernel has (iperf3 -C
    sets it on the test's sockets); empty: the pods' default, which they inherit from the
    machine (``net.ipv4.tcp_congestion_control``)."""
    if not text:
        return ""
    names = (available if available is not None else AVAILABLE_CONGESTION.read_text()).split()
    if text not in names:
        raise UsageError(f"--congestion {text!r}: this kernel has {', '.join(names)}; give one of them "
                         "(or leave it out for the machine's default)")
    return text


def load_clusters(spec: Optional[str], backends: list[Optional[str]], scenarios: list[Scenario],
                  nodes: Optional[int] = None, pods_per_node: Optional[int] = None,
                  offload: Optional[str] = None, datapath_type: Optional[str] = None,
                  attach: Optional[str] = None, access: Optional[str] = None,
                  accesses: Optional[list[Optional[str]]] = None) -> list[Cluster]:
    """One cluster model per backend and access mode (``accesses``, or the one ``access``:
    the grid of ``--backend a,b --access c,d``, backends outer), every problem of every
    cluster at once (SpecError), then one datapath and offload setting for all of them
    (DatapathError); exit 2."""
    dns = True if any(s.needs_dns for s in scenarios) and shutil.which("unbound") else None
    wanted = sorted({port for s in scenarios for port in s.node_ports})
    clusters, problems = [], []
    for backend, mode in [(b, a) for b in backends for a in (accesses or [access])]:
        overrides = Overrides(backend=backend, dns=dns, nodes=nodes, pods_per_node=pods_per_node, offload=offload,
                              datapath_type=datapath_type, attach=attach, access=mode)
        try:
            cluster = specs.load(spec, overrides)
            low, high = cluster.node_port_range
            if wanted and not low <= wanted[0] <= wanted[-1] <= high:
                widened = (min(low, wanted[0]), max(high, wanted[-1]))
                cluster = specs.load(spec, dataclasses.replace(overrides, node_port_range=widened))
            clusters.append(cluster)
        except SpecError as exc:
            problems += [p for p in exc.problems if p not in problems]
    if problems:
        raise SpecError(problems)
    return settle(clusters, lossy=any(getattr(s.options, "loss", ()) for s in scenarios))


def new_run_dir(out: Path) -> Path:
    """``<out>/<YYYYmmdd-HHMMSS>[-N]``: sortable by time, never reused."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    for n in range(100):
        path = out / (stamp if n == 0 else f"{stamp}-{n}")
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue
    raise UsageError(f"--out {out}: could not create a new run directory")


class Steps:
    """Progress: a rich bar on a terminal, one line per step otherwise (logs, CI)."""

    def __init__(self, console: Console, total: int):
        self.console = console
        self.total = max(total, 1)
        self.done = 0
        self.t0 = time.monotonic()
        self.live = console.is_terminal
        self.progress: Optional[Progress] = None
        if self.live:
            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(),
                                     console=console, transient=True)
            self.task = self.progress.add_task("starting", total=self.total)
            self.progress.start()
        self._pending = False

    def __call__(self, what: str) -> None:
        if self._pending:
            self._advance()
        self._pending = True
        if self.progress is not None:
            self.progress.update(self.task, description=what[:70])
        else:
            elapsed = time.monotonic() - self.t0
            left = f", about {elapsed / self.done * (self.total - self.done):.0f}s left" if self.done else ""
            self.console.print(f"[{self.done + 1}/{self.total}{left}] {what}", markup=False, highlight=False)

    def _advance(self) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress.update(self.task, advance=1)

    def finish_step(self) -> None:
        if self._pending:
            self._advance()
            self._pending = False

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()


@dataclass
class RunOutcome:
    directory: Path
    results: list[results.ScenarioResult] = field(default_factory=list)
    interrupted: bool = False

    @property
    def failed(self) -> list[results.ScenarioResult]:
        return [r for r in self.results if r.status == "failed"]


def _label(cluster: Cluster) -> str:
    """The cluster's name in the run's log lines, as figures and tables name it."""
    return results.label(cluster.backend.value, cluster.underlay.type.value, cluster.access)


def _environment(cluster: Cluster) -> dict:
    iperf3 = run_cmd(["iperf3", "--version"], check=False).stdout.splitlines()[:1] if shutil.which("iperf3") else []
    nginx = run_cmd(["nginx", "-v"], check=False).stderr.strip() if shutil.which("nginx") else "not installed"
    return environment(cluster, iperf3=iperf3[0] if iperf3 else "not installed", nginx=nginx)


def run_scenarios(scenarios: list[Scenario], clusters: list[Cluster], options: Options, out: Path,
                  console: Console, framework: str = "os-ken", command: Optional[list[str]] = None,
                  log: Optional[Callable[[str], None]] = None) -> RunOutcome:
    """Run and write everything; on Ctrl-C write what there is and re-raise."""
    from k8snet.plots import draw
    from k8snet.report import write_report

    log = log or (lambda m: console.print(m, markup=False, highlight=False))
    scenario_names = [s.name for s in scenarios]
    directory = new_run_dir(out)
    outcome = RunOutcome(directory)
    env = _environment(clusters[0])  # settled together: one datapath and offload setting
    command = command or sys.argv
    run_doc = {"kind": "k8snet.run", "run_id": directory.name, "command": command,
               "started": datetime.now(timezone.utc).isoformat(), "scenarios": scenario_names,
               "options": options.as_dict(), "environment": env, "status": "running"}
    (directory / "run.json").write_text(json.dumps(run_doc, indent=1))
    log(f"run {directory.name}: {', '.join(scenario_names)} on "
        f"{', '.join(_label(c) for c in clusters)} "
        f"(OVS {env['ovs']}, offload {env['offload_detail']}; {env['datapath_choice']})")
    steps: Optional[Steps] = None
    try:
        with ExitStack() as stack:
            targets: list[Target] = []
            for cluster in clusters:
                log(f"building {_label(cluster)}: "
                    f"{cluster.summary()}")
                net = ClusterNet(cluster, framework=framework, progress=lambda m: None)
                stack.callback(net.stop)
                net.start()
                targets.append(Target(net))
            steps = Steps(console, sum(s.steps(targets) for s in scenarios))
            for scenario in scenarios:
                started = datetime.now(timezone.utc).isoformat()
                rec = Recorder(scenario.name, steps)
                status, reason = "complete", None
                try:
                    scenario.run(targets, rec)
                except KeyboardInterrupt:
                    status, reason = "interrupted", "Ctrl-C (or SIGTERM) during the scenario"
                    outcome.interrupted = True
                except Exception as exc:  # recorded, and the next scenario still runs
                    status, reason = "failed", f"{type(exc).__name__}: {exc}"
                    log(f"scenario {scenario.name} failed: {reason}")
                steps.finish_step()
                result = _result(scenario, rec, directory.name, status, reason, started, command, env,
                                 options, targets)
                result = _finish(result, directory, draw)
                outcome.results.append(result)
                if outcome.interrupted:
                    raise KeyboardInterrupt
    except KeyboardInterrupt:
        outcome.interrupted = True
    finally:
        if steps is not None:
            steps.stop()
        run_doc.update(finished=datetime.now(timezone.utc).isoformat(),
                       status="interrupted" if outcome.interrupted else
                       ("failed" if outcome.failed else "complete"),
                       written=[r.scenario for r in outcome.results])
        (directory / "run.json").write_text(json.dumps(run_doc, indent=1))
        write_report(directory, outcome.results, run_doc)
    return outcome


def _result(scenario: Scenario, rec: Recorder, run_id: str, status: str, reason: Optional[str], started: str,
            command: list[str], env: dict, options: Options, targets: list[Target]) -> results.ScenarioResult:
    clusters = [results.ClusterInfo(label=t.label, backend=t.backend, underlay=t.underlay, access=t.access,
                                    spec=json.loads(to_json(t.cluster)), workloads=list(t.workloads))
                for t in targets]
    summary = scenario.summarize(rec.measurements)
    return results.ScenarioResult(
        scenario=scenario.name, run_id=run_id, description=scenario.description, status=status,
        status_reason=reason,
        metadata=results.Metadata(command=command, started=started, finished=datetime.now(timezone.utc).isoformat(),
                                  environment=env, options=options.as_dict(), clusters=clusters),
        measurements=rec.measurements, summary=summary, raw=rec.raw)


def _finish(result: results.ScenarioResult, directory: Path, draw) -> results.ScenarioResult:
    """Write JSON and CSV, draw the figures, write the JSON again with them listed.  A
    figure that cannot be drawn does not lose the data."""
    results.write(result, directory)
    try:
        figures = draw(result, directory)
    except Exception as exc:  # the numbers are written; say why the figure is not
        return result.model_copy(update={"status_reason": (result.status_reason or "") +
                                         f" figures failed: {type(exc).__name__}: {exc}"})
    result = result.model_copy(update={"figures": figures})
    results.write(result, directory)
    return result


def default_out() -> Path:
    return Path(os.environ.get("K8SNET_RESULTS", "results"))
