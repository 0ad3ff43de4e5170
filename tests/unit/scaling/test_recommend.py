"""Stage 5: the cheapest (replicas, batch) pair, the feedback step and the credit for warming pods."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from scaling_situations import idle, latency_policy, snapshot, throughput_policy, workload

from sloscale.scaling import Batching, ControlState, LatencyMetric, LatencyTarget, Reason
from sloscale.scaling.capacity import StepCurve, predict
from sloscale.scaling.evaluate import Evaluation, evaluate
from sloscale.scaling.forecast import Forecast
from sloscale.scaling.policy import H100, ObjectiveKind, Policy
from sloscale.scaling.recommend import (
    backlog_rps,
    batch_candidates,
    cheapest,
    explain,
    recommend,
    sizing_demand,
)
from sloscale.scaling.snapshot import MetricsSnapshot, WorkloadObservation
from sloscale.scaling.state import Calibration, Mix

CONV = Mix(1024.0, 256.0)
CURVE = StepCurve.prior(H100, CONV)
CAL = Calibration()


def steady(rps: float, horizon_s: float = 120.0) -> Forecast:
    return Forecast(rps, rps, 0.0, horizon_s)


def judged(policy: Policy, snap: MetricsSnapshot) -> Evaluation:
    return evaluate(snap, policy, ControlState.initial(0.0, 2, 64))[0]


@pytest.mark.parametrize(
    ("batching", "current", "expected"),
    [
        (Batching(min_seqs=8, initial_seqs=64, max_seqs=256), 64, (8, 16, 32, 64, 128, 256)),
        (Batching(min_seqs=10, initial_seqs=48, max_seqs=100), 48, (10, 16, 32, 48, 64, 100)),
        (
            Batching(min_seqs=8, max_seqs=64),
            1024,
            (8, 16, 32, 64),
        ),  # out of bounds: not a candidate
        (Batching(enabled=False), 1024, (1024,)),
    ],
)
def test_batch_candidates(batching: Batching, current: int, expected: tuple[int, ...]) -> None:
    assert batch_candidates(replace(latency_policy(), batching=batching), current) == expected


@pytest.mark.parametrize("rps", [1.0, 10.0, 40.0, 90.0])
def test_cheapest_sizes_by_the_utilisation_bound_when_latency_is_easy(rps: float) -> None:
    policy = latency_policy(LatencyMetric.TTFT, 2.0, max_replicas=20)
    option = cheapest(CURVE, CAL, 64, rps, policy, 0.1)
    assert option.feasible
    assert option.replicas == max(1, math.ceil(rps / (CURVE.capacity_rps(64) * 0.85)))
    assert option.prediction.utilization <= 0.85


def test_cheapest_adds_replicas_for_a_tight_ttft_target() -> None:
    loose = cheapest(
        CURVE, CAL, 64, 40.0, latency_policy(LatencyMetric.TTFT, 2.0, max_replicas=20), 0.1
    )
    tight = cheapest(
        CURVE, CAL, 64, 40.0, latency_policy(LatencyMetric.TTFT, 0.12, max_replicas=20), 0.1
    )
    assert tight.replicas > loose.replicas
    assert tight.prediction.ttft_s <= 0.12 * 0.9
    fewer = cheapest(
        CURVE,
        CAL,
        64,
        40.0,
        replace(latency_policy(LatencyMetric.TTFT, 0.12), max_replicas=tight.replicas - 1),
        0.1,
    )
    assert not fewer.feasible  # one fewer cannot hold: the answer is the cheapest


def test_demand_beyond_the_fleet_is_infeasible_and_asks_for_what_it_needs() -> None:
    option = cheapest(CURVE, CAL, 64, 1000.0, latency_policy(max_replicas=4), 0.1)
    assert not option.feasible
    assert option.replicas == math.ceil(
        1000.0 / (CURVE.capacity_rps(64) * 0.85)
    )  # the clamp reports max


def test_below_the_floor_best_effort_does_not_buy_useless_replicas() -> None:
    policy = latency_policy(LatencyMetric.ITL, 0.004, max_replicas=20)  # under one idle step
    option = cheapest(CURVE, CAL, 64, 10.0, policy, 0.1)
    assert not option.feasible
    assert option.replicas < 20


def test_zero_traffic_recommends_the_minimum() -> None:
    policy = latency_policy(min_replicas=2)
    ev = judged(policy, idle())
    rec = recommend(CURVE, CAL, policy, workload(6), 64, steady(0.0), ev, zero_traffic=True)
    assert rec.best.replicas == 2 and rec.keep.replicas == 2
    assert (
        explain(rec.best, rec, policy, workload(6), steady(0.0), ev, True).reason
        == Reason.ZERO_TRAFFIC
    )


def test_feedback_steps_up_when_the_objective_is_violated_but_the_model_holds() -> None:
    policy = latency_policy(LatencyMetric.TTFT, 1.0)
    # The model sees 4 req/s as easy for 2 replicas, yet p99 TTFT is 2.3 s with requests queueing.
    snap = snapshot(rps=4.0, ttft=(0.9, 2.3), queue=(0.5, 2.0), waiting=6.0, pods=2)
    ev = judged(policy, snap)
    rec = recommend(CURVE, CAL, policy, workload(2), 64, steady(4.0), ev, zero_traffic=False)
    assert ev.ratio is not None and ev.ratio > 2.0
    assert rec.correction == 3  # at least one more, at most a quarter more (rounded up)
    assert rec.floor == rec.correction
    out = explain(
        replace(rec.best, replicas=rec.floor), rec, policy, workload(2), steady(4.0), ev, False
    )
    assert out.reason == Reason.MODEL_CORRECTION and "while the model holds" in out.message


def test_no_feedback_step_while_a_backlog_drains() -> None:
    policy = latency_policy(LatencyMetric.TTFT, 1.0)
    snap = snapshot(rps=4.0, ttft=(0.9, 2.3), queue=(0.5, 2.0), waiting=6.0, pods=2)
    rec = recommend(
        CURVE, CAL, policy, workload(2), 64, steady(4.0), judged(policy, snap), False, -3.0
    )
    assert rec.correction == 0 and rec.floor == 0


def test_no_feedback_step_on_a_window_that_mixes_the_fleet_before_a_scale_up() -> None:
    # The p99 still counts requests the smaller fleet queued; none wait now.
    policy = latency_policy(LatencyMetric.TTFT, 1.0)
    past = snapshot(rps=4.0, ttft=(0.9, 2.3), queue=(0.5, 2.0), waiting=0.0, pods=2)
    rec = recommend(
        CURVE, CAL, policy, workload(2), 64, steady(4.0), judged(policy, past), False, 0.0, True
    )
    assert rec.correction == 0 and rec.floor == 0
    # The same window once it holds only the fleet in force: the violation is the model's miss.
    rec = recommend(
        CURVE, CAL, policy, workload(2), 64, steady(4.0), judged(policy, past), False, 0.0, False
    )
    assert rec.correction == 3
    # Requests waiting now are evidence about the fleet in force, whatever the window holds.
    now = snapshot(rps=4.0, ttft=(0.9, 2.3), queue=(0.5, 2.0), waiting=6.0, pods=2)
    rec = recommend(
        CURVE, CAL, policy, workload(2), 64, steady(4.0), judged(policy, now), False, 0.0, True
    )
    assert rec.correction == 3


def test_no_feedback_step_while_pods_are_starting() -> None:
    policy = latency_policy(LatencyMetric.TTFT, 1.0)
    snap = snapshot(rps=4.0, ttft=(0.9, 2.3), queue=(0.5, 2.0), waiting=6.0, pods=2)
    rec = recommend(
        CURVE, CAL, policy, workload(3, starting=1), 64, steady(4.0), judged(policy, snap), False
    )
    assert rec.correction == 0
    assert rec.floor == 3  # pods starting: never below what is already requested


def test_pods_a_batch_rollout_starts_set_no_floor() -> None:
    # They replace old pods rather than add capacity: the fleet may shrink while it rolls.
    policy = latency_policy(LatencyMetric.TTFT, 1.0, max_replicas=20)
    snap = snapshot(rps=5.0, pods=6)
    w = workload(6, starting=2, rollout=True)
    rec = recommend(CURVE, CAL, policy, w, 64, steady(5.0), judged(policy, snap), False)
    assert rec.floor == 0 and rec.keep.replicas < 6


@pytest.mark.parametrize(("forecast_rps", "expect_more"), [(5.0, False), (80.0, True)])
def test_pods_starting_block_scale_up_unless_the_forecast_needs_more(
    forecast_rps: float, expect_more: bool
) -> None:
    policy = latency_policy(LatencyMetric.TTFT, 1.0, max_replicas=20)
    snap = snapshot(rps=5.0, pods=3)
    w: WorkloadObservation = workload(4, starting=1)
    forecast = Forecast(5.0, forecast_rps, 0.5, 120.0)
    rec = recommend(CURVE, CAL, policy, w, 64, forecast, judged(policy, snap), False)
    chosen = max(rec.keep.replicas, rec.floor)
    assert (chosen > 4) is expect_more
    out = explain(
        replace(rec.keep, replicas=chosen), rec, policy, w, forecast, judged(policy, snap), False
    )
    assert out.reason == (Reason.FORECAST_DEMAND if expect_more else Reason.PODS_STARTING)


def test_latency_ties_keep_the_current_batch() -> None:
    policy = latency_policy(
        LatencyMetric.TTFT, 2.0, batching=Batching(min_seqs=8, initial_seqs=64, max_seqs=256)
    )
    rec = recommend(
        CURVE, CAL, policy, workload(2), 128, steady(1.0), judged(policy, snapshot(rps=1.0)), False
    )
    assert rec.best.replicas == 1 and rec.best.batch == 128


def test_per_token_latency_prefers_a_smaller_batch() -> None:
    # Bursts fill the batch (tail 8× the mean concurrency): p99 ITL is the step time of a full batch.
    decode = StepCurve.prior(H100, Mix(512.0, 512.0))
    cal = Calibration(itl_tail=8.0)
    policy = latency_policy(
        LatencyMetric.ITL, 0.02, max_replicas=2, batching=Batching(min_seqs=8, max_seqs=256)
    )
    snap = snapshot(rps=15.0, itl=(0.012, 0.03), pods=2, prompt_tokens=512, output_tokens=512)
    ev = judged(policy, snap)
    assert ev.per_token
    rec = recommend(decode, cal, policy, workload(2, batch=256), 256, steady(15.0), ev, False)
    assert not rec.keep.feasible
    assert rec.best.feasible and rec.best.batch < 256
    assert rec.best.prediction.itl_s <= 0.02 * 0.9


def test_throughput_objective_prefers_the_largest_batch_the_bound_allows() -> None:
    bound = LatencyTarget(LatencyMetric.ITL, 0.99, 0.05)
    policy = throughput_policy(
        None, bound, batching=Batching(min_seqs=8, initial_seqs=32, max_seqs=512)
    )
    decode = StepCurve.prior(H100, Mix(512.0, 512.0))
    rec = recommend(
        decode,
        CAL,
        policy,
        workload(1, batch=32),
        32,
        steady(2.0),
        judged(policy, snapshot(rps=2.0)),
        False,
    )
    assert rec.best.batch > 32
    assert rec.best.prediction.itl_s <= 0.05 * 0.9


def test_throughput_target_sizes_the_fleet_for_the_tokens() -> None:
    bound = LatencyTarget(LatencyMetric.ITL, 0.99, 0.1)
    policy = throughput_policy(20_000.0, bound, max_replicas=16, batching=Batching(enabled=False))
    rec = recommend(
        CURVE, CAL, policy, workload(1), 64, steady(1.0), judged(policy, snapshot(rps=1.0)), False
    )
    assert rec.demand_rps == pytest.approx(20_000.0 / CURVE.output_tokens)
    assert rec.best.prediction.tokens_capacity >= 20_000.0
    assert (
        explain(
            rec.best,
            rec,
            policy,
            workload(1),
            steady(1.0),
            judged(policy, snapshot(rps=1.0)),
            False,
        ).reason
        == Reason.THROUGHPUT_TARGET
    )


# --- beyond max replicas at every batch ---------------------------------------------------------

LONG_CURVE = StepCurve.prior(H100, Mix(2048.0, 512.0))  # steps ≈ 32 ms at 128, ≈ 58 ms at 256


def running_at_max(policy: Policy, batch: int, demand: float) -> float:
    bound = policy.objective.latency
    prediction = predict(LONG_CURVE, CAL, policy.max_replicas, batch, demand, bound.quantile)
    return prediction.service_latency(bound.metric)


@pytest.mark.parametrize("kind", list(ObjectiveKind))
@pytest.mark.parametrize(
    ("metric", "target"), [(LatencyMetric.ITL, 0.06), (LatencyMetric.E2E, 25.0)]
)
@pytest.mark.parametrize("current", [32, 512])
def test_beyond_max_replicas_the_largest_batch_that_keeps_the_bound_wins(
    kind: ObjectiveKind, metric: LatencyMetric, target: float, current: int
) -> None:
    # 60 req/s of long prompts: no batch serves them on four replicas (34 req/s at most), so
    # each asks for more replicas than the maximum and the queue would grow at every batch.
    batching = Batching(min_seqs=8, initial_seqs=32, max_seqs=512)
    bound = LatencyTarget(metric, 0.99, target)
    policy = (
        throughput_policy(None, bound, max_replicas=4, batching=batching)
        if kind is ObjectiveKind.THROUGHPUT
        else latency_policy(metric, target, max_replicas=4, batching=batching)
    )
    demand = 60.0
    snap = snapshot(rps=20.0, waiting=300.0, pods=4, prompt_tokens=2048, output_tokens=512)
    rec = recommend(
        LONG_CURVE,
        CAL,
        policy,
        workload(4, batch=current),
        current,
        steady(demand),
        judged(policy, snap),
        False,
    )
    keeping = [
        b
        for b in batch_candidates(policy, current)
        if running_at_max(policy, b, demand) <= target * (1 - policy.target_margin)
    ]
    assert keeping and max(keeping) < 512  # the bound binds below the largest batch
    assert rec.best.batch == max(keeping)  # grows from 32, shrinks from 512
    assert not rec.best.feasible and rec.best.at_max is not None
    # No batch can drain the 300 queued within the bounds: the options are sized and compared
    # on the arrivals alone.
    assert rec.demand_rps == demand and rec.backlog_rps == 0.0
    assert rec.best.replicas == math.ceil(
        demand / (LONG_CURVE.capacity_rps(rec.best.batch) * policy.max_utilization)
    )  # what it would need: the clamp reports it
    assert rec.best.at_max.served_rps == pytest.approx(4 * LONG_CURVE.capacity_rps(rec.best.batch))


def test_a_latency_objective_takes_the_batch_that_serves_its_whole_demand_at_max_replicas() -> None:
    # 33 req/s on four replicas: batches up to 128 saturate (TTFT grows without bound); 256 and
    # 512 serve it all and predict a finite TTFT, 512 the lowest (more slots, less queueing).
    policy = latency_policy(
        LatencyMetric.TTFT, 2.0, max_replicas=4, batching=Batching(min_seqs=8, max_seqs=512)
    )
    snap = snapshot(rps=22.0, waiting=300.0, pods=4, prompt_tokens=2048, output_tokens=512)
    rec = recommend(
        LONG_CURVE,
        CAL,
        policy,
        workload(4, batch=32),
        32,
        steady(33.0),
        judged(policy, snap),
        False,
    )
    assert rec.best.batch == 512 and not rec.best.feasible
    assert rec.best.at_max is not None
    assert math.isfinite(rec.best.at_max.latency_under_demand(LatencyMetric.TTFT))
    assert rec.keep.at_max is not None
    assert math.isinf(rec.keep.at_max.latency_under_demand(LatencyMetric.TTFT))


# --- zero traffic --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "in_force", "expected"),
    [
        (None, 1024, 48),  # no flag: vLLM's default is outside, the initial batch is where to go
        (4, 4, 8),  # an explicit value outside: the nearest bound
        (1024, 1024, 256),
        (128, 128, 128),  # inside: kept
    ],
)
def test_zero_traffic_brings_a_batch_outside_the_bounds_in(
    template: int | None, in_force: int, expected: int
) -> None:
    policy = latency_policy(batching=Batching(min_seqs=8, initial_seqs=48, max_seqs=256))
    ev = judged(policy, idle())
    rec = recommend(
        CURVE, CAL, policy, workload(2, batch=template), in_force, steady(0.0), ev, True
    )
    assert (rec.best.batch, rec.keep.batch) == (expected, in_force)
    off = replace(policy, batching=Batching(enabled=False))
    rec = recommend(CURVE, CAL, off, workload(2, batch=template), in_force, steady(0.0), ev, True)
    assert rec.best.batch == in_force  # batching off: never moved


@pytest.mark.parametrize(
    ("waiting", "arrivals", "serving", "expected"),
    [
        (0.0, 10.0, 20.0, 0.0),  # no queue, capacity to spare: nothing extra
        (120.0, 10.0, 20.0, 1.0),  # 120 queued, drained over the 120-s cold start
        (120.0, 30.0, 20.0, 11.0),  # ... plus the 10 req/s the pods fall behind until then
    ],
)
def test_the_backlog_is_sized_to_drain_within_a_cold_start_of_new_pods(
    waiting: float, arrivals: float, serving: float, expected: float
) -> None:
    assert backlog_rps(waiting, arrivals, serving, 120.0) == pytest.approx(expected)


def test_a_step_in_load_is_sized_for_the_queue_it_built_not_only_for_the_new_arrivals() -> None:
    # Two replicas (≈ 17 req/s each at batch 64) meet 60 req/s: 400 queued after one tick.
    policy = latency_policy(LatencyMetric.TTFT, 1.0, max_replicas=40)
    snap = snapshot(rps=34.0, ttft=(3.0, 7.0), queue=(2.0, 6.0), waiting=400.0, pods=2)
    w = workload(2)
    rec = recommend(CURVE, CAL, policy, w, 64, steady(60.0), judged(policy, snap), False)
    arrivals_only = cheapest(CURVE, CAL, 64, 60.0, policy, policy.target_margin).replicas
    assert rec.backlog_rps > 0.0 and rec.demand_rps > 60.0
    assert rec.keep.replicas > arrivals_only
    out = explain(rec.keep, rec, policy, w, steady(60.0), judged(policy, snap), False)
    assert "to drain 400 queued within 120s of new pods being ready" in out.message


def test_a_throughput_objective_sizes_for_the_trend_without_the_surge_headroom() -> None:
    # Demand wandered ×1.5 within a cold start lately: a latency objective provisions for it,
    # a throughput objective (its bound tolerates a transient queue) for the demand itself.
    surged = Forecast(20.0, 30.0, 0.0, 120.0, surge=1.5, trend_rps=20.0)
    latency = latency_policy(LatencyMetric.TTFT, 1.0, max_replicas=20)
    throughput = throughput_policy(None, LatencyTarget(LatencyMetric.E2E, 0.99, 30.0))
    assert sizing_demand(latency, surged, CURVE) == 30.0
    assert sizing_demand(throughput, surged, CURVE) == 20.0
    target = throughput_policy(
        40 * CURVE.output_tokens, LatencyTarget(LatencyMetric.E2E, 0.99, 30.0)
    )
    assert sizing_demand(target, surged, CURVE) == pytest.approx(40.0)  # the target when higher
