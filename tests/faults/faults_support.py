"""The fault suite's machinery: the sandbox, operator processes, and the faults put between them.

Everything here is real and runs on loopback: the sandbox (`sloscale sandbox up`: API emulator,
Prometheus, the kubelet stand-in running emulated vLLM pods behind per-Service routers), the
operator as its own `sloscale run` process, and the project's load generator. Faults are injected
where they happen in production:

- `PrometheusGate` sits between the operator and Prometheus: it passes queries through, or is down
  (its port closed: connections are refused), answers 5xx, or turns every sample into NaN; it can
  demand a bearer token and speak TLS, and it counts the queries and the credentials it saw;
- the API emulator's own fault injection (`/_emulator/faults`: conflicts, 500s, latency, cut
  watches) stands for a misbehaving API server;
- `ApiRecorder` sits between the operator and the API emulator and records every call, so a test
  can check each one against the chart's RBAC rules (`sloscale.rbac`);
- stale metrics are real: the pods are taken out of Prometheus' scrape targets.

Time: the sandbox runs emulated pods in real time (speed-up 1, so Prometheus' per-second rates and
the pods' latencies share a unit and the capacity model fits), on the A100 profile with a fixed
batch of 4 so that a few requests per second already need several replicas; the operator ticks
every second and the objective's window is the shortest the CRD allows (30 s). Every process
started here is stopped by the fixtures that start it, whatever the test did.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from aiohttp import web

from sloscale import rbac, traces
from sloscale.apiserver.kubeconfig import write_kubeconfig
from sloscale.kube import MERGE_PATCH, KubeApi
from sloscale.sandbox.loadgen import LoadConfig, LoadReport, replay

ROOT = Path(__file__).resolve().parents[2]
GROUP, VERSION, PLURAL = "sloscale.dev", "v1alpha1", "inferenceservices"
SPEEDUP = 1.0
COLD_START_S = 2.0
GPU_PROFILE = "A100"
LENGTHS = traces.Lengths(input_tokens=200, output_tokens=50)
T = TypeVar("T")
JSON = dict[str, Any]


# Every wait here is for a condition, never for a time; its timeout only keeps a broken run from
# hanging. The timeouts written in the tests are what a quiet machine needs; they are stretched by
# this factor because the suite shares two cores with whatever else runs (other test suites,
# builds), where pods start, Prometheus scrapes and the operator ticks several times slower.
PATIENCE = 3.0


def wait_for(
    check: Callable[[], T | None], timeout_s: float, what: str, *logs: OperatorProcess
) -> T:
    """Poll `check` until it returns something truthy; after `timeout_s` (times `PATIENCE`), fail
    with the operators' logs."""
    timeout_s *= PATIENCE
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            tails = "".join(f"\n--- {op.name} log ---\n{op.log_tail()}" for op in logs)
            raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}{tails}")
        time.sleep(0.2)


def wait_ticks(
    op: OperatorProcess, ticks: int, what: str, *, check: Callable[[], object] | None = None
) -> None:
    """Wait until `op` has completed `ticks` more ticks, calling `check` (which may assert) on the
    way: "for the next N ticks" measured in ticks, not in seconds."""
    start = op.ticks()

    def done() -> bool:
        if check is not None:
            check()
        return op.ticks() >= start + ticks

    wait_for(done, 10 + 2 * ticks, what, op)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# --- InferenceServices ------------------------------------------------------------------------


def service_spec(**changes: Any) -> JSON:
    """An owned service held at p99 TTFT under 500 ms, time-compressed (see the module docstring);
    keyword arguments replace top-level spec fields."""
    spec: JSON = {
        "model": "m",
        "engine": {"gpuProfile": GPU_PROFILE},
        "objective": {"type": "Latency", "latency": {"metric": "TimeToFirstToken", "target": "500ms", "window": "30s"}},
        "replicas": {"min": 1, "max": 4},
        "batching": {"minMaxNumSeqs": 4, "initialMaxNumSeqs": 4, "maxMaxNumSeqs": 4, "cooldown": "10m"},
        "behavior": {
            "scaleUp": {"stabilizationWindow": "0s", "period": "2s", "maxReplicasPerPeriod": 4},
            "scaleDown": {"stabilizationWindow": "2s", "period": "2s", "maxReplicasPerPeriod": 1},
        },
        "coldStart": f"{COLD_START_S:g}s",
    }  # fmt: skip
    spec.update(changes)
    return spec


def condition(body: JSON | None, kind: str) -> JSON:
    for c in ((body or {}).get("status") or {}).get("conditions", []):
        if c["type"] == kind:
            return dict(c)
    return {}


# --- the sandbox --------------------------------------------------------------------------------


@dataclass
class Box:
    """A running sandbox (no operator of its own) and the ways to look into it."""

    directory: Path
    api: KubeApi
    _namespaces: Iterator[int] = field(default_factory=lambda: iter(range(1, 10_000)))

    @property
    def state(self) -> JSON:
        state: JSON = json.loads((self.directory / "sandbox.json").read_text())
        return state

    @property
    def kubeconfig(self) -> Path:
        return self.directory / "kubeconfig"

    @property
    def api_url(self) -> str:
        return str(self.state["api_url"])

    @property
    def prometheus_url(self) -> str:
        return str(self.state["prometheus"]["url"])

    @property
    def targets_file(self) -> Path:
        return self.directory / "prometheus" / "targets.json"

    def namespace(self, prefix: str) -> str:
        name = f"{prefix}-{next(self._namespaces)}"
        self.api.request("POST", "/api/v1/namespaces", body={"metadata": {"name": name}})
        return name

    def delete_namespace(self, namespace: str) -> None:
        with contextlib.suppress(Exception):
            self.api.request("DELETE", f"/api/v1/namespaces/{namespace}")

    def isvc_path(self, namespace: str, name: str = "") -> str:
        base = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"
        return f"{base}/{name}" if name else base

    def create(self, namespace: str, name: str, spec: JSON) -> JSON:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "InferenceService",
            "metadata": {"name": name},
            "spec": spec,
        }
        return self.api.request("POST", self.isvc_path(namespace), body=body)

    def patch_spec(self, namespace: str, name: str, spec: JSON) -> JSON:
        return self.api.request(
            "PATCH", self.isvc_path(namespace, name), body={"spec": spec}, content_type=MERGE_PATCH
        )

    def isvc(self, namespace: str, name: str) -> JSON | None:
        return self.api.get(self.isvc_path(namespace, name))

    def deployment(self, namespace: str, name: str) -> JSON | None:
        return self.api.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}")

    def replicas(self, namespace: str, name: str) -> int | None:
        deployment = self.deployment(namespace, name)
        return None if deployment is None else int(deployment["spec"]["replicas"])

    def pods(self, namespace: str, service: str) -> list[JSON]:
        selector = urllib.parse.quote(f"sloscale.dev/service={service}")
        listing = self.api.request(
            "GET", f"/api/v1/namespaces/{namespace}/pods?labelSelector={selector}"
        )
        items: list[JSON] = listing.get("items", [])
        return items

    def ready_pods(self, namespace: str, service: str) -> list[JSON]:
        return [p for p in self.pods(namespace, service) if is_ready(p)]

    def events(self, namespace: str, name: str) -> list[JSON]:
        listing = self.api.request("GET", f"/api/v1/namespaces/{namespace}/events")
        return [e for e in listing.get("items", []) if e["involvedObject"].get("name") == name]

    def router(self, namespace: str, name: str) -> str | None:
        url = self.state.get("services", {}).get(f"{namespace}/{name}")
        return str(url) if url else None

    def emulator_faults(self, action: str, /, **fault: Any) -> JSON:
        """The API emulator's fault admin endpoint (`docs/apiserver.md`): `add` a fault given as
        keyword arguments, `clear` them all, or `drop` the open watches."""
        path, method = {
            "add": ("", "POST"),
            "clear": ("", "DELETE"),
            "drop": ("/drop-watches", "POST"),
        }[action]
        request = urllib.request.Request(
            f"{self.api_url}/_emulator/faults{path}",
            data=json.dumps(fault).encode() if action != "clear" else None,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            answer: JSON = json.loads(response.read())
            return answer

    def prometheus(self, query: str) -> list[JSON]:
        url = f"{self.prometheus_url}/api/v1/query?query={urllib.parse.quote(query)}"
        with urllib.request.urlopen(url, timeout=10) as response:
            result: list[JSON] = json.loads(response.read())["data"]["result"]
            return result


def is_ready(pod: JSON) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    deleting = bool(pod["metadata"].get("deletionTimestamp"))
    return not deleting and any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


# --- the operator -------------------------------------------------------------------------------


class OperatorProcess:
    """`sloscale run` as its own process, watching one namespace, ticking every second."""

    def __init__(
        self,
        name: str,
        kubeconfig: Path,
        prometheus_url: str,
        namespace: str,
        workdir: Path,
        *,
        extra: Iterable[str] = (),
        tick: str = "1s",
    ) -> None:
        self.name = name
        self.port = free_port()
        self.log = workdir / f"{name}.log"
        self.argv = [
            sys.executable, "-m", "sloscale", "run",
            "--kubeconfig", str(kubeconfig),
            "--prometheus-url", prometheus_url,
            "--namespace", namespace,
            "--tick-interval", tick,
            "--metrics-port", str(self.port),
            *extra,
        ]  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, wait_healthy: bool = True) -> OperatorProcess:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("SLOSCALE_") and k != "KUBECONFIG"
        }
        with self.log.open("ab") as sink:
            self.process = subprocess.Popen(
                self.argv, stdout=sink, stderr=subprocess.STDOUT, env=env
            )
        self.starts += 1
        if wait_healthy:
            wait_for(self.healthy, 60, f"{self.name} to answer /healthz", self)
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def healthy(self) -> bool:
        if not self.running():
            raise AssertionError(f"{self.name} exited:\n{self.log_tail()}")
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.port}/healthz", timeout=2
            ) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def scrape(self) -> str:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.port}/metrics", timeout=5
            ) as response:
                text: str = response.read().decode()
                return text
        except OSError:
            return ""

    def ticks(self) -> int:
        """Ticks completed so far (the operator's own `sloscale_tick_duration_seconds` count)."""
        for line in self.scrape().splitlines():
            if line.startswith("sloscale_tick_duration_seconds_count "):
                return int(float(line.split()[1]))
        return 0

    def controls(self, namespace: str, service: str) -> bool:
        """Whether this replica is ticking the service (its gauges carry it)."""
        pattern = rf'sloscale_replicas_current\{{namespace="{re.escape(namespace)}",service="{re.escape(service)}"\}}'
        return self.running() and re.search(pattern, self.scrape()) is not None

    def kill(self) -> None:
        """SIGKILL: no cleanup, no goodbye to its peers."""
        if self.running():
            assert self.process is not None
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


# --- load -----------------------------------------------------------------------------------------


class Load:
    """The project's load generator, open loop at `rps` requests/s until `stop()`.

    It replays short Poisson traces back to back (each waits for its last answers, a lull of a few
    hundred milliseconds), so a test can end the load when its scenario ends; every request of
    every chunk is kept for the final report.
    """

    CHUNK_S = 5.0

    def __init__(self, url: str, rps: float, *, seed: int = 0) -> None:
        # The model is asked for once, when the router first answers (its endpoints follow the
        # pods' readiness a moment later); every chunk then names it, so a moment without a
        # ready pod later on fails requests (which the report counts), not the load itself.
        self.model = wait_for(lambda: served_model(url), 30, f"{url} to serve /v1/models")
        self.url = url
        self.rps = rps
        self.reports: list[LoadReport] = []
        self._seed = seed
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="load", daemon=True)
        self._thread.start()

    def set_rate(self, rps: float) -> None:
        """From the next chunk on."""
        self.rps = rps

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._seed += 1
                trace = traces.poisson(
                    [traces.Segment(self.CHUNK_S, self.rps)], LENGTHS, seed=self._seed
                )
                config = LoadConfig(
                    url=self.url,
                    model=self.model,
                    speedup=SPEEDUP,
                    timeout_s=120,
                    max_in_flight=2048,
                )
                self.reports.append(asyncio.run(replay(config, trace)))
        except BaseException as exc:  # noqa: BLE001 - re-raised by stop()
            self._error = exc

    def stop(self, timeout_s: float = 150) -> LoadReport:
        """Stop after the current chunk; every request sent, as one report."""
        self._stop.set()
        self._thread.join(timeout_s)
        if self._error is not None:
            raise self._error
        assert not self._thread.is_alive(), "the load did not stop"
        records = [r for report in self.reports for r in report.records]
        return LoadReport(
            self.reports[0].config, "load", records, wall_s=sum(r.wall_s for r in self.reports)
        )


def served_model(url: str) -> str | None:
    """The first model an OpenAI endpoint lists; None while it does not answer."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/v1/models", timeout=5) as response:
            return str(json.loads(response.read())["data"][0]["id"])
    except (OSError, ValueError, KeyError, IndexError):
        return None


def failures(report: LoadReport) -> str:
    """A readable account of the failed requests (kind, status, error), for assertion messages."""
    bad = [r for r in report.records if not r.ok]
    kinds: dict[str, int] = {}
    for r in bad:
        key = f"{r.status} {r.error or ''}".strip()[:120]
        kinds[key] = kinds.get(key, 0) + 1
    return ", ".join(f"{n}× {k}" for k, n in sorted(kinds.items())) or "none"


# --- between the operator and Prometheus ----------------------------------------------------------


class PrometheusGate:
    """A Prometheus stand-in that forwards to the real one, or fails the way Prometheus fails.

    Modes: `pass`; `down` (the port is closed: connection refused); `error` (HTTP 503); `nan` (the
    real answer with every sample value replaced by NaN). `require_token` answers 401 to a query
    without that bearer token; `tls` (cert, key) serves HTTPS.
    """

    def __init__(
        self,
        upstream: str,
        *,
        require_token: str | None = None,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self.require_token = require_token
        self.tls = tls
        self.mode = "pass"
        self.queries = 0
        self.authorizations: list[str | None] = []  # each query's Authorization header
        self.port = free_port()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._open()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def set_mode(self, mode: str) -> None:
        assert mode in ("pass", "down", "error", "nan"), mode
        with self._lock:
            if mode == "down" and self._server is not None:
                self._close()
            elif mode != "down" and self._server is None:
                self._open()
            self.mode = mode

    def _open(self) -> None:
        gate = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                gate.queries += 1
                gate.authorizations.append(self.headers.get("Authorization"))
                if (
                    gate.require_token
                    and self.headers.get("Authorization") != f"Bearer {gate.require_token}"
                ):
                    self._reply(
                        401,
                        b'{"status":"error","errorType":"unauthorized","error":"missing or wrong bearer token"}',
                    )
                    return
                if gate.mode == "error":
                    self._reply(
                        503,
                        b'{"status":"error","errorType":"unavailable","error":"Prometheus is restarting"}',
                    )
                    return
                try:
                    with urllib.request.urlopen(gate.upstream + self.path, timeout=20) as upstream:
                        status, body = upstream.status, upstream.read()
                except urllib.error.HTTPError as error:
                    status, body = error.code, error.read()
                if gate.mode == "nan" and status == 200:
                    answer = json.loads(body)
                    for sample in answer.get("data", {}).get("result", []):
                        if "value" in sample:
                            sample["value"][1] = "NaN"
                    body = json.dumps(answer).encode()
                self._reply(status, body)

            def _reply(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        if self.tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self.tls)
            server.socket = context.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def _close(self) -> None:
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
        self._server = self._thread = None

    def close(self) -> None:
        with self._lock:
            if self._server is not None:
                self._close()


# --- between the operator and the API server ------------------------------------------------------


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    query: dict[str, str]

    @property
    def write(self) -> bool:
        return self.method in ("POST", "PUT", "PATCH", "DELETE")


class ApiRecorder:
    """A reverse proxy in front of the API emulator that records every call (watches stream through)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.calls: list[Call] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.port = 0
        self._thread = threading.Thread(target=self._serve, name="api-recorder", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the API recorder did not start")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kubeconfig(self, path: Path, namespace: str) -> Path:
        return write_kubeconfig(path, self.url, namespace)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._stop())
        self._loop.close()

    async def _start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None), auto_decompress=False
        )
        app = web.Application(client_max_size=64 * 1024**2)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        # Open watches are cut at shutdown rather than waited for.
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def _stop(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        self.calls.append(Call(request.method, request.path, dict(request.query)))
        headers = {
            k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")
        }
        body = await request.read()
        async with self._session.request(
            request.method, self.upstream + request.path_qs, data=body or None, headers=headers
        ) as upstream:
            response = web.StreamResponse(
                status=upstream.status,
                headers={
                    k: v
                    for k, v in upstream.headers.items()
                    if k.lower() not in ("content-length", "transfer-encoding", "content-encoding")
                },
            )
            await response.prepare(request)
            with contextlib.suppress(ConnectionResetError, aiohttp.ClientPayloadError):
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
            return response

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


# --- RBAC -----------------------------------------------------------------------------------------

_CLUSTER_SCOPED = {
    ("", "namespaces"),
    ("apiextensions.k8s.io", "customresourcedefinitions"),
    ("kopf.dev", "clusterkopfpeerings"),
}


@dataclass(frozen=True)
class Access:
    """What RBAC sees of one request: the verb on (group, resource[/subresource]) in a namespace."""

    group: str
    resource: str
    verb: str
    namespace: str | None

    def __str__(self) -> str:
        where = f" in {self.namespace}" if self.namespace else " cluster-wide"
        return f"{self.verb} {self.group or 'core'}/{self.resource}{where}"


def access_of(call: Call) -> Access | None:
    """The RBAC attributes of an API call; None for discovery and other non-resource URLs."""
    parts = [p for p in call.path.split("/") if p]
    if parts[:2] == ["api", "v1"]:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        group, rest = parts[1], parts[3:]
    else:
        return None
    if not rest:
        return None  # the group version's resource list: discovery
    namespace = None
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    resource, name = rest[0], rest[1] if len(rest) > 1 else None
    if len(rest) > 2:
        resource = f"{resource}/{rest[2]}"
    if call.method == "GET":
        verb = "get" if name else ("watch" if call.query.get("watch") in ("true", "1") else "list")
    else:
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(call.method, "")
        if call.method == "DELETE":
            verb = "delete" if name else "deletecollection"
    if (group, resource) == ("", "namespaces") and name is not None and namespace is None:
        namespace = None  # a namespace object itself
    return Access(group, resource, verb, namespace)


def forbidden(calls: Iterable[Call], *, watched: set[str] | None, peering: bool) -> list[str]:
    """The calls the chart's rules do not allow, given the watched namespaces (None: all)."""
    rules = rbac.rules_for(all_namespaces=watched is None, peering=peering)
    refused: set[str] = set()
    for call in calls:
        access = access_of(call)
        if access is None:
            continue
        cluster_scoped = (access.group, access.resource.split("/")[0]) in _CLUSTER_SCOPED
        allowed = False
        for rule in rules:
            if (
                rule.api_group != access.group
                or access.resource not in rule.resources
                or access.verb not in rule.verbs
            ):
                continue
            if rule.scope is rbac.Scope.CLUSTER:
                allowed = allowed or cluster_scoped
            elif watched is None:  # a ClusterRole: any namespace, or across all of them
                allowed = allowed or not cluster_scoped
            else:  # one Role per watched namespace: requests inside one of them only
                allowed = allowed or access.namespace in watched
        if not allowed:
            refused.add(f"{access} ({call.method} {call.path})")
    return sorted(refused)


# --- TLS ------------------------------------------------------------------------------------------


def make_tls(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1, made with openssl: (ca, cert, key)."""
    ca_key, ca, key, csr, cert = (
        directory / n for n in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem")
    )
    ext = directory / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    commands = [
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca, "-days", "1", "-subj", "/CN=sloscale test CA"],
        ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1"],
        ["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert, "-days", "1", "-extfile", ext],
    ]  # fmt: skip
    for command in commands:
        subprocess.run([str(c) for c in command], check=True, capture_output=True, timeout=60)
    return ca, cert, key
