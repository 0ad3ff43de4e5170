"""The operator killed mid-scale and mid-rollout, and two replicas sharing the work.

- SIGKILL right after the operator scaled a loaded service up (its new pods still starting), then
  a restart: the restarted operator keeps the replicas it finds (pods starting count as coming
  capacity; no scale-down before a full window of history) and the pods come up — no thrash.
- SIGKILL right after it changed the batch (pods rolling), then a restart: the rollout completes,
  the pod template is not changed again (one batch change, one event), and the change is dated in
  status, from where the batch cooldown survives the next restart.
- Two replicas with kopf peering: exactly one acts — the other makes no write to any service,
  Deployment or status — and when the active one stops, the other takes over. Every call either
  made is allowed by the chart's RBAC rules with peering on.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from faults_support import (
    ROOT,
    ApiRecorder,
    Box,
    Load,
    OperatorProcess,
    condition,
    failures,
    forbidden,
    service_spec,
    wait_for,
    wait_ticks,
)
from kubernetes.client.exceptions import ApiException


def test_killed_mid_scale_and_mid_rollout_the_restarted_operator_does_not_thrash(
    box: Box, namespace: str, operators: Callable[..., OperatorProcess]
) -> None:
    box.create(namespace, "chat", service_spec(replicas={"min": 1, "max": 3}))
    op = operators("operator", namespace)
    url = wait_for(
        lambda: box.ready_pods(namespace, "chat") and box.router(namespace, "chat"),
        60,
        "the first pod",
        op,
    )
    load = Load(url, 12.0)
    try:
        # Mid-scale: the moment the operator writes a scale-up, it dies.
        scaled = wait_for(
            lambda: (r := box.replicas(namespace, "chat")) and r > 1 and r, 60, "a scale-up", op
        )
        op.kill()
        starting = scaled - len(box.ready_pods(namespace, "chat"))
        op.start()
        seen = [box.replicas(namespace, "chat")]
        wait_ticks(op, 12, "a dozen ticks of the restarted operator",
                   check=lambda: seen.append(box.replicas(namespace, "chat")))  # fmt: skip
        seen.append(box.replicas(namespace, "chat"))
        assert min(r or 0 for r in seen) >= scaled, f"the restarted operator scaled down: {seen}"
        wait_for(
            lambda: len(box.ready_pods(namespace, "chat")) >= scaled,
            60,
            "the pods it had asked for",
            op,
        )

        # Mid-rollout: the batch 4 leaves the bounds; the operator rolls the pods to 8 and dies.
        box.patch_spec(
            namespace,
            "chat",
            {"batching": {"minMaxNumSeqs": 8, "initialMaxNumSeqs": 8, "maxMaxNumSeqs": 8}},
        )
        changed = wait_for(lambda: (d := box.deployment(namespace, "chat")) and _template_batch(d) == 8 and d,
                           30, "the batch change", op)  # fmt: skip
        op.kill()
        rolling = [
            p
            for p in box.pods(namespace, "chat")
            if "--max-num-seqs=4" in p["spec"]["containers"][0]["args"]
        ]
        op.start()
        replicas = changed["spec"]["replicas"]
        wait_for(
            lambda: _rolled_out(box, namespace, replicas, "--max-num-seqs=8"),
            90,
            "the rollout to complete",
            op,
        )
        wait_ticks(op, 3, "more ticks: nothing may touch the template again")
        after = box.deployment(namespace, "chat")
        body = box.isvc(namespace, "chat")
    finally:
        report = load.stop()
    assert after is not None and after["spec"]["template"] == changed["spec"]["template"], (
        "the pod template changed again"
    )
    batch_events = [e for e in box.events(namespace, "chat") if e["reason"].startswith("Batch")]
    assert len(batch_events) == 1, [e["message"] for e in batch_events]
    assert body is not None and body["status"].get("lastBatchChangeTime"), body and body["status"]
    assert condition(body, "MetricsAvailable")["status"] == "True"
    summary = report.summary()
    print(
        f"\nkilled mid-scale at {scaled} replicas ({starting} starting): restarted, held ≥{scaled} "
        f"(min over 12 ticks: {min(r or 0 for r in seen)}); killed mid-rollout with {len(rolling)} old pods left: "
        f"rollout completed, 1 batch change; load {summary['requests']} requests, {summary['failed']} failed"
    )
    assert summary["failed"] == 0, failures(report)


def test_with_peering_exactly_one_replica_acts_and_the_other_takes_over(
    box: Box, namespace: str, operators: Callable[..., OperatorProcess], tmp_path: Path
) -> None:
    peering_crds = (ROOT / "charts" / "sloscale" / "crds" / "kopf-peering.yaml").read_text()
    for crd in filter(None, yaml.safe_load_all(peering_crds)):
        with contextlib.suppress(ApiException):  # created by an earlier test
            box.api.request(
                "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", body=crd
            )
    peerings = f"/apis/kopf.dev/v1/namespaces/{namespace}/kopfpeerings"
    wait_for(lambda: box.api.get(peerings) is not None, 30, "the peering CRD")
    box.api.request(
        "POST",
        peerings,
        body={"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "sloscale"}},
    )
    recorders = [ApiRecorder(box.api_url), ApiRecorder(box.api_url)]
    replicas: list[OperatorProcess] = []
    started = time.monotonic()
    try:
        for i, rec in enumerate(recorders):
            kubeconfig = rec.kubeconfig(tmp_path / f"kubeconfig-{i}", namespace)
            replicas.append(
                operators(
                    f"replica-{i}",
                    namespace,
                    kubeconfig=kubeconfig,
                    extra=["--peering", "sloscale"],
                )
            )
        box.create(namespace, "shared", service_spec())
        active = wait_for(
            lambda: [r for r in replicas if r.controls(namespace, "shared")],
            60,
            "a replica to act",
            *replicas,
        )
        acting_after = time.monotonic() - started
        assert len(active) == 1, "exactly one replica controls the service"
        leader = active[0]
        standby = replicas[1 - replicas.index(leader)]
        standby_calls = recorders[replicas.index(standby)].calls
        start = len(standby_calls)
        wait_for(
            lambda: box.deployment(namespace, "shared"),
            30,
            "the leader to render the workload",
            leader,
        )
        wait_ticks(leader, 4, "a few ticks: the standby keeps its hands off")
        writes = [c for c in standby_calls[start:] if c.write and "/kopfpeerings/" not in c.path]
        assert writes == [], f"the standby wrote: {writes}"
        assert not standby.controls(namespace, "shared")

        stopped = time.monotonic()
        leader.stop()  # SIGTERM: it leaves the peering at once
        wait_for(
            lambda: standby.controls(namespace, "shared"), 60, "the standby to take over", standby
        )
        handover_s = time.monotonic() - stopped
        # The new leader acts: a spec change only it can answer reaches the status.
        generation = box.patch_spec(namespace, "shared", {"replicas": {"max": 3}})["metadata"][
            "generation"
        ]
        took_over = len(standby_calls)
        wait_for(
            lambda: any(c.write and c.path.endswith("/shared/status") for c in standby_calls[took_over:])
            and (box.isvc(namespace, "shared") or {}).get("status", {}).get("observedGeneration") == generation,
            30, "the new leader to write status for the new spec", standby,
        )  # fmt: skip
        # Each replica, peering included, stayed within the chart's rules for a namespaced install.
        for rec in recorders:
            assert forbidden(rec.calls, watched={namespace}, peering=True) == []
    finally:
        for op in replicas:  # before their API goes: a replica leaving the peering says so
            op.stop()
        for rec in recorders:
            rec.close()
    print(
        f"\npeering: {leader.name} acted {acting_after:.0f}s after start, {standby.name} made no write; "
        f"{standby.name} took over {handover_s:.0f}s after {leader.name} stopped and answered a spec change"
    )


def _template_batch(deployment: dict[str, Any]) -> int | None:
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    return next((int(a.split("=")[1]) for a in args if a.startswith("--max-num-seqs=")), None)


def _rolled_out(box: Box, namespace: str, replicas: int, flag: str) -> bool:
    pods = box.pods(namespace, "chat")
    ready = [
        p for p in box.ready_pods(namespace, "chat") if flag in p["spec"]["containers"][0]["args"]
    ]
    return len(pods) == len(ready) == replicas
