"""What one decision says: the levers' new positions and why, stage by stage.

Every condition and event the operator writes is derived from these fields, never from ad-hoc
strings at the call site.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Action(StrEnum):
    HOLD = "Hold"
    SCALE_UP = "ScaleUp"
    SCALE_DOWN = "ScaleDown"
    BATCH_UP = "BatchUp"
    BATCH_DOWN = "BatchDown"


@dataclass(frozen=True)
class StageOutcome:
    """One pipeline stage's verdict: a CamelCase reason and a message carrying its numbers."""

    stage: str
    reason: str
    message: str


@dataclass(frozen=True)
class ObjectiveReport:
    """How the objective stands. None where the window held no requests."""

    name: str  # "p99 TTFT" or "tokens/s"
    target: str  # "1s", "2000 tok/s"
    observed_s: float | None  # the objective's latency percentile now
    tokens_per_s: float | None  # output tokens/s now
    met: bool | None
    attainment: float | None  # share of evaluation windows met so far
    error_budget_remaining: float | None  # share of (1 - goal) not yet spent


@dataclass(frozen=True)
class Decision:
    replicas: int
    # Batching on: within its bounds with fresh metrics, save while a rollout holds an
    # out-of-bounds template as it is. Batching off or metrics missing: the template's value
    # (None where it sets none), never changed.
    max_num_seqs: int | None
    action: Action
    reason: str  # the deciding stage's reason, e.g. "QueueingDelay"
    message: str  # e.g. "replicas 2→4: p99 TTFT 1.8s > 1s; queue 37; capacity 21 req/s per replica"
    stages: tuple[StageOutcome, ...]
    objective: ObjectiveReport
    metrics_available: bool
    metrics_reason: str  # "Fresh", "ZeroTraffic", or an Unavailability value
    metrics_message: str
    scaling_limited: StageOutcome | None = None  # a bound or rate limit bound the recommendation
    infeasible: StageOutcome | None = None  # the objective cannot be met (floor or max replicas)
    cold_start_s: float | None = None  # the cold start the look-ahead used
    capacity_rps_per_replica: float | None = None  # predicted at the chosen batch
