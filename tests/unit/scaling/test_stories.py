"""Stories on a fake clock: the control law ticking over a small fleet, as an SRE would tell them.

Each `Loop.tick` observes the `Service` (pods that take a cold start to become ready, a queue that
grows when demand exceeds capacity), decides, and actuates like the operator in Enforce mode.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace

import pytest
from scaling_situations import Loop, Service, latency_policy, outage, throughput_policy

from sloscale.scaling import (
    Action,
    Batching,
    ControlState,
    Decision,
    LatencyMetric,
    LatencyTarget,
    RateLimit,
    Reason,
    Stage,
)
from sloscale.scaling.capacity import StepCurve, predict
from sloscale.scaling.policy import H100, EngineProfile, Policy
from sloscale.scaling.state import Mix

CHAT = Mix(1024.0, 256.0)
DECODE = Mix(512.0, 512.0)
LONG = Mix(2048.0, 512.0)  # long prompts: a replica's capacity grows little with the batch
ONE_AT_A_TIME = RateLimit(300.0, 1, 10, 60.0)


def stage(decision: Decision, name: Stage) -> str:
    return next(s.reason for s in decision.stages if s.stage == name)


def stage_message(decision: Decision, name: Stage) -> str:
    return next(s.message for s in decision.stages if s.stage == name)


def replicas_wanted(decision: Decision) -> int:
    """The replicas the clamp says were wanted beyond the maximum (ScalingLimited)."""
    assert decision.scaling_limited is not None
    assert decision.scaling_limited.reason == Reason.AT_MAX_REPLICAS
    found = re.match(r"(\d+) replicas wanted, limited to max", decision.scaling_limited.message)
    assert found is not None, decision.scaling_limited.message
    return int(found.group(1))


def needed_for(decision: Decision, demand_rps: float, policy: Policy) -> int:
    """The fewest replicas at the decided batch's capacity that carry `demand_rps` within the
    utilisation bound."""
    assert decision.capacity_rps_per_replica is not None
    per_replica = decision.capacity_rps_per_replica * policy.max_utilization
    return math.ceil(demand_rps / per_replica)


def running_latency(loop: Loop, batch: int, demand_rps: float) -> float:
    """What the law's own model, as learned so far, predicts once a request runs (queueing left
    out) at max replicas and `batch`."""
    assert loop.state is not None and loop.state.mix is not None
    curve = StepCurve.fitted(loop.policy.profile, loop.state.mix, loop.state.fit)
    bound = loop.policy.objective.latency
    prediction = predict(
        curve, loop.state.calibration, loop.policy.max_replicas, batch, demand_rps, bound.quantile
    )
    return prediction.service_latency(bound.metric)


def warm_loop(
    replicas: int,
    demand: float,
    *,
    minutes: float = 10.0,
    scale_down: RateLimit = ONE_AT_A_TIME,
    min_replicas: int = 1,
    max_replicas: int = 8,
) -> Loop:
    """A fleet with a p99 TTFT ≤ 1 s objective and a fixed batch, that has served `demand`
    steadily for a while (history and fit filled)."""
    policy = latency_policy(
        LatencyMetric.TTFT,
        1.0,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        scale_down=scale_down,
        batching=Batching(enabled=False),
    )
    loop = Loop(Service(H100, CHAT, replicas=replicas, batch=64), policy)
    loop.run(demand, minutes * 60)
    return loop


def test_burst_scale_up_in_one_tick_no_overshoot_while_warming_then_slow_step_down() -> None:
    loop = warm_loop(2, 20.0)
    assert loop.service.replicas == 2

    # A burst: 45 req/s needs four replicas of 16.9 req/s each at 85 % utilisation, and one more
    # to drain, within a cold start, the queue two replicas build until the new ones are ready.
    burst = loop.tick(45.0)
    assert burst.action is Action.SCALE_UP and burst.replicas == 5
    assert burst.reason == Reason.QUEUEING_DELAY
    assert burst.message.startswith("replicas 2→5: p99 TTFT")
    assert "to drain" in stage_message(burst, Stage.RECOMMEND)
    assert re.search(r"; capacity 1[67](\.\d)? req/s per replica", burst.message)

    # While the three new pods warm (120 s), the queue grows — and no further scale-up follows.
    warming = loop.run(45.0, 120.0)
    assert all(d.replicas == 5 for d in warming)
    assert any(stage(d, Stage.RECOMMEND) == Reason.PODS_STARTING for d in warming)
    assert loop.service.waiting > 0

    # Ready: the backlog drains without ordering more replicas.
    assert all(d.replicas == 5 for d in loop.run(45.0, 180.0))
    assert loop.service.waiting == 0

    # Load falls: five minutes later, still 4 — what 45 req/s needed (stabilisation); the fifth
    # replica, sized to drain the burst's queue, goes once that recommendation is 300 s old.
    falling = loop.run(8.0, 285.0)
    assert all(d.replicas >= 4 for d in falling)
    assert falling[-1].reason == Reason.STABILIZING

    # After stabilisation: down one at a time, once per period, to what 8 req/s needs.
    later = falling + loop.run(8.0, 660.0)
    counts = [d.replicas for d in later]
    steps = [a - b for a, b in zip([5, *counts], counts, strict=False)]
    assert counts[-1] == 1
    assert set(steps) <= {0, 1}
    downs = [d for d in later if d.action is Action.SCALE_DOWN]
    assert [d.replicas for d in downs] == [4, 3, 2, 1]
    assert all("replicas" in d.message and "→" in d.message for d in downs)


def test_prometheus_outage_at_peak_holds_replicas_and_batch() -> None:
    loop = warm_loop(4, 45.0)
    before = loop.service.replicas, loop.service.batch
    held = [loop.tick(45.0, metrics=outage()) for _ in range(40)]  # ten minutes without metrics
    assert all((d.replicas, d.max_num_seqs) == before for d in held)
    assert all(d.action is Action.HOLD and d.reason == Reason.METRICS_UNAVAILABLE for d in held)
    assert all(not d.metrics_available and d.metrics_reason == "Stale" for d in held)
    assert held[0].objective.observed_s is None
    # Metrics return: the law resumes from the same fleet, still at peak.
    back = loop.tick(45.0)
    assert back.metrics_available and back.replicas == 4


def test_zero_traffic_goes_to_min_through_stabilisation_and_rate_limits() -> None:
    loop = warm_loop(4, 45.0, min_replicas=1)
    idle = loop.run(0.0, 20 * 60.0)
    assert idle[0].metrics_reason == "ZeroTraffic"
    assert idle[0].replicas == 4  # not at once
    assert idle[-1].replicas == 1
    counts = [d.replicas for d in idle]
    assert all(a - b <= 1 for a, b in zip(counts, counts[1:], strict=False))
    assert stage(idle[-1], Stage.RECOMMEND) == Reason.ZERO_TRAFFIC


@pytest.mark.parametrize(
    ("metric", "target_s"), [(LatencyMetric.ITL, 0.025), (LatencyMetric.E2E, 12.0)]
)
def test_per_token_latency_over_target_without_queueing_at_max_replicas_gives_a_smaller_batch(
    metric: LatencyMetric, target_s: float
) -> None:
    # 25 req/s of 512/512 on two replicas (the max) at batch 512: bursts fill the batch (6× the
    # mean concurrency of ≈ 57), so p99 ITL is the step time of ≈ 340 sequences, ≈ 30 ms, over a
    # 25 ms target, and a p99 request's 512 tokens take ≈ 15.6 s, over 12 s. No queue: replicas
    # are not what is short, and no more may be added anyway.
    policy = latency_policy(
        metric,
        target_s,
        max_replicas=2,
        batching=Batching(min_seqs=8, initial_seqs=512, max_seqs=512),
    )
    loop = Loop(Service(H100, DECODE, replicas=2, batch=512, burstiness=6.0), policy)
    first = loop.tick(25.0)
    assert first.objective.met is False
    assert stage(first, Stage.EVALUATE) == Reason.OBJECTIVE_VIOLATED
    assert loop.service.waiting == 0
    assert stage(first, Stage.RECOMMEND) in (Reason.PER_TOKEN_LATENCY, Reason.OBJECTIVE_HELD)
    decisions = [first, *loop.run(25.0, 120.0)]
    change = next(d for d in decisions if d.action is Action.BATCH_DOWN)
    assert change.reason == Reason.SMALLER_BATCH
    assert change.max_num_seqs == 128  # 256 steps too slowly; 64 cannot keep up with demand
    assert change.replicas == 2
    assert "batch 512→128" in change.message
    # Rolled out, the smaller batch holds the target, with no queue and no further change.
    after = loop.run(25.0, 900.0)
    assert after[-1].objective.met is True
    assert loop.service.waiting == 0
    assert {d.max_num_seqs for d in after} == {128}


def test_throughput_objective_grows_the_batch_while_the_bound_holds() -> None:
    bound = LatencyTarget(LatencyMetric.ITL, 0.99, 0.03)
    policy = throughput_policy(
        None,
        bound,
        max_replicas=4,
        batching=Batching(min_seqs=8, initial_seqs=16, max_seqs=512, cooldown_s=600.0),
    )
    loop = Loop(Service(H100, DECODE, replicas=1, batch=16, burstiness=1.3), policy)
    decisions = loop.run(6.0, 3600.0)
    batches = [d.max_num_seqs for d in decisions]
    grown = [d for d in decisions if d.action is Action.BATCH_UP]
    assert grown and all(d.reason == Reason.LARGER_BATCH for d in grown)
    assert batches == sorted(batches)  # only ever grows here
    assert batches[-1] is not None and batches[-1] > 16
    assert all(d.objective.met for d in decisions[-20:])  # the bound still holds
    # Changes are rare: never two within the cooldown.
    times = [loop.tick_s * i for i, d in enumerate(decisions) if d.action is Action.BATCH_UP]
    assert all(b - a >= 600.0 for a, b in zip(times, times[1:], strict=False))


def test_throughput_objective_beyond_max_replicas_grows_the_batch_to_the_largest_that_keeps_the_bound() -> (
    None
):
    # 20 000 tok/s of long prompts is 39 req/s; four replicas (the max) at batch 32 serve 22 of
    # them. No batch reaches the target within four replicas, so the replicas each would need
    # above the maximum say nothing about what the fleet can do. At four replicas batch 128
    # serves the most while p99 ITL stays under 60 ms (≈ 32 ms steps with the batch full);
    # batch 256 would not (≈ 58 ms steps, over 54 ms with the margin).
    bound = LatencyTarget(LatencyMetric.ITL, 0.99, 0.06)
    batching = Batching(min_seqs=8, initial_seqs=32, max_seqs=512, cooldown_s=600.0)
    policy = throughput_policy(20_000.0, bound, max_replicas=4, batching=batching)
    loop = Loop(Service(H100, LONG, replicas=4, batch=32), policy)
    offered = 20_000.0 / LONG.output_tokens
    decisions = loop.run(offered, 1800.0)

    grown = [d for d in decisions if d.max_num_seqs != 32]
    assert grown, "the batch never grew"
    first = grown[0]
    assert first.action is Action.BATCH_UP and first.reason == Reason.LARGER_BATCH
    assert first.max_num_seqs == 128 and "batch 32→128" in first.message
    assert {d.max_num_seqs for d in grown} == {128}  # one rolling restart, no flapping
    assert running_latency(loop, 128, offered) <= 0.06 * 0.9 < running_latency(loop, 256, offered)

    last = decisions[-1]
    assert last.replicas == 4
    # ScalingLimited names the replicas the target would need at the new batch.
    assert replicas_wanted(last) == needed_for(last, offered, policy) > 4
    assert last.objective.tokens_per_s is not None and first.objective.tokens_per_s is not None
    assert last.objective.tokens_per_s >= 1.4 * first.objective.tokens_per_s  # 11 100 → 16 200
    assert all(d.objective.met for d in decisions[-20:])  # the bound holds


def test_latency_objective_queueing_at_max_replicas_grows_the_batch_while_the_prefill_holds() -> (
    None
):
    # p99 TTFT ≤ 2 s for 33 req/s of long prompts; four replicas (the max) at batch 32 serve
    # 22: requests queue and more replicas cannot be had. The batch was changed a moment ago, so
    # through the cooldown the backlog builds. Then the batch grows to the one predicting the
    # best TTFT under the whole demand — 512, serving 36 req/s — whose prefill (TTFT once a
    # request runs) still holds, and the backlog drains.
    batching = Batching(min_seqs=8, initial_seqs=32, max_seqs=512, cooldown_s=600.0)
    policy = latency_policy(LatencyMetric.TTFT, 2.0, max_replicas=4, batching=batching)
    loop = Loop(Service(H100, LONG, replicas=4, batch=32), policy)
    loop.state = ControlState.initial(0.0, 4, 32, last_batch_change_time=0.0)
    cooling = loop.run(33.0, 600.0)
    assert all(d.max_num_seqs == 32 and d.replicas == 4 for d in cooling)
    assert cooling[-1].reason == Reason.BATCH_COOLDOWN
    assert loop.service.waiting > 1000

    grown = loop.tick(33.0)
    assert grown.action is Action.BATCH_UP and grown.reason == Reason.LARGER_BATCH
    assert grown.max_num_seqs == 512 and "batch 32→512" in grown.message
    assert grown.objective.met is False and grown.replicas == 4
    assert replicas_wanted(grown) == needed_for(grown, 33.0, policy) > 4
    assert grown.infeasible is not None
    assert grown.infeasible.reason == Reason.INFEASIBLE_AT_MAX_REPLICAS
    assert running_latency(loop, 512, 33.0) <= 2.0 * 0.9

    after = loop.run(33.0, 3000.0)
    assert {d.max_num_seqs for d in after} == {512}
    assert loop.service.waiting == 0  # the backlog has drained
    assert grown.objective.observed_s is not None and after[-1].objective.observed_s is not None
    assert after[-1].objective.observed_s < grown.objective.observed_s / 10
    assert all(replicas_wanted(d) > 4 for d in after)  # still short: ScalingLimited stays


def test_throughput_target_adds_replicas_when_tokens_are_still_short() -> None:
    bound = LatencyTarget(LatencyMetric.ITL, 0.99, 0.05)
    policy = throughput_policy(
        25_000.0,
        bound,
        max_replicas=8,
        batching=Batching(min_seqs=8, initial_seqs=64, max_seqs=256),
    )
    loop = Loop(Service(H100, DECODE, replicas=1, batch=64), policy)
    last = loop.run(2.0, 900.0)[-1]
    assert last.capacity_rps_per_replica is not None
    assert last.replicas * last.capacity_rps_per_replica * 512 >= 25_000.0
    assert any(d.reason == Reason.THROUGHPUT_TARGET for d in loop.decisions)


def test_restart_no_scale_down_until_a_window_refills() -> None:
    # No stabilisation window: only restart safety stands between a restart and a scale-down.
    loop = warm_loop(4, 45.0, scale_down=RateLimit(0.0, 1, 10, 60.0))
    assert loop.service.replicas == 4
    # The operator restarts and rebuilds its state from status; load has just fallen.
    loop.state = ControlState.initial(loop.now, 4, loop.service.batch)
    refilling = loop.run(8.0, 285.0)
    assert all(d.replicas == 4 for d in refilling)
    # (The first tick after the restart is held by the stabilisation history seeded at restart.)
    assert all(stage(d, Stage.SCALE_DOWN_SAFETY) == Reason.HISTORY_REFILLING for d in refilling[1:])
    assert refilling[-1].reason == Reason.HISTORY_REFILLING
    assert "full 300s window" in refilling[-1].message
    later = loop.run(8.0, 300.0)
    assert later[-1].replicas < 4


def test_an_itl_target_below_one_idle_step_is_infeasible() -> None:
    policy = latency_policy(LatencyMetric.ITL, 0.004)
    loop = Loop(Service(H100, CHAT, replicas=1, batch=64), policy)
    d = loop.tick(2.0)
    assert d.infeasible is not None and d.infeasible.reason == Reason.TARGET_BELOW_FLOOR
    assert "4ms <" in d.infeasible.message


def test_demand_beyond_max_replicas_is_infeasible_and_capacity_limited() -> None:
    loop = warm_loop(2, 10.0, max_replicas=3)
    d = loop.tick(200.0)
    assert d.replicas == 3
    assert d.scaling_limited is not None and d.scaling_limited.reason == Reason.AT_MAX_REPLICAS
    assert d.infeasible is not None and d.infeasible.reason == Reason.INFEASIBLE_AT_MAX_REPLICAS
    assert "even at 3 replicas" in d.infeasible.message


@pytest.mark.parametrize("slowdown", [1.6, 0.7])
def test_a_service_slower_or_faster_than_its_prior_converges_to_its_own_curve(
    slowdown: float,
) -> None:
    truth = EngineProfile(
        "measured",
        H100.a_ms * slowdown,
        H100.s_ms_per_token * slowdown,
        H100.k_tokens,
        H100.d_ms_per_ctx_token * slowdown,
        H100.e_ms_per_pair * slowdown,
        H100.kv_capacity_tokens,
        H100.max_num_batched_tokens,
    )
    policy = replace(latency_policy(LatencyMetric.TTFT, 1.0, max_replicas=16), profile=H100)
    loop = Loop(Service(truth, CHAT, replicas=3, batch=64), policy)
    decisions = loop.run(30.0, 1800.0)
    last = decisions[-1]
    assert last.max_num_seqs is not None
    true_capacity = StepCurve.prior(truth, CHAT).capacity_rps(last.max_num_seqs)
    assert last.capacity_rps_per_replica == pytest.approx(true_capacity, rel=0.1)
    assert loop.service.waiting == 0


def test_a_steady_ramp_is_met_by_pods_already_warm() -> None:
    policy = latency_policy(
        LatencyMetric.TTFT, 1.0, max_replicas=12, batching=Batching(enabled=False)
    )
    policy = replace(policy, min_replicas=3)  # sized for the day, with headroom for an hour
    service = Service(
        H100, CHAT, replicas=3, batch=64, cold_start_s=150.0, starts=(150.0, 140.0, 120.0)
    )
    loop = Loop(service, policy)
    loop.run(10.0, 300.0)
    ramp = []
    for i in range(80):  # +5 req/s per minute for twenty minutes
        ramp.append(loop.tick(10.0 + 5.0 * (i * 15.0) / 60.0))
    assert ramp[-1].cold_start_s == 150.0  # measured from pod starts, not the 120 s default
    assert any(stage(d, Stage.FORECAST) == Reason.RISING_DEMAND for d in ramp)
    ahead = [d for d in ramp if d.action is Action.SCALE_UP]
    assert ahead and all(
        d.reason == Reason.FORECAST_DEMAND for d in ahead
    )  # never waited for a queue
    assert all(d.objective.met for d in ramp)  # the new pods were warm before the demand arrived
    assert ramp[-1].replicas >= 8


def test_advisory_mode_reports_the_same_decision_every_tick_without_spending_limits() -> None:
    # Nothing is actuated: the workload stays at 2 replicas, batch 64, whatever is decided.
    policy = latency_policy(LatencyMetric.TTFT, 1.0, max_replicas=10)
    service = Service(H100, CHAT, replicas=2, batch=64)
    state = ControlState.initial(0.0, 2, 64)
    decisions = []
    for i in range(40):
        now = 15.0 * i
        from sloscale.scaling import decide

        # 30 req/s: near the two replicas' capacity (the advice is more), the queue not growing
        # without bound (a growing backlog would rightly grow the advice with it).
        d, state = decide(service.observe(now, 30.0), policy, state, now)
        decisions.append(d)
    later = decisions[10:]
    assert len({(d.replicas, d.max_num_seqs) for d in later}) == 1
    assert later[0].replicas > 2
    assert all(d.reason != Reason.RATE_LIMITED for d in later)
    assert state.scale_events == ()


def test_attainment_and_error_budget_follow_the_windows() -> None:
    policy = latency_policy(
        LatencyMetric.TTFT, 1.0, window_s=300.0, max_replicas=2, batching=Batching(enabled=False)
    )
    loop = Loop(Service(H100, CHAT, replicas=2, batch=64), policy)
    loop.run(10.0, 915.0)  # three windows, all met
    good = loop.decisions[-1].objective
    assert good.attainment == 1.0 and good.error_budget_remaining == 1.0
    loop.run(60.0, 300.0)  # beyond two replicas: a window misses
    bad = loop.decisions[-1].objective
    assert bad.attainment is not None and bad.attainment < 1.0
    assert bad.error_budget_remaining == 0.0  # a missed window in four spends a 1 % budget
    loop.run(0.0, 300.0)  # the backlog drains
    assert loop.state is not None and loop.state.attainment is not None
    counted = loop.state.attainment.counted
    loop.run(0.0, 900.0)  # idle windows do not count
    assert loop.state.attainment.counted == counted
