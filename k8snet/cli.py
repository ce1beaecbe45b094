"""The ``k8snet`` command.

    k8snet up    [SPEC] [--backend B] [--nodes N] [--pods-per-node M]   cluster + Mininet CLI
    k8snet check [SPEC] [--json FILE] [...same options]                 reachability matrix
    k8snet flows [SPEC] [--node NAME] [--explain]                       the compiled flows
    k8snet trace SRC DST[:PORT] [--proto P] [--json FILE] [--spec SPEC] one packet, hop by hop
    k8snet clean                                                        remove a crashed run's remains
    k8snet run SCENARIO... [--spec SPEC] [--backend B1,B2] [--out DIR]  scenarios -> results/<run-id>/
    k8snet plot DIR... [--out DIR]                                      redraw / compare results

Exit status: 0 success; 1 a pair that should be reachable is not; 2 invalid input
(nothing is started); 130 interrupted (everything is torn down first).
"""

from __future__ import annotations

import argparse
import signal
import sys
import textwrap
import time
from typing import Any, Iterable, Optional

from rich.table import Table

import k8snet
from k8snet.model.cluster import Cluster
from k8snet.model.manifests import Overrides, SpecError
from k8snet.model.sampling import Sample, SampleError, draw
from topos import specs
from topos.datapath import DatapathError, settle

from k8snet.term import EXIT_INTERRUPTED, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE, console, datapath_line, out, progress


def _cluster_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", nargs="?", help="cluster spec YAML (default: the embedded 3x2 cluster)")
    p.add_argument("--backend", help="pod network backend: host-gw, vxlan, directrouting, bgp (default: the spec's)")
    p.add_argument("--nodes", type=int, metavar="N", help="number of nodes (overrides the spec)")
    p.add_argument("--pods-per-node", type=int, metavar="M",
                   help="replace the spec's workloads with M pods per node")
    _datapath_args(p)


def _datapath_args(p: argparse.ArgumentParser, grid: bool = False) -> None:
    p.add_argument("--offload", choices=["auto", "tso", "none"],
                   help="tso: pods keep offloads, OVS userspace TSO on; none: TX checksum offload off; auto "
                        "(default): tso when every backend can carry it on this OVS")
    p.add_argument("--datapath", choices=["auto", "netdev", "system"], dest="datapath_type",
                   help="OVS datapath: system (kernel module), netdev (userspace), auto (default: system "
                        "when the kernel has the module)")
    p.add_argument("--attach", choices=["auto", "veth", "tap"],
                   help="how pods and node uplinks meet their node's OVS: tap (an OVS tap port moved into the "
                        "pod's or the underlay's namespace: no packet-socket drops), veth, auto (default: tap "
                        "on the userspace datapath)")
    what = ("how pods meet their node: bridge (a veth into the node's switch, as Flannel's cni0; default), "
            "routed-veth (Calico's /32 and link-local gateway: every packet routed), macvlan (children of "
            "the node's uplink: no switch on the pods' path)")
    if grid:  # k8snet run: a cluster per backend and access mode, measured side by side
        p.add_argument("--access", metavar="A1,A2", help="one or more access modes, comma-separated; " + what)
    else:
        p.add_argument("--access", choices=["bridge", "routed-veth", "macvlan", "ipvlan"], help=what)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="k8snet", description="Emulate the Kubernetes network model.")
    parser.add_argument("--version", action="version", version=f"k8snet {k8snet.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="build the cluster and open the Mininet CLI")
    _cluster_args(up)
    up.add_argument("--framework", choices=["os-ken", "ryu"], default="os-ken",
                    help="run the controller under os-ken (default) or Ryu")
    check = sub.add_parser("check", help="build, probe the full reachability matrix, tear down")
    _cluster_args(check)
    check.add_argument("--json", metavar="FILE", help="write the matrix and metadata as JSON")
    check.add_argument("--framework", choices=["os-ken", "ryu"], default="os-ken")
    check.add_argument("--sample", type=int, default=0, metavar="N",
                       help="probe N pairs, stratified by path type, instead of the full matrix (large clusters)")
    check.add_argument("--seed", type=int, default=0, help="which sample --sample draws (default 0)")
    flows = sub.add_parser("flows", help="print the flows the controller would install")
    _cluster_args(flows)
    flows.add_argument("--node", help="only this node")
    flows.add_argument("--explain", action="store_true",
                       help="a '# ...' line naming the Kubernetes object before each run of flows about it")
    sub.add_parser("clean", help="remove what a crashed k8snet run left behind (only ours)")
    runp = sub.add_parser("run", help="run scenarios and write results, figures and a report",
                          description=_scenario_list(), formatter_class=argparse.RawDescriptionHelpFormatter)
    runp.add_argument("scenarios", nargs="+", metavar="SCENARIO", help="scenario names (listed above) or all")
    runp.add_argument("--spec", help="cluster spec YAML or embedded spec name (default: the embedded default)")
    runp.add_argument("--backend", help="one or more backends, comma-separated: host-gw,vxlan,directrouting,bgp "
                      "(each gets its own cluster, measured side by side)")
    runp.add_argument("--nodes", type=int, metavar="N", help="number of nodes (overrides the spec)")
    runp.add_argument("--pods-per-node", type=int, metavar="M",
                      help="replace the spec's workloads with M pods per node")
    _datapath_args(runp, grid=True)
    runp.add_argument("--out", metavar="DIR", help="parent folder of the run folder (default: ./results)")
    runp.add_argument("--seconds", type=int, default=2, help="iperf3 seconds per throughput cell (default 2)")
    runp.add_argument("--repeat", type=int, default=3, help="repetitions per cell (default 3)")
    runp.add_argument("--pings", type=int, default=100, help="RTT samples per latency path (default 100)")
    runp.add_argument("--connections", type=int, default=300,
                      help="connections for the Service spread (default 300)")
    runp.add_argument("--loss", metavar="P,P,...", default="",
                      help="throughput: also sweep TCP throughput over these underlay losses in percent "
                           "(e.g. 0,0.1,1,5), next to the Mathis et al. estimate")
    runp.add_argument("--congestion", metavar="ALGO", default="",
                      help="throughput: TCP congestion control for iperf3 (e.g. cubic, reno, bbr; default: the "
                           "machine's, which pods inherit); the loss sweep's Mathis estimate is a model of "
                           "loss-based ones (Reno, CUBIC)")
    runp.add_argument("--schedule", metavar="FILE", default="",
                      help="faults: the fault schedule to play (YAML; default: every kind of fault once)")
    runp.add_argument("--framework", choices=["os-ken", "ryu"], default="os-ken")
    plot = sub.add_parser("plot", help="redraw figures from result folders; several folders: compare them")
    plot.add_argument("dirs", nargs="+", metavar="DIR", help="run folders written by `k8snet run`")
    plot.add_argument("--out", metavar="DIR", help="where to write (default: the folder itself, or "
                      "./results/compare-<time> for several)")
    from k8snet.fault_cmd import add_parser as add_fault
    from k8snet.trace_cmd import add_parser as add_trace

    add_trace(sub, _datapath_args)
    add_fault(sub)
    for verb, what in (("apply", "create or update Pods, Deployments and Services in a running cluster"),
                       ("delete", "delete Pods, Deployments and Services from a running cluster")):
        cmd = sub.add_parser(verb, help=what)
        cmd.add_argument("-f", "--filename", required=True, metavar="FILE", help="YAML documents ('-' for stdin)")
        cmd.add_argument("--run", metavar="DIR", help="the run directory of the cluster (when several run)")
    return parser


def _scenario_list() -> str:
    """What ``k8snet run --help`` says about the scenarios: each file of ``scenarios/``."""
    from scenarios import ScenarioError, discover

    try:
        found = discover()
    except ScenarioError as exc:
        return f"Scenarios could not be listed: {exc}"
    width = max((len(n) for n in found), default=0)
    lines = [textwrap.fill(cls.description, 100, initial_indent=f"  {name:<{width}}  ",
                           subsequent_indent=" " * (width + 4)) for name, cls in found.items()]
    return "Scenarios (files in scenarios/; all runs every one, in this order):\n" + "\n".join(lines)


def load_cluster(args: argparse.Namespace) -> Cluster:
    """The spec with the command line's overrides (SpecError), its datapath settled for
    this machine unless only flows are printed (DatapathError)."""
    overrides = Overrides(nodes=args.nodes, pods_per_node=args.pods_per_node, backend=args.backend,
                          offload=args.offload, datapath_type=args.datapath_type, attach=args.attach,
                          access=args.access)
    cluster = specs.load(args.spec, overrides)
    return cluster if args.command == "flows" else settle([cluster])[0]


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        if args.command == "clean":
            return cmd_clean()
        if args.command in ("apply", "delete"):
            return cmd_apply(args)
        if args.command == "plot":
            return cmd_plot(args)
        if args.command == "run":
            return cmd_run(args)
        if args.command == "trace":
            return _trace(args)
        if args.command == "fault":
            from k8snet.fault_cmd import cmd_fault

            return cmd_fault(args)
        try:
            cluster = load_cluster(args)
        except SpecError as exc:
            return _bad_spec(args.spec, exc)
        except DatapathError as exc:
            return _bad_datapath(exc)
        if args.command == "flows":
            return cmd_flows(cluster, args.node, args.explain)
        sample = None
        if args.command == "check":
            sample = _draw_sample(cluster, args.sample, args.seed)
            if isinstance(sample, str):
                console.print(f"[bold red]--sample:[/] {sample}", soft_wrap=True)
                return EXIT_USAGE
        if not _preflight([cluster]):
            return EXIT_USAGE
        if args.command == "up":
            return cmd_up(cluster, args.framework)
        from k8snet.check import cmd_check

        return cmd_check(cluster, args.framework, args.json, sample)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted; everything k8snet started has been removed[/]")
        return EXIT_INTERRUPTED
    except (RuntimeError, TimeoutError, OSError) as exc:
        # The cluster could not be built or probed (a daemon failed, a command timed out).
        # Everything was torn down on the way out; say what failed, without a traceback.
        console.print(f"[bold red]k8snet {args.command} failed:[/] {exc}", markup=True)
        return EXIT_UNREACHABLE


def _trace(args: argparse.Namespace) -> int:
    from k8snet.trace_cmd import cmd_trace

    def prepare(a: argparse.Namespace) -> Optional[Cluster]:
        """The cluster to build for the trace, or None when this machine cannot."""
        cluster = load_cluster(a)
        return cluster if _preflight([cluster]) else None

    try:
        return cmd_trace(args, prepare)
    except SpecError as exc:
        return _bad_spec(args.spec, exc)
    except DatapathError as exc:
        return _bad_datapath(exc)


def _preflight(clusters: Iterable[Cluster] = ()) -> bool:
    from topos.environment import preflight

    problem = preflight(clusters)
    if problem:
        console.print(problem, markup=False)
    return problem is None


def _draw_sample(cluster: Cluster, sample: int, seed: int) -> Sample | str | None:
    """The pairs ``--sample`` probes, drawn before anything is built (None: the full
    matrix), or why they cannot be drawn from this cluster's matrix."""
    if sample < 0:
        return f"{sample} is negative; give a number of pairs (0: the full matrix)"
    if not sample:
        return None
    try:
        return draw(cluster, sample, seed)
    except SampleError as exc:
        return str(exc)


def _bad_datapath(exc: "DatapathError") -> int:
    flag = exc.field.rsplit('.', 1)[-1] if exc.field.endswith(('offload', 'attach', 'access')) else 'datapath'
    what = "access mode" if exc.field == "access" else "datapath setting"
    console.print(f"[bold red]cannot honour the {what}[/] (spec.{exc.field}, or --{flag}): {exc.message}",
                  soft_wrap=True)
    return EXIT_USAGE


def _bad_spec(spec: Optional[str], exc: SpecError) -> int:
    console.print(f"[bold red]invalid cluster spec[/] ({spec or 'embedded default'}):")
    for problem in exc.problems:
        console.print(f"  - {problem}", markup=False)
    return EXIT_USAGE


def cmd_run(args: argparse.Namespace) -> int:
    """Validate everything first (exit 2, nothing started), then run (k8snet.runner)."""
    from pathlib import Path

    from k8snet.runner import (
        UsageError, default_out, load_clusters, parse_backends, parse_congestion, parse_list, parse_losses,
        parse_scenarios, run_scenarios,
    )
    from k8snet.scenario import Options
    from scenarios import ScenarioError, discover

    try:
        found = discover()
        names = parse_scenarios(args.scenarios, list(found))
        backends = parse_backends(args.backend)
        accesses = parse_list(args.access, "--access", "bridge,routed-veth,macvlan", "access modes")
        for option in ("seconds", "repeat", "pings", "connections"):
            if getattr(args, option) < 1:
                raise UsageError(f"--{option} must be at least 1, not {getattr(args, option)}")
        losses = parse_losses(args.loss)
        congestion = parse_congestion(args.congestion)
        out = Path(args.out) if args.out else default_out()
        if out.exists() and not out.is_dir():
            raise UsageError(f"--out {out}: exists and is not a folder; give a folder (created if missing)")
    except (UsageError, ScenarioError) as exc:
        console.print(f"[bold red]k8snet run:[/] {exc}", markup=True, soft_wrap=True)
        return EXIT_USAGE
    options = Options(seconds=args.seconds, repeat=args.repeat, pings=args.pings, connections=args.connections,
                      schedule=args.schedule, loss=losses, congestion=congestion)
    scenarios = [found[n](options) for n in names]
    try:
        clusters = load_clusters(args.spec, backends, scenarios,
                                 nodes=args.nodes, pods_per_node=args.pods_per_node, offload=args.offload,
                                 datapath_type=args.datapath_type, attach=args.attach, accesses=accesses)
    except SpecError as exc:
        return _bad_spec(args.spec, exc)
    except DatapathError as exc:
        return _bad_datapath(exc)
    problems = [p for p in (s.check(clusters) for s in scenarios) if p]
    if problems:
        from rich.markup import escape

        for problem in problems:
            console.print(f"[bold red]k8snet run:[/] {escape(problem)}", markup=True, soft_wrap=True)
        return EXIT_USAGE
    if not _preflight(clusters):
        return EXIT_USAGE
    outcome = run_scenarios(scenarios, clusters, options, out, console, framework=args.framework,
                            command=typed_command())
    print_run_summary(outcome)
    if outcome.interrupted:
        console.print(f"[yellow]interrupted: the clusters are torn down; results so far are in "
                      f"{outcome.directory}[/]")
        return EXIT_INTERRUPTED
    return EXIT_UNREACHABLE if outcome.failed else EXIT_OK


def typed_command() -> list[str]:
    """The command line as the user would type it again: ``k8snet ...`` also when started
    as ``python -m k8snet.cli``."""
    if sys.argv and sys.argv[0].endswith(("k8snet", "k8snet/cli.py")):
        return ["k8snet", *sys.argv[1:]]
    return list(sys.argv)


def print_run_summary(outcome) -> None:
    from k8snet.report import headlines

    table = Table(title=f"k8snet run {outcome.directory.name}")
    for col in ("scenario", "what", "value", "reading"):
        table.add_column(col)
    for result in outcome.results:
        lines = headlines(result) or [("(no measurements)", "-", result.status_reason or "")]
        for what, value, note in lines[:12]:
            table.add_row(result.scenario, what, value, note[:60])
        if len(lines) > 12:
            table.add_row(result.scenario, f"... {len(lines) - 12} more in the report", "", "")
        if result.status != "complete":
            table.add_row(result.scenario, f"[red]{result.status}[/]", "", (result.status_reason or "")[:60])
    out.print(table)
    out.print(f"report: {outcome.directory / 'report.html'}", markup=False)


def cmd_plot(args: argparse.Namespace) -> int:
    """One folder: redraw its figures and report.  Several: comparison figures and a page."""
    import json as _json
    from pathlib import Path

    from pydantic import ValidationError

    from k8snet import plots, results
    from k8snet.report import write_comparison, write_report

    runs: dict[str, list] = {}
    for d in args.dirs:
        path = Path(d)
        if not path.is_dir() or not any(path.glob("*.json")):
            console.print(f"DIR {d}: not a folder written by `k8snet run` (no results JSON in it)")
            return EXIT_USAGE
        try:
            runs[path.name if path.name not in runs else str(path)] = results.read_run(path)
        except (ValidationError, ValueError) as exc:
            console.print(f"DIR {d}: a results file does not match the schema "
                          f"({results.SCHEMA_PATH.name}): {str(exc)[:300]}")
            return EXIT_USAGE
    if len(runs) == 1:
        (name, rs), src = next(iter(runs.items())), Path(args.dirs[0])
        target = Path(args.out) if args.out else src
        target.mkdir(parents=True, exist_ok=True)
        redrawn = []
        for r in rs:
            r = r.model_copy(update={"figures": plots.draw(r, target)})
            if target == src:
                results.write(r, target)
            redrawn.append(r)
        run_doc = _json.loads((src / "run.json").read_text()) if (src / "run.json").exists() else \
            {"run_id": name, "command": [], "started": "", "scenarios": [r.scenario for r in rs]}
        report = write_report(target, redrawn, run_doc)
        out.print(f"redrew {sum(len(r.figures) for r in redrawn)} figures; report: {report}", markup=False)
        return EXIT_OK
    target = Path(args.out) if args.out else Path("results") / f"compare-{time.strftime('%Y%m%d-%H%M%S')}"
    target.mkdir(parents=True, exist_ok=True)
    figs = plots.save(plots.compare(runs), target)
    if not figs:
        console.print("the folders share no scenario to compare")
        return EXIT_USAGE
    (target / "compare.json").write_text(_json.dumps(
        {"kind": "k8snet.compare", "runs": list(runs), "dirs": args.dirs,
         "figures": [f.model_dump() for f in figs]}, indent=1))
    report = write_comparison(target, runs, figs)
    out.print(f"compared {len(runs)} runs in {len(figs)} figures; report: {report}", markup=False)
    return EXIT_OK


def cmd_clean() -> int:
    from k8snet.rundir import clean

    report = clean()
    for line in report:
        out.print(line, markup=False)
    if not report:
        out.print("nothing of k8snet's to clean")
    return EXIT_OK


def cmd_apply(args: argparse.Namespace) -> int:
    """Send documents to the ``k8snet up`` that owns the cluster (see topos.control)."""
    from controllers.api import ApiClient
    from k8snet.rundir import one_live_socket
    from topos.control import SOCKET_NAME

    from k8snet.model.manifests import read_spec_file

    try:
        text = sys.stdin.read() if args.filename == "-" else read_spec_file(args.filename)
    except (SpecError, UnicodeDecodeError) as exc:
        console.print(f"-f {args.filename}: {exc}", markup=False)
        return EXIT_USAGE
    socket, why = one_live_socket(SOCKET_NAME, args.run)
    if socket is None:
        console.print(why.replace("no running cluster", "no running cluster to apply to", 1), soft_wrap=True)
        return EXIT_USAGE
    reply = ApiClient(str(socket), timeout=120).call_raw({"op": args.command, "text": text})
    if not reply.get("ok"):
        console.print(f"[bold red]{args.command} refused[/]: {reply.get('error')}")
        for problem in reply.get("problems", []):
            console.print(f"  - {problem}", markup=False)
        return EXIT_USAGE
    for name in reply["pods_added"]:
        out.print(f"pod/{name} created", markup=False)
    for name in reply["pods_removed"]:
        out.print(f"pod/{name} deleted", markup=False)
    for word, key in (("created", "policies_added"), ("configured", "policies_changed"), ("deleted", "policies_removed")):
        for name in reply.get(key, []):
            out.print(f"networkpolicy/{name} {word}", markup=False)
    for key, svc in reply["services"].items():
        ports = ", ".join(f"{p['port']}/{p['protocol']}" + (f" (nodePort {p['nodePort']})" if p["nodePort"] else "")
                          + f" -> {len(p['endpoints'])} endpoints" for p in svc["ports"])
        ingress = reply.get("load_balancers", {}).get(key)
        out.print(f"service/{key} {svc['clusterIP'] or '(no ClusterIP)'}"
                  + (f" ingress {ingress}" if ingress else "") + f": {ports}", markup=False)
    return EXIT_OK


def cmd_flows(cluster: Cluster, node: Optional[str], explain: bool = False) -> int:
    """The flows each switch would hold, in ``ovs-ofctl`` syntax; ``explain`` adds comment
    lines (``ovs-ofctl add-flows`` skips them) saying what each run of flows is about."""
    from controllers import cookies
    from controllers.compiler import compile_node

    names = [node] if node else [n.name for n in cluster.nodes]
    for name in names:
        try:
            desired = compile_node(cluster, name)
        except KeyError:
            console.print(f"--node: no node {name!r}; nodes are: {', '.join(n.name for n in cluster.nodes)}")
            return EXIT_USAGE
        out.print(f"# {name}: {len(desired.flows)} flows", markup=False)
        known = cookies.names(cluster) if explain else {}
        previous = None
        for flow, line in zip(desired.flows, desired.ofctl_lines()):
            if explain and cookies.key(flow.cookie) != previous:
                previous = cookies.key(flow.cookie)
                out.print(f"# {cookies.describe(cluster, flow.cookie, known)}", markup=False, soft_wrap=True)
            out.print(line, markup=False, soft_wrap=True)
    return EXIT_OK


def cmd_up(cluster: Cluster, framework: str) -> int:
    from mininet.cli import CLI

    from topos.cluster import ClusterNet

    class K8sCLI(CLI):
        """Mininet's CLI, taught that Kubernetes names hold '-' and '.' (``web-0``):
        Python's cmd module would otherwise read ``web-0 ping`` as command ``web``."""

        identchars = CLI.identchars + "-."

    from topos.control import ClusterControl

    datapath_line(cluster)
    with ClusterNet(cluster, framework=framework, progress=progress) as net:
        ClusterControl(net).start()
        console.print("[bold]cluster is up.[/] Hosts are named as in Kubernetes, e.g. "
                      f"`{cluster.pods[0].host_name if cluster.pods else cluster.nodes[0].name} ping "
                      f"{cluster.pods[-1].host_name if cluster.pods else cluster.nodes[-1].name}`; "
                      "Ctrl-D or `exit` tears everything down; `k8snet apply -f FILE` in another "
                      "terminal changes Pods, Deployments and Services.")
        from mininet.log import setLogLevel

        setLogLevel("output")  # the CLI prints command output at this level
        K8sCLI(net.net)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
