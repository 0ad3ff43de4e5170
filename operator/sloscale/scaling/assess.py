"""Stage 1, assess metrics: fresh, real zero traffic, or unusable (hold).

An outage is never zero load: a `MetricsUnavailable` — or a snapshot whose numbers cannot be
trusted (NaN or negative rates) — makes the whole decision hold replicas and batch exactly.
Zero traffic is a real, fresh observation (pods answer, nothing arrives, runs or waits).
"""

from __future__ import annotations

import math

from sloscale.scaling.decision import StageOutcome
from sloscale.scaling.fmt import number
from sloscale.scaling.reasons import Reason, Stage
from sloscale.scaling.snapshot import (
    MetricsSnapshot,
    MetricsUnavailable,
    Observation,
    Unavailability,
)


def malformed(snapshot: MetricsSnapshot) -> str | None:
    """Why the snapshot's numbers cannot be used, or None when they can."""
    gauges = {
        "requests_per_s": snapshot.requests_per_s,
        "prompt_tokens_per_s": snapshot.prompt_tokens_per_s,
        "generation_tokens_per_s": snapshot.generation_tokens_per_s,
        "running": snapshot.running,
        "waiting": snapshot.waiting,
    }
    for name, value in gauges.items():
        if not math.isfinite(value) or value < 0.0:
            return f"{name} is {value}"
    return None


def assess_metrics(
    observation: Observation,
) -> tuple[MetricsSnapshot | MetricsUnavailable, StageOutcome]:
    """The snapshot to decide on, or why there is none."""
    metrics = observation.metrics
    if isinstance(metrics, MetricsUnavailable):
        return metrics, StageOutcome(
            Stage.ASSESS, Reason.METRICS_UNAVAILABLE, f"{metrics.reason.value}: {metrics.message}"
        )
    problem = malformed(metrics)
    if problem is not None:
        unusable = MetricsUnavailable(Unavailability.MALFORMED, problem)
        return unusable, StageOutcome(
            Stage.ASSESS, Reason.METRICS_UNAVAILABLE, f"Malformed: {problem}"
        )
    if metrics.zero_traffic:
        return metrics, StageOutcome(
            Stage.ASSESS,
            Reason.ZERO_TRAFFIC,
            f"no requests arriving, running or waiting on {metrics.pods_reporting} pods",
        )
    return metrics, StageOutcome(
        Stage.ASSESS,
        Reason.FRESH,
        f"{number(metrics.requests_per_s)} req/s, running {number(metrics.running)}, "
        f"waiting {number(metrics.waiting)} on {metrics.pods_reporting} pods",
    )
