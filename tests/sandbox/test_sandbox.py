"""`sloscale sandbox up/down` end to end: kubectl applies, pods run, scale and roll, Prometheus sees.

One sandbox (no operator) serves the module; each test uses its own Deployment. Pods run at
speedup 10 with a 10 s (model) cold start: one real second of "model load".
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
import yaml

from sloscale.resource import parse_spec
from sloscale.sandbox import processes
from sloscale.sandbox.deployments import TEMPLATE_HASH_LABEL
from sloscale.workload import render_deployment, render_service

pytestmark = pytest.mark.prometheus

BIN = Path(sys.executable).parent
SPEEDUP, COLD_START = 10, 10  # the pods' load takes COLD_START / SPEEDUP = 1 real second
T = TypeVar("T")


@dataclass
class Sandbox:
    directory: Path

    @property
    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = json.loads((self.directory / "sandbox.json").read_text())
        return state

    @property
    def kubeconfig(self) -> str:
        return str(self.directory / "kubeconfig")

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "kubectl"), "--kubeconfig", self.kubeconfig, *args],
            input=stdin, capture_output=True, text=True, timeout=90, check=check,
        )  # fmt: skip

    def api(self, path: str) -> Any:
        with urllib.request.urlopen(self.state["api_url"] + path, timeout=10) as resp:
            return json.loads(resp.read())

    def pods(self, app: str) -> list[dict[str, Any]]:
        selector = urllib.parse.quote(f"sloscale.dev/service={app}")
        items: list[dict[str, Any]] = self.api(f"/api/v1/namespaces/default/pods?labelSelector={selector}")["items"]
        return items

    def deployment(self, app: str) -> dict[str, Any]:
        body: dict[str, Any] = self.api(f"/apis/apps/v1/namespaces/default/deployments/{app}")
        return body

    def prometheus(self, query: str) -> list[dict[str, Any]]:
        url = self.state["prometheus"]["url"] + "/api/v1/query?query=" + urllib.parse.quote(query)
        with urllib.request.urlopen(url, timeout=10) as resp:
            result: list[dict[str, Any]] = json.loads(resp.read())["data"]["result"]
            return result


def sloscale(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sloscale", *args], capture_output=True, text=True, timeout=120)


def wait_for(probe: Callable[[], T | None], timeout: float = 60.0, what: str = "the condition") -> T:
    return processes.wait_for(probe, timeout, what)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    directory = tmp_path_factory.mktemp("sandbox")
    started = sloscale(
        "sandbox", "up", "--dir", str(directory), "--speedup", str(SPEEDUP), "--cold-start", str(COLD_START), "--no-operator"
    )
    assert started.returncode == 0, started.stderr
    try:
        yield Sandbox(directory)
    finally:
        sloscale("sandbox", "down", "--dir", str(directory))


def manifest(name: str, replicas: int, max_num_seqs: int = 64) -> str:
    """The Deployment and Service the operator renders for an InferenceService named `name`."""
    spec = parse_spec(
        {
            "model": "meta-llama/Llama-3.1-8B-Instruct",
            "objective": {"type": "Latency", "latency": {"metric": "TimeToFirstToken", "target": "1s"}},
            "replicas": {"min": 1, "max": 8},
        }
    )
    meta = {"name": name, "namespace": "default", "uid": "not-applied"}
    docs = [render_deployment(meta, spec, replicas=replicas, max_num_seqs=max_num_seqs), render_service(meta, spec)]
    for doc in docs:
        del doc["metadata"]["ownerReferences"]  # no InferenceService in these tests
    return yaml.safe_dump_all(docs)


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions) and not pod["metadata"].get(
        "deletionTimestamp"
    )


def exactly(n: int, items: list[T]) -> list[T] | None:
    return items if len(items) == n else None


def stamp(text: str) -> float:
    return time.mktime(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ"))


def test_a_deployment_runs_as_pods_that_become_ready_after_the_cold_start(sandbox: Sandbox) -> None:
    sandbox.kubectl("apply", "-f", "-", stdin=manifest("alpha", replicas=2))
    pods = wait_for(lambda: exactly(2, [p for p in sandbox.pods("alpha") if ready(p)]), what="2 ready pods")
    deployment = sandbox.deployment("alpha")
    for pod in pods:
        owner = pod["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["uid"], owner["controller"]) == ("Deployment", deployment["metadata"]["uid"], True)
        assert pod["status"]["phase"] == "Running"
        assert pod["metadata"]["labels"][TEMPLATE_HASH_LABEL]
        became_ready = next(c for c in pod["status"]["conditions"] if c["type"] == "Ready")["lastTransitionTime"]
        # The model load: no pod is ready sooner than the cold start after its creation.
        assert stamp(became_ready) - stamp(pod["metadata"]["creationTimestamp"]) >= COLD_START / SPEEDUP
    assert len({p["status"]["podIP"] for p in pods}) == 2

    assert sandbox.kubectl("rollout", "status", "deployment/alpha", "--timeout=60s").returncode == 0
    status = sandbox.deployment("alpha")["status"]
    assert (status["replicas"], status["readyReplicas"], status["updatedReplicas"], status["availableReplicas"]) == (2, 2, 2, 2)
    assert status["observedGeneration"] == deployment["metadata"]["generation"]
    assert {c["type"]: c["status"] for c in status["conditions"]} == {"Available": "True", "Progressing": "True"}

    endpoints = wait_for(lambda: sandbox.api("/api/v1/namespaces/default/endpoints/alpha")["subsets"], what="endpoints")
    assert {a["ip"] for a in endpoints[0]["addresses"]} == {p["status"]["podIP"] for p in pods}
    assert endpoints[0]["ports"][0]["port"] == 8000

    up = wait_for(lambda: exactly(2, sandbox.prometheus('up{sloscale_service="alpha"} == 1')), what="both pods up")
    assert {r["metric"]["pod"] for r in up} == {p["metadata"]["name"] for p in pods}
    assert {r["metric"]["namespace"] for r in up} == {"default"}


async def test_the_router_spreads_requests_over_the_ready_pods(sandbox: Sandbox) -> None:
    await asyncio.to_thread(sandbox.kubectl, "apply", "-f", "-", stdin=manifest("delta", replicas=2))
    await asyncio.to_thread(sandbox.kubectl, "rollout", "status", "deployment/delta", "--timeout=60s")
    url = await asyncio.to_thread(wait_for, lambda: sandbox.state["services"].get("default/delta"), 30, "a router")
    body = {"prompt": "hello " * 50, "max_tokens": 100}
    async with aiohttp.ClientSession() as s:

        async def one() -> int:
            async with s.post(url + "/v1/completions", json=body) as resp:
                return resp.status

        assert await asyncio.gather(*[one() for _ in range(20)]) == [200] * 20
        served = []
        for pod in sandbox.pods("delta"):
            async with s.get(f"http://{pod['status']['podIP']}:8000/metrics") as resp:
                text = await resp.text()
            line = next(x for x in text.splitlines() if x.startswith("vllm:request_success_total") and "length" in x)
            served.append(float(line.rsplit(" ", 1)[1]))
    assert sum(served) == 20
    assert min(served) >= 5  # least outstanding: both pods carry the burst


async def test_scaling_and_deletion_remove_the_cheapest_pods_with_a_drain(sandbox: Sandbox) -> None:
    await asyncio.to_thread(sandbox.kubectl, "apply", "-f", "-", stdin=manifest("beta", replicas=1))
    await asyncio.to_thread(sandbox.kubectl, "scale", "deployment/beta", "--replicas=3")
    await asyncio.to_thread(sandbox.kubectl, "rollout", "status", "deployment/beta", "--timeout=60s")
    pods = sandbox.pods("beta")
    assert len(pods) == 3 and all(map(ready, pods))
    keep = pods[0]["metadata"]["name"]
    await asyncio.to_thread(sandbox.kubectl, "annotate", "pod", keep, "controller.kubernetes.io/pod-deletion-cost=100")
    pids = {name.split("/")[1]: p["pid"] for name, p in sandbox.state["pods"].items() if name.startswith("default/beta-")}
    assert len(pids) == 3
    url = sandbox.state["services"]["default/beta"]

    async with aiohttp.ClientSession() as s:

        async def stream() -> int:  # ~2 s real of decoding at speedup 10
            body = {"prompt": "hi", "max_tokens": 3000, "stream": True, "stream_options": {"include_usage": True}}
            tokens = 0
            async with s.post(url + "/v1/completions", json=body) as resp:
                assert resp.status == 200
                async for line in resp.content:
                    if line.startswith(b"data: {") and b'"usage"' in line:
                        tokens = json.loads(line[6:])["usage"]["completion_tokens"]
            return tokens

        streams = [asyncio.create_task(stream()) for _ in range(6)]

        async def running_everywhere() -> bool:
            for pod in pods:
                async with s.get(f"http://{pod['status']['podIP']}:8000/metrics") as resp:
                    if 'vllm:num_requests_running{engine="0",model_name="beta"} 0.0' in await resp.text():
                        return False
            return True

        async with asyncio.timeout(30):
            while not await running_everywhere():
                await asyncio.sleep(0.05)
        scaled_down = asyncio.Event()

        async def keep_asking() -> list[int]:  # new requests while pods leave: none may fail
            statuses = []
            while not scaled_down.is_set():
                async with s.post(url + "/v1/completions", json={"prompt": "hi", "max_tokens": 5}) as resp:
                    statuses.append(resp.status)
            return statuses

        asking = asyncio.create_task(keep_asking())
        await asyncio.to_thread(sandbox.kubectl, "scale", "deployment/beta", "--replicas=1")
        assert await asyncio.gather(*streams) == [3000] * 6  # the drained pods finished their work
        await asyncio.to_thread(wait_for, lambda: exactly(1, sandbox.pods("beta")), 60, "the scale-down")
        scaled_down.set()
        statuses = await asking
        assert len(statuses) > 1 and set(statuses) == {200}

    remaining = await asyncio.to_thread(wait_for, lambda: exactly(1, sandbox.pods("beta")), 60, "the scale-down")
    assert remaining[0]["metadata"]["name"] == keep  # the costly pod stays
    assert [name for name, pid in pids.items() if alive(pid)] == [keep]
    scale = sandbox.api("/apis/apps/v1/namespaces/default/deployments/beta/scale")
    assert (scale["kind"], scale["spec"]["replicas"], scale["status"]["replicas"]) == ("Scale", 1, 1)

    # Deleting the Deployment takes the last pod through the same drain, and out of Prometheus.
    await asyncio.to_thread(sandbox.kubectl, "delete", "deployment/beta", "--wait=false")
    await asyncio.to_thread(wait_for, lambda: not sandbox.pods("beta"), 30, "the pods to go")
    assert not alive(pids[keep])
    await asyncio.to_thread(
        wait_for, lambda: not sandbox.prometheus('up{sloscale_service="beta"}'), 30, "its scrape target to go"
    )


def test_a_template_change_rolls_pod_by_pod_without_losing_capacity(sandbox: Sandbox) -> None:
    sandbox.kubectl("apply", "-f", "-", stdin=manifest("gamma", replicas=2, max_num_seqs=64))
    sandbox.kubectl("rollout", "status", "deployment/gamma", "--timeout=60s")
    before = {p["metadata"]["name"] for p in sandbox.pods("gamma")}
    args = sandbox.deployment("gamma")["spec"]["template"]["spec"]["containers"][0]["args"]
    index = next(i for i, a in enumerate(args) if a.startswith("--max-num-seqs"))
    patch = [{"op": "replace", "path": f"/spec/template/spec/containers/0/args/{index}", "value": "--max-num-seqs=16"}]
    sandbox.kubectl("patch", "deployment/gamma", "--type=json", "-p", json.dumps(patch))

    ready_seen, active_seen = [], []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pods = sandbox.pods("gamma")
        active = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        ready_seen.append(sum(map(ready, pods)))
        active_seen.append(len(active))
        if len(pods) == 2 and not before & {p["metadata"]["name"] for p in pods} and all(map(ready, pods)):
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the rollout did not finish")
    assert min(ready_seen) >= 2  # maxUnavailable 0: capacity never dropped
    assert max(active_seen) <= 3  # maxSurge 1
    for pod in sandbox.pods("gamma"):
        assert "--max-num-seqs=16" in pod["spec"]["containers"][0]["args"]
    assert sandbox.kubectl("rollout", "status", "deployment/gamma", "--timeout=30s").returncode == 0
    status = sandbox.deployment("gamma")["status"]
    assert status["updatedReplicas"] == status["replicas"] == 2


# -- up and down -----------------------------------------------------------------------------


def test_up_runs_the_operator_and_down_leaves_nothing_running(tmp_path: Path) -> None:
    started = sloscale("sandbox", "up", "--dir", str(tmp_path), "--speedup", "10", "--cold-start", "5")
    try:
        assert started.returncode == 0, started.stderr
        box = Sandbox(tmp_path)
        again = sloscale("sandbox", "up", "--dir", str(tmp_path))
        assert again.returncode == 1 and "already runs" in again.stderr
        box.kubectl("apply", "-f", "-", stdin=manifest("zeta", replicas=1))
        wait_for(lambda: box.state["pods"], 30, "a pod")
        state = box.state
        assert state["operator"]["running"], (tmp_path / "operator.log").read_text()[-2000:]
        pids = [state["pid"], state["prometheus"]["pid"], state["operator"]["pid"]]
        pids += [p["pid"] for p in state["pods"].values()]
        assert all(map(alive, pids))
    finally:
        stopped = sloscale("sandbox", "down", "--dir", str(tmp_path))
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert not any(map(alive, pids))
    assert not (tmp_path / "sandbox.json").exists()
    with pytest.raises(OSError):
        urllib.request.urlopen(state["api_url"] + "/version", timeout=2)
    assert "no sandbox" in sloscale("sandbox", "down", "--dir", str(tmp_path)).stdout


def test_a_killed_supervisor_takes_its_pods_along_and_down_cleans_up(tmp_path: Path) -> None:
    started = sloscale(
        "sandbox", "up", "--dir", str(tmp_path), "--speedup", "10", "--cold-start", "5", "--gpu-profile", "A100", "--no-operator"
    )
    try:
        assert started.returncode == 0, started.stderr
        box = Sandbox(tmp_path)
        box.kubectl("apply", "-f", "-", stdin=manifest("eta", replicas=1))
        wait_for(lambda: box.state["pods"], 30, "a pod")
        state = box.state
        cmdline = Path(f"/proc/{next(iter(state['pods'].values()))['pid']}/cmdline").read_bytes().split(b"\0")
        assert cmdline[cmdline.index(b"--gpu-profile") + 1] == b"A100"  # the sandbox's emulated GPU
        os.kill(state["pid"], signal.SIGKILL)
        pod_pid = next(iter(state["pods"].values()))["pid"]
        wait_for(lambda: not alive(pod_pid), 10, "the pod to die with the supervisor")
    finally:
        sloscale("sandbox", "down", "--dir", str(tmp_path))
    assert not alive(state["prometheus"]["pid"])
