"""Pods that crash, pods that never become ready, pods deleted under load.

- `crashy`: every pod exits at start (an engine argument vLLM refuses), so the kubelet restarts it
  with back-off. No pod ever reports: the operator holds at one replica (no scale-up on missing
  data), and `Ready` is False `PodsCrashLooping`, naming the pod and its restarts, with a Warning
  event that says the same.
- `stuck`: a service attached to its own Deployment serves load on one pod; then its pod template
  changes to one whose readiness probe never passes. The load needs more replicas, and the new
  ones never become ready: the operator adds what the demand needs, counts the pods starting as
  coming capacity, and stops there — no endless scale-up while they fail to come up — and once
  they are past the cold-start allowance `Ready` is False `PodsNotReady`, naming them.
- `steady`: two replicas under load; a ready pod is deleted. It drains (out of the router first),
  its metrics disappear from Prometheus, the Deployment replaces it; the operator keeps reading the
  service's metrics from the pods left (no Stale, no NoData), and no request fails.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from faults_support import (
    Box,
    Load,
    OperatorProcess,
    condition,
    failures,
    is_ready,
    service_spec,
    wait_for,
)

from sloscale.resource import parse_spec
from sloscale.workload import render_deployment, render_service


def test_crash_looping_and_never_ready_pods_do_not_scale_up_endlessly(
    box: Box, namespace: str, operators: Callable[..., OperatorProcess]
) -> None:
    # `stuck` runs its own Deployment: the operator attaches to it and only scales it.
    deployment, service = _workload(namespace, "stuck")
    box.api.request("POST", f"/apis/apps/v1/namespaces/{namespace}/deployments", body=deployment)
    box.api.request("POST", f"/api/v1/namespaces/{namespace}/services", body=service)
    attached = service_spec(scaleTargetRef={"name": "stuck"}, replicas={"min": 1, "max": 8})
    del attached["model"], attached["engine"]
    box.create(namespace, "stuck", attached)
    crashy = service_spec(engine={"gpuProfile": "A100", "args": ["--max-model-len=unlimited"]})
    box.create(namespace, "crashy", crashy)
    op = operators("operator", namespace)

    url = wait_for(
        lambda: box.ready_pods(namespace, "stuck") and box.router(namespace, "stuck"),
        60,
        "stuck's first pod",
        op,
    )
    load = Load(url, 12.0)
    try:
        # New pods from here on never pass their readiness probe (the rollout's surge pod neither).
        box.api.request(
            "PATCH", f"/apis/apps/v1/namespaces/{namespace}/deployments/stuck",
            body=[{"op": "replace", "path": "/spec/template/spec/containers/0/readinessProbe/httpGet/path", "value": "/never"}],
            content_type="application/json-patch+json",
        )  # fmt: skip
        wait_for(
            lambda: (box.replicas(namespace, "stuck") or 0) >= 2,
            60,
            "stuck to scale up for its load",
            op,
        )
        # Then it stops: the replicas stay put tick after tick although the new pods never come.
        peak = _settled(box, namespace, "stuck", op)

        def every_unready_pod_named() -> tuple[dict[str, Any], list[str]] | None:
            body = box.isvc(namespace, "stuck")
            pods = box.pods(namespace, "stuck")
            never = sorted(p["metadata"]["name"] for p in pods if not is_ready(p))
            message = condition(body, "Ready").get("message", "")
            named = condition(body, "Ready").get("reason") == "PodsNotReady"
            return (body, never) if body and named and all(n in message for n in never) else None

        # Each pod is named once it is past the cold-start allowance (twice the cold start).
        body, never = wait_for(every_unready_pod_named, 30, "Ready to name every unready pod", op)
        ready = len(box.ready_pods(namespace, "stuck"))
        decision = (body or {}).get("status", {}).get("lastDecision") or {}
        stuck_ready = condition(body, "Ready")
        assert peak < 8 and ready == 1, (peak, ready)
        assert stuck_ready["status"] == "False"
        # "1/2 replicas ready; 1 pod not ready after the 4s cold-start allowance: stuck-… (9s)"
        head = f"1/{peak} replicas ready; {len(never)} pod{'s' if len(never) > 1 else ''} not ready after the "
        assert stuck_ready["message"].startswith(head), stuck_ready["message"]
        assert all(name in stuck_ready["message"] for name in never), (never, stuck_ready)
        # A Warning when Ready turns to PodsNotReady, not one per tick while it stays (the first
        # pod, slow to start on a busy machine, may have caused one of its own earlier).
        warned = [e for e in box.events(namespace, "stuck") if e["reason"] == "PodsNotReady"]
        assert 1 <= len(warned) <= 2 and {e["type"] for e in warned} == {"Warning"}, warned
        assert any(name in warned[-1]["message"] for name in never), (never, warned)
    finally:
        report = load.stop()

    # The crash-looping service: restarted by the kubelet, never scaled up, and the pod named.
    crashed = wait_for(
        lambda: (
            (b := box.isvc(namespace, "crashy"))
            and condition(b, "Ready").get("reason") == "PodsCrashLooping"
            and b
        ),
        60,
        "Ready to name the crash-looping pod",
        op,
    )
    pods = box.pods(namespace, "crashy")
    assert len(pods) == 1 and not is_ready(pods[0])
    name = pods[0]["metadata"]["name"]
    restarts = pods[0]["status"]["containerStatuses"][0]["restartCount"]
    assert restarts >= 2, "the kubelet restarts a container that exits"
    assert box.replicas(namespace, "crashy") == 1
    crash_ready = condition(crashed, "Ready")
    assert crash_ready["status"] == "False"
    assert re.fullmatch(
        rf"0/1 replicas ready; 1 pod crash-looping: {re.escape(name)} \(\d+ restarts\)",
        crash_ready["message"],
    ), crash_ready["message"]
    assert condition(crashed, "MetricsAvailable")["reason"] == "NoData"
    warned = [e for e in box.events(namespace, "crashy") if e["reason"] == "PodsCrashLooping"]
    assert len(warned) == 1 and warned[0]["type"] == "Warning" and name in warned[0]["message"]

    print(
        f"\nnever-ready pods: stuck scaled 1→{peak} for 12 req/s and stopped there with 1 pod ready "
        f"({decision.get('reason', '')[:100]!r}), Ready=False {stuck_ready['message']!r}; "
        f"crash-looping pod: {restarts} restarts, held at 1 replica, "
        f"Ready=False {crash_ready['message']!r}; load: {report.summary()['failed']} of "
        f"{report.summary()['requests']} requests failed (one pod serving 12 req/s)"
    )


def test_a_pod_deleted_under_load_drains_and_its_metrics_disappearing_is_not_an_outage(
    box: Box, namespace: str, operators: Callable[..., OperatorProcess]
) -> None:
    box.create(namespace, "steady", service_spec(replicas={"min": 2, "max": 2}))
    op = operators("operator", namespace)
    url = wait_for(
        lambda: len(box.ready_pods(namespace, "steady")) == 2 and box.router(namespace, "steady"),
        60,
        "two ready pods",
        op,
    )
    load = Load(url, 8.0)
    try:
        wait_for(
            lambda: (
                condition(box.isvc(namespace, "steady"), "MetricsAvailable").get("reason")
                == "Fresh"
            ),
            60,
            "fresh metrics under load",
            op,
        )
        victim = box.ready_pods(namespace, "steady")[0]["metadata"]["name"]
        box.api.request("DELETE", f"/api/v1/namespaces/{namespace}/pods/{victim}")
        # Its series go from Prometheus; a replacement comes up.
        wait_for(
            lambda: not box.prometheus(f'up{{namespace="{namespace}",pod="{victim}"}}'),
            30,
            "the pod's metrics to disappear",
            op,
        )
        wait_for(
            lambda: len(box.ready_pods(namespace, "steady")) == 2 and victim not in {p["metadata"]["name"] for p in box.pods(namespace, "steady")},
            60, "the replacement pod", op,
        )  # fmt: skip
        # Meanwhile and after, the service's metrics were read from the pods left: never unavailable.
        seen: set[str] = set()
        end = time.monotonic() + 5
        while time.monotonic() < end:
            seen.add(condition(box.isvc(namespace, "steady"), "MetricsAvailable").get("reason", ""))
            time.sleep(0.2)
    finally:
        report = load.stop()
    assert seen == {"Fresh"}, seen
    assert box.replicas(namespace, "steady") == 2
    summary = report.summary()
    print(
        f"\npod deleted under 8 req/s: drained and replaced; metrics stayed Fresh; {summary['requests']} requests, {summary['failed']} failed"
    )
    assert summary["failed"] == 0, failures(report)


def _workload(namespace: str, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The vLLM Deployment and Service a team would run itself: the operator's rendering, unowned."""
    spec = parse_spec(service_spec())
    meta = {"name": name, "namespace": namespace, "uid": "none"}
    made = render_deployment(meta, spec, replicas=1, max_num_seqs=4), render_service(meta, spec)
    for manifest in made:
        del manifest["metadata"]["ownerReferences"]
    return made


def _settled(box: Box, namespace: str, name: str, op: OperatorProcess, ticks: int = 8) -> int:
    """The replica count once it has not changed for `ticks` ticks of the operator."""
    last: list[int | None] = [box.replicas(namespace, name)]
    since = [op.ticks()]

    def unchanged_for_long_enough() -> bool:
        now = box.replicas(namespace, name)
        if now != last[0]:
            last[0], since[0] = now, op.ticks()
        return op.ticks() >= since[0] + ticks

    wait_for(unchanged_for_long_enough, 60, f"{name}'s replicas to stop changing", op)
    assert last[0] is not None
    return last[0]
