"""Decisions and snapshots as the control law hands them over, built for situations in tests."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from sloscale.scaling.decision import Action, Decision, ObjectiveReport, StageOutcome
from sloscale.scaling.policy import LatencyMetric, LatencyTarget, Objective, ObjectiveKind, Policy
from sloscale.scaling.snapshot import Histogram, MetricsSnapshot

INF = math.inf
TTFT_1S = Policy(
    objective=Objective(ObjectiveKind.LATENCY, LatencyTarget(LatencyMetric.TTFT, 0.99, 1.0)),
    min_replicas=1,
    max_replicas=8,
)
THROUGHPUT = Policy(
    objective=Objective(
        ObjectiveKind.THROUGHPUT, LatencyTarget(LatencyMetric.ITL, 0.99, 0.1), tokens_per_s=2000.0
    ),
    min_replicas=1,
    max_replicas=8,
)


def decision(**overrides: Any) -> Decision:
    """A scale-up from 2 to 4 on queueing delay, metrics fresh, objective missed."""
    base = Decision(
        replicas=4,
        max_num_seqs=64,
        action=Action.SCALE_UP,
        reason="QueueingDelay",
        message="replicas 2→4: p99 TTFT 1.8s > 1s; queue 37; capacity 21 req/s per replica",
        stages=(StageOutcome("Recommend", "QueueingDelay", "queue 37"),),
        objective=ObjectiveReport(
            name="p99 TTFT",
            target="1s",
            observed_s=1.8,
            tokens_per_s=900.0,
            met=False,
            attainment=0.97,
            error_budget_remaining=0.4,
        ),
        metrics_available=True,
        metrics_reason="Fresh",
        metrics_message="3 pods reporting",
        cold_start_s=95.0,
    )
    return replace(base, **overrides)


def hold(**overrides: Any) -> Decision:
    return decision(
        **{
            "replicas": 2,
            "action": Action.HOLD,
            "reason": "ObjectiveHeld",
            "message": "holding 2 replicas",
            **overrides,
        }
    )


def histogram(*points: tuple[float, float]) -> Histogram:
    """Cumulative (bound, count) points; +Inf is appended with the last count."""
    bounds = tuple(b for b, _ in points) + (INF,)
    counts = tuple(c for _, c in points) + (points[-1][1],)
    return Histogram(bounds, counts)


def snapshot(**overrides: Any) -> MetricsSnapshot:
    """10 req/s: every quantile lands in a known bucket (0.5s for TTFT p99, 0.25s queue, 40ms ITL)."""
    base = MetricsSnapshot(
        taken_at=1_767_261_600.0,  # 2026-01-01T10:00:00Z
        window_s=60.0,
        pods_reporting=2,
        requests_per_s=10.0,
        prompt_tokens_per_s=5000.0,
        generation_tokens_per_s=1234.5,
        running=20.0,
        waiting=36.6,
        kv_usage=0.4,
        preemptions_per_s=0.0,
        ttft=histogram((0.1, 0.0), (0.5, 10.0)),
        itl=histogram((0.02, 0.0), (0.04, 10.0)),
        e2e=histogram((5.0, 10.0)),
        queue_time=histogram((0.1, 0.0), (0.25, 10.0)),
        prefill_time=histogram((0.1, 0.0), (0.2, 10.0)),
    )
    return replace(base, **overrides)
