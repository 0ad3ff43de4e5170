"""`decide`: one tick of the control law, a pipeline of small pure stages.

    decide(observation, policy, state, now) -> (Decision, new_state)

The stages run in this order; each returns its value and a `StageOutcome` (stage, reason,
message), and all outcomes travel in `Decision.stages`:

 1. assess metrics (`assess`) — fresh, real zero traffic, or unusable. Unusable metrics end the
    tick here: replicas and batch are held exactly and `metrics_available` is False;
 2. observe (`observe`) — demand history, request mix, step-curve fit, latency calibration,
    cold start, the evaluation window's histogram;
 3. evaluate the objective (`evaluate`) — percentile now vs target, attainment, error budget,
    and the cause: queueing (replicas) or per-token latency (batch);
 4. forecast demand (`forecast`) over the measured cold-start horizon;
 5. recommend (`recommend`) — the cheapest (replicas, max_num_seqs) predicted to hold, then the
    feedback step when the objective is violated while the model says it holds, and the credit
    for pods still starting;
 6. batch gate (`batch`) — batching enabled, no rollout, cooldown (unless the batch in force is
    outside the bounds), hysteresis; the replicas follow the batch that passes;
 7. clamp to [min_replicas, max_replicas] (`limits`) — ScalingLimited when a bound binds;
 8. tolerance (`limits`);
 9. stabilisation windows (`limits`);
10. rate limits (`limits`) — ScalingLimited when they bind; bounds still win;
11. scale-down safety (`safety`) — a full window of history since start, objective not violated,
    N−1 still holds;
12. feasibility (`feasibility`) — target below the idle floor, or violated at max replicas.

`now` is epoch seconds and the only clock; the state goes in and comes back out. A tick costs
O(history) with every history bounded (see `state`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from sloscale.scaling.assess import assess_metrics
from sloscale.scaling.batch import gate_batch
from sloscale.scaling.capacity import predict
from sloscale.scaling.decision import Action, Decision, StageOutcome
from sloscale.scaling.evaluate import Evaluation, evaluate, unavailable_report
from sloscale.scaling.feasibility import feasibility
from sloscale.scaling.fmt import number, seconds
from sloscale.scaling.forecast import Forecast, forecast_demand, measure_cold_start
from sloscale.scaling.limits import apply_tolerance, clamp, rate_limit, stabilize
from sloscale.scaling.observe import observe
from sloscale.scaling.policy import Policy
from sloscale.scaling.reasons import Reason, Stage
from sloscale.scaling.recommend import explain, holds, recommend, with_floor
from sloscale.scaling.safety import scale_down_safety
from sloscale.scaling.snapshot import MetricsUnavailable, Observation
from sloscale.scaling.state import ControlState, record_workload

# A batch change held back is what a tick is about when the replicas do not move.
BATCH_REFUSALS = (Reason.BATCH_COOLDOWN, Reason.ROLLOUT_IN_PROGRESS)


def decide(
    observation: Observation, policy: Policy, state: ControlState, now: float
) -> tuple[Decision, ControlState]:
    """One tick: where the levers should be, why, and the state to pass to the next tick."""
    workload = observation.workload
    current = workload.replicas
    horizon = max(policy.scale_up.period_s, policy.scale_down.period_s)
    state = record_workload(state, workload.replicas, workload.max_num_seqs, now, horizon)
    metrics, assessed = assess_metrics(observation)
    if isinstance(metrics, MetricsUnavailable):
        return hold_on_missing_metrics(observation, policy, state, metrics, assessed)

    state, observed, observed_out = observe(state, metrics, workload, policy, now)
    evaluation, evaluated = evaluate(metrics, policy, state)
    forecast = forecast_demand(state.demand, observed.arrival_rps, now, observed.cold_start_s)
    forecasted = forecast_outcome(forecast)
    zero = metrics.zero_traffic
    rec = recommend(
        observed.curve,
        state.calibration,
        policy,
        workload,
        observed.batch,
        forecast,
        evaluation,
        zero,
        observed.queue_growth_rps,
        fleet_changed_in_window(state, observed.cold_start_s, metrics.window_s, now),
    )
    option, batch, gated = gate_batch(
        rec, policy, workload, evaluation, state.last_batch_change_time, now
    )
    option = with_floor(option, rec)
    recommended = explain(option, rec, policy, workload, forecast, evaluation, zero)

    limits = limit_replicas(option.replicas, current, policy, state, evaluation, now)
    n, decisive, limited = limits.replicas, limits.decisive or recommended, limits.scaling_limited

    q = policy.objective.latency.quantile
    down_margin = policy.target_margin + policy.tolerance

    def safe_at(k: int) -> bool:
        if zero:
            return True
        prediction = predict(observed.curve, state.calibration, k, option.batch, rec.demand_rps, q)
        return holds(prediction, policy, down_margin)

    before = n
    n, safety = scale_down_safety(
        n,
        current,
        started_at=state.started_at,
        window_s=policy.objective.latency.window_s,
        now=now,
        evaluation=evaluation,
        safe_at=safe_at,
    )
    n = min(n, policy.max_replicas)
    if n != before:
        decisive = safety

    feasible, infeasible = feasibility(observed.curve, policy, option, evaluation, workload)

    # A template without the flag runs vLLM's default: deciding that value changes nothing.
    in_force = observed.batch
    batch_changed = batch is not None and batch != in_force
    if n == current and (batch_changed or gated.reason in BATCH_REFUSALS):
        decisive = gated
    action = action_of(current, n, in_force, batch)
    stages = (
        assessed,
        observed_out,
        evaluated,
        forecasted,
        recommended,
        gated,
        *limits.outcomes,
        safety,
        feasible,
    )
    capacity = option.prediction.capacity_rps
    decision = Decision(
        replicas=n,
        max_num_seqs=batch,
        action=action,
        reason=decisive.reason,
        message=headline(
            current,
            n,
            workload.max_num_seqs,
            in_force,
            batch,
            evaluation,
            policy,
            capacity,
            decisive,
            recommended,
        ),
        stages=stages,
        objective=evaluation.report,
        metrics_available=True,
        metrics_reason=Reason.ZERO_TRAFFIC.value if zero else Reason.FRESH.value,
        metrics_message=assessed.message,
        scaling_limited=limited,
        infeasible=infeasible,
        cold_start_s=observed.cold_start_s,
        capacity_rps_per_replica=capacity,
    )
    new_state = replace(
        state,
        replicas=n,
        max_num_seqs=batch,
        recommendations=limits.recommendations,
    )
    return decision, new_state


def fleet_changed_in_window(
    state: ControlState, cold_start_s: float, window_s: float, now: float
) -> bool:
    """Whether the last scale-up (its pods ready one cold start later) falls within the rate
    window the percentiles are read over: they then still count the smaller fleet's requests.
    A scale-down takes effect at once, and a window holding the larger fleet only flatters the
    smaller one: feedback stays on."""
    grew = state.last_scale_up_time
    return grew is not None and now - (grew + cold_start_s) < window_s


@dataclass(frozen=True)
class Limits:
    replicas: int
    outcomes: tuple[StageOutcome, ...]  # clamp, tolerance, stabilisation, rate limits
    decisive: StageOutcome | None  # the last of them that moved the replicas
    scaling_limited: StageOutcome | None  # a bound or a rate limit that bound
    recommendations: tuple[tuple[float, int], ...]  # the stabilisation history, updated


def limit_replicas(
    desired: int,
    current: int,
    policy: Policy,
    state: ControlState,
    evaluation: Evaluation,
    now: float,
) -> Limits:
    """Stages 7–10 in order; bounds still win over rate limits, as in the HPA."""
    decisive = None
    n, clamped, limited = clamp(desired, policy)
    if limited is not None:
        decisive = clamped
    before = n
    n, tolerated = apply_tolerance(n, current, policy.tolerance, evaluation.met is False)
    if n != before:
        decisive = tolerated
    before = n
    n, recommendations, stabilized = stabilize(n, current, state.recommendations, policy, now)
    if n != before:
        decisive = stabilized
    before = n
    n, rated = rate_limit(n, current, state.scale_events, policy, now)
    n = min(max(n, policy.min_replicas), policy.max_replicas)
    if n != before:
        decisive = rated
        limited = limited or rated
    return Limits(n, (clamped, tolerated, stabilized, rated), decisive, limited, recommendations)


def hold_on_missing_metrics(
    observation: Observation,
    policy: Policy,
    state: ControlState,
    metrics: MetricsUnavailable,
    assessed: StageOutcome,
) -> tuple[Decision, ControlState]:
    """No usable metrics: hold both levers exactly; only the cold-start measure moves."""
    workload = observation.workload
    batch = "unset" if workload.max_num_seqs is None else str(workload.max_num_seqs)
    decision = Decision(
        replicas=workload.replicas,
        max_num_seqs=workload.max_num_seqs,
        action=Action.HOLD,
        reason=Reason.METRICS_UNAVAILABLE,
        message=f"holding {workload.replicas} replicas at batch {batch}: metrics {assessed.message}",
        stages=(assessed,),
        objective=unavailable_report(policy, state),
        metrics_available=False,
        metrics_reason=metrics.reason.value,
        metrics_message=metrics.message,
        cold_start_s=state.cold_start_s or policy.cold_start_s,
    )
    cold_start = measure_cold_start(workload.pod_start_durations_s, state.cold_start_s)
    return decision, replace(state, cold_start_s=cold_start)


def forecast_outcome(forecast: Forecast) -> StageOutcome:
    trend = forecast.current_rps * forecast.surge < forecast.forecast_rps
    if forecast.rising and not trend:
        return StageOutcome(
            Stage.FORECAST,
            Reason.RISING_DEMAND,
            f"demand {number(forecast.current_rps)} req/s, no trend; it rose up to"
            f" ×{forecast.surge:.2f} within {seconds(forecast.horizon_s)} lately:"
            f" {number(forecast.forecast_rps)} req/s provisioned for",
        )
    if forecast.rising:
        return StageOutcome(
            Stage.FORECAST,
            Reason.RISING_DEMAND,
            f"demand {number(forecast.current_rps)} req/s rising {number(forecast.slope_rps_per_s * 60)} req/s per "
            f"minute: {number(forecast.forecast_rps)} req/s expected in {seconds(forecast.horizon_s)}",
        )
    return StageOutcome(
        Stage.FORECAST,
        Reason.STEADY_DEMAND,
        f"demand {number(forecast.current_rps)} req/s, not rising over the {seconds(forecast.horizon_s)} horizon",
    )


def action_of(current: int, replicas: int, in_force: int, batch: int | None) -> Action:
    """Replica moves first; otherwise a batch move against the batch in force."""
    if replicas > current:
        return Action.SCALE_UP
    if replicas < current:
        return Action.SCALE_DOWN
    if batch is not None and batch != in_force:
        return Action.BATCH_UP if batch > in_force else Action.BATCH_DOWN
    return Action.HOLD


def headline(
    current: int,
    replicas: int,
    current_batch: int | None,
    in_force: int,
    batch: int | None,
    evaluation: Evaluation,
    policy: Policy,
    capacity_rps: float,
    decisive: StageOutcome,
    recommended: StageOutcome,
) -> str:
    """E.g. `replicas 2→4: p99 TTFT 1.8s > 1s; queue 37; capacity 21 req/s per replica`."""
    parts = []
    if replicas != current:
        parts.append(f"replicas {current}→{replicas}")
    if batch is not None and batch != in_force:
        parts.append(f"batch {current_batch if current_batch is not None else 'unset'}→{batch}")
    head = (
        ", ".join(parts)
        if parts
        else f"holding {replicas} replicas at batch {batch if batch is not None else 'unset'}"
    )
    bound = policy.objective.latency
    if evaluation.observed_s is None:
        seen = f"{bound.name} unobserved (no requests)"
    else:
        relation = "≤" if evaluation.met else ">"
        seen = f"{bound.name} {seconds(evaluation.observed_s)} {relation} {seconds(bound.target_s)}"
    message = f"{head}: {seen}; queue {number(evaluation.waiting)}; capacity {number(capacity_rps)} req/s per replica"
    if decisive is not recommended:
        message += f"; {decisive.reason}: {decisive.message}"
    else:
        message += f"; {decisive.reason}"
    return message
