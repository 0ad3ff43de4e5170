"""Stage 6, the batch gate: may the batch (vLLM --max-num-seqs) change now?

A batch change rolls every pod (vLLM reads the flag at start), so it is treated as expensive:

1. only when batching is enabled;
2. never while a rollout is in progress (pods of two settings would serve side by side);
3. never within `batching.cooldown_s` of the last change (kept in status across restarts);
4. only when worth it (hysteresis): the current batch is outside the bounds; or the current one
   cannot hold the objective even at max_replicas while the new one can; or, with per-token
   latency the cause, a smaller batch saves a replica; or, for a throughput objective, a larger
   one gives `THROUGHPUT_GAIN` more requests/s per replica while the bound holds; or otherwise
   it saves at least `REPLICA_SAVING` of the replicas — and then not while requests queue, when
   rolling pods would only add cold starts to a capacity shortage.

When the gate keeps the batch, the replicas come from the cheapest option with the current batch,
so a refused batch change never leaves the fleet undersized.

The gate runs right after the recommendation, before the replica limits, because the replica
count depends on the batch it settles.
"""

from __future__ import annotations

from sloscale.scaling.decision import StageOutcome
from sloscale.scaling.evaluate import Evaluation
from sloscale.scaling.fmt import number, seconds
from sloscale.scaling.policy import ObjectiveKind, Policy
from sloscale.scaling.reasons import Reason, Stage
from sloscale.scaling.recommend import Option, Recommendation
from sloscale.scaling.snapshot import WorkloadObservation

THROUGHPUT_GAIN = 1.25
REPLICA_SAVING = 0.25


def worth_changing(
    rec: Recommendation, policy: Policy, evaluation: Evaluation, current_in_bounds: bool
) -> Reason | None:
    """Why the recommended batch is worth a rolling restart, or None when it is not."""
    best, keep = rec.best, rec.keep
    if not current_in_bounds:
        return Reason.BATCH_OUT_OF_BOUNDS
    if not best.feasible:
        return None
    smaller = best.batch < keep.batch
    direction = Reason.SMALLER_BATCH if smaller else Reason.LARGER_BATCH
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
    if not evaluation.queueing and saved >= max(1.0, REPLICA_SAVING * keep.replicas):
        return direction
    return None


def gate_batch(
    rec: Recommendation,
    policy: Policy,
    workload: WorkloadObservation,
    evaluation: Evaluation,
    last_batch_change_time: float | None,
    now: float,
) -> tuple[Option, int | None, StageOutcome]:
    """The option to size replicas on and the batch to decide (None: leave the template unset)."""
    keep, best = rec.keep, rec.best
    current = workload.max_num_seqs
    if not policy.batching.enabled:
        return keep, current, StageOutcome(Stage.BATCH, Reason.BATCHING_DISABLED, "batching is off")
    b = policy.batching
    in_bounds = current is not None and b.min_seqs <= current <= b.max_seqs
    if best.batch == keep.batch and in_bounds:
        return (
            keep,
            current,
            StageOutcome(Stage.BATCH, Reason.BATCH_UNCHANGED, f"batch {keep.batch} holds"),
        )

    # Candidates lie within the bounds, so `best` is where an out-of-bounds batch goes too.
    target = best.batch
    move = f"batch {keep.batch}→{target}"
    if workload.rollout_in_progress:
        return (
            keep,
            current,
            StageOutcome(
                Stage.BATCH, Reason.ROLLOUT_IN_PROGRESS, f"{move} waits: a rollout is in progress"
            ),
        )
    if last_batch_change_time is not None and now - last_batch_change_time < b.cooldown_s:
        left = b.cooldown_s - (now - last_batch_change_time)
        return (
            keep,
            current,
            StageOutcome(
                Stage.BATCH,
                Reason.BATCH_COOLDOWN,
                f"{move} waits: last change {seconds(now - last_batch_change_time)} ago, {seconds(left)} of cooldown left",
            ),
        )
    why = worth_changing(rec, policy, evaluation, in_bounds)
    if why is None:
        return (
            keep,
            current,
            StageOutcome(
                Stage.BATCH,
                Reason.BATCH_HYSTERESIS,
                f"{move} not worth a restart: {best.replicas} vs {keep.replicas} replicas, "
                f"{number(best.prediction.capacity_rps)} vs {number(keep.prediction.capacity_rps)} req/s per replica",
            ),
        )
    bound = policy.objective.latency
    return (
        best,
        target,
        StageOutcome(
            Stage.BATCH,
            why,
            f"{move}: {best.replicas} replicas (vs {keep.replicas} at batch {keep.batch}); predicted "
            f"{bound.name} {seconds(best.prediction.latency(bound.metric))}, "
            f"{number(best.prediction.capacity_rps)} req/s per replica",
        ),
    )
