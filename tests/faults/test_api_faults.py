"""The Kubernetes API misbehaves; the operator retries, applies each decision once, keeps status
whole — and every call it makes is one the chart's RBAC allows, with no secret in sight.

One operator, its API traffic through a recorder, its Prometheus behind a gate that speaks HTTPS
(the operator gets the CA file) and demands a bearer token (given to the operator as a file, the
way the chart mounts it). A loaded service
needs to scale up while the API emulator injects, one after the other: 500s on every write to the
scale subresource; then conflicts (409) and internal errors (500) on every status write while the
scale-up goes through; then slow reads, and watches cut in mid-stream. Then the spec changes, which
the operator only learns through its (re-established) watch.

Checked: the decisions are applied (the service ends where the load puts it and where the new
spec bounds it), each replica change is applied once and explained once (one event per change,
no change undone, `lastScaleTime` dated even when its status write was refused), the stored
status is valid against the CRD and describes the current generation, AbleToScale said
ScaleFailed while writes were refused; every API call the operator
made is allowed by `sloscale.rbac` (the chart's rules) for a namespace-scoped install; TLS and the
token reached Prometheus on every query and appears nowhere in the log (at debug level), the status or
the events.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import yaml
from faults_support import (
    ROOT,
    ApiRecorder,
    Box,
    Load,
    OperatorProcess,
    PrometheusGate,
    access_of,
    condition,
    failures,
    forbidden,
    make_tls,
    service_spec,
    wait_for,
    wait_ticks,
)

from sloscale.apiserver.validation import CelRules, SchemaValidator

TOKEN = "sloscale-fault-suite-token-5d41402abc4b2a76"


def test_api_faults_are_retried_decisions_applied_once_status_whole_rbac_minimal_no_secrets(
    box: Box, namespace: str, operators: Callable[..., OperatorProcess], tmp_path: Path
) -> None:
    recorder = ApiRecorder(box.api_url)
    ca, cert, key = make_tls(tmp_path)
    gate = PrometheusGate(box.prometheus_url, require_token=TOKEN, tls=(cert, key))
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    try:
        _scenario(box, namespace, operators, tmp_path, recorder, gate, token_file, ca)
    finally:
        box.emulator_faults("clear")
        gate.close()
        recorder.close()


def _scenario(
    box: Box,
    namespace: str,
    operators: Callable[..., OperatorProcess],
    tmp_path: Path,
    recorder: ApiRecorder,
    gate: PrometheusGate,
    token_file: Path,
    ca: Path,
) -> None:
    op = operators(
        "operator",
        namespace,
        kubeconfig=recorder.kubeconfig(tmp_path / "kubeconfig", namespace),
        prometheus_url=gate.url,
        extra=[
            "--prometheus-bearer-token-file",
            str(token_file),
            "--prometheus-ca-file",
            str(ca),
            "--log-level",
            "debug",
        ],  # fmt: skip
    )
    box.create(namespace, "chat", service_spec())
    url = wait_for(
        lambda: box.ready_pods(namespace, "chat") and box.router(namespace, "chat"),
        60,
        "the first pod",
        op,
    )
    history = _ReplicaHistory(box, namespace, "chat")
    load = Load(url, 10.0)
    isvc = f"/namespaces/{namespace}/inferenceservices/chat"
    deployments = f"/namespaces/{namespace}/deployments"
    try:
        # The scale subresource refuses writes: the operator says so and moves nothing.
        box.emulator_faults("add", method="PATCH", path=f"{deployments}/chat/scale$", status=500)
        refused = wait_for(
            lambda: condition(box.isvc(namespace, "chat"), "AbleToScale").get("reason") == "ScaleFailed"
            and condition(box.isvc(namespace, "chat"), "AbleToScale"),
            60, "AbleToScale=False ScaleFailed", op,
        )  # fmt: skip
        assert "writing Deployment chat failed" in refused["message"], refused
        assert box.replicas(namespace, "chat") == 1
        # Scale writes go through again, but every status write is refused (409, then 500) while
        # the scale-up happens: the change must still be explained and dated once status is back.
        box.emulator_faults("clear")
        box.emulator_faults(
            "add", method="PATCH", path=f"{isvc}/status$", status=409, probability=0.5
        )
        box.emulator_faults("add", method="PATCH", path=f"{isvc}/status$", status=500)
        wait_for(
            lambda: (box.replicas(namespace, "chat") or 0) >= 2, 60, "the scale-up, retried", op
        )
        scaled_at = time.time()
        wait_ticks(op, 2, "a few more ticks whose status writes fail")
        box.emulator_faults("clear")
        recovered = wait_for(
            lambda: (b := box.isvc(namespace, "chat"))
            and condition(b, "AbleToScale").get("reason") == "Enforcing"
            and b,
            30, "status writes to land again", op,
        )  # fmt: skip
        last_scale = recovered["status"].get("lastScaleTime")
        assert last_scale and _epoch(last_scale) >= scaled_at - 3, (
            f"lastScaleTime {last_scale} misses the scale-up"
        )

        # Slow reads of the workload, then every watch cut and the next ones cut after a second.
        box.emulator_faults("clear")
        box.emulator_faults("add", method="GET", path=f"{deployments}", latency=1.0, times=8)
        box.emulator_faults(
            "add", method="GET", path="/inferenceservices", drop_watch_after=1.0, times=3
        )
        dropped = box.emulator_faults("drop")["dropped"]
        time.sleep(3)
        # A change only the watch carries: the operator must see it to obey the new bound.
        box.patch_spec(namespace, "chat", {"replicas": {"max": 2}})
        wait_for(
            lambda: box.replicas(namespace, "chat") == 2, 60, "the new maximum to be obeyed", op
        )
        body = wait_for(
            lambda: (b := box.isvc(namespace, "chat"))
            and (b.get("status") or {}).get("observedGeneration") == b["metadata"]["generation"]
            and b,
            30, "status for the new generation", op,
        )  # fmt: skip
    finally:
        report = load.stop()
        history.stop()
    box.emulator_faults("clear")

    # Each replica change applied once, explained once, never undone (no thrash).
    changes = history.changes()
    events = [e for e in box.events(namespace, "chat") if e["reason"] in ("ScaledUp", "ScaledDown")]
    ups = [c for c in changes if c[1] > c[0]]
    downs = [c for c in changes if c[1] < c[0]]
    explained = sorted(
        tuple(map(int, re.findall(r"replicas (\d+)→(\d+)", e["message"])[0])) for e in events
    )
    assert explained == sorted(changes), (
        f"changes {changes} but events {[e['message'] for e in events]}"
    )
    assert all(b[0] >= a[1] for a, b in zip(ups, ups[1:], strict=False)), (
        f"a scale-up was undone: {changes}"
    )
    assert downs == [] or all(d[1] >= 2 for d in downs), (
        changes
    )  # only the new maximum brings it down

    # The status is whole: valid against the CRD, about the current generation, one condition each.
    crd = yaml.safe_load((ROOT / "crds" / "inferenceservice.yaml").read_text())
    validator = SchemaValidator(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"], CelRules())
    assert validator.validate(body, None) == []
    types = [c["type"] for c in body["status"]["conditions"]]
    assert (
        sorted(types)
        == sorted(set(types))
        == sorted(
            [
                "Ready",
                "MetricsAvailable",
                "ObjectiveMet",
                "AbleToScale",
                "ScalingLimited",
                "Infeasible",
            ]
        )
    )
    assert body["status"]["replicas"]["current"] == 2 and body["status"]["lastScaleTime"]
    assert body["status"]["replicas"]["desired"] <= 2  # the new maximum holds

    # RBAC: every call it made is allowed by the chart's rules for a namespace-scoped install.
    calls = list(recorder.calls)
    assert forbidden(calls, watched={namespace}, peering=False) == []
    made = Counter(str(a) for a in map(access_of, calls) if a is not None)

    # The bearer token reached Prometheus on every query, and nowhere else.
    assert set(gate.authorizations) == {f"Bearer {TOKEN}"} and gate.queries > 0
    assert TOKEN not in op.log.read_text(errors="replace")
    assert TOKEN not in json.dumps(box.isvc(namespace, "chat"))
    assert TOKEN not in json.dumps(box.events(namespace, "chat"))
    assert report.summary()["failed"] == 0, failures(report)

    print(
        f"\nAPI faults: {dropped} watches cut; replica changes {changes}, each with one event; "
        f"status valid; {len(calls)} API calls, {len(made)} kinds, all allowed:\n  "
        + "\n  ".join(f"{n:5d} {k}" for k, n in sorted(made.items()))
        + f"\n  Prometheus: {gate.queries} queries, each with the bearer token; load: {report.summary()['requests']} requests, 0 failed"
    )


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


class _ReplicaHistory:
    """Every value the Deployment's spec.replicas takes, polled every 100 ms in the background."""

    def __init__(self, box: Box, namespace: str, name: str) -> None:
        self.values: list[int] = []
        self._stop = threading.Event()

        def poll() -> None:
            while not self._stop.wait(0.1):
                replicas = box.replicas(namespace, name)
                if replicas is not None and (not self.values or self.values[-1] != replicas):
                    self.values.append(replicas)

        self._thread = threading.Thread(target=poll, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def changes(self) -> list[tuple[int, int]]:
        return list(zip(self.values, self.values[1:], strict=False))
