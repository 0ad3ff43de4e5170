"""Kubernetes Events the operator emits: one enum of reasons, emitted on transitions only.

Events are short-lived and rate-limited by the API server, so the durable record is the status;
events tell an SRE watching `kubectl describe` or `kubectl get events` *that* something changed
and with which numbers, e.g. `ScaledUp: replicas 2→4: p99 TTFT 1.8s > 1s; queue 37`.

Two sources, both pure functions of before/after so they are tested without an API server:

- `lever_events()` — a lever moved (ScaledUp/Down, BatchIncreased/Decreased), or, in Advisory
  mode, the recommendation changed (`Recommendation`). A hold emits nothing.
- `condition_events()` — a condition's status flipped (or, for spec and target problems, its
  message changed because a different mistake replaced the first; for pods that crash-loop or
  never become ready, `Ready` took that reason). Steady states emit nothing,
  however long they last, and neither does a limit whose reason alternates (rate limit one tick,
  replica maximum the next): the status shows the current reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from sloscale.conditions import BLOCKING_REASONS, ConditionType, Reason
from sloscale.resource import Condition
from sloscale.scaling.decision import Action, Decision


class EventType(StrEnum):
    NORMAL = "Normal"
    WARNING = "Warning"


class EventReason(StrEnum):
    SCALED_UP = "ScaledUp"
    SCALED_DOWN = "ScaledDown"
    BATCH_INCREASED = "BatchIncreased"
    BATCH_DECREASED = "BatchDecreased"
    RECOMMENDATION = "Recommendation"  # Advisory mode: what Enforce would have done
    WORKLOAD_CREATED = "WorkloadCreated"
    WORKLOAD_UPDATED = "WorkloadUpdated"
    METRICS_UNAVAILABLE = "MetricsUnavailable"
    METRICS_RESTORED = "MetricsRestored"
    OBJECTIVE_MISSED = "ObjectiveMissed"
    OBJECTIVE_RESTORED = "ObjectiveRestored"
    SCALING_LIMITED = "ScalingLimited"
    INFEASIBLE = "Infeasible"
    FEASIBLE = "Feasible"
    SCALE_FAILED = "ScaleFailed"
    INVALID_SPEC = "InvalidSpec"
    TARGET_NOT_FOUND = "TargetNotFound"
    CONTAINER_NOT_FOUND = "ContainerNotFound"
    PODS_CRASH_LOOPING = "PodsCrashLooping"
    PODS_NOT_READY = "PodsNotReady"


@dataclass(frozen=True)
class Event:
    type: EventType
    reason: EventReason
    message: str


def _lever_message(decision: Decision, own: tuple[Action, ...], change: str) -> str:
    """The decision's message when it is about this lever (it already says `a→b`), else both."""
    return decision.message if decision.action in own else f"{change}; {decision.message}"


def lever_events(
    decision: Decision,
    *,
    replicas_before: int,
    batch_before: int | None,
    advisory: bool,
    recommended_before: tuple[int | None, int | None] = (None, None),
) -> list[Event]:
    """Events for lever moves. In Enforce mode `decision` was applied; in Advisory mode it was not,
    and `recommended_before` (the desired values in the previous status) keeps a standing
    recommendation from being repeated every tick."""
    replicas_change = f"replicas {replicas_before}→{decision.replicas}"
    batch_moves = decision.max_num_seqs is not None and decision.max_num_seqs != batch_before
    batch_change = f"max-num-seqs {batch_before}→{decision.max_num_seqs}"
    if advisory:
        recommended = (decision.replicas, decision.max_num_seqs)
        moves = [
            c
            for c, moved in (
                (replicas_change, decision.replicas != replicas_before),
                (batch_change, batch_moves),
            )
            if moved
        ]
        if not moves or recommended == recommended_before:
            return []
        return [
            Event(
                EventType.NORMAL,
                EventReason.RECOMMENDATION,
                f"Advisory, not applied: {', '.join(moves)}: {decision.message}",
            )
        ]
    events: list[Event] = []
    if decision.replicas != replicas_before:
        up = decision.replicas > replicas_before
        events.append(
            Event(
                EventType.NORMAL,
                EventReason.SCALED_UP if up else EventReason.SCALED_DOWN,
                _lever_message(decision, (Action.SCALE_UP, Action.SCALE_DOWN), replicas_change),
            )
        )
    if batch_moves:
        assert decision.max_num_seqs is not None
        up = batch_before is None or decision.max_num_seqs > batch_before
        events.append(
            Event(
                EventType.NORMAL,
                EventReason.BATCH_INCREASED if up else EventReason.BATCH_DECREASED,
                _lever_message(
                    decision,
                    (Action.BATCH_UP, Action.BATCH_DOWN),
                    batch_change + " (rolling update)",
                ),
            )
        )
    return events


# (condition type, new status) → the event a flip into that status emits.
_FLIPS: dict[tuple[ConditionType, str], tuple[EventType, EventReason]] = {
    (ConditionType.METRICS_AVAILABLE, "False"): (
        EventType.WARNING,
        EventReason.METRICS_UNAVAILABLE,
    ),
    (ConditionType.METRICS_AVAILABLE, "True"): (EventType.NORMAL, EventReason.METRICS_RESTORED),
    (ConditionType.OBJECTIVE_MET, "False"): (EventType.WARNING, EventReason.OBJECTIVE_MISSED),
    (ConditionType.OBJECTIVE_MET, "True"): (EventType.NORMAL, EventReason.OBJECTIVE_RESTORED),
    (ConditionType.SCALING_LIMITED, "True"): (EventType.WARNING, EventReason.SCALING_LIMITED),
    (ConditionType.INFEASIBLE, "True"): (EventType.WARNING, EventReason.INFEASIBLE),
    (ConditionType.INFEASIBLE, "False"): (EventType.NORMAL, EventReason.FEASIBLE),
}
# Recoveries are news only after the opposite was reported; a first True is the normal start.
_RECOVERIES = {EventReason.METRICS_RESTORED, EventReason.OBJECTIVE_RESTORED, EventReason.FEASIBLE}
_BLOCKING_EVENTS = {
    Reason.INVALID_SPEC: EventReason.INVALID_SPEC,
    Reason.TARGET_NOT_FOUND: EventReason.TARGET_NOT_FOUND,
    Reason.CONTAINER_NOT_FOUND: EventReason.CONTAINER_NOT_FOUND,
}
# Pods that will not serve by themselves: a Warning naming them when `Ready` first says so.
_POD_EVENTS = {
    Reason.PODS_CRASH_LOOPING: EventReason.PODS_CRASH_LOOPING,
    Reason.PODS_NOT_READY: EventReason.PODS_NOT_READY,
}


def condition_events(before: Sequence[Condition], after: Sequence[Condition]) -> list[Event]:
    """Events for the conditions that changed between two statuses."""
    previous = {c.type: c for c in before}
    events: list[Event] = []
    for condition in after:
        old = previous.get(condition.type)
        if condition.type == ConditionType.READY and condition.reason in BLOCKING_REASONS:
            if old is None or (old.reason, old.message) != (condition.reason, condition.message):
                reason = _BLOCKING_EVENTS[Reason(condition.reason)]
                events.append(Event(EventType.WARNING, reason, condition.message))
            continue
        if condition.type == ConditionType.READY and condition.reason in _POD_EVENTS:
            if old is None or old.reason != condition.reason:
                reason = _POD_EVENTS[Reason(condition.reason)]
                events.append(Event(EventType.WARNING, reason, condition.message))
            continue
        if (
            condition.type == ConditionType.ABLE_TO_SCALE
            and condition.reason == Reason.SCALE_FAILED
        ):
            if old is None or old.reason != condition.reason:
                events.append(Event(EventType.WARNING, EventReason.SCALE_FAILED, condition.message))
            continue
        if condition.type not in set(ConditionType):
            continue
        flip = _FLIPS.get((ConditionType(condition.type), condition.status))
        if flip is None or (old is not None and old.status == condition.status):
            continue  # a new reason or new numbers under the same status are status news, not events
        if flip[1] in _RECOVERIES and (old is None or old.status == "Unknown"):
            continue
        events.append(Event(flip[0], flip[1], condition.message))
    return events
