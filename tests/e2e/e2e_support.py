"""The cluster the end-to-end tests drive, and the load they put on it.

`Cluster` is either the local sandbox (`sloscale sandbox up`: the API emulator, a real Prometheus,
emulated vLLM pods behind per-Service routers, and the operator as its own process) or, when
`KUBECONFIG` is set, the cluster it names, where the operator and Prometheus must already run
(the Helm chart). Tests talk to both the same way: kubectl for what a user types, the Kubernetes
API for what a user reads, and an OpenAI endpoint for the load (`Cluster.endpoint`).

Only reaching a Service differs. The sandbox gives every Service a router on loopback. A real
cluster's Service is reached through `kubectl port-forward` (which pins one pod: fine for the
single-replica scenarios, not for spreading load over replicas), or through the URL template in
`SLOSCALE_E2E_ENDPOINT` (`{namespace}` and `{service}` filled in), e.g. a gateway you forwarded
to loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from sloscale.kube import KubeApi
from sloscale.sandbox.loadgen import LoadConfig, LoadReport, replay
from sloscale.sandbox.scenario import (
    StatusSampler,
    deployment_path,
    events_of,
    isvc_path,
    shaped_trace,
)
from sloscale.traces import Trace, load_trace

ROOT = Path(__file__).parents[2]
KUBECTL = Path(sys.executable).parent / "kubectl"
AZURE_CONV = Path(
    os.environ.get(
        "SLOSCALE_E2E_TRACE",
        ROOT.parent / "shared/data/traces/azure_llm_inference_2023/AzureLLMInferenceTrace_conv.csv",
    )
)
T = TypeVar("T")


@dataclass
class Cluster:
    kubeconfig: Path
    api: KubeApi
    emulated: bool  # the local sandbox; False: a real cluster
    sandbox_dir: Path | None
    cold_start: str  # what a new pod takes to serve, as the CRs' spec.coldStart
    # Load phases and waits are stretched by this: a real cluster pulls images and loads models
    # for minutes, so a burst must last longer than a cold start for new replicas to answer it.
    time_scale: float

    @property
    def spreads_load(self) -> bool:
        """Whether `endpoint` reaches every ready pod (the sandbox's router, or a gateway named in
        SLOSCALE_E2E_ENDPOINT) rather than the one pod `kubectl port-forward` pins."""
        return self.emulated or bool(os.environ.get("SLOSCALE_E2E_ENDPOINT"))

    def seconds(self, sandbox_s: float) -> float:
        """A duration written for the sandbox, on this cluster's clock."""
        return sandbox_s * self.time_scale

    def rollout(self, namespace: str, deployment: str, timeout_s: float = 120.0) -> None:
        """`kubectl rollout status`: the Deployment's pods are updated, ready and available."""
        limit = f"--timeout={self.seconds(timeout_s):.0f}s"
        self.kubectl("rollout", "status", "-n", namespace, f"deployment/{deployment}", limit)

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        done = subprocess.run(
            [str(KUBECTL), "--kubeconfig", str(self.kubeconfig), *args],
            input=stdin, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        if done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    def apply(self, namespace: str, *docs: dict[str, Any]) -> None:
        self.kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump_all(docs))

    def isvc(self, namespace: str, name: str) -> dict[str, Any]:
        return self.api.get(isvc_path(namespace, name)) or {}

    def deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.api.get(deployment_path(namespace, name))

    def pods(self, namespace: str, service: str) -> list[dict[str, Any]]:
        query = [("labelSelector", f"sloscale.dev/service={service}")]
        listing = self.api.get(f"/api/v1/namespaces/{namespace}/pods", query=query) or {}
        return list(listing.get("items", []))

    def events(self, namespace: str, name: str) -> list[dict[str, Any]]:
        return events_of(self.api, namespace, name)

    def sampler(self, namespace: str, name: str, deployment: str | None = None) -> StatusSampler:
        return StatusSampler(self.api, namespace, name, deployment=deployment, period_s=1.0)

    def wait_for(self, check: Callable[[], T | None], timeout_s: float, what: str) -> T:
        """Poll `check` until truthy; on timeout fail with what was awaited and the operator's log."""
        deadline = time.monotonic() + timeout_s * self.time_scale
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout_s * self.time_scale:g}s waiting for {what}{self.log_tail()}"
                )
            time.sleep(0.5)

    def log_tail(self, lines: int = 30) -> str:
        if self.sandbox_dir is None:
            return ""
        try:
            text = (self.sandbox_dir / "operator.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n--- operator log ---\n" + "\n".join(text.splitlines()[-lines:])

    @contextlib.contextmanager
    def endpoint(self, namespace: str, service: str, port: int = 8000) -> Iterator[str]:
        """A loopback URL that reaches the Service, for as long as the block runs."""
        template = os.environ.get("SLOSCALE_E2E_ENDPOINT")
        if self.emulated:
            assert self.sandbox_dir is not None
            state_file = self.sandbox_dir / "sandbox.json"
            key = f"{namespace}/{service}"
            yield self.wait_for(
                lambda: json.loads(state_file.read_text()).get("services", {}).get(key),
                30,
                f"a router for {key}",
            )
        elif template:
            yield template.format(namespace=namespace, service=service)
        else:
            with port_forward(self.kubeconfig, namespace, service, port) as url:
                yield url


@contextlib.contextmanager
def port_forward(kubeconfig: Path, namespace: str, service: str, port: int) -> Iterator[str]:
    """`kubectl port-forward svc/SERVICE :PORT` on loopback; stopped when the block ends."""
    proc = subprocess.Popen(
        [str(KUBECTL), "--kubeconfig", str(kubeconfig), "-n", namespace, "port-forward",
         "--address", "127.0.0.1", f"svc/{service}", f":{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        found = re.search(r"127\.0\.0\.1:(\d+)", line)
        if not found:
            raise AssertionError(f"kubectl port-forward did not start: {line.strip()}")
        yield f"http://127.0.0.1:{found.group(1)}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@contextlib.contextmanager
def fresh_namespace(cluster: Cluster, prefix: str) -> Iterator[str]:
    """A namespace of the test's own; deleting it takes every object and pod in it along."""
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    cluster.kubectl(
        "apply",
        "-f",
        "-",
        stdin=yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
    )
    try:
        yield name
    finally:
        with contextlib.suppress(AssertionError):
            cluster.kubectl("delete", "namespace", name, "--wait=false")


def real_cluster_time_scale() -> float:
    """How much longer everything takes on the cluster `KUBECONFIG` names (1 on the sandbox)."""
    return (
        float(os.environ.get("SLOSCALE_E2E_TIME_SCALE", "10"))
        if os.environ.get("KUBECONFIG")
        else 1.0
    )


def time_limit(sandbox_s: float) -> float:
    """A test's time limit, written for the sandbox, stretched on a real cluster."""
    return sandbox_s * real_cluster_time_scale()


def conversation_trace() -> Trace:
    return load_trace(AZURE_CONV)


def burst_load(
    rates_rps: list[float], window_s: float, *, start_s: float = 600.0, seed: int = 7
) -> Trace:
    """A slice of the Azure conversation trace from `start_s`, ten times compressed, following
    `rates_rps` window by window (the burst); the same requests every run."""
    return shaped_trace(
        conversation_trace(), rates_rps, window_s, start_s=start_s, compression=10.0, seed=seed
    )


def replay_load(url: str, trace: Trace, timeout_s: float) -> LoadReport:
    """Open-loop replay through `url`, streaming, as users would send it."""
    config = LoadConfig(url=url, timeout_s=timeout_s, max_in_flight=256)
    return asyncio.run(replay(config, trace))


def ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return not pod["metadata"].get("deletionTimestamp") and any(
        c["type"] == "Ready" and c["status"] == "True" for c in conditions
    )


def container_args(deployment: dict[str, Any]) -> list[str]:
    return [str(a) for a in deployment["spec"]["template"]["spec"]["containers"][0].get("args", [])]


def batch_arg(args: list[str]) -> int | None:
    for arg in args:
        if arg.startswith("--max-num-seqs="):
            return int(arg.split("=", 1)[1])
    return None
