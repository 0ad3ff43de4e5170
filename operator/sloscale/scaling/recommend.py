"""Stage 5, recommend: the cheapest (replicas, max_num_seqs) pair predicted to hold the objective.

The demand sized for is the forecast one cold start ahead plus what drains the queue
(`backlog_rps`): the backlog waiting now and what the ready pods fall behind by until new ones
are ready, gone within one more cold start.

For each candidate batch (the current one; with batching enabled also the bounds, the initial
value and the powers of two between them) the fewest replicas whose prediction holds — every
replica's utilisation ≤ `policy.max_utilization` and the objective's percentile ≤ target ×
(1 − `policy.target_margin`) — is found upwards from the utilisation bound, a few counts one by
one, then by bisection (predictions improve monotonically with replicas). A batch that needs,
by utilisation alone, more replicas than the current batch holds with is not predicted at all.
The cheapest wins; ties go to the current batch (a batch change restarts pods), then to the
larger headroom. A throughput objective sizes for max(forecast demand, tokens/s target)
and breaks ties towards more tokens per replica, so its batch grows while the bound holds.

When no batch holds within max_replicas, replica counts above the bound say nothing about what
the fleet will do, so those options are compared by what they deliver *at* max_replicas
(`AtMax`), running under the sizing demand: the requests/s served (the demand, or the fleet's
capacity when that is less — then every batch slot is busy and the queue grows whatever the
batch) and the objective's latency once a request runs (`Prediction.service_latency`: per-token
steps, prefill and decode at that concurrency, queueing left out). An option *keeps the bound*
when that latency is within target × (1 − margin). Options that keep it come first, then the
most served, then (neither keeping it) the lower latency; a latency objective first takes the
best latency predicted under the whole demand, queueing included (infinite where the queue grows
without bound). So a throughput objective beyond max replicas grows the batch to the largest
that keeps its bound, and a latency objective takes the batch that predicts its objective best —
where its queueing cannot be fixed at any batch, it grows the batch while the per-token latency
still holds, or shrinks it where that latency is the problem. The option still asks for the
replicas it would need, so the clamp reports AtMaxReplicas with that number.

With zero traffic there is nothing to size for: the batch in force is kept, unless it lies
outside the bounds — then a template without the flag goes to `initial_seqs` and an explicit
value to the nearest bound.

Two corrections follow the model:

* feedback — the objective is violated while the model says the current replicas hold it, with
  no pods starting, no per-token cause, the queue not draining (a draining backlog is a
  transient the replicas already cover) and the evidence about the fleet in force: right after
  the fleet grew, the percentile's rate window still holds the requests of the smaller fleet,
  so only requests waiting now count then (`fleet_changed_in_window`): step up in proportion to observed ÷ target, at least
  one replica and at most a quarter more per tick (`Reason.MODEL_CORRECTION`) — the fit and
  calibration catch up within minutes, and a larger step mostly buys pods that arrive after a
  burst has passed and then wait out the scale-down stabilisation;
* pods starting are coming capacity — while any warm, the recommendation never goes below the
  replicas already requested, and goes above them only when the forecast needs more. Pods a
  batch rollout starts replace old ones rather than add capacity, so a rollout sets no floor:
  the fleet may shrink to what the new batch needs while it rolls.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

from sloscale.scaling.capacity import Prediction, StepCurve, predict
from sloscale.scaling.decision import StageOutcome
from sloscale.scaling.evaluate import MIN_WAITING, Evaluation
from sloscale.scaling.fmt import number, seconds
from sloscale.scaling.forecast import Forecast
from sloscale.scaling.policy import LatencyMetric, ObjectiveKind, Policy
from sloscale.scaling.reasons import Reason, Stage
from sloscale.scaling.snapshot import WorkloadObservation
from sloscale.scaling.state import Calibration

BEST_EFFORT_SLACK = 0.1
LINEAR_STEPS = 3  # replica counts tried one by one above the utilisation bound
MAX_CORRECTION = 1.25  # the feedback step adds at most a quarter of the replicas per tick


@dataclass(frozen=True)
class AtMax:
    """What a batch delivers at max_replicas when no replica count within the bounds holds."""

    served_rps: float  # the sizing demand, or the fleet's capacity when that is less
    at_demand: Prediction  # max_replicas under the whole sizing demand
    holds: bool  # the latency once running, with the margin, holds there

    def running_latency(self, metric: LatencyMetric) -> float:
        return self.at_demand.service_latency(metric)

    def latency_under_demand(self, metric: LatencyMetric) -> float:
        """The latency under the whole demand; infinite where the queue grows without bound
        (the model's ITL leaves queueing out, yet requests that never start wait forever)."""
        return math.inf if self.at_demand.utilization >= 1.0 else self.at_demand.latency(metric)


@dataclass(frozen=True)
class Option:
    """A (replicas, batch) pair and the model's prediction for it."""

    batch: int
    replicas: int
    prediction: Prediction
    feasible: bool  # holds the objective at or below max_replicas
    at_max: AtMax | None = None  # when not feasible: what it delivers within the bounds


@dataclass(frozen=True)
class Recommendation:
    best: Option  # the cheapest pair over all candidate batches
    keep: Option  # the cheapest with the batch in force
    demand_rps: float  # what the options were sized for
    floor: int  # replicas the corrections ask for at least (0: none)
    correction: int  # replicas the feedback step asks for (0: none)
    now_best: int = 0  # replicas `best` would need for the current demand (without look-ahead)
    now_keep: int = 0  # ... and `keep`
    backlog_rps: float = 0.0  # of `demand_rps`, what drains the queue (see `backlog_rps`)


def batch_candidates(policy: Policy, current: int) -> tuple[int, ...]:
    """Batches worth predicting: current, bounds, initial and powers of two between the bounds."""
    b = policy.batching
    if not b.enabled:
        return (current,)
    found = {b.min_seqs, b.max_seqs, min(max(b.initial_seqs, b.min_seqs), b.max_seqs)}
    if b.min_seqs <= current <= b.max_seqs:
        found.add(current)
    power = 1
    while power <= b.max_seqs:
        if power >= b.min_seqs:
            found.add(power)
        power *= 2
    return tuple(sorted(found))


def holds(prediction: Prediction, policy: Policy, margin: float) -> bool:
    bound = policy.objective.latency
    return prediction.utilization <= policy.max_utilization and prediction.latency(
        bound.metric
    ) <= bound.target_s * (1.0 - margin)


def sizing_demand(policy: Policy, forecast: Forecast, curve: StepCurve) -> float:
    """Requests/s to provision for: the forecast, or the throughput target when higher.

    A throughput objective trades transient queueing within its loose latency bound for tokens
    per GPU: it sizes for the trend, without the surge headroom a latency objective keeps.
    """
    if policy.objective.kind is ObjectiveKind.THROUGHPUT:
        tokens = policy.objective.tokens_per_s
        trend = forecast.without_surge_rps
        return trend if tokens is None else max(trend, tokens / curve.output_tokens)
    return forecast.forecast_rps


def backlog_rps(waiting: float, arrival_rps: float, serving_rps: float, horizon_s: float) -> float:
    """Requests/s to provision beyond the arrivals so that the backlog new pods meet is gone one
    `horizon_s` (the cold start) after they are ready.

    The backlog then is what waits now plus what the pods serving (or starting) now fall behind
    by until the new ones are ready; draining it over one more horizon takes backlog ÷ horizon. Without it a
    step in load is sized for the new arrivals only, and the queue built during the cold start
    lingers for minutes (every request behind it misses).
    """
    if horizon_s <= 0.0:
        return 0.0
    behind = max(0.0, arrival_rps - serving_rps) * horizon_s
    return (max(0.0, waiting) + behind) / horizon_s


def at_max_replicas(at_top: Prediction, policy: Policy, margin: float) -> AtMax:
    """What `at_top` (max_replicas under the sizing demand) delivers (see the module docstring)."""
    bound = policy.objective.latency
    served = min(at_top.demand_rps, at_top.replicas * at_top.capacity_rps)
    running = at_top.service_latency(bound.metric)
    return AtMax(served, at_top, running <= bound.target_s * (1.0 - margin))


def fewest(lo: int, hi: int, ok: Callable[[int], bool]) -> int:
    """The smallest n in [lo, hi] with ok(n), given ok(hi) and ok monotone in n."""
    while lo < hi:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid + 1
    return hi


def cheapest(
    curve: StepCurve, cal: Calibration, batch: int, demand: float, policy: Policy, margin: float
) -> Option:
    """The fewest replicas at `batch` whose prediction holds (bisection: predictions improve
    monotonically with replicas).

    When even max_replicas does not hold: if utilisation alone needs more than max_replicas, the
    option asks for that many (the clamp then reports the bound); otherwise the best effort is
    the fewest replicas within `BEST_EFFORT_SLACK` of the latency max_replicas achieves — below
    the idle floor, more replicas buy nothing.
    """
    q = policy.objective.latency.quantile
    metric = policy.objective.latency.metric
    top = max(policy.max_replicas, 1)
    need = math.ceil(demand / (curve.capacity_rps(batch) * policy.max_utilization) - 1e-9)
    lo = min(max(1, policy.min_replicas, need), top)

    def prediction(n: int) -> Prediction:
        return predict(curve, cal, n, batch, demand, q)

    # Usually the utilisation bound binds, or nearly: try a few counts upwards before bisecting.
    for n in range(lo, min(lo + LINEAR_STEPS, top + 1)):
        guess = prediction(n)
        if holds(guess, policy, margin):
            return Option(batch, n, guess, feasible=True)
    untried = min(lo + LINEAR_STEPS, top)
    at_top = prediction(top)
    if holds(at_top, policy, margin):
        n = fewest(untried, top, lambda k: k == top or holds(prediction(k), policy, margin))
        return Option(batch, n, at_top if n == top else prediction(n), feasible=True)
    at_max = at_max_replicas(at_top, policy, margin)
    if need > top:
        # Capacity-limited: say how many would be needed, so the clamp reports the bound binding.
        return Option(batch, need, at_top, feasible=False, at_max=at_max)
    best_latency = at_top.latency(metric)
    if math.isinf(best_latency):
        return Option(batch, top, at_top, feasible=False, at_max=at_max)
    slack = best_latency * (1 + BEST_EFFORT_SLACK)
    n = fewest(lo, top, lambda k: k == top or prediction(k).latency(metric) <= slack)
    return Option(batch, n, at_top if n == top else prediction(n), feasible=False, at_max=at_max)


def cannot_win(
    batch: int, keep: Option, curve: StepCurve, demand: float, policy: Policy, keep_eligible: bool
) -> bool:
    """True when `batch` needs, by utilisation alone, more replicas than the current batch holds
    the objective with (or as many, where ties go to the current batch): no need to predict it."""
    if not keep_eligible or not keep.feasible:
        return False
    need = max(
        1,
        policy.min_replicas,
        math.ceil(demand / (curve.capacity_rps(batch) * policy.max_utilization) - 1e-9),
    )
    tie_goes_to_keep = policy.objective.kind is not ObjectiveKind.THROUGHPUT
    return need > keep.replicas or (need == keep.replicas and tie_goes_to_keep)


def capped_preference(at_max: AtMax, policy: Policy) -> tuple[float, ...]:
    """Sort key among options that hold nowhere within the bounds (see the module docstring)."""
    bound = policy.objective.latency
    running = at_max.running_latency(bound.metric) / bound.target_s
    served = -at_max.served_rps
    if policy.objective.kind is ObjectiveKind.THROUGHPUT:
        return (0, served, running) if at_max.holds else (1, running, served)
    under = at_max.latency_under_demand(bound.metric) / bound.target_s
    return (under, 0, served, running) if at_max.holds else (under, 1, running, served)


def preference(option: Option, current: int, policy: Policy) -> tuple[float, ...]:
    """Sort key: cheapest first, then (latency) the current batch or (throughput) more tokens;
    options that cannot hold within the bounds by what they deliver at max_replicas."""
    if not option.feasible and option.at_max is not None:
        return (1, *capped_preference(option.at_max, policy), 0 if option.batch == current else 1)
    metric = policy.objective.latency.metric
    score = option.prediction.latency(metric) / policy.objective.latency.target_s
    if policy.objective.kind is ObjectiveKind.THROUGHPUT:
        return (
            0 if option.feasible else 1,
            option.replicas,
            -option.prediction.capacity_rps,
            score,
        )
    return (
        0 if option.feasible else 1,
        option.replicas,
        0 if option.batch == current else 1,
        score,
    )


def idle_batch(policy: Policy, template_batch: int | None, in_force: int) -> int:
    """The batch to hold with zero traffic: the one in force, unless it lies outside the bounds —
    then `initial_seqs` for a template without the flag, else the nearest bound."""
    b = policy.batching
    if not b.enabled or b.min_seqs <= in_force <= b.max_seqs:
        return in_force
    start = b.initial_seqs if template_batch is None else in_force
    return min(max(start, b.min_seqs), b.max_seqs)


def recommend(
    curve: StepCurve,
    cal: Calibration,
    policy: Policy,
    workload: WorkloadObservation,
    batch: int,
    forecast: Forecast,
    evaluation: Evaluation,
    zero_traffic: bool,
    queue_growth_rps: float = 0.0,
    fleet_changed_in_window: bool = False,
) -> Recommendation:
    """Size the fleet for the forecast; see the module docstring for the rules."""
    q = policy.objective.latency.quantile
    if zero_traffic:
        idle = predict(curve, cal, policy.min_replicas, batch, 0.0, q)
        keep = Option(batch, policy.min_replicas, idle, feasible=True)
        inside = idle_batch(policy, workload.max_num_seqs, batch)
        if inside == batch:
            return Recommendation(keep, keep, 0.0, 0, 0)
        idle = predict(curve, cal, policy.min_replicas, inside, 0.0, q)
        return Recommendation(
            Option(inside, policy.min_replicas, idle, feasible=True), keep, 0.0, 0, 0
        )

    # Pods already starting serve before any asked for now: the queue they will not stop is
    # what the ready ones fall behind by after them too (counting it again every tick while
    # they start would order a fleet for one step in load).
    backlog = backlog_rps(
        evaluation.waiting,
        forecast.current_rps,
        (workload.ready + workload.starting) * curve.capacity_rps(batch),
        forecast.horizon_s,
    )
    arrivals = sizing_demand(policy, forecast, curve)
    margin = policy.target_margin

    def options_for(demand: float) -> tuple[Option, Option]:
        keep = cheapest(curve, cal, batch, demand, policy, margin)
        candidates = batch_candidates(policy, batch)
        options = [keep] if batch in candidates else []
        for b in candidates:
            if b != batch and not cannot_win(b, keep, curve, demand, policy, batch in candidates):
                options.append(cheapest(curve, cal, b, demand, policy, margin))
        return min(options, key=lambda o: preference(o, batch, policy)), keep

    demand = arrivals + backlog
    best, keep = options_for(demand)
    if backlog > 0.0 and not best.feasible:
        # Beyond max replicas the backlog cannot drain in time whatever the batch: compare the
        # options on what they do for the arrivals (the queue drains as far as the bounds allow).
        demand, backlog = arrivals, 0.0
        best, keep = options_for(demand)

    floor = correction = 0
    if (
        evaluation.met is False
        and evaluation.ratio is not None
        and not evaluation.per_token
        and workload.starting == 0
        and queue_growth_rps >= 0.0
        and (evaluation.waiting >= MIN_WAITING or not fleet_changed_in_window)
        and holds(
            predict(curve, cal, max(workload.replicas, 1), batch, forecast.current_rps, q),
            policy,
            0.0,
        )
    ):
        step = min(evaluation.ratio, MAX_CORRECTION)
        floor = correction = max(workload.replicas + 1, math.ceil(workload.replicas * step))
    if workload.starting > 0 and not workload.rollout_in_progress:
        floor = max(floor, workload.replicas)
    now_best, now_keep = best.replicas, keep.replicas
    if forecast.rising:
        current = (
            sizing_demand(
                policy, replace(forecast, forecast_rps=forecast.current_rps, trend_rps=None), curve
            )
            + backlog
        )
        now_best = cheapest(curve, cal, best.batch, current, policy, margin).replicas
        now_keep = cheapest(curve, cal, keep.batch, current, policy, margin).replicas
    return Recommendation(best, keep, demand, floor, correction, now_best, now_keep, backlog)


def with_floor(option: Option, rec: Recommendation) -> Option:
    """The option with the corrections' floor applied (after the batch gate compared options)."""
    return replace(option, replicas=rec.floor) if rec.floor > option.replicas else option


def explain(
    option: Option,
    rec: Recommendation,
    policy: Policy,
    workload: WorkloadObservation,
    forecast: Forecast,
    evaluation: Evaluation,
    zero_traffic: bool,
) -> StageOutcome:
    """The recommend stage's outcome for the option the batch gate settled on."""
    if zero_traffic:
        return StageOutcome(
            Stage.RECOMMEND,
            Reason.ZERO_TRAFFIC,
            f"zero traffic: {option.replicas} replicas (the minimum)",
        )
    reason = cause(option, rec, workload, policy, evaluation)
    bound = policy.objective.latency
    p = option.prediction
    message = (
        f"{option.replicas} replicas at batch {option.batch}: demand {number(forecast.current_rps)} req/s"
        f" (sized for {number(rec.demand_rps)} over {seconds(forecast.horizon_s)}"
        f"{backlog_note(rec, evaluation, forecast)}); capacity"
        f" {number(p.capacity_rps)} req/s per replica; predicted {bound.name}"
        f" {seconds(p.latency(bound.metric))} at utilisation {p.utilization:.0%}"
    )
    if reason is Reason.MODEL_CORRECTION:
        message += (
            f"; observed {seconds(evaluation.observed_s)} > {seconds(bound.target_s)} while the model"
            f" holds: ×{evaluation.ratio:.2f}"
        )
    elif reason is Reason.PODS_STARTING:
        message += f"; {workload.starting} pods starting count as capacity"
    if not option.feasible:
        message += f"; not enough even at {policy.max_replicas} replicas"
    return StageOutcome(Stage.RECOMMEND, reason, message)


def backlog_note(rec: Recommendation, evaluation: Evaluation, forecast: Forecast) -> str:
    """How much of the sizing demand drains the queue, when that is a visible share."""
    if rec.backlog_rps < max(0.05 * rec.demand_rps, 0.01):
        return ""
    return (
        f", {number(rec.backlog_rps)} req/s of it to drain {number(evaluation.waiting)} queued"
        f" within {seconds(forecast.horizon_s)} of new pods being ready"
    )


def cause(
    option: Option,
    rec: Recommendation,
    workload: WorkloadObservation,
    policy: Policy,
    evaluation: Evaluation,
) -> Reason:
    """Name why the recommendation moves (or holds) the replicas."""
    if rec.correction and option.replicas == rec.correction:
        return Reason.MODEL_CORRECTION
    if workload.starting > 0 and option.replicas <= workload.replicas:
        return Reason.PODS_STARTING
    if option.replicas > workload.replicas:
        needed_now = rec.now_best if option.batch == rec.best.batch else rec.now_keep
        if option.replicas > max(needed_now, workload.replicas):
            return Reason.FORECAST_DEMAND  # the current demand would not need them yet
        if evaluation.queueing:
            return Reason.QUEUEING_DELAY
        if evaluation.per_token:
            return Reason.PER_TOKEN_LATENCY
        if (
            policy.objective.kind is ObjectiveKind.THROUGHPUT
            and policy.objective.tokens_per_s is not None
        ):
            return Reason.THROUGHPUT_TARGET
        return Reason.FORECAST_DEMAND
    if option.replicas < workload.replicas:
        return Reason.EXCESS_CAPACITY
    if evaluation.per_token and option.batch != rec.keep.batch:
        return Reason.PER_TOKEN_LATENCY
    return Reason.OBJECTIVE_HELD
