"""Stage 6, the batch gate: may the batch (vLLM --max-num-seqs) change now?

A batch change rolls every pod (vLLM reads the flag at start), so it is treated as expensive:

1. only when batching is enabled; otherwise the template's value (None where it sets none) is
   decided and never changed;
2. never while a rollout is in progress (pods of two settings would serve side by side);
3. never within `batching.cooldown_s` of the last change (kept in status across restarts) —
   unless the batch in force lies outside the bounds: the spec's bounds win over the cooldown,
   as the replica bounds win over the rate limits (a template without the flag runs vLLM's
   default, `profile.default_max_num_seqs`, and has never been changed by the operator);
4. only when worth it (hysteresis): the batch in force is outside the bounds; or the current one
   cannot hold the objective even at max_replicas while the new one can; or, with neither
   holding within the bounds, the new one does better at max_replicas (`worth_at_max`); or,
   with per-token latency the cause, a smaller batch saves a replica; or, for a throughput
   objective, a larger one gives `THROUGHPUT_GAIN` more requests/s per replica while the bound
   holds; or otherwise it saves a replica now and its capacity per replica is high enough to
   save `REPLICA_SAVING` of the replicas at any demand (capacity ÷ (1 − REPLICA_SAVING)) — and
   then not while requests queue, when rolling pods would only add cold starts to a capacity
   shortage. Since capacity per replica flattens out as the batch grows, this picks the batch
   once rather than walking it up a restart at a time.

Worth is judged first, so that a move that would be refused anyway never reads as waiting for a
rollout or the cooldown.

When the gate keeps the batch, the replicas come from the cheapest option with the current batch,
so a refused batch change never leaves the fleet undersized. With batching enabled the decided
batch is a number within the bounds — where the template sets none and vLLM's default lies within
them, that default — except while a rollout holds an out-of-bounds one as it is.

The gate runs right after the recommendation, before the replica limits, because the replica
count depends on the batch it settles.
"""

from __future__ import annotations

import math

from sloscale.scaling.decision import StageOutcome
from sloscale.scaling.evaluate import Evaluation
from sloscale.scaling.fmt import number, seconds
from sloscale.scaling.policy import ObjectiveKind, Policy
from sloscale.scaling.reasons import Reason, Stage
from sloscale.scaling.recommend import AtMax, Option, Recommendation
from sloscale.scaling.snapshot import WorkloadObservation

THROUGHPUT_GAIN = 1.25
REPLICA_SAVING = 0.25


def worth_at_max(best: AtMax, keep: AtMax, policy: Policy, evaluation: Evaluation) -> bool:
    """With neither batch holding within the bounds: does `best` do enough better at
    max_replicas to be worth a restart? The same order as `recommend.capped_preference`:

    * a latency objective only while it is observed missed or requests queue (the model's
      margin alone is no reason to roll pods), and first by its latency under the whole demand,
      `THROUGHPUT_GAIN` lower; where both queues grow without bound, as below;
    * it keeps the latency bound once running where `keep` breaks it;
    * both keeping it, it serves `THROUGHPUT_GAIN` more requests/s;
    * neither keeping it, its latency once running is `THROUGHPUT_GAIN` lower.
    """
    metric = policy.objective.latency.metric
    if policy.objective.kind is ObjectiveKind.LATENCY:
        if evaluation.met is not False and not evaluation.queueing:
            return False
        new, old = best.latency_under_demand(metric), keep.latency_under_demand(metric)
        if math.isfinite(new) or math.isfinite(old):
            return new * THROUGHPUT_GAIN <= old
    if best.holds != keep.holds:
        return best.holds
    if best.holds:
        return best.served_rps >= THROUGHPUT_GAIN * keep.served_rps
    return best.running_latency(metric) * THROUGHPUT_GAIN <= keep.running_latency(metric)


def worth_changing(
    rec: Recommendation, policy: Policy, evaluation: Evaluation, current_in_bounds: bool
) -> Reason | None:
    """Why the recommended batch is worth a rolling restart, or None when it is not."""
    best, keep = rec.best, rec.keep
    if not current_in_bounds:
        return Reason.BATCH_OUT_OF_BOUNDS
    smaller = best.batch < keep.batch
    direction = Reason.SMALLER_BATCH if smaller else Reason.LARGER_BATCH
    if not best.feasible:
        if keep.feasible or best.at_max is None or keep.at_max is None:
            return None
        return direction if worth_at_max(best.at_max, keep.at_max, policy, evaluation) else None
    if not keep.feasible:
        return direction
    saved = keep.replicas - best.replicas
    if evaluation.per_token and smaller and saved >= 1:
        return direction
    gain = best.prediction.capacity_rps / keep.prediction.capacity_rps
    if (
        policy.objective.kind is ObjectiveKind.THROUGHPUT
        and not smaller
        and gain >= THROUGHPUT_GAIN
    ):
        return direction
    # Judged on capacity per replica, not on replica counts rounded at this moment's demand: a
    # restart that saves one pod of four in a dip saves nothing at the next peak.
    if not evaluation.queueing and saved >= 1 and gain >= 1.0 / (1.0 - REPLICA_SAVING):
        return direction
    return None


def compared(best: Option, keep: Option, policy: Policy) -> str:
    """The two options side by side, for the gate's messages."""
    bound = policy.objective.latency
    if best.at_max is not None and keep.at_max is not None:
        b, k = best.at_max, keep.at_max
        return (
            f"at {b.at_demand.replicas} replicas (max) {number(b.served_rps)} vs "
            f"{number(k.served_rps)} req/s served, predicted {bound.name} once running "
            f"{seconds(b.running_latency(bound.metric))} vs {seconds(k.running_latency(bound.metric))}"
        )
    return (
        f"{best.replicas} vs {keep.replicas} replicas, {number(best.prediction.capacity_rps)} vs "
        f"{number(keep.prediction.capacity_rps)} req/s per replica"
    )


def gate_batch(
    rec: Recommendation,
    policy: Policy,
    workload: WorkloadObservation,
    evaluation: Evaluation,
    last_batch_change_time: float | None,
    now: float,
) -> tuple[Option, int | None, StageOutcome]:
    """The option to size replicas on and the batch to decide (None: leave the template unset).

    `rec.keep.batch` is the batch in force: the template's, or vLLM's default where it sets none.
    """
    keep, best = rec.keep, rec.best
    current = workload.max_num_seqs
    if not policy.batching.enabled:
        return keep, current, StageOutcome(Stage.BATCH, Reason.BATCHING_DISABLED, "batching is off")
    b = policy.batching
    in_bounds = b.min_seqs <= keep.batch <= b.max_seqs
    # What a refusal decides: the batch in force when it is within the bounds (vLLM's default
    # for a template without the flag, so no change), else the template as it is.
    held = keep.batch if in_bounds else current
    unset = " (vLLM's default; the template sets none)" if current is None else ""
    if best.batch == keep.batch and in_bounds:
        return (
            keep,
            held,
            StageOutcome(Stage.BATCH, Reason.BATCH_UNCHANGED, f"batch {keep.batch}{unset} holds"),
        )

    # Candidates lie within the bounds, so `best` is where an out-of-bounds batch goes too.
    target = best.batch
    move = f"batch {keep.batch}{unset}→{target}"
    why = worth_changing(rec, policy, evaluation, in_bounds)
    if why is None:
        return (
            keep,
            held,
            StageOutcome(
                Stage.BATCH,
                Reason.BATCH_HYSTERESIS,
                f"{move} not worth a restart: {compared(best, keep, policy)}",
            ),
        )
    if workload.rollout_in_progress:
        return (
            keep,
            held,
            StageOutcome(
                Stage.BATCH, Reason.ROLLOUT_IN_PROGRESS, f"{move} waits: a rollout is in progress"
            ),
        )
    if (
        in_bounds
        and last_batch_change_time is not None
        and now - last_batch_change_time < b.cooldown_s
    ):
        left = b.cooldown_s - (now - last_batch_change_time)
        return (
            keep,
            held,
            StageOutcome(
                Stage.BATCH,
                Reason.BATCH_COOLDOWN,
                f"{move} waits: last change {seconds(now - last_batch_change_time)} ago, {seconds(left)} of cooldown left",
            ),
        )
    if why is Reason.BATCH_OUT_OF_BOUNDS:
        detail = f"outside [{b.min_seqs}, {b.max_seqs}]; {best.replicas} replicas at batch {target}"
    elif best.at_max is not None and keep.at_max is not None:
        detail = compared(best, keep, policy)
    else:
        bound = policy.objective.latency
        detail = (
            f"{best.replicas} replicas (vs {keep.replicas} at batch {keep.batch}); predicted "
            f"{bound.name} {seconds(best.prediction.latency(bound.metric))}, "
            f"{number(best.prediction.capacity_rps)} req/s per replica"
        )
    return best, target, StageOutcome(Stage.BATCH, why, f"{move}: {detail}")
