"""Conditions on an InferenceService: their types and reasons, derived from one decision.

Each tick the reconciler states, for every condition type, what it believes now
(`ConditionUpdate`); `set_conditions()` folds that into the stored list the way the Kubernetes API
conventions ask: `lastTransitionTime` moves only when the status flips, `observedGeneration` says
which spec the verdict is about. Everything here is pure, so the mapping from a decision to
conditions is tested without an API server.

The six types:

- `Ready` — the summary: the spec is usable, the workload exists and serves (or is scaled to zero).
  False while no pod is ready, or while pods crash-loop (`PodsCrashLooping`) or stay unready past
  the cold-start allowance (`PodsNotReady`): the message names them, with counts. Those pods are
  still counted as coming capacity by the control law, which is what keeps a service from being
  scaled up without end for pods that never come.
- `MetricsAvailable` — the last Prometheus read gave a usable snapshot; when False the operator
  holds both levers (an outage is never read as zero load).
- `ObjectiveMet` — the last evaluation window met the target; Unknown when no request finished.
- `AbleToScale` — the operator can and may move the levers (False in Advisory mode, when the
  target is missing, or when the last write was refused).
- `ScalingLimited` — a bound or rate limit held the recommendation back.
- `Infeasible` — the objective cannot be met: the target is below what one idle replica achieves,
  or it is missed at the replica maximum.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import NamedTuple

from sloscale.resource import Condition, ConditionStatus, format_duration, format_percent
from sloscale.scaling.decision import Decision
from sloscale.scaling.policy import Objective, ObjectiveKind

NAMED_PODS = 5  # pods named in a message; the rest are counted


class ConditionType(StrEnum):
    READY = "Ready"
    METRICS_AVAILABLE = "MetricsAvailable"
    OBJECTIVE_MET = "ObjectiveMet"
    ABLE_TO_SCALE = "AbleToScale"
    SCALING_LIMITED = "ScalingLimited"
    INFEASIBLE = "Infeasible"


class Reason(StrEnum):
    """Reasons the operator itself sets. Reasons from the control law (e.g. `AtMaxReplicas`,
    `TargetBelowFloor`, `Stale`) pass through unchanged."""

    SERVING = "Serving"
    SCALED_TO_ZERO = "ScaledToZero"
    WORKLOAD_NOT_READY = "WorkloadNotReady"
    PODS_CRASH_LOOPING = "PodsCrashLooping"
    PODS_NOT_READY = "PodsNotReady"
    INVALID_SPEC = "InvalidSpec"
    TARGET_NOT_FOUND = "TargetNotFound"
    CONTAINER_NOT_FOUND = "ContainerNotFound"
    TARGET_MET = "TargetMet"
    TARGET_MISSED = "TargetMissed"
    NO_REQUESTS = "NoRequests"
    METRICS_UNAVAILABLE = "MetricsUnavailable"
    ENFORCING = "Enforcing"
    ADVISORY = "Advisory"
    SCALE_FAILED = "ScaleFailed"
    DESIRED_WITHIN_RANGE = "DesiredWithinRange"
    FEASIBLE = "Feasible"


# Reasons that say the spec or its target is unusable: while one holds, nothing is decided.
BLOCKING_REASONS = frozenset(
    {Reason.INVALID_SPEC, Reason.TARGET_NOT_FOUND, Reason.CONTAINER_NOT_FOUND}
)


class ConditionUpdate(NamedTuple):
    """What the reconciler believes of one condition type now."""

    type: ConditionType
    status: ConditionStatus
    reason: str
    message: str


def set_condition(
    conditions: Sequence[Condition], update: ConditionUpdate, now: datetime, generation: int | None
) -> list[Condition]:
    """`conditions` with `update` applied; the transition time is kept while the status holds."""
    return sorted(_applied(conditions, update, now, generation), key=_order)


def _applied(
    conditions: Sequence[Condition], update: ConditionUpdate, now: datetime, generation: int | None
) -> list[Condition]:
    previous = next((c for c in conditions if c.type == update.type), None)
    since = previous.last_transition_time if previous and previous.status == update.status else now
    new = Condition(
        type=update.type,
        status=update.status,
        reason=update.reason,
        message=update.message,
        last_transition_time=since,
        observed_generation=generation,
    )
    return [*(c for c in conditions if c.type != update.type), new]


def set_conditions(
    conditions: Sequence[Condition],
    updates: Iterable[ConditionUpdate],
    now: datetime,
    generation: int | None,
) -> list[Condition]:
    result = list(conditions)
    for update in updates:
        result = _applied(result, update, now, generation)
    return sorted(result, key=_order)  # once: this runs for every service on every tick


_RANK = {kind.value: rank for rank, kind in enumerate(ConditionType)}


def _order(condition: Condition) -> int:
    """Ready first, then the documented order; unknown types (from elsewhere) last."""
    return _RANK.get(str(condition.type), len(_RANK))


def _status(flag: bool) -> ConditionStatus:
    return "True" if flag else "False"


def objective_message(decision: Decision, objective: Objective) -> str:
    """E.g. `p99 TTFT 1.8s > 1s; attainment 97.0%`, or for throughput
    `1520 tok/s, target 2000 tok/s; p99 ITL 80ms <= bound 100ms`."""
    report = decision.objective
    latency = objective.latency
    parts: list[str] = []
    if objective.kind is ObjectiveKind.THROUGHPUT and report.tokens_per_s is not None:
        parts.append(f"{report.tokens_per_s:.0f} tok/s, target {report.target}")
    if report.observed_s is not None:
        within = report.observed_s <= latency.target_s
        bound = "" if objective.kind is ObjectiveKind.LATENCY else "bound "
        parts.append(
            f"{latency.name} {format_duration(report.observed_s)} {'<=' if within else '>'} "
            f"{bound}{format_duration(latency.target_s)}"
        )
    if report.attainment is not None:
        parts.append(f"attainment {format_percent(report.attainment)}")
    return "; ".join(parts) or f"{report.name}: no requests finished in the window"


def decision_conditions(
    decision: Decision,
    objective: Objective,
    *,
    ready: int,
    replicas: int,
    advisory: bool,
    scale_error: str | None = None,
    trouble: PodTrouble | None = None,
) -> list[ConditionUpdate]:
    """The conditions one decision implies. `scale_error` is the API's refusal of the last write;
    `trouble` the pods that crash-loop or never become ready (`Ready` names them)."""
    met = decision.objective.met
    if not decision.metrics_available:
        held = ConditionUpdate(
            ConditionType.OBJECTIVE_MET,
            "Unknown",
            Reason.METRICS_UNAVAILABLE,
            decision.metrics_message,
        )
    elif met is None:
        held = ConditionUpdate(
            ConditionType.OBJECTIVE_MET,
            "Unknown",
            Reason.NO_REQUESTS,
            objective_message(decision, objective),
        )
    else:
        held = ConditionUpdate(
            ConditionType.OBJECTIVE_MET,
            _status(met),
            Reason.TARGET_MET if met else Reason.TARGET_MISSED,
            objective_message(decision, objective),
        )
    if scale_error is not None:
        able = ConditionUpdate(
            ConditionType.ABLE_TO_SCALE, "False", Reason.SCALE_FAILED, scale_error
        )
    elif advisory:
        able = ConditionUpdate(
            ConditionType.ABLE_TO_SCALE,
            "False",
            Reason.ADVISORY,
            "mode is Advisory: decisions are reported in status, events and metrics, never applied",
        )
    else:
        able = ConditionUpdate(
            ConditionType.ABLE_TO_SCALE,
            "True",
            Reason.ENFORCING,
            "replicas move through the scale subresource, the batch through the pod template",
        )
    limited = decision.scaling_limited
    infeasible = decision.infeasible
    return [
        workload_ready(ready=ready, replicas=replicas, trouble=trouble),
        ConditionUpdate(
            ConditionType.METRICS_AVAILABLE,
            _status(decision.metrics_available),
            decision.metrics_reason,
            decision.metrics_message,
        ),
        held,
        able,
        ConditionUpdate(ConditionType.SCALING_LIMITED, "True", limited.reason, limited.message)
        if limited
        else ConditionUpdate(
            ConditionType.SCALING_LIMITED,
            "False",
            Reason.DESIRED_WITHIN_RANGE,
            "the recommendation is within the replica bounds and rate limits",
        ),
        ConditionUpdate(ConditionType.INFEASIBLE, "True", infeasible.reason, infeasible.message)
        if infeasible
        else ConditionUpdate(
            ConditionType.INFEASIBLE,
            "False",
            Reason.FEASIBLE,
            "the objective is within reach of the replica bounds",
        ),
    ]


@dataclass(frozen=True)
class PodTrouble:
    """Pods that will not serve by themselves: crash-looping ones (name, restarts) and ones not
    ready for longer than the allowance (name, seconds not ready)."""

    crash_looping: tuple[tuple[str, int], ...] = ()
    not_ready: tuple[tuple[str, float], ...] = ()
    allowance_s: float = 0.0

    def __bool__(self) -> bool:
        return bool(self.crash_looping or self.not_ready)


def workload_ready(
    *, ready: int, replicas: int, trouble: PodTrouble | None = None
) -> ConditionUpdate:
    """`Ready` from the replica counts and the pods that will not serve by themselves."""
    if replicas == 0:
        return ConditionUpdate(
            ConditionType.READY, "True", Reason.SCALED_TO_ZERO, "scaled to zero: no traffic"
        )
    counts = f"{ready}/{replicas} replicas ready"
    if trouble:
        reason = Reason.PODS_CRASH_LOOPING if trouble.crash_looping else Reason.PODS_NOT_READY
        return ConditionUpdate(
            ConditionType.READY, "False", reason, f"{counts}; {trouble_message(trouble)}"
        )
    if ready == 0:
        return ConditionUpdate(ConditionType.READY, "False", Reason.WORKLOAD_NOT_READY, counts)
    return ConditionUpdate(ConditionType.READY, "True", Reason.SERVING, counts)


def trouble_message(trouble: PodTrouble) -> str:
    """E.g. `1 pod crash-looping: chat-7d9f (3 restarts); 2 pods not ready after the 4m cold-start
    allowance: chat-x2 (5m10s), chat-k8 (4m2s)`."""
    parts = []
    if trouble.crash_looping:
        named = [f"{name} ({restarts} restarts)" for name, restarts in trouble.crash_looping]
        parts.append(f"{_pods(len(named))} crash-looping: {_names(named)}")
    if trouble.not_ready:
        named = [f"{name} ({format_duration(math.ceil(s))})" for name, s in trouble.not_ready]
        allowance = format_duration(trouble.allowance_s)
        parts.append(
            f"{_pods(len(named))} not ready after the {allowance} cold-start allowance: "
            f"{_names(named)}"
        )
    return "; ".join(parts)


def _pods(n: int) -> str:
    return f"{n} pod" if n == 1 else f"{n} pods"


def _names(named: list[str]) -> str:
    more = len(named) - NAMED_PODS
    return ", ".join(named[:NAMED_PODS]) + (f" and {more} more" if more > 0 else "")


def blocked_conditions(reason: Reason, message: str) -> list[ConditionUpdate]:
    """The conditions while the spec or its target is unusable: Ready and AbleToScale say why,
    the rest are Unknown because nothing was evaluated."""
    unknown = f"not evaluated: {message}"
    return [
        ConditionUpdate(ConditionType.READY, "False", reason, message),
        ConditionUpdate(ConditionType.METRICS_AVAILABLE, "Unknown", reason, unknown),
        ConditionUpdate(ConditionType.OBJECTIVE_MET, "Unknown", reason, unknown),
        ConditionUpdate(ConditionType.ABLE_TO_SCALE, "False", reason, message),
        ConditionUpdate(ConditionType.SCALING_LIMITED, "Unknown", reason, unknown),
        ConditionUpdate(ConditionType.INFEASIBLE, "Unknown", reason, unknown),
    ]
