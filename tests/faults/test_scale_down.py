"""Nothing is lost on scale-down: repeated scale-downs and a batch-change rollout under load.

A service runs four replicas under a steady load that keeps every pod busy with streaming
requests. The operator then takes it down one replica at a time (4→3→2, as its bounds are lowered),
changes the batch (a rolling restart of every pod, one surge pod at a time), and takes it down once
more (2→1). Every pod removed leaves its Service's router first, then drains what it was serving
within its grace period. The load generator counts every request: none may fail — no refused
connection, no error status, no stream cut short.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from faults_support import Box, Load, OperatorProcess, failures, service_spec, wait_for


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
