"""The operator under test, for real: `sloscale run` as its own process, over real HTTP.

- `cluster`: the Kubernetes API. With `KUBECONFIG` set, the cluster it names (the CRD is applied
  if missing; the tests use a namespace of their own and delete it afterwards). Otherwise the API
  emulator (`sloscale.apiserver`) on loopback, plus a stand-in for the Deployment controller (the
  emulator has no controllers): it reports every Deployment's replicas as rolled out and ready.
- `prometheus`: a real Prometheus scraping vLLM-shaped exporters (`traffic.ServiceTraffic`), one
  per InferenceService, labelled as the PodMonitor labels real pods.
- `operator`: `python -m sloscale run` against both, ticking every second; stopped with SIGTERM
  (then killed) whatever the tests did. Its log is part of every timeout message.

Everything is module-scoped: one operator serves all scenarios of a module, each scenario on
InferenceServices of its own.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from kubernetes.client.exceptions import ApiException
from traffic import Load, ServiceTraffic

from sloscale.kube import MERGE_PATCH, KubeApi
from sloscale.sandbox import processes
from sloscale.sandbox.prometheus import PrometheusServer

ROOT = Path(__file__).parents[3]
CRD = ROOT / "crds" / "inferenceservice.yaml"
T = TypeVar("T")


@dataclass
class Cluster:
    kubeconfig: Path
    api: KubeApi
    namespace: str
    emulated: bool

    def isvc_path(self, name: str = "") -> str:
        base = f"/apis/sloscale.dev/v1alpha1/namespaces/{self.namespace}/inferenceservices"
        return f"{base}/{name}" if name else base

    def deployment_path(self, name: str = "") -> str:
        base = f"/apis/apps/v1/namespaces/{self.namespace}/deployments"
        return f"{base}/{name}" if name else base

    def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        manifest = {**manifest, "metadata": {**manifest["metadata"], "namespace": self.namespace}}
        return self.api.request("POST", self.isvc_path(), body=manifest)

    def get(self, path: str) -> dict[str, Any] | None:
        return self.api.get(path)

    def events(self, name: str) -> list[dict[str, Any]]:
        listing = self.api.request("GET", f"/api/v1/namespaces/{self.namespace}/events")
        return [e for e in listing.get("items", []) if e["involvedObject"].get("name") == name]


def _stand_in_for_the_deployment_controller(
    api: KubeApi, namespace: str, stop: threading.Event
) -> None:
    """What kube-controller-manager and the kubelets would report: every Deployment rolled out
    and all its replicas ready, a moment after each change."""
    while not stop.wait(0.3):
        try:
            listing = api.request("GET", f"/apis/apps/v1/namespaces/{namespace}/deployments")
            for d in listing.get("items", []):
                replicas = d["spec"].get("replicas", 1)
                wanted = {
                    "observedGeneration": d["metadata"]["generation"],
                    "replicas": replicas,
                    "updatedReplicas": replicas,
                    "readyReplicas": replicas,
                    "availableReplicas": replicas,
                }
                if {k: (d.get("status") or {}).get(k) for k in wanted} != wanted:
                    api.request(
                        "PATCH",
                        f"/apis/apps/v1/namespaces/{namespace}/deployments/{d['metadata']['name']}/status",
                        body={"status": wanted},
                        content_type=MERGE_PATCH,
                    )
        except (ApiException, OSError):
            continue  # the next round retries; the emulator may be shutting down


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    namespace = f"sloscale-it-{uuid.uuid4().hex[:6]}"
    real = os.environ.get("KUBECONFIG")
    with contextlib.ExitStack() as stack:
        if real:
            kubeconfig = Path(real)
        else:
            from sloscale.apiserver import ApiServer

            server = stack.enter_context(ApiServer.in_thread(crds=[CRD]))
            kubeconfig = server.write_kubeconfig(tmp_path_factory.mktemp("kube") / "kubeconfig")
        api = KubeApi.connect(str(kubeconfig))
        stack.callback(api.close)
        if real:
            with contextlib.suppress(ApiException):  # already installed
                api.request(
                    "POST",
                    "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                    body=yaml.safe_load(CRD.read_text()),
                )
        api.request("POST", "/api/v1/namespaces", body={"metadata": {"name": namespace}})
        stack.callback(lambda: api.request("DELETE", f"/api/v1/namespaces/{namespace}"))
        if not real:
            stop = threading.Event()
            controller = threading.Thread(
                target=_stand_in_for_the_deployment_controller,
                args=(api, namespace, stop),
                daemon=True,
            )
            controller.start()
            stack.callback(controller.join, 5)
            stack.callback(stop.set)
        yield Cluster(kubeconfig, api, namespace, emulated=not real)


@pytest.fixture(scope="module")
def prometheus(
    tmp_path_factory: pytest.TempPathFactory, prometheus_binary: str
) -> Iterator[PrometheusServer]:
    with PrometheusServer(
        tmp_path_factory.mktemp("prom"), binary=prometheus_binary, scrape_interval_s=1.0
    ) as server:
        yield server


@dataclass
class Pods:
    """The vLLM-shaped exporters of every service, kept in Prometheus' targets."""

    prometheus: PrometheusServer
    namespace: str
    services: dict[str, ServiceTraffic] = field(default_factory=dict)

    def start(self, name: str, load: Load) -> ServiceTraffic:
        traffic = ServiceTraffic(self.namespace, name, load)
        self.services[name] = traffic
        self.prometheus.set_targets([t.target for t in self.services.values()])
        return traffic

    def close(self) -> None:
        for traffic in self.services.values():
            traffic.close()


@pytest.fixture(scope="module")
def pods(prometheus: PrometheusServer, cluster: Cluster) -> Iterator[Pods]:
    running = Pods(prometheus, cluster.namespace)
    try:
        yield running
    finally:
        running.close()


@dataclass
class Operator:
    process: subprocess.Popen[bytes]
    log: Path
    metrics_url: str

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def scrape(self) -> str:
        with urllib.request.urlopen(f"{self.metrics_url}/metrics", timeout=5) as response:
            text: str = response.read().decode()
            return text


@pytest.fixture(scope="module")
def operator(
    cluster: Cluster, prometheus: PrometheusServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operator]:
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    port = processes.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLOSCALE_")}
    command = [
        sys.executable, "-m", "sloscale", "run",
        "--kubeconfig", str(cluster.kubeconfig),
        "--prometheus-url", prometheus.url,
        "--namespace", cluster.namespace,
        "--tick-interval", "1s",
        "--metrics-port", str(port),
    ]  # fmt: skip
    with log.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env)
    running = Operator(process, log, f"http://127.0.0.1:{port}")
    try:
        wait_for(lambda: _healthy(running), 30, "the operator to answer /healthz", running)
        yield running
    finally:
        processes.stop_process(process, grace_s=20)


def _healthy(op: Operator) -> bool:
    if op.process.poll() is not None:
        raise AssertionError(f"the operator exited with {op.process.returncode}:\n{op.log_tail()}")
    try:
        with urllib.request.urlopen(f"{op.metrics_url}/healthz", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def wait_for(
    check: Callable[[], T | None], timeout_s: float, what: str, op: Operator | None = None
) -> T:
    """Poll `check` until it returns something truthy; on timeout, fail with the operator's log."""
    detail = (lambda: f"--- operator log ---\n{op.log_tail()}") if op else None
    return processes.wait_for(check, timeout_s, what, interval_s=0.25, detail=detail)
