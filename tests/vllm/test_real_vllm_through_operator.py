"""A batch change through the operator restarts the real engine with the new `--max-num-seqs`.

The sandbox runs with real engines: its kubelet starts every pod of vLLM's server image as the
vLLM CPU engine with the pod template's arguments. An InferenceService pins its batch range to
[2, 2]; the operator renders the Deployment with `--max-num-seqs=2` and the pod comes up as a real
engine. Under load from the load generator (a burst of sixteen long requests straight to the pod,
then a trickle through the Service that keeps running through the change) the user moves the
range to [4, 4]. The operator — not the test
— finds the batch in force out of bounds, rewrites the template, records why in its status and
events, and the Deployment rolls: a new pod, a new engine. Then:

- the new engine's command line (`/proc/<pid>/cmdline`) carries `--max-num-seqs=4`, and the old
  engine's processes are gone;
- the engine's own `vllm:num_requests_running`, read from each pod's `/metrics` back to back
  during a burst of sixteen, reaches the batch in force and never exceeds it (2, then 4), and so do
  the samples Prometheus scraped from each pod over the whole test;
- no request of the trickle failed while the pods rolled.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from real_vllm_support import Engine, GaugeProbe, observed_burst, timeline

from sloscale.kube import MERGE_PATCH, KubeApi
from sloscale.sandbox.loadgen import LoadConfig, LoadReport, replay
from sloscale.sandbox.processes import wait_for
from sloscale.sandbox.sandbox import SandboxConfig, down, up
from sloscale.sandbox.scenario import deployment_path, events_of, isvc_path
from sloscale.traces import Trace

pytestmark = [pytest.mark.vllm, pytest.mark.prometheus, pytest.mark.timeout(900)]

NS, NAME = "real-engine", "tiny"
SERVICE_KEY = f"{NS}/{NAME}"
BURST = 16  # four waves at the larger cap: seconds of a full batch with requests waiting
PROMPT_WORDS = 16
OUTPUT_TOKENS = 224  # prompt + output ≤ the engine's 256-token context
TRICKLE_EVERY_S, TRICKLE_TOKENS, TRICKLE_S = 2.0, 32, 180.0
ENGINE_START_S = 480.0  # a real engine on two busy cores: 1.5–3 minutes


def inference_service(batch: int) -> dict[str, Any]:
    return {
        "apiVersion": "sloscale.dev/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": NAME, "namespace": NS},
        "spec": {
            "model": "meta-llama/Llama-3.1-8B-Instruct",  # the kubelet maps it to the tiny model
            # vLLM aborts the requests in flight on SIGTERM unless told to wait for them.
            "engine": {"gpus": 1, "args": ["--shutdown-timeout=100"]},
            "objective": {
                "type": "Latency",
                "latency": {
                    "metric": "EndToEndLatency",
                    "percentile": "p99",
                    "target": "60s",
                    "window": "30s",
                },
            },
            "replicas": {"min": 1, "max": 1},
            "batching": pinned(batch),
            "coldStart": "300s",
        },
    }


def pinned(batch: int) -> dict[str, Any]:
    return {
        "minMaxNumSeqs": batch,
        "initialMaxNumSeqs": batch,
        "maxMaxNumSeqs": batch,
        "cooldown": "10m",
    }


@pytest.fixture
def sandbox(
    engine: Engine, vllm_python: Path, tiny_model_dir: Path, prometheus_binary: str, tmp_path: Path
) -> Iterator[dict[str, Any]]:
    engine.stop()  # the tier's shared engine would only compete for the two cores
    config = SandboxConfig(
        tmp_path / "sandbox",
        operator_tick="2s",
        real_engine=True,
        vllm_python=vllm_python,
        model_dir=tiny_model_dir,
    )
    state = up(config, timeout_s=180)
    try:
        yield state
    finally:
        down(config.directory)


def pods(api: KubeApi) -> list[dict[str, Any]]:
    listing = api.get(f"/api/v1/namespaces/{NS}/pods") or {}
    return list(listing.get("items", []))


def ready_pod(api: KubeApi, not_named: str | None = None) -> dict[str, Any] | None:
    """The one pod of the service, ready and not terminating — once it is the only one."""
    live = [p for p in pods(api) if not p["metadata"].get("deletionTimestamp")]
    if len(live) != 1 or live[0]["metadata"]["name"] == not_named:
        return None
    conditions = (live[0].get("status") or {}).get("conditions") or []
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
    return live[0] if ready else None


def pid_of(pod: dict[str, Any]) -> int:
    container_id: str = pod["status"]["containerStatuses"][0]["containerID"]
    return int(container_id.removeprefix("sandbox://"))


def cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def pod_url(pod: dict[str, Any]) -> str:
    args = pod["spec"]["containers"][0]["args"]
    port = next(a.split("=", 1)[1] for a in args if a.startswith("--port="))
    return f"http://{pod['status']['podIP']}:{port}"


def restart_seconds(pod: dict[str, Any]) -> float:
    """From the pod's creation to its Ready condition (whole seconds, as the API stores time)."""

    def parse(stamp: str) -> float:
        return time.mktime(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ"))

    ready = next(c for c in pod["status"]["conditions"] if c["type"] == "Ready")
    return parse(ready["lastTransitionTime"]) - parse(pod["metadata"]["creationTimestamp"])


def trace(count: int, every_s: float, output_tokens: int, name: str) -> Trace:
    return Trace(
        np.arange(count, dtype=float) * every_s,
        np.full(count, PROMPT_WORDS, dtype=np.int64),
        np.full(count, output_tokens, dtype=np.int64),
        name,
    )


def replay_through(url: str, load: Trace) -> LoadReport:
    config = LoadConfig(url=url, max_context=256, timeout_s=TRICKLE_S + 240)
    return asyncio.run(replay(config, load))


Burst = list[tuple[LoadReport, GaugeProbe]]


def burst_with_probe(pod: str) -> Burst:
    """BURST simultaneous long requests to `pod` while its gauges are read back to back (repeated
    when `/metrics` went unanswered through a whole burst: `observed_burst`). The burst goes to
    the pod itself, not through the Service's router: on two cores every proxied token is CPU the
    engine's own `/metrics` then waits for."""
    config = LoadConfig(url=pod, max_context=256, timeout_s=300)
    return observed_burst(
        pod, lambda: asyncio.run(replay(config, trace(BURST, 0.0, OUTPUT_TOKENS, "burst")))
    )


def readings(burst: Burst) -> list[tuple[float, float]]:
    return [reading for _, probe in burst for reading in probe.readings]


def check_burst(burst: Burst, cap: int) -> None:
    failed = [
        (r.index, r.status, r.error) for report, _ in burst for r in report.records if not r.ok
    ]
    assert not failed, failed
    over = [reading for reading in readings(burst) if reading[0] > cap]
    assert not over, f"--max-num-seqs {cap}, yet the engine reported (running, waiting) {over}"
    seen = [timeline(probe) for _, probe in burst]
    assert max(running for running, _ in readings(burst)) == cap, seen
    assert any(w > 0 for r, w in readings(burst) if r == cap), (
        f"the batch never filled with requests waiting: {seen}"
    )


def prometheus_value(prometheus_url: str, expression: str) -> float | None:
    """An instant query's single value (None: no series)."""
    url = f"{prometheus_url}/api/v1/query?{urllib.parse.urlencode({'query': expression})}"
    with urllib.request.urlopen(url, timeout=10) as response:
        result = json.loads(response.read())["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def scraped_running(prometheus_url: str, pod: str) -> float | None:
    """The largest `vllm:num_requests_running` Prometheus scraped from `pod`."""
    selector = f'{{namespace="{NS}",pod="{pod}"}}'
    return prometheus_value(
        prometheus_url, f"max(max_over_time(vllm:num_requests_running{selector}[30m]))"
    )


def scraped_at_cap(prometheus_url: str, pod: str, name: str, cap: int, burst: Burst) -> Burst:
    """`burst`, and more bursts at `pod` (two at most) until Prometheus too has scraped the batch
    full at `cap`: on two busy cores the engine's `/metrics` can miss every scrape of a burst.
    Each burst is held to the cap (`check_burst`)."""
    for retry in range(3):
        time.sleep(3)  # the burst's samples reach Prometheus (scrapes every second)
        if retry == 2 or scraped_running(prometheus_url, name) == cap:
            break
        more = burst_with_probe(pod)
        check_burst(more, cap)
        burst = burst + more
    return burst


def check_scraped(prometheus_url: str, pod: str, cap: int) -> None:
    """What Prometheus scraped from `pod`: the batch full at `cap`, never above it."""
    selector = f'{{namespace="{NS}",pod="{pod}"}}'
    running = scraped_running(prometheus_url, pod)
    if running != cap:
        slowest = prometheus_value(
            prometheus_url, f"max(max_over_time(scrape_duration_seconds{selector}[30m]))"
        )
        up = prometheus_value(prometheus_url, f"min(min_over_time(up{selector}[30m]))")
        raise AssertionError(
            f"pod {pod} (--max-num-seqs {cap}): Prometheus' largest running sample is "
            f"{running}; slowest scrape {slowest}s, every scrape succeeded: {up == 1}"
        )


def test_a_batch_change_through_the_operator_restarts_the_real_engine(
    sandbox: dict[str, Any],
) -> None:
    api = KubeApi.connect(sandbox["kubeconfig"])
    log = Path(sandbox["directory"]) / "sandbox.log"
    try:
        api.request("POST", "/api/v1/namespaces", body={"metadata": {"name": NS}})
        api.request(
            "POST", f"/apis/sloscale.dev/v1alpha1/namespaces/{NS}/inferenceservices",
            body=inference_service(2),
        )  # fmt: skip
        first = wait_for(lambda: ready_pod(api), ENGINE_START_S, "the first engine", interval_s=1.0)
        first_name, first_pid = first["metadata"]["name"], pid_of(first)
        assert "--max-num-seqs=2" in cmdline(first_pid)
        assert "vllm.entrypoints.openai.api_server" in cmdline(first_pid)
        service_url = wait_for(
            lambda: (
                json.loads((Path(sandbox["directory"]) / "sandbox.json").read_text())
                .get("services", {})
                .get(SERVICE_KEY)
            ),
            30,
            "the Service's router",
        )

        prometheus_url = sandbox["prometheus"]["url"]
        before = burst_with_probe(pod_url(first))
        check_burst(before, 2)
        before = scraped_at_cap(prometheus_url, pod_url(first), first_name, 2, before)

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            trickle = pool.submit(
                replay_through,
                service_url,
                trace(int(TRICKLE_S / TRICKLE_EVERY_S), TRICKLE_EVERY_S, TRICKLE_TOKENS, "trickle"),
            )
            changed_at = time.monotonic()
            api.request(
                "PATCH", isvc_path(NS, NAME), body={"spec": {"batching": pinned(4)}},
                content_type=MERGE_PATCH,
            )  # fmt: skip
            second = wait_for(
                lambda: (
                    ready_pod(api, not_named=first_name)
                    if not any(p["metadata"]["name"] == first_name for p in pods(api))
                    else None
                ),
                ENGINE_START_S,
                "the rolled pod, ready, and the old one gone",
                interval_s=1.0,
                detail=lambda: log.read_text(errors="replace")[-3000:],
            )
            rolled_in_s = time.monotonic() - changed_at
            after = burst_with_probe(pod_url(second))
            trickled = trickle.result()

        # The operator's change, in the template and in the new engine's own command line.
        deployment = api.get(deployment_path(NS, NAME))
        assert deployment is not None
        template_args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        assert "--max-num-seqs=4" in template_args and "--max-num-seqs=2" not in template_args
        second_pid = pid_of(second)
        command = cmdline(second_pid)
        assert "--max-num-seqs=4" in command and "--max-num-seqs=2" not in command, command
        assert "vllm.entrypoints.openai.api_server" in command
        assert not alive(first_pid), "the old engine outlived its pod"

        # The cap in force held on each engine, and the new one really runs four at once.
        check_burst(after, 4)
        failed = [(r.index, r.status, r.error) for r in trickled.records if not r.ok]
        assert not failed, f"requests failed while the pods rolled: {failed}"
        after = scraped_at_cap(prometheus_url, pod_url(second), second["metadata"]["name"], 4, after)
        check_scraped(prometheus_url, first_name, 2)
        check_scraped(prometheus_url, second["metadata"]["name"], 4)

        # Why, in the InferenceService's status and events.
        status = (api.get(isvc_path(NS, NAME)) or {})["status"]
        assert status["batch"] == {"current": 4, "desired": 4}, status["batch"]
        assert status["lastBatchChangeTime"]
        increased = [e for e in events_of(api, NS, NAME) if e["reason"] == "BatchIncreased"]
        assert len(increased) == 1, [e["message"] for e in events_of(api, NS, NAME)]
        assert "2→4" in increased[0]["message"] and "outside [4, 4]" in increased[0]["message"]
        print(
            f"\nbatch 2→4 through the operator: rolled in {rolled_in_s:.0f}s, new engine ready "
            f"{restart_seconds(second):.0f}s after its pod was created; max running observed "
            f"{max(r for r, _ in readings(before)):g} then {max(r for r, _ in readings(after)):g} "
            f"({len(readings(before))} and {len(readings(after))} readings, "
            f"{len(before)} and {len(after)} bursts); "
            f"event: {increased[0]['message']}"
        )
    finally:
        api.close()
