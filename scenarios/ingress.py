"""The seed's closing example, end to end, measured hop by hop.

::

    external ──dig──▶ public DNS (unbound on host "lb"): shop.example -> the LB VIP
    external ──HTTP──▶ lb (VIP:80, nftables) ──▶ any node:23456 (NodePort of ingress-nginx)
             ──▶ ingress-nginx pod (nginx: Host shop.example, / -> shop-web, /api/ -> shop-api)
             ──▶ ClusterIP of shop-web / shop-api (names resolved by cluster DNS)
             ──▶ shop-web-N / shop-api-N pods (nginx answering "<pod> <uri>", /blob a file)

Hops (``path``), each checked for reachability, request latency (curl's time_total for
a small GET) and download throughput (``/blob``, ``blob_mb`` MiB), ``repeat`` times:

* ``dns``                 external -> the public DNS (``dig`` for the answer, timed queries
                          for the latency);
* ``loadbalancer``        external -> http://shop.example/ through the LB VIP;
* ``nodeport``            external -> <node IP>:23456, every node (Host: shop.example);
* ``ingress-clusterip``   an ingress pod -> http://shop-web.default.svc.cluster.local/;
* ``ingress-pod``         an ingress pod -> a shop-web pod's IP:8080.

And the ingress's routing (``routed``): Host shop.example + ``/`` is served by a shop-web
pod, ``/api/`` by a shop-api pod, another Host gets nginx's 404.

Needs nginx (Debian nginx-light), unbound, dig and curl; a missing one is recorded as
every row failing with its name, not as a zero.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Optional

from k8snet.procs import CommandError
from k8snet.scenario import Recorder, Scenario, Target
from topos.agent import SCRIPT as AGENT
from topos.dns import authoritative_conf
from topos.ovs import wait_for

DOMAIN = "shop.example"
INGRESS_NODE_PORT = 23456
TOOLS = {"nginx": "nginx-light", "unbound": "unbound", "dig": "bind9-dnsutils", "curl": "curl"}


def workload_yaml(ingress_replicas: int) -> str:
    return f"""\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: shop-web}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: shop-web}}}}
  template:
    metadata: {{labels: {{app: shop-web}}}}
    spec: {{containers: [{{name: nginx, ports: [{{name: http, containerPort: 8080}}]}}]}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: shop-api}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: shop-api}}}}
  template:
    metadata: {{labels: {{app: shop-api}}}}
    spec: {{containers: [{{name: nginx, ports: [{{name: http, containerPort: 8080}}]}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: shop-web}}
spec:
  selector: {{app: shop-web}}
  ports: [{{port: 80, targetPort: http}}]
---
apiVersion: v1
kind: Service
metadata: {{name: shop-api}}
spec:
  selector: {{app: shop-api}}
  ports: [{{port: 80, targetPort: http}}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: ingress-nginx}}
spec:
  replicas: {ingress_replicas}
  selector: {{matchLabels: {{app: ingress-nginx}}}}
  template:
    metadata: {{labels: {{app: ingress-nginx}}}}
    spec: {{containers: [{{name: controller, ports: [{{name: http, containerPort: 80}}]}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: ingress-nginx}}
spec:
  type: LoadBalancer
  selector: {{app: ingress-nginx}}
  ports: [{{name: http, port: 80, targetPort: http, nodePort: {INGRESS_NODE_PORT}}}]
"""


def _common(directory: str) -> str:
    return f"""\
worker_processes 1;
user root;
daemon off;
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 512; }}
http {{
  access_log off;
  default_type text/plain;
  client_body_temp_path {directory}/body;
  proxy_temp_path {directory}/proxy;
  fastcgi_temp_path {directory}/fastcgi;
  uwsgi_temp_path {directory}/uwsgi;
  scgi_temp_path {directory}/scgi;
"""


def backend_conf(pod: str, directory: str) -> str:
    """A functional pod: names itself and the URI it was asked for; /blob is a file."""
    return _common(directory) + f"""\
  server {{
    listen 8080;
    location = /blob {{ alias {directory}/blob; }}
    location / {{ return 200 "{pod} $request_uri\\n"; }}
  }}
}}
"""


def ingress_conf(directory: str, namespace: str = "default") -> str:
    """The ingress controller's nginx: route by Host and path to ClusterIP Services by name
    (resolved once at start by the pod's resolver, i.e. cluster DNS)."""
    return _common(directory) + f"""\
  proxy_http_version 1.1;
  proxy_buffering off;
  server {{
    listen 80 default_server;
    return 404 "no ingress rule for host $host\\n";
  }}
  server {{
    listen 80;
    server_name {DOMAIN};
    location /api/ {{ proxy_pass http://shop-api.{namespace}.svc.cluster.local; }}
    location / {{ proxy_pass http://shop-web.{namespace}.svc.cluster.local; }}
  }}
}}
"""


def public_dns_conf(listen: str, vip: str, directory: str) -> str:
    """The outside world's DNS for the example: one A record, no recursion."""
    return authoritative_conf(directory, DOMAIN, [f"{DOMAIN}. 5 IN A {vip}"], interface=listen)


#: What ``curl -w`` appends: status, seconds, bytes/s, bytes, curl's exit code and error.
_CURL_TAIL = re.compile(r"\n(\d{3}) ([\d.]+) ([\d.]+) (\d+) (\d+) ?(.*?)\s*$")


class Ingress(Scenario):
    name = "ingress"
    order = 50
    description = ("a client resolves shop.example to the external load balancer, which forwards to NodePort "
                   f"{INGRESS_NODE_PORT} on every node; nginx ingress pods route by Host and path to ClusterIP "
                   "Services and on to nginx pods; reachability, latency and throughput hop by hop")
    needs_dns = True
    node_ports = (INGRESS_NODE_PORT,)

    def steps(self, targets: list[Target]) -> int:
        return sum(6 + len(t.cluster.nodes) for t in targets)

    def run(self, targets: list[Target], rec: Recorder) -> None:
        missing = [f"{tool} (Debian package {pkg})" for tool, pkg in TOOLS.items() if shutil.which(tool) is None]
        for target in targets:
            if missing or not target.cluster.dns:
                why = (f"missing: {', '.join(missing)}; run `make setup`" if missing
                       else "cluster DNS is off (the ingress resolves Services by name)")
                for hop in ("dns", "loadbalancer", "nodeport", "ingress-clusterip", "ingress-pod"):
                    rec.add(target, hop, "reachable", "bool", src="-", dst="-", protocol="http", error=why)
                for _ in range(self.steps([target])):
                    rec.step(f"{target.label}: ingress skipped ({why})")
                continue
            self.one(target, rec)

    # ------------------------------------------------------------------ build
    def start_nginx(self, target: Target, host: str, conf: str, directory: Path, port: int) -> None:
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (directory / sub).mkdir(parents=True, exist_ok=True)
        (directory / "nginx.conf").write_text(conf)
        proc = target.net.spawn(host, ["nginx", "-p", str(directory), "-e", str(directory / "error.log"),
                                       "-c", str(directory / "nginx.conf")], f"nginx {host}")
        wait_for(lambda: bool(target.net.net[host].ns("ss", "-Htln", f"sport = :{port}").strip())
                 or proc.poll() is not None, 10, f"nginx in {host} to listen on {port}")
        if proc.poll() is not None:
            log = (directory / "error.log").read_text()[-500:] if (directory / "error.log").exists() else ""
            raise RuntimeError(f"nginx in {host} exited with status {proc.returncode}: {log}")

    def build(self, target: Target) -> tuple[str, str]:
        """Apply the workload, start every nginx and the public DNS; returns (LB VIP, lb host IP)."""
        assert target.net.run is not None
        replicas = min(2, len(target.cluster.nodes))
        cluster = target.apply(workload_yaml(replicas))
        root = target.net.run.sub("ingress")
        for pod in cluster.pods:
            if pod.owner in ("shop-web", "shop-api"):
                d = root / pod.host_name
                d.mkdir(parents=True, exist_ok=True)
                with open(d / "blob", "wb") as blob:
                    blob.truncate(self.options.blob_mb * 1024 * 1024)
                self.start_nginx(target, pod.host_name, backend_conf(pod.name, str(d)), d, 8080)
        for pod in cluster.pods:
            if pod.owner == "ingress-nginx":
                self.start_nginx(target, pod.host_name, ingress_conf(str(root / pod.host_name)),
                                 root / pod.host_name, 80)
        lb = cluster.underlay.lb
        assert lb is not None
        vip = str(cluster.service("ingress-nginx").load_balancer_ip)
        d = root / "public-dns"
        d.mkdir(exist_ok=True)
        (d / "unbound.conf").write_text(public_dns_conf(str(lb.ip), vip, str(d)))
        proc = target.net.spawn(lb.name, ["unbound", "-d", "-c", str(d / "unbound.conf")], "unbound (public DNS)")
        wait_for(lambda: bool(target.net.net[lb.name].ns("ss", "-Hlun", "sport = :53").strip())
                 or proc.poll() is not None, 10, "the public DNS to listen")
        return vip, str(lb.ip)

    # ------------------------------------------------------------------ measure
    def curl(self, target: Target, host: str, url: str, resolve: Optional[str] = None,
             header: Optional[str] = None, body: bool = True) -> tuple[int, float, float, int, str]:
        """(status, seconds, bytes/s, bytes, body) or CommandError.  When curl got no answer
        (status 0), the body is curl's own reason ("curl exit 28: Connection timed out ...")."""
        args = ["curl", "-sS", "--max-time", "30", "-w", "\n%{http_code} %{time_total} %{speed_download} "
                "%{size_download} %{exitcode} %{errormsg}"]
        if resolve:
            args += ["--resolve", resolve]
        if header:
            args += ["-H", header]
        args += ["-o", "-" if body else "/dev/null", url]
        out = target.net.net[host].ns(*args, timeout=40, check=False)
        m = _CURL_TAIL.search(out)
        if not m:
            raise CommandError(f"curl {url} from {host} gave no status: {out.strip()[-200:]}")
        body = out[:m.start()].strip()
        if int(m[5]):
            body = f"curl exit {m[5]}: {m[6]}"
        return int(m[1]), float(m[2]), float(m[3]), int(m[4]), body

    def hop(self, target: Target, rec: Recorder, path: str, src: str, dst: str, url: str,
            resolve: Optional[str] = None, header: Optional[str] = None) -> None:
        rec.step(f"{target.label}: {path} {src} -> {dst}")
        where = dict(src=src, dst=dst, protocol="http")
        try:
            status, _, _, _, text = self.curl(target, src, url, resolve, header)
        except CommandError as exc:
            rec.add(target, path, "reachable", "bool", **where, error=str(exc))
            return
        rec.add(target, path, "reachable", "bool", **where, value=float(status == 200),
                note=f"HTTP {status}: {text[:80]}")
        if status != 200:
            return
        blob = url.rstrip("/") + "/blob"
        for r in range(self.options.repeat):
            try:
                status, seconds, _, _, _ = self.curl(target, src, url, resolve, header)
                rec.add(target, path, "latency", "ms", **where, repeat=r, value=seconds * 1000,
                        note="curl time_total, small GET")
            except CommandError as exc:
                rec.add(target, path, "latency", "ms", **where, repeat=r, error=str(exc))
            try:
                status, seconds, speed, size, _ = self.curl(target, src, blob, resolve, header, body=False)
                if status == 200 and size == self.options.blob_mb * 1024 * 1024:
                    rec.add(target, path, "throughput", "Gbit/s", **where, repeat=r, value=speed * 8 / 1e9,
                            note=f"{size} bytes in {seconds:.3f} s")
                else:
                    rec.add(target, path, "throughput", "Gbit/s", **where, repeat=r,
                            error=f"HTTP {status}, {size} bytes of {self.options.blob_mb} MiB")
            except CommandError as exc:
                rec.add(target, path, "throughput", "Gbit/s", **where, repeat=r, error=str(exc))

    def one(self, target: Target, rec: Recorder) -> None:
        rec.step(f"{target.label}: ingress workload, nginx, public DNS")
        vip, dns_ip = self.build(target)
        cluster = target.cluster
        ext = cluster.underlay.external
        assert ext is not None
        rec.step(f"{target.label}: dns {DOMAIN}")
        answer = self.resolve(target, rec, ext.name, dns_ip, vip)
        resolve = f"{DOMAIN}:80:{answer or vip}"
        self.hop(target, rec, "loadbalancer", ext.name, f"lb/{DOMAIN}", f"http://{DOMAIN}/", resolve=resolve)
        self.routing(target, rec, ext.name, resolve)
        for node in cluster.nodes:
            self.hop(target, rec, "nodeport", ext.name, f"{node.name}:{INGRESS_NODE_PORT}",
                     f"http://{node.ip}:{INGRESS_NODE_PORT}/", header=f"Host: {DOMAIN}")
        ingress = next(p for p in cluster.pods if p.owner == "ingress-nginx")
        web = next(p for p in cluster.pods if p.owner == "shop-web")
        self.hop(target, rec, "ingress-clusterip", ingress.host_name, "svc/shop-web",
                 "http://shop-web.default.svc.cluster.local/")
        self.hop(target, rec, "ingress-pod", ingress.host_name, web.host_name, f"http://{web.ip}:8080/")

    def resolve(self, target: Target, rec: Recorder, src: str, dns_ip: str, vip: str) -> str:
        """The client asks the public DNS for shop.example: dig once (the answer a real
        resolver sees), then ``repeat`` timed queries (agent ``dns``: microseconds, where
        dig reports whole milliseconds)."""
        where = dict(src=src, dst=f"dns@{dns_ip}", protocol="dns")
        try:
            out = target.net.net[src].ns("dig", "+tries=1", "+time=2", f"@{dns_ip}", DOMAIN, "A", timeout=10,
                                         check=False)
        except CommandError as exc:
            rec.add(target, "dns", "reachable", "bool", **where, error=str(exc))
            return ""
        got = re.findall(rf"^{re.escape(DOMAIN)}\.\s+\d+\s+IN\s+A\s+(\S+)", out, re.M)
        rec.add(target, "dns", "reachable", "bool", **where, value=float(got == [vip]),
                note=f"dig: {DOMAIN} A {', '.join(got) or '(no answer)'}; expected {vip}")
        try:
            samples = json.loads(target.net.net[src].ns("/usr/bin/python3", AGENT, "dns", "--server", dns_ip,
                                                        "--name", DOMAIN, "--count", str(self.options.repeat),
                                                        timeout=30))
        except (CommandError, ValueError) as exc:
            rec.add(target, "dns", "latency", "ms", **where, error=f"timed queries failed: {exc}")
            return got[0] if got == [vip] else ""
        for r, sample in enumerate(samples):
            if sample["ok"] and sample["a"] == [vip]:
                rec.add(target, "dns", "latency", "ms", **where, repeat=r, value=sample["ms"],
                        note=f"{DOMAIN} A {vip}")
            else:
                rec.add(target, "dns", "latency", "ms", **where, repeat=r,
                        error=f"expected {DOMAIN} A {vip}, got {sample.get('a') or sample.get('error')}")
        return got[0] if got == [vip] else ""

    def routing(self, target: Target, rec: Recorder, src: str, resolve: str) -> None:
        rec.step(f"{target.label}: routing by Host and path")
        for host, uri, expect in ((DOMAIN, "/", "shop-web-"), (DOMAIN, "/api/orders", "shop-api-"),
                                  ("other.example", "/", None)):
            where = dict(src=src, dst=f"{host}{uri}", protocol="http")
            try:
                status, _, _, _, text = self.curl(target, src, f"http://{DOMAIN}{uri}", resolve,
                                                  header=f"Host: {host}")
            except CommandError as exc:
                rec.add(target, "routing", "routed", "bool", **where, error=str(exc))
                continue
            good = (status == 200 and text.startswith(expect) and text.endswith(uri)) if expect else status == 404
            rec.add(target, "routing", "routed", "bool", **where, value=float(good),
                    note=f"expected {expect + '* ' + uri if expect else 'HTTP 404'}; got HTTP {status}: {text[:60]}")
