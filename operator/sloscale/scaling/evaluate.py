"""Stage 3, evaluate the objective: is it met now, how is attainment, and what is the cause?

Two causes are told apart and never collapsed into one number:

* **queueing** — requests wait in the engine queue (`waiting`, or the queue-time percentile is a
  visible share of the target): capacity is short, replicas are the lever;
* **per-token** — steps are slow with no queueing (the ITL percentile over an ITL target, or an
  E2E objective missed without queueing): the batch is too large for the target.

A throughput objective is judged on its latency bound; its tokens/s is reported alongside.
"""

from __future__ import annotations

from dataclasses import dataclass

from sloscale.scaling.attainment import attainment, error_budget_remaining
from sloscale.scaling.decision import ObjectiveReport, StageOutcome
from sloscale.scaling.fmt import number, seconds
from sloscale.scaling.policy import LatencyMetric, ObjectiveKind, Policy
from sloscale.scaling.readings import objective_histogram, quantile_floor
from sloscale.scaling.reasons import Reason, Stage
from sloscale.scaling.snapshot import MetricsSnapshot
from sloscale.scaling.state import ControlState

QUEUE_SHARE_OF_TARGET = 0.1  # queue time above this share of the target is a capacity signal
MIN_QUEUE_S = 0.05  # ... and above this in absolute terms (buckets are coarse below)
MIN_WAITING = 1.0


@dataclass(frozen=True)
class Evaluation:
    observed_s: float | None  # the objective's (or bound's) percentile now
    met: bool | None  # None when no requests were observed
    ratio: float | None  # observed ÷ target
    queue_s: float | None  # queue-time percentile, its bucket's lower edge (see quantile_floor)
    itl_s: float | None  # ITL percentile
    waiting: float
    queueing: bool
    per_token: bool
    report: ObjectiveReport


def describe(policy: Policy) -> tuple[str, str]:
    """The objective's name and target as status shows them."""
    bound = policy.objective.latency
    if policy.objective.kind is ObjectiveKind.THROUGHPUT:
        rate = (
            "max"
            if policy.objective.tokens_per_s is None
            else number(policy.objective.tokens_per_s)
        )
        return "tokens/s", f"{rate} tok/s with {bound.name} ≤ {seconds(bound.target_s)}"
    return bound.name, seconds(bound.target_s)


def is_queueing(waiting: float, queue_s: float | None, target_s: float) -> bool:
    """Requests wait for a batch slot: a capacity shortage."""
    if waiting >= MIN_WAITING:
        return True
    return queue_s is not None and queue_s >= max(MIN_QUEUE_S, QUEUE_SHARE_OF_TARGET * target_s)


def is_per_token(
    metric: LatencyMetric, itl_s: float | None, target_s: float, met: bool | None, queueing: bool
) -> bool:
    """Steps themselves are too slow, with no queueing to blame."""
    if queueing:
        return False
    if metric is LatencyMetric.ITL:
        return itl_s is not None and itl_s > target_s
    return metric is LatencyMetric.E2E and met is False


def unavailable_report(policy: Policy, state: ControlState) -> ObjectiveReport:
    name, target = describe(policy)
    goal = policy.objective.latency.attainment_goal
    return ObjectiveReport(
        name,
        target,
        None,
        None,
        None,
        attainment(state.attainment),
        error_budget_remaining(state.attainment, goal),
    )


def evaluate(
    snapshot: MetricsSnapshot, policy: Policy, state: ControlState
) -> tuple[Evaluation, StageOutcome]:
    bound = policy.objective.latency
    observed = objective_histogram(snapshot, bound.metric).quantile(bound.quantile)
    met = None if observed is None else observed <= bound.target_s
    queue_s = quantile_floor(snapshot.queue_time, bound.quantile)
    itl_s = snapshot.itl.quantile(bound.quantile)
    queueing = is_queueing(snapshot.waiting, queue_s, bound.target_s)
    per_token = is_per_token(bound.metric, itl_s, bound.target_s, met, queueing)
    name, target = describe(policy)
    share = attainment(state.attainment)
    report = ObjectiveReport(
        name=name,
        target=target,
        observed_s=observed,
        tokens_per_s=snapshot.generation_tokens_per_s,
        met=met,
        attainment=share,
        error_budget_remaining=error_budget_remaining(state.attainment, bound.attainment_goal),
    )
    evaluation = Evaluation(
        observed_s=observed,
        met=met,
        ratio=None if observed is None else observed / bound.target_s,
        queue_s=queue_s,
        itl_s=itl_s,
        waiting=snapshot.waiting,
        queueing=queueing,
        per_token=per_token,
        report=report,
    )
    if observed is None:
        return evaluation, StageOutcome(
            Stage.EVALUATE, Reason.NO_REQUESTS, f"no requests: {bound.name} unobserved"
        )
    relation = "≤" if met else ">"
    message = f"{bound.name} {seconds(observed)} {relation} {seconds(bound.target_s)}"
    width = objective_histogram(snapshot, bound.metric).bucket_width_at(observed)
    if width > bound.target_s * 0.5:
        message += f" (read inside a {seconds(width)}-wide bucket)"
    message += f"; queue {number(snapshot.waiting)}, queue time {seconds(queue_s)}"
    if share is not None:
        message += f"; attainment {share:.1%}"
    reason = Reason.OBJECTIVE_MET if met else Reason.OBJECTIVE_VIOLATED
    return evaluation, StageOutcome(Stage.EVALUATE, reason, message)
