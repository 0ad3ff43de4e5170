"""The operator under load: N InferenceServices, a real Prometheus, the real operator process.

    python benchmarks/operator_load.py --services 10,1000 --tick 10s --ticks 6 [--json out.json]

What it runs, all on loopback:

- the Kubernetes API emulator as its own process (`sloscale sandbox apiserver`), holding, for
  every service, an InferenceService attached (`scaleTargetRef`) to a Deployment whose status
  says its replica is ready, spread over `--namespaces` namespaces;
- one exporter for all services: every service's vLLM series (the families the operator reads,
  with vLLM's own bucket edges) with the labels the chart's PodMonitor gives them (`namespace`,
  `pod`, `sloscale_service`). Counters grow at a steady rate per service, so rates, percentiles
  and the objective are real numbers; one scrape target keeps Prometheus' cost down while the
  series count is what N pods would expose;
- a real Prometheus scraping it every `--scrape-interval`;
- the operator, `sloscale run`, cluster-wide, ticking every `--tick`.

For each N in `--services` (services are added, never removed, between steps) it waits until the
operator has written an observation into every service's status and then `--settle` seconds (the
rate window, over which the newest services' readings still move), then measures over
`--ticks` ticks: each tick's duration (the operator's own `sloscale_tick_duration_seconds`), the
operator process's CPU (user + system time from /proc over the same wall time), its resident
memory (the peak, VmHWM), and the PromQL queries per tick (Prometheus' own
`prometheus_http_requests_total` for `/api/v1/query`) with the time Prometheus spent answering
them (its `prometheus_http_request_duration_seconds`). The operator's own /metrics is scraped in
full every 30 s meanwhile, as the chart's ServiceMonitor has Prometheus do: that cost is in the CPU
figure. `--profile DIR` samples the operator with py-spy while measuring. It prints a table and,
with `--json`, writes
the figures. Nothing is asserted here: this is a benchmark; `tests/faults/test_operator_load.py`
runs it small to check that queries per tick do not grow with N.

Every process it starts is stopped on exit, whatever happened.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests

from sloscale.resource import parse_duration
from sloscale.sandbox.prometheus import PrometheusServer, Target
from sloscale.sandbox.vllm_metrics import ITL_BUCKETS, REQUEST_LATENCY_BUCKETS, TTFT_BUCKETS

ROOT = Path(__file__).resolve().parents[1]
SERVICE_LABEL = "sloscale_service"
SCRAPE_OPERATOR_S = 30.0  # the chart's ServiceMonitor interval for the operator's own /metrics
Z99 = 2.3263478740408408


# --- the exporter -----------------------------------------------------------------------------


def _lognormal_share(bound: float, p50: float, p99: float) -> float:
    """Share of a log-normal latency (median p50, 99th percentile p99) at or below `bound`."""
    if math.isinf(bound):
        return 1.0
    sigma = math.log(p99 / p50) / Z99
    return 0.5 * (1.0 + math.erf((math.log(bound) - math.log(p50)) / (sigma * math.sqrt(2.0))))


@dataclass(frozen=True)
class Line:
    """One exposition line: `value = constant + per_second * seconds since start`."""

    prefix: str
    constant: float = 0.0
    per_second: float = 0.0


# Latency shapes (median, p99) in seconds, comfortably within a 1 s p99 TTFT objective.
TTFT, ITL, E2E, QUEUE = (0.15, 0.5), (0.02, 0.05), (4.0, 10.0), (0.01, 0.1)


def service_lines(namespace: str, service: str, rps: float) -> list[Line]:
    """The series one vLLM pod of `service` exposes, as the operator's queries read them."""
    labels = f'namespace="{namespace}",pod="{service}-0",{SERVICE_LABEL}="{service}",model_name="m",engine="0"'
    lines = [
        Line(f"vllm:num_requests_running{{{labels}}}", constant=round(rps * 4)),
        Line(f"vllm:num_requests_waiting{{{labels}}}", constant=0.0),
        Line(f"vllm:kv_cache_usage_perc{{{labels}}}", constant=0.3),
        Line(f'vllm:request_success_total{{{labels},finished_reason="length"}}', per_second=rps),
        Line(f"vllm:prompt_tokens_total{{{labels}}}", per_second=rps * 1000),
        Line(f"vllm:generation_tokens_total{{{labels}}}", per_second=rps * 200),
    ]
    histograms = [
        ("time_to_first_token_seconds", TTFT_BUCKETS, TTFT, rps),
        ("inter_token_latency_seconds", ITL_BUCKETS, ITL, rps * 199),
        ("e2e_request_latency_seconds", REQUEST_LATENCY_BUCKETS, E2E, rps),
        ("request_queue_time_seconds", REQUEST_LATENCY_BUCKETS, QUEUE, rps),
    ]
    for name, bounds, (p50, p99), rate in histograms:
        for bound in (*bounds, math.inf):
            le = "+Inf" if math.isinf(bound) else f"{bound:g}"
            share = _lognormal_share(bound, p50, p99)
            lines.append(Line(f'vllm:{name}_bucket{{{labels},le="{le}"}}', per_second=rate * share))
        lines.append(Line(f"vllm:{name}_count{{{labels}}}", per_second=rate))
        lines.append(Line(f"vllm:{name}_sum{{{labels}}}", per_second=rate * p50))
    return lines


class Exporter:
    """Serves every added service's series on one `/metrics`, values computed at scrape time."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self._lines: list[Line] = []
        self._lock = threading.Lock()
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = exporter.render()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.1,), daemon=True)
        self._thread.start()

    @property
    def series(self) -> int:
        return len(self._lines)

    def add(self, lines: list[Line]) -> None:
        with self._lock:
            self._lines.extend(lines)

    def render(self) -> bytes:
        elapsed = time.monotonic() - self.started
        with self._lock:
            lines = list(self._lines)
        text = "".join(f"{ln.prefix} {ln.constant + ln.per_second * elapsed:.6f}\n" for ln in lines)
        return text.encode()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


# --- the API emulator and the objects in it -----------------------------------------------------


class Cluster:
    """The API emulator as its own process, and what the benchmark creates in it."""

    def __init__(self, workdir: Path) -> None:
        self.kubeconfig = workdir / "kubeconfig"
        self._log = (workdir / "apiserver.log").open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sloscale",
                "sandbox",
                "apiserver",
                "--kubeconfig",
                str(self.kubeconfig),
            ],
            stdout=subprocess.PIPE,
            stderr=self._log,
            cwd=ROOT,
        )
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().decode().strip()
        if not self.url.startswith("http://"):
            self.close()
            raise RuntimeError(f"the API emulator did not start (log: {workdir / 'apiserver.log'})")
        self.http = requests.Session()
        self.namespaces: set[str] = set()
        self.services: list[tuple[str, str]] = []

    def call(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> Any:
        response = self.http.request(
            method, self.url + path, data=json.dumps(body) if body is not None else None,
            headers={"Content-Type": content_type}, timeout=60,
        )  # fmt: skip
        response.raise_for_status()
        return response.json()

    def add_service(self, namespace: str, name: str) -> None:
        """A ready one-replica vLLM Deployment and an InferenceService attached to it. The
        Deployment carries the service label, as `workloads/deployment.yaml` does: the operator
        caches only labelled Deployments (an unlabelled target is read with a GET every tick)."""
        if namespace not in self.namespaces:
            self.call("POST", "/api/v1/namespaces", {"metadata": {"name": namespace}})
            self.namespaces.add(namespace)
        deployments = f"/apis/apps/v1/namespaces/{namespace}/deployments"
        self.call("POST", deployments, {
            "metadata": {"name": f"{name}-vllm", "labels": {"sloscale.dev/service": name}},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"sloscale.dev/service": name}},
                "template": {
                    "metadata": {"labels": {"sloscale.dev/service": name}},
                    "spec": {"containers": [{"name": "vllm", "image": "vllm/vllm-openai:v0.11.0", "args": ["--max-num-seqs=64"]}]},
                },
            },
        })  # fmt: skip
        ready = {
            "observedGeneration": 1,
            "replicas": 1,
            "updatedReplicas": 1,
            "readyReplicas": 1,
            "availableReplicas": 1,
        }
        self.call(
            "PATCH",
            f"{deployments}/{name}-vllm/status",
            {"status": ready},
            "application/merge-patch+json",
        )
        self.call("POST", f"/apis/sloscale.dev/v1alpha1/namespaces/{namespace}/inferenceservices", {
            "apiVersion": "sloscale.dev/v1alpha1",
            "kind": "InferenceService",
            "metadata": {"name": name},
            "spec": {
                "scaleTargetRef": {"name": f"{name}-vllm"},
                "objective": {"type": "Latency", "latency": {"metric": "TimeToFirstToken", "percentile": "p99", "target": "1s"}},
                "replicas": {"min": 1, "max": 4},
            },
        })  # fmt: skip
        self.services.append((namespace, name))

    def observed(self) -> int:
        """Services whose status carries an observation (metrics read and decided). Services are
        created without status, so each one counted has been through at least one tick."""
        items = self.call("GET", "/apis/sloscale.dev/v1alpha1/inferenceservices")["items"]
        fresh = 0
        for item in items:
            conditions = {c["type"]: c for c in (item.get("status") or {}).get("conditions", [])}
            stamp = ((item.get("status") or {}).get("observed") or {}).get("time")
            available = conditions.get("MetricsAvailable", {}).get("status") == "True"
            if stamp and available:
                fresh += 1
        return fresh

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._log.close()


# --- the operator process and what it costs -----------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Operator:
    """`sloscale run` as its own process; its ticks, CPU time and memory."""

    def __init__(self, cluster: Cluster, prometheus_url: str, tick: str, log: Path) -> None:
        self.port = _free_port()
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("SLOSCALE_") and k != "KUBECONFIG"
        }
        self._log = log.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sloscale", "run", "--kubeconfig", str(cluster.kubeconfig),
             "--prometheus-url", prometheus_url, "--tick-interval", tick,
             "--metrics-port", str(self.port), "--log-level", "warning"],
            stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
        )  # fmt: skip
        self.log = log

    def metrics(self, *names: str) -> str:
        """Its /metrics: every series, or only those named."""
        if self.process.poll() is not None:
            raise RuntimeError(
                f"the operator exited with {self.process.returncode}; log: {self.log}"
            )
        try:
            query = [("name[]", name) for name in names]
            url = f"http://127.0.0.1:{self.port}/metrics"
            return requests.get(url, params=query, timeout=30).text
        except requests.RequestException:
            return ""

    def ticks(self) -> tuple[int, float]:
        """Ticks completed and their summed duration, from the operator's own histogram (only
        those two series: all of them, for every service, would cost the operator far more)."""
        text = self.metrics(
            "sloscale_tick_duration_seconds_count", "sloscale_tick_duration_seconds_sum"
        )
        count = re.search(r"^sloscale_tick_duration_seconds_count (\S+)$", text, re.M)
        total = re.search(r"^sloscale_tick_duration_seconds_sum (\S+)$", text, re.M)
        return (int(float(count.group(1))) if count else 0, float(total.group(1)) if total else 0.0)

    def caches(self) -> tuple[dict[str, float], bool]:
        """Objects in the watch-fed caches by resource, and whether every cache is fresh."""
        text = self.metrics("sloscale_informer_objects", "sloscale_informer_fresh")
        cached: dict[str, float] = {}
        for resource, value in re.findall(
            r'^sloscale_informer_objects\{[^}]*resource="(\w+)"[^}]*\} (\S+)$', text, re.M
        ):
            cached[resource] = cached.get(resource, 0.0) + float(value)
        fresh = re.findall(r"^sloscale_informer_fresh\{[^}]*\} (\S+)$", text, re.M)
        return cached, bool(fresh) and all(float(v) == 1.0 for v in fresh)

    def cpu_s(self) -> float:
        """User + system CPU seconds of the process (all its threads) so far."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def memory_mib(self, key: str = "VmRSS") -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
        return math.nan

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._log.close()


def prometheus_queries(prometheus: PrometheusServer) -> tuple[float, float]:
    """Instant queries Prometheus has answered (its own counter, every status code), and the
    seconds it spent answering them (from its request-duration histogram)."""
    text = requests.get(prometheus.url + "/metrics", timeout=10).text

    def total(metric: str) -> float:
        pattern = rf'^{metric}\{{[^}}]*handler="/api/v1/query"[^}}]*\}} (\S+)$'
        return sum(float(v) for v in re.findall(pattern, text, re.M))

    return total("prometheus_http_requests_total"), total(
        "prometheus_http_request_duration_seconds_sum"
    )


# --- one measurement ----------------------------------------------------------------------------


@dataclass
class Step:
    services: int
    series: int
    ticks: int
    tick_mean_s: float
    tick_max_s: float
    tick_durations_s: list[float]
    queries_per_tick: float
    prometheus_s_per_tick: float  # Prometheus' own time answering the tick's queries
    cpu_cores: float
    rss_mib: float
    peak_rss_mib: float
    wall_s: float
    load_average: float  # the machine's 1-minute load average while measuring (cores busy)
    cached: dict[str, float]  # objects in the operator's watch-fed caches, by resource
    caches_fresh: bool  # every cache listed and following the API at the end


@dataclass
class Rig:
    """Everything running: the cluster, the exporter, Prometheus and the operator."""

    cluster: Cluster
    exporter: Exporter
    prometheus: PrometheusServer
    operator: Operator
    namespaces: int
    progress: Callable[[str], None] = print
    added: int = field(default=0)

    def grow_to(self, n: int) -> None:
        while self.added < n:
            i = self.added
            namespace, name = f"load-{i % self.namespaces}", f"svc-{i}"
            self.cluster.add_service(namespace, name)
            self.exporter.add(service_lines(namespace, name, rps=1.0 + (i % 3)))
            self.added += 1
            if self.added % 200 == 0:
                self.progress(f"  {self.added} services created")

    def wait_all_observed(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            fresh = self.cluster.observed()
            if fresh >= self.added:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"only {fresh}/{self.added} services observed after {timeout_s:g}s; operator log: {self.operator.log}"
                )
            time.sleep(1.0)

    def measure(self, ticks: int, tick_s: float) -> Step:
        # Progress is polled a few times per tick (durations come from the histogram's sum and
        # count, not from when a poll saw them); the whole /metrics is scraped every
        # SCRAPE_OPERATOR_S, as the chart's ServiceMonitor has Prometheus do, and that cost counts.
        poll_s = min(1.0, tick_s / 4)
        scraped = 0.0
        count0, _ = self.operator.ticks()
        while True:  # start right after a tick ends
            count, total = self.operator.ticks()
            if count > count0:
                break
            time.sleep(poll_s)
        queries0, cpu0, wall0 = (
            prometheus_queries(self.prometheus),
            self.operator.cpu_s(),
            time.monotonic(),
        )
        durations: list[float] = []
        rss: list[float] = []
        last_count, last_total = count, total
        load0 = os.getloadavg()[0]
        deadline = wall0 + ticks * max(tick_s, 300.0)  # a starved machine makes ticks long
        while last_count < count + ticks:
            time.sleep(poll_s)
            if time.monotonic() - scraped >= SCRAPE_OPERATOR_S:
                self.operator.metrics()
                scraped = time.monotonic()
            now_count, now_total = self.operator.ticks()
            if now_count > last_count:
                share = (now_total - last_total) / (now_count - last_count)
                durations += [share] * (now_count - last_count)
                last_count, last_total = now_count, now_total
                rss.append(self.operator.memory_mib())
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{last_count - count} of {ticks} ticks in {time.monotonic() - wall0:.0f}s"
                )
        wall = time.monotonic() - wall0
        cpu = self.operator.cpu_s() - cpu0
        load = (load0 + os.getloadavg()[0]) / 2
        queries_now, answering_now = prometheus_queries(self.prometheus)
        queries, answering = queries_now - queries0[0], answering_now - queries0[1]
        done = last_count - count
        cached, fresh = self.operator.caches()
        return Step(
            services=self.added,
            series=self.exporter.series,
            ticks=done,
            tick_mean_s=sum(durations) / len(durations),
            tick_max_s=max(durations),
            tick_durations_s=[round(d, 3) for d in durations],
            queries_per_tick=queries / done,
            prometheus_s_per_tick=answering / done,
            cpu_cores=cpu / wall,
            rss_mib=max(rss),
            peak_rss_mib=self.operator.memory_mib("VmHWM"),
            wall_s=wall,
            load_average=round(load, 1),
            cached=cached,
            caches_fresh=fresh,
        )


@contextlib.contextmanager
def running(
    workdir: Path,
    *,
    tick: str,
    scrape_interval_s: float,
    namespaces: int,
    progress: Callable[[str], None] = print,
) -> Iterator[Rig]:
    """Start the emulator, exporter, Prometheus and operator; stop all of them afterwards."""
    with contextlib.ExitStack() as stack:
        cluster = Cluster(workdir)
        stack.callback(cluster.close)
        exporter = Exporter()
        stack.callback(exporter.close)
        prometheus = PrometheusServer(workdir / "prometheus", scrape_interval_s=scrape_interval_s)
        stack.enter_context(prometheus)
        # No target labels: the exporter's own namespace/pod/service labels stay on each series.
        prometheus.set_targets([Target(exporter.address, {})])
        operator = Operator(cluster, prometheus.url, tick, workdir / "operator.log")
        stack.callback(operator.close)
        yield Rig(cluster, exporter, prometheus, operator, namespaces, progress)


@contextlib.contextmanager
def profiled(pid: int, out: Path | None) -> Iterator[None]:
    """With `out`, py-spy samples process `pid` (every thread, idle ones left out) meanwhile and
    writes collapsed stacks there (one line per stack, its sample count last)."""
    if out is None:
        yield
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    spy = subprocess.Popen(
        [str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(pid), "--rate", "50",
         "--format", "raw", "--output", str(out), "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)  # py-spy writes its output when interrupted
        try:
            spy.wait(60)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait(5)


def run(sizes: list[int], *, tick: str, ticks: int, scrape_interval_s: float, namespaces: int, workdir: Path,
        progress: Callable[[str], None] = print, profile: Path | None = None,
        settle_s: float = 0.0) -> list[Step]:  # fmt: skip
    tick_s = parse_duration(tick)
    steps: list[Step] = []
    with running(
        workdir,
        tick=tick,
        scrape_interval_s=scrape_interval_s,
        namespaces=namespaces,
        progress=progress,
    ) as rig:
        for n in sizes:
            progress(f"N={n}: creating services")
            rig.grow_to(n)
            progress(f"N={n}: waiting until every service has been observed")
            rig.wait_all_observed(timeout_s=120 + 5 * tick_s + n * 0.2)
            if settle_s > 0:  # the newest services' rates and conditions settle over a window
                progress(f"N={n}: letting the services settle for {settle_s:g}s")
                time.sleep(settle_s)
            progress(f"N={n}: measuring {ticks} ticks")
            with profiled(rig.operator.process.pid, profile and profile / f"operator-{n}.txt"):
                step = rig.measure(ticks, tick_s)
            progress(
                f"N={n}: tick {step.tick_mean_s:.2f}s mean, {step.tick_max_s:.2f}s max; "
                f"{step.queries_per_tick:g} queries/tick answered in {step.prometheus_s_per_tick:.2f}s; {step.cpu_cores:.2f} cores; {step.peak_rss_mib:.0f} MiB peak; "
                f"load average {step.load_average:g} on {os.cpu_count()} cores; "
                f"cached {step.cached}{'' if step.caches_fresh else ' (a cache was not fresh)'}"
            )
            steps.append(step)
    return steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--services", default="10,1000", help="comma-separated N to measure, ascending"
    )
    parser.add_argument("--tick", default="10s", help="the operator's tick interval")
    parser.add_argument("--ticks", type=int, default=6, help="ticks measured at each N")
    parser.add_argument(
        "--scrape-interval", type=float, default=5.0, help="Prometheus' scrape interval (s)"
    )
    parser.add_argument(
        "--namespaces", type=int, default=10, help="namespaces the services spread over"
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=70.0,
        help="seconds to wait after every service was observed before measuring (the operator "
        "reads rates over 60 s: until then the newest services' readings and conditions move)",
    )
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--workdir", type=Path, help="keep logs and Prometheus' data here")
    parser.add_argument(
        "--profile", type=Path, help="sample the operator with py-spy while measuring; stacks here"
    )
    args = parser.parse_args(argv)
    sizes = sorted(int(s) for s in args.services.split(","))
    with contextlib.ExitStack() as stack:
        workdir = args.workdir or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="sloscale-load-"))
        )
        workdir.mkdir(parents=True, exist_ok=True)
        steps = run(sizes, tick=args.tick, ticks=args.ticks, scrape_interval_s=args.scrape_interval,
                    namespaces=args.namespaces, workdir=workdir, progress=lambda m: print(m, file=sys.stderr),
                    profile=args.profile, settle_s=args.settle)  # fmt: skip
    print(
        f"{'services':>8} {'series':>8} {'tick mean':>9} {'tick max':>8} {'queries/tick':>12} {'PromQL s/tick':>13} {'CPU cores':>9} {'RSS MiB':>8} {'peak MiB':>8}"
    )
    for s in steps:
        print(f"{s.services:>8} {s.series:>8} {s.tick_mean_s:>8.2f}s {s.tick_max_s:>7.2f}s {s.queries_per_tick:>12g} "
              f"{s.prometheus_s_per_tick:>12.2f}s {s.cpu_cores:>9.2f} {s.rss_mib:>8.0f} {s.peak_rss_mib:>8.0f}")  # fmt: skip
    if args.json:
        args.json.write_text(
            json.dumps({"tick": args.tick, "steps": [asdict(s) for s in steps]}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
