"""At a speed-up above 1 the operator sees what the clients see: one cluster of faster GPUs.

With `--speedup 5` every emulated pod is the modelled A100 made five times faster, and reports
real seconds (`docs/sandbox.md`, "Time"). The load generator replays a steady trace five times
faster. What the operator reads must then match what the clients measured on the wall clock:
its metrics source (`PrometheusMetricsSource`, the operator's own PromQL through the sandbox's
Prometheus, over its 60 s rate window) gives the request rate, tokens/s and p90 end-to-end
latency of the requests the clients saw finish in that window, and the operator's status reports
a cold start of the pod's real load time (its model-time load / 5). Pods that reported
model-time latencies next to per-second counter rates would be five times off here.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sloscale.kube import KubeApi
from sloscale.metrics_source import PrometheusMetricsSource
from sloscale.sandbox.loadgen import LoadConfig, LoadReport, replay
from sloscale.sandbox.processes import wait_for
from sloscale.sandbox.sandbox import SandboxConfig, down, up
from sloscale.sandbox.scenario import isvc_path, shown_seconds
from sloscale.scaling.snapshot import MetricsSnapshot
from sloscale.traces import Trace

pytestmark = [pytest.mark.prometheus, pytest.mark.slow, pytest.mark.timeout(300)]

SPEEDUP = 5.0
COLD_START_MODEL_S = 10.0  # the pod's load on the modelled GPU: 2 real seconds
NS, NAME = "default", "fast"
TRACE_RPS, TRACE_S = 0.6, 375.0  # trace time: 3 requests per real second for 75 s
# Long outputs put the end-to-end latency (~0.6 s real) where vLLM's buckets are 0.3 s apart.
PROMPT, OUTPUT = 200, 250
RATE_WINDOW_S = 60.0  # the operator's rate() window: rates and histograms
READ_AFTER_S = 70.0  # real seconds into the load: a full rate window of steady load behind it


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[dict[str, Any]]:
    config = SandboxConfig(
        tmp_path / "sandbox",
        speedup=SPEEDUP,
        cold_start_s=COLD_START_MODEL_S,
        gpu_profile="A100",
        operator_tick="2s",
    )
    state = up(config, timeout_s=120)
    try:
        yield state
    finally:
        down(config.directory)


def inference_service() -> dict[str, Any]:
    return {
        "apiVersion": "sloscale.dev/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": NAME, "namespace": NS},
        "spec": {
            "model": "meta-llama/Llama-3.1-8B-Instruct",
            "engine": {"gpus": 1, "gpuProfile": "A100"},
            "objective": {
                "type": "Latency",
                "latency": {
                    "metric": "EndToEndLatency",
                    "percentile": "p90",
                    "target": "10s",
                    "window": "30s",
                },
            },
            "replicas": {"min": 1, "max": 1},
            "batching": {"mode": "Off"},
            "coldStart": f"{COLD_START_MODEL_S / SPEEDUP:g}s",  # the cluster's, in real time
        },
    }


def steady_trace() -> Trace:
    count = int(TRACE_RPS * TRACE_S)
    return Trace(
        np.arange(count, dtype=float) / TRACE_RPS,
        np.full(count, PROMPT, dtype=np.int64),
        np.full(count, OUTPUT, dtype=np.int64),
        "steady",
    )


def ready_pod(api: KubeApi) -> dict[str, Any] | None:
    pods = (api.get(f"/api/v1/namespaces/{NS}/pods") or {}).get("items", [])
    for pod in pods:
        conditions = (pod.get("status") or {}).get("conditions") or []
        if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
            return dict(pod)
    return None


def observed_cold_start(api: KubeApi) -> dict[str, Any] | None:
    status = (api.get(isvc_path(NS, NAME)) or {}).get("status") or {}
    observed: dict[str, Any] = status.get("observed") or {}
    return observed if observed.get("coldStart") else None


def test_the_operator_sees_the_clients_rate_and_latency_at_a_speedup(
    sandbox: dict[str, Any],
) -> None:
    api = KubeApi.connect(sandbox["kubeconfig"])
    try:
        api.request(
            "POST", f"/apis/sloscale.dev/v1alpha1/namespaces/{NS}/inferenceservices",
            body=inference_service(),
        )  # fmt: skip
        wait_for(lambda: ready_pod(api), 60, "the pod")
        router = wait_for(
            lambda: (
                json.loads((Path(sandbox["directory"]) / "sandbox.json").read_text())
                .get("services", {})
                .get(f"{NS}/{NAME}")
            ),
            30,
            "the Service's router",
        )
        config = LoadConfig(url=router, speedup=SPEEDUP, timeout_s=TRACE_S / SPEEDUP + 60)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            started_wall = time.time()
            load = pool.submit(lambda: asyncio.run(replay(config, steady_trace())))
            time.sleep(READ_AFTER_S)
            with PrometheusMetricsSource(
                sandbox["prometheus"]["url"], rate_window_s=RATE_WINDOW_S
            ) as source:
                snapshot = source.fetch([(NS, NAME)], time.time())[(NS, NAME)]
            report: LoadReport = load.result()
        # The status's readings are rewritten about once a minute; the cold start is in them.
        observed = wait_for(
            lambda: observed_cold_start(api),
            90,
            "the operator's observed readings with a cold start",
        )
    finally:
        api.close()

    failed = report.summary()["failed"]
    assert failed == 0, report.summary()["failures"]
    assert isinstance(snapshot, MetricsSnapshot), snapshot
    taken = snapshot.taken_at - started_wall  # real seconds into the load
    assert RATE_WINDOW_S <= taken <= READ_AFTER_S + 5

    # The clients' view on the wall clock over the operator's window: requests that finished in
    # it, their rate and their p90 end-to-end latency in real seconds (the report's are × speed-up).
    finished = [
        r
        for r in report.records
        if r.ok and r.sent_s is not None and r.e2e_s is not None
        and taken - RATE_WINDOW_S <= (r.sent_s + r.e2e_s) / SPEEDUP <= taken
    ]  # fmt: skip
    client_rps = len(finished) / RATE_WINDOW_S
    client_p90 = float(
        np.quantile([r.e2e_s / SPEEDUP for r in finished if r.e2e_s is not None], 0.9)
    )

    operator_rps = snapshot.requests_per_s
    operator_tokens = snapshot.generation_tokens_per_s
    operator_p90 = snapshot.e2e.quantile(0.9)
    assert operator_p90 is not None, snapshot.e2e
    print(
        f"\nspeed-up {SPEEDUP:g}: clients {client_rps:.2f} req/s, p90 e2e {client_p90 * 1000:.0f} ms; "
        f"operator {operator_rps:.2f} req/s, {operator_tokens:.0f} tokens/s, p90 e2e "
        f"{operator_p90 * 1000:.0f} ms, cold start {observed.get('coldStart')}"
    )
    # Rates: within rate()'s extrapolation and the scrape interval.
    assert operator_rps == pytest.approx(client_rps, rel=0.2)
    assert operator_tokens == pytest.approx(client_rps * OUTPUT, rel=0.2)
    # Latency: the engine's part of the client's time, read from histogram buckets (0.3, 0.5,
    # 0.8 s …): within a factor 1.6 either way — model seconds would be 5 times the client's.
    assert client_p90 / 1.6 <= operator_p90 <= client_p90 * 1.6
    # The cold start the operator measured is the pod's real load time, not the model's.
    cold_start = shown_seconds(observed.get("coldStart"))
    assert cold_start is not None and cold_start < COLD_START_MODEL_S / 2, observed
