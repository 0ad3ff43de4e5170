"""Building the InferenceService status from one tick, purely.

The status is the durable account of the control loop (events expire): where the levers are and
where the last decision wants them, the objective and how well it is held, a summary of the last
metrics snapshot with the queue / prefill / per-token breakdown that tells capacity problems from
batch problems, the last decision that changed something and why, and the conditions.

Not every tick's status is written (`needs_write`): what happened — a lever moved, a decision, a
condition's status, reason or wording, a new generation — is written at once; readings alone (the
snapshot summary, attainment, the numbers quoted in condition messages) move every tick under
real traffic and are rewritten at most once per refresh period, as the kubelet reports an
unchanged node status only every few minutes. N services then cost N writes (and N watch events
for every watcher) per tick only when N things happen.

`lastScaleTime` and `lastBatchChangeTime` are the only fields the control law reads back: after an
operator restart they seed its state, so that cooldowns and scale-down pacing survive restarts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from sloscale.conditions import (
    ConditionUpdate,
    PodTrouble,
    decision_conditions,
    set_conditions,
)
from sloscale.resource import (
    BatchStatus,
    InferenceServiceStatus,
    LastDecision,
    ObjectiveStatus,
    ObservedStatus,
    ReplicasStatus,
    format_duration,
    format_percent,
)
from sloscale.scaling.decision import Action, Decision
from sloscale.scaling.policy import ObjectiveKind, Policy
from sloscale.scaling.snapshot import (
    Histogram,
    MetricsSnapshot,
    MetricsUnavailable,
    WorkloadObservation,
)


def to_time(epoch_s: float) -> datetime:
    """Status times are RFC 3339 with whole seconds, as the API server writes its own."""
    return datetime.fromtimestamp(epoch_s, UTC).replace(microsecond=0)


def to_epoch(moment: datetime | None) -> float | None:
    return moment.timestamp() if moment is not None else None


@dataclass(frozen=True)
class Applied:
    """Where the levers stand after the tick's writes (equal to before in Advisory mode or on error)."""

    replicas: int
    max_num_seqs: int | None
    scale_error: str | None = None


def _quantile(histogram: Histogram, q: float) -> str | None:
    value = histogram.quantile(q)
    return format_duration(value) if value is not None else None


def observed_summary(
    metrics: MetricsSnapshot, decision: Decision, policy: Policy, *, cold_start_s: float | None
) -> ObservedStatus:
    """The snapshot in a few strings: the objective's metric, rates, queue, and the breakdown at
    the objective's percentile (queue time: replicas fix it; inter-token latency: a smaller batch)."""
    q = policy.objective.latency.quantile
    report = decision.objective
    value: str | None
    if policy.objective.kind is ObjectiveKind.THROUGHPUT:
        value = f"{metrics.generation_tokens_per_s:.0f} tok/s"
    else:
        value = format_duration(report.observed_s) if report.observed_s is not None else None
    return ObservedStatus(
        value=value,
        tokens_per_second=f"{metrics.generation_tokens_per_s:.1f}",
        requests_per_second=f"{metrics.requests_per_s:.2f}",
        queue=round(metrics.waiting),
        queue_time=_quantile(metrics.queue_time, q),
        prefill_time=_quantile(metrics.prefill_time, q),
        inter_token_latency=_quantile(metrics.itl, q),
        cold_start=format_duration(cold_start_s) if cold_start_s is not None else None,
        time=to_time(metrics.taken_at),
    )


def build_status(
    previous: InferenceServiceStatus,
    *,
    decision: Decision,
    policy: Policy,
    metrics: MetricsSnapshot | MetricsUnavailable,
    seen: WorkloadObservation,
    applied: Applied,
    advisory: bool,
    generation: int | None,
    now: float,
    trouble: PodTrouble | None = None,
) -> InferenceServiceStatus:
    moment = to_time(now)
    scaled = applied.replicas != seen.replicas
    batch_changed = applied.max_num_seqs != seen.max_num_seqs
    report = decision.objective
    observed = previous.observed
    if isinstance(metrics, MetricsSnapshot):
        observed = observed_summary(metrics, decision, policy, cold_start_s=decision.cold_start_s)
    elif observed is not None and decision.cold_start_s is not None:
        # An outage keeps the last snapshot (its time shows its age); the cold start is still known.
        observed = observed.model_copy(
            update={"cold_start": format_duration(decision.cold_start_s)}
        )
    last_decision = previous.last_decision
    if advisory:
        # Nothing moves in Advisory mode: the last decision is the last *new* recommendation.
        before = (
            previous.replicas.desired if previous.replicas else None,
            previous.batch.desired if previous.batch else None,
        )
        moved = (
            decision.action is not Action.HOLD
            and (decision.replicas, decision.max_num_seqs) != before
        )
    else:
        moved = scaled or batch_changed
    if moved:
        last_decision = LastDecision(
            time=moment,
            action=decision.action.value,
            replicas=decision.replicas,
            max_num_seqs=decision.max_num_seqs,
            reason=f"{decision.reason}: {decision.message}",
        )
    updates: list[ConditionUpdate] = decision_conditions(
        decision,
        policy.objective,
        ready=seen.ready,
        replicas=applied.replicas,
        advisory=advisory,
        scale_error=applied.scale_error,
        trouble=trouble,
    )
    return InferenceServiceStatus(
        observed_generation=generation,
        replicas=ReplicasStatus(
            current=applied.replicas, ready=seen.ready, desired=decision.replicas
        ),
        batch=BatchStatus(current=applied.max_num_seqs, desired=decision.max_num_seqs),
        objective=ObjectiveStatus(
            name=report.name,
            target=report.target,
            met=report.met,
            attainment=format_percent(report.attainment) if report.attainment is not None else None,
            error_budget_remaining=(
                format_percent(report.error_budget_remaining)
                if report.error_budget_remaining is not None
                else None
            ),
        ),
        observed=observed,
        last_decision=last_decision,
        last_scale_time=moment if scaled else previous.last_scale_time,
        last_batch_change_time=moment if batch_changed else previous.last_batch_change_time,
        conditions=set_conditions(previous.conditions, updates, moment, generation),
    )


def blocked_status(
    previous: InferenceServiceStatus,
    updates: list[ConditionUpdate],
    *,
    generation: int | None,
    now: float,
) -> InferenceServiceStatus:
    """The status while the spec or its target is unusable: only the conditions and generation move."""
    return previous.model_copy(
        update={
            "observed_generation": generation,
            "conditions": set_conditions(previous.conditions, updates, to_time(now), generation),
        }
    )


_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def gist(status: InferenceServiceStatus) -> InferenceServiceStatus:
    """`status` without its readings: what changes only when something happens."""
    objective = status.objective
    if objective is not None:
        objective = objective.model_copy(
            update={"attainment": None, "error_budget_remaining": None}
        )
    conditions = [
        c.model_copy(update={"message": _NUMBER.sub("#", c.message)}) for c in status.conditions
    ]
    return status.model_copy(
        update={"observed": None, "objective": objective, "conditions": conditions}
    )


def needs_write(
    status: InferenceServiceStatus,
    written: InferenceServiceStatus,
    *,
    since_write_s: float | None,
    refresh_s: float,
) -> bool:
    """Whether `status` must be written over `written`, the status last written `since_write_s`
    ago (None: never by this instance, which then writes at once — a restart or a peer taking
    over shows itself). Changes beyond the readings are written at once, readings after
    `refresh_s`."""
    if status == written:
        return False
    if since_write_s is None or gist(status) != gist(written):
        return True
    return since_write_s >= refresh_s
