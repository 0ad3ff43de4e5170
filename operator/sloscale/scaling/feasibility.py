"""Stage 12, feasibility: can the objective be met at all?

* Below the floor: the target is under what one replica achieves even idle — the step time at
  batch 1 for an ITL target, the prefill of the mean prompt for TTFT, prefill plus every output
  token's step for E2E (fitted curve, without percentile calibration, so only a clear case is
  flagged). No replica count or batch fixes that.
* At max replicas: the model predicts the objective violated even at `max_replicas`, or all
  `max_replicas` replicas are up and the objective is observed violated.

Feasibility only reports (`Decision.infeasible`); replicas stay on their best-effort course.
"""

from __future__ import annotations

from sloscale.scaling.capacity import StepCurve
from sloscale.scaling.decision import StageOutcome
from sloscale.scaling.evaluate import Evaluation
from sloscale.scaling.fmt import number, seconds
from sloscale.scaling.policy import LatencyMetric, Policy
from sloscale.scaling.reasons import Reason, Stage
from sloscale.scaling.recommend import Option
from sloscale.scaling.snapshot import WorkloadObservation


def idle_floor_s(curve: StepCurve, metric: LatencyMetric) -> float:
    """The objective's latency for a lone request on an idle replica."""
    if metric is LatencyMetric.ITL:
        return curve.step_s(1.0)
    if metric is LatencyMetric.TTFT:
        return curve.prefill_s(1.0)
    return curve.prefill_s(1.0) + curve.output_tokens * curve.step_s(1.0)


def feasibility(
    curve: StepCurve,
    policy: Policy,
    option: Option,
    evaluation: Evaluation | None,
    workload: WorkloadObservation,
) -> tuple[StageOutcome, StageOutcome | None]:
    """The stage outcome and, when infeasible, the same outcome for `Decision.infeasible`."""
    bound = policy.objective.latency
    floor = idle_floor_s(curve, bound.metric)
    if bound.target_s < floor:
        out = StageOutcome(
            Stage.FEASIBILITY,
            Reason.TARGET_BELOW_FLOOR,
            f"{bound.name} target {seconds(bound.target_s)} < {seconds(floor)}, what one idle replica achieves "
            f"(step {seconds(curve.step_s(1.0))} at batch 1, mean prompt {number(curve.input_tokens)} tokens)",
        )
        return out, out
    if not option.feasible:
        p = option.prediction
        out = StageOutcome(
            Stage.FEASIBILITY,
            Reason.INFEASIBLE_AT_MAX_REPLICAS,
            f"predicted {bound.name} {seconds(p.latency(bound.metric))} > {seconds(bound.target_s)} even at "
            f"{policy.max_replicas} replicas (max): demand {number(p.demand_rps)} req/s, capacity "
            f"{number(p.capacity_rps)} req/s per replica at batch {p.batch}",
        )
        return out, out
    if (
        evaluation is not None
        and evaluation.met is False
        and workload.ready >= policy.max_replicas
        and workload.starting == 0
    ):
        out = StageOutcome(
            Stage.FEASIBILITY,
            Reason.INFEASIBLE_AT_MAX_REPLICAS,
            f"observed {bound.name} {seconds(evaluation.observed_s)} > {seconds(bound.target_s)} with all "
            f"{policy.max_replicas} replicas (max) ready",
        )
        return out, out
    return StageOutcome(
        Stage.FEASIBILITY,
        Reason.FEASIBLE,
        f"floor {seconds(floor)} below target {seconds(bound.target_s)}",
    ), None
