"""Prometheus fails in every way it can; the operator holds, says why, and recovers without a jump.

An autoscaler that reads an outage as zero load scales everything to its minimum at peak (KEDA
#3065). Here a loaded service (`busy`, scaled up by its load) and an idle one (`idle`, pinned at 3
replicas, then allowed down to 1 just as Prometheus goes away) live through, back to back:

1. Prometheus down (connection refused),
2. Prometheus answering 503,
3. NaN samples,
4. stale samples (Prometheus stops scraping the pods),

then recovery. Throughout, neither service's replicas move and `MetricsAvailable` is False with
the matching reason and a message (the replicas are taken when the operator first sees the
outage); after recovery the loaded service moves at most one step (no jump), and the idle one —
now truly at zero traffic — scales down to its minimum. The load generator counts no
failed request. The figures measured are printed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from faults_support import (
    Box,
    Load,
    OperatorProcess,
    PrometheusGate,
    condition,
    failures,
    service_spec,
    wait_for,
    wait_ticks,
)

WINDOW_S = 30.0  # the objective's window: the operator scales nothing down before it has seen one


def test_prometheus_outages_hold_both_levers_and_real_zero_traffic_still_scales_down(
    box: Box, namespace: str, operators: Callable[..., OperatorProcess], gate: PrometheusGate
) -> None:
    box.create(namespace, "busy", service_spec())
    box.create(namespace, "idle", service_spec(replicas={"min": 3, "max": 4}))
    op = operators("operator", namespace, prometheus_url=gate.url)
    started = time.monotonic()
    busy_url = wait_for(
        lambda: (
            box.router(namespace, "busy")
            and box.ready_pods(namespace, "busy")
            and box.router(namespace, "busy")
        ),
        60,
        "busy's first pod",
        op,
    )
    load = Load(busy_url, 12.0)

    # The load needs more than one replica; the idle service sits at its pinned three.
    wait_for(lambda: (box.replicas(namespace, "busy") or 0) >= 2, 60, "busy to scale up", op)
    wait_for(lambda: len(box.ready_pods(namespace, "idle")) == 3, 60, "idle's three pods", op)
    # Past the first window a scale-down would be allowed: holding from here on is a decision.
    time.sleep(max(0.0, WINDOW_S + 2 - (time.monotonic() - started)))
    wait_for(lambda: _steady(box, namespace, "busy"), 60, "busy to settle", op)

    held: dict[str, int | None] = {}  # the replicas when the operator first saw the outage
    checks: list[tuple[str, int | None, int | None]] = []

    def hold_through(phase: str, reason: str, words: str) -> None:
        """Wait until both services report `reason`, checking the replicas never move meanwhile."""

        def reported() -> bool:
            now = {n: box.replicas(namespace, n) for n in ("busy", "idle")}
            available = [condition(box.isvc(namespace, n), "MetricsAvailable") for n in now]
            seen = all(
                c.get("reason") == reason and words in c.get("message", "") for c in available
            )
            if held:
                checks.append((phase, now["busy"], now["idle"]))
                assert now == held, f"replicas moved during '{phase}': {now}, held at {held}"
            elif seen:
                held.update(now)
            return seen

        wait_for(reported, 30, f"MetricsAvailable reason {reason} during '{phase}'", op)
        condition_now = condition(box.isvc(namespace, "busy"), "MetricsAvailable")
        assert condition_now["status"] == "False" and words in condition_now["message"], (
            condition_now
        )
        assert condition(box.isvc(namespace, "busy"), "ObjectiveMet")["status"] == "Unknown"
        ticks = op.ticks()
        wait_for(lambda: op.ticks() >= ticks + 2 and reported(), 15, "two more ticks held", op)
        print(
            f"  {phase}: MetricsAvailable=False {reason}: {condition_now['message']!r}; replicas held at {held}"
        )

    outage_started = time.monotonic()
    gate.set_mode("down")
    hold_through("Prometheus down", "QueryFailed", "cannot connect")
    assert held["idle"] == 3
    print(f"\nthe outage began with busy at {held['busy']} replicas under 12 req/s, idle at 3")
    box.patch_spec(namespace, "idle", {"replicas": {"min": 1}})  # now only missing data holds it
    gate.set_mode("error")
    hold_through("Prometheus answering 503", "QueryFailed", "kept answering 5xx")
    gate.set_mode("nan")
    hold_through("NaN samples", "Malformed", "not a usable value")

    # Stale: Prometheus stops scraping this namespace's pods (their targets go), the pods go on.
    targets = box.targets_file.read_text()
    kept = [t for t in json.loads(targets) if t["labels"].get("namespace") != namespace]
    box.targets_file.write_text(json.dumps(kept))
    wait_for(
        lambda: not box.prometheus(f'up{{namespace="{namespace}"}}'),
        30,
        "Prometheus to drop the targets",
        op,
    )
    gate.set_mode("pass")
    hold_through("stale samples", "Stale", "has reported for")
    outage_s = time.monotonic() - outage_started

    box.targets_file.write_text(targets)
    recovered = time.monotonic()
    wait_for(
        lambda: condition(box.isvc(namespace, "busy"), "MetricsAvailable").get("status") == "True",
        60,
        "metrics to come back",
        op,
    )
    back_after = time.monotonic() - recovered
    # No jump: over the next ticks the loaded service moves at most one step (its rate limit) ...
    after: list[int | None] = []
    wait_ticks(
        op,
        5,
        "five ticks after recovery",
        check=lambda: after.append(box.replicas(namespace, "busy")),
    )
    assert held["busy"] is not None and all(
        r is not None and abs(r - held["busy"]) <= 1 for r in after
    ), after
    # ... and real zero traffic still scales the idle one down to its minimum.
    wait_for(lambda: box.replicas(namespace, "idle") == 1, 60, "idle to scale down to 1", op)
    idle = box.isvc(namespace, "idle")
    assert condition(idle, "MetricsAvailable")["reason"] == "ZeroTraffic"
    assert idle is not None and idle["status"]["lastDecision"]["action"] == "ScaleDown"

    report = load.stop()
    summary = report.summary()
    print(
        f"  outage of {outage_s:.0f}s ({len(checks)} checks): replicas never moved; metrics back "
        f"{back_after:.0f}s after Prometheus; busy then {sorted(set(after))} (from {held['busy']}); "
        f"idle 3→1 on real zero traffic; load: {summary['requests']} requests, {summary['failed']} failed"
    )
    assert summary["failed"] == 0, failures(report)


def _steady(box: Box, namespace: str, name: str) -> int | None:
    """The replica count once all its pods are ready and the operator wants no other."""
    body = box.isvc(namespace, name) or {}
    replicas = (body.get("status") or {}).get("replicas") or {}
    current = box.replicas(namespace, name)
    ready = len(box.ready_pods(namespace, name))
    if current and replicas.get("desired") == current == ready:
        return current
    return None
