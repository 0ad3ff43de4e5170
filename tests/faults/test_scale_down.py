"""Nothing is lost on scale-down: repeated scale-downs and a batch-change rollout under load.

A service runs four replicas under a steady load that keeps every pod busy with streaming
requests. The operator then takes it down one replica at a time (4→3→2, as its bounds are lowered),
changes the batch (a rolling restart of every pod, one surge pod at a time), and takes it down once
more (2→1). Every pod removed leaves its Service's router first, then drains what it was serving
within its grace period. The load generator counts every request: none may fail — no refused
connection, no error status, no stream cut short.

The victims are the least-loaded pods: three replicas, two of them kept busy by clients that talk
to those pods directly (as a client pinned to a pod by a gateway's session affinity would), and
the light one is the pod the Deployment controller's own order would keep longest. When the
maximum is lowered to two, the operator annotates the ready pods with their requests in flight
(`controller.kubernetes.io/pod-deletion-cost`) before it scales, and the light pod is the one
removed. Its API calls go through a recorder and are checked against the chart's RBAC rules.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from faults_support import (
    ApiRecorder,
    Box,
    Load,
    OperatorProcess,
    access_of,
    failures,
    forbidden,
    served_model,
    service_spec,
    wait_for,
)

from sloscale import promql
from sloscale.sandbox.deployments import deletion_order


def test_repeated_scale_downs_and_a_batch_rollout_under_load_lose_no_request(
    box: Box, namespace: str, operators: Callable[..., OperatorProcess]
) -> None:
    box.create(namespace, "chat", service_spec(replicas={"min": 4, "max": 4}))
    op = operators("operator", namespace)
    url = wait_for(
        lambda: len(box.ready_pods(namespace, "chat")) == 4 and box.router(namespace, "chat"),
        60,
        "four ready pods",
        op,
    )
    load = Load(url, 8.0)
    removed: set[str] = set()
    try:
        time.sleep(2)  # requests in flight on every pod
        for replicas in (3, 2):
            removed |= _scale_down_to(box, namespace, replicas, op)

        # A batch change: the pods' --max-num-seqs 4 is now outside the bounds, so the operator
        # moves it, which rolls every pod (surge one, drain one).
        before = {p["metadata"]["name"] for p in box.pods(namespace, "chat")}
        box.patch_spec(
            namespace,
            "chat",
            {"batching": {"minMaxNumSeqs": 8, "initialMaxNumSeqs": 8, "maxMaxNumSeqs": 8}},
        )
        rolled = wait_for(
            lambda: _rolled_out(box, namespace, 2, "--max-num-seqs=8"), 90, "the batch rollout", op
        )
        removed |= before - rolled

        removed |= _scale_down_to(box, namespace, 1, op)
    finally:
        report = load.stop()

    events = [e["reason"] for e in box.events(namespace, "chat")]
    assert events.count("ScaledDown") == 3, events
    assert sum(1 for e in events if e.startswith("Batch")) == 1, events  # one rollout, not repeated
    summary = report.summary()
    print(
        f"\nscale-down under 8 req/s: 4→3→2, batch 4→8 rolled over 2 pods, 2→1; {len(removed)} pods drained; "
        f"{summary['requests']} requests, {summary['failed']} failed"
    )
    assert summary["failed"] == 0, failures(report)


def _scale_down_to(box: Box, namespace: str, replicas: int, op: OperatorProcess) -> set[str]:
    """Pin the bounds at `replicas`; wait until the operator has scaled down and the extra pods
    have drained and gone. Returns the pods removed."""
    before = {p["metadata"]["name"] for p in box.pods(namespace, "chat")}
    box.patch_spec(namespace, "chat", {"replicas": {"min": replicas, "max": replicas}})
    wait_for(
        lambda: box.replicas(namespace, "chat") == replicas, 30, f"the scale-down to {replicas}", op
    )
    left = wait_for(lambda: (names := {p["metadata"]["name"] for p in box.pods(namespace, "chat")}) and len(names) == replicas and names,
                    60, f"{replicas} pods left", op)  # fmt: skip
    return before - left


def _rolled_out(box: Box, namespace: str, replicas: int, flag: str) -> set[str] | None:
    pods = box.pods(namespace, "chat")
    ready = [
        p for p in box.ready_pods(namespace, "chat") if flag in p["spec"]["containers"][0]["args"]
    ]
    if len(pods) == len(ready) == replicas:
        return {p["metadata"]["name"] for p in pods}
    return None


def test_a_scale_down_removes_the_least_loaded_pod_and_loses_no_request(
    box: Box, namespace: str, operators: Callable[..., OperatorProcess], tmp_path: Path
) -> None:
    recorder = ApiRecorder(box.api_url)
    try:
        _least_loaded_goes(box, namespace, operators, tmp_path, recorder)
    finally:
        recorder.close()


def _least_loaded_goes(
    box: Box,
    namespace: str,
    operators: Callable[..., OperatorProcess],
    tmp_path: Path,
    recorder: ApiRecorder,
) -> None:
    box.create(namespace, "chat", service_spec(replicas={"min": 3, "max": 3}))
    kubeconfig = recorder.kubeconfig(tmp_path / "kubeconfig", namespace)
    op = operators("operator", namespace, kubeconfig=kubeconfig)
    url = wait_for(
        lambda: len(box.ready_pods(namespace, "chat")) == 3 and box.router(namespace, "chat"),
        60,
        "three ready pods",
        op,
    )
    pods = box.ready_pods(namespace, "chat")
    # Without deletion costs the controller would remove the first of this order; the light pod
    # is the last of it, so only the operator's ranking can make it the one to go.
    order = [p["metadata"]["name"] for p in deletion_order(pods)]
    light, heavy = order[-1], order[:-1]
    load = Load(url, 4.0)
    # Long requests, twice the batch of them: a busy pod stays busy for seconds even when this
    # process is starved of CPU for a while on a loaded machine.
    hogs = [Hog(_pod_url(p), load.model, 8) for p in pods if p["metadata"]["name"] in heavy]
    try:
        # The busy pods hold several requests more than the light one, as Prometheus sees them.
        expression = promql.QuerySet().pod_in_flight([namespace])

        def separated() -> dict[str, float] | None:
            seen = {
                s["metric"].get("pod", ""): float(s["value"][1]) for s in box.prometheus(expression)
            }
            if set(seen) == set(order) and min(seen[h] for h in heavy) >= seen[light] + 3:
                return seen
            return None

        in_flight = wait_for(separated, 60, "the pods' loads to part", op)
        box.patch_spec(namespace, "chat", {"replicas": {"min": 2, "max": 2}})
        wait_for(lambda: box.replicas(namespace, "chat") == 2, 30, "the scale-down to 2", op)
        left = wait_for(lambda: (names := {p["metadata"]["name"] for p in box.pods(namespace, "chat")}) and len(names) == 2 and names,
                        60, "2 pods left", op)  # fmt: skip
        costs = {
            p["metadata"]["name"]: (p["metadata"].get("annotations") or {}).get(
                "controller.kubernetes.io/pod-deletion-cost"
            )
            for p in box.pods(namespace, "chat")
        }
    finally:
        for hog in hogs:
            hog.stop()
        report = load.stop()

    removed = set(order) - left
    summary = report.summary()
    direct = sum(h.sent for h in hogs), sum(len(h.failed) for h in hogs)
    print(
        f"\nleast-loaded victim: in flight {in_flight} when the maximum went 3→2; removed {sorted(removed)} "
        f"(the controller's own order would have removed {order[0]}); costs left {costs}; "
        f"{summary['requests']} routed requests, {summary['failed']} failed; "
        f"{direct[0]} direct requests, {direct[1]} failed"
    )
    assert removed == {light}, (removed, light, in_flight)
    assert all(cost is not None and int(cost) >= 3 for cost in costs.values()), costs
    assert summary["failed"] == 0, failures(report)
    assert direct[1] == 0, [f for h in hogs for f in h.failed][:5]

    # RBAC: the pod patches and everything else the operator did are allowed by the chart's rules.
    calls = list(recorder.calls)
    assert forbidden(calls, watched={namespace}, peering=False) == []
    patched = {
        c.path for c in calls if (a := access_of(c)) and (a.resource, a.verb) == ("pods", "patch")
    }
    assert patched == {f"/api/v1/namespaces/{namespace}/pods/{name}" for name in order}, patched


def _pod_url(pod: dict[str, object]) -> str:
    spec, status = pod["spec"], pod["status"]
    assert isinstance(spec, dict) and isinstance(status, dict)
    port = spec["containers"][0]["ports"][0]["containerPort"]
    return f"http://{status['podIP']}:{port}"


class Hog:
    """`concurrency` clients talking to one pod directly, each sending its next request when the
    last is answered: the pod holds about that many requests in flight (running and waiting)."""

    def __init__(self, url: str, model: str, concurrency: int) -> None:
        assert served_model(url) == model
        self.url = url
        self.body = json.dumps(
            {"model": model, "prompt": "word " * 200, "max_tokens": 400}
        ).encode()
        self.sent = 0
        self.failed: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._client, daemon=True) for _ in range(concurrency)
        ]
        for thread in self._threads:
            thread.start()

    def _client(self) -> None:
        while not self._stop.is_set():
            request = urllib.request.Request(
                self.url + "/v1/completions",
                data=self.body,
                headers={"Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    response.read()
                    error = None if response.status == 200 else f"status {response.status}"
            except (OSError, urllib.error.HTTPError) as exc:
                error = f"{type(exc).__name__}: {exc}"
            with self._lock:
                self.sent += 1
                if error is not None:
                    self.failed.append(error)
            if error is not None:
                self._stop.wait(0.2)  # a pod that is gone is not hammered

    def stop(self) -> None:
        """Stop sending; the requests in flight are answered first."""
        self._stop.set()
        for thread in self._threads:
            thread.join(90)
